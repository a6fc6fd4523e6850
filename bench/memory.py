"""Peak host memory (RSS) of a full fine-tune: our stage vs a plain Trainer script, and gradient checkpointing.

Each measurement is a fresh process (`python -m bench.memory MODE`), so one run's peak cannot hide another's;
the child reports its own peak in a JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.stats import summary

ROOT = Path(__file__).resolve().parents[1]
STEPS, BATCH, MAX_LENGTH, ROWS, SEED = 4, 384, 48, 2048, 0  # a large batch: activations dominate, as on a GPU
QUICK = {"STEPS": 2, "BATCH": 32, "ROWS": 64}  # `--quick` (make bench-quick): only that the path works
MODES = {  # name: what the child process does
    "loaded": "load model, tokenizer and data; no training (the floor every mode shares)",
    "plain": "plain transformers.Trainer script, full fine-tune",
    "pipeline": "our finetune stage",
    "pipeline_checkpointing": "our finetune stage with gradient_checkpointing: true",
}


def child(mode: str) -> dict:
    """Run one mode in this process; returns its own peak RSS and, when it trained, its time."""
    from datasets import Dataset

    from data_recipes.catalog import embedded_rows
    from embedded.model import ensure_base_model

    base = ensure_base_model()
    data = Dataset.from_list(embedded_rows("embedded:code", "train", ROWS))  # the longest rows (~31 tokens)
    out = Path(tempfile.mkdtemp(prefix=f"bench-memory-{mode}-"))
    started = time.perf_counter()
    try:
        if mode == "loaded":
            from stages.model_io import load_model
            from stages.sft_data import tokenize_for_sft

            model, tokenizer = load_model(base)
            tokenize_for_sft(data, tokenizer, MAX_LENGTH)
        elif mode == "plain":
            _plain(base, data, out)
        else:
            _pipeline(base, data, out, checkpointing=mode == "pipeline_checkpointing")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"mode": mode, "peak_rss_mb": peak_rss_mb(), "seconds": time.perf_counter() - started}


def peak_rss_mb() -> float:
    """This process's peak RSS since it started (VmHWM). Not getrusage's ru_maxrss: Linux carries that over
    from the parent through fork and exec, so a child of a 1.2 GB parent reported at least 1.2 GB."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # no /proc (macOS): ru_maxrss, in bytes there
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024


def _plain(base: Path, data, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, set_seed

    from stages.sft_data import sft_collator, tokenize_for_sft

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base))
    rows = tokenize_for_sft(data, tokenizer, MAX_LENGTH)
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=STEPS,
        per_device_train_batch_size=BATCH,
        learning_rate=1e-3,
        save_strategy="no",
        report_to=[],
        seed=SEED,
        data_seed=SEED,
        use_cpu=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    set_seed(SEED)
    Trainer(
        model=model, args=args, train_dataset=rows, data_collator=sft_collator(tokenizer), processing_class=tokenizer
    ).train()


def _pipeline(base: Path, data, out: Path, checkpointing: bool) -> None:
    from stages import finetune
    from stages.context import StageContext
    from stages.handoff import Handoff

    ctx = StageContext(stage_dir=out, handoff=Handoff(base, base), seed=SEED, max_length=MAX_LENGTH, train_data=data)
    config = finetune.Config(
        steps=STEPS, batch_size=BATCH, lr=1e-3, save_steps=STEPS, gradient_checkpointing=checkpointing
    )
    finetune.run(config, ctx)


def run_child(mode: str, quick: bool = False) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", mode, *(["--quick"] if quick else [])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.memory {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(repetitions: int = 3, log=print, quick: bool = False) -> dict:
    """Every mode once per repetition, the order rotating; peaks in MB and ratios against the plain script."""
    from embedded.model import ensure_base_model

    ensure_base_model()  # built once here, not inside a measured child
    names = list(MODES)
    raw = {name: [] for name in names}
    for rep in range(repetitions):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            result = run_child(name, quick)
            raw[name].append(result)
            log(f"  rep {rep} {name:22s} peak RSS {result['peak_rss_mb']:,.0f} MB, {result['seconds']:.1f} s")
    peaks = {name: [r["peak_rss_mb"] for r in runs] for name, runs in raw.items()}
    floor = peaks["loaded"]

    def ratio(a: str, b: str, above_floor: bool = False) -> dict:
        pairs = zip(peaks[a], peaks[b], floor)
        return summary([(x - f) / (y - f) if above_floor else x / y for x, y, f in pairs])

    sizes = {**{"STEPS": STEPS, "BATCH": BATCH, "ROWS": ROWS}, **(QUICK if quick else {})}
    return {
        "steps": sizes["STEPS"],
        "batch_size": sizes["BATCH"],
        "max_length": MAX_LENGTH,
        "rows": sizes["ROWS"],
        "repetitions": repetitions,
        "modes": MODES,
        "peak_rss_mb": {name: summary(values, 1) for name, values in peaks.items()},
        "seconds": {name: summary([r["seconds"] for r in runs], 2) for name, runs in raw.items()},
        "pipeline_over_plain": ratio("pipeline", "plain"),
        "pipeline_over_plain_above_floor": ratio("pipeline", "plain", above_floor=True),
        "checkpointing_over_pipeline": ratio("pipeline_checkpointing", "pipeline"),
        "checkpointing_over_pipeline_above_floor": ratio("pipeline_checkpointing", "pipeline", above_floor=True),
    }


if __name__ == "__main__":
    import logging

    logging.disable(logging.WARNING)
    if sys.argv[2:] == ["--quick"]:
        globals().update(QUICK)
    print(json.dumps(child(sys.argv[1])))
