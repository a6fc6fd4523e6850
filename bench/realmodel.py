"""The real model on this CPU: SmolLM2-135M-Instruct's training, evaluation and generation rates, each set against
the machine's own fp32 matmul rate (2048 x 2048, on the threads torch uses here), all in one process and one run.

- **train**: our finetune stage (`stages.finetune.run`) on BoolQ passages from recipes/data, every row cut to
  max_length, AdamW; timed over steps 2..N (the first step's warm-up left out, as bench/gpu.py does).
- **evaluate**: the project's evaluation (`evaluation.harness.evaluate_suite`, lm-eval, the chat template as the
  real-model recipes score) on the shipped ARC-Easy and PIQA slices: log-likelihood scoring, forward passes only.
- **generate**: greedy `model.generate`, a fixed number of new tokens per prompt (the generative tasks' path).

FLOPs: training 6*N per trained token, forward 2*N per position the model computed (padding included: it is
computed), N = every parameter counted once (SmolLM2 ties its input embedding to the lm_head, whose matmul is real
work); attention's own score FLOPs are left out, so the ratios are slight underestimates.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.stats import summary

ROOT = Path(__file__).resolve().parents[1]
BOOLQ = ROOT / "recipes" / "data" / "boolq_train.jsonl"
SEED, LR, MATMUL_N = 0, 5e-5, 2048
SIZES = {  # full: the figures of docs/benchmarks.md; quick: make bench-quick, only that the path works
    "full": {
        "repetitions": 2,
        "steps": 4,
        "batch": 8,
        "max_length": 64,
        "eval_limit": 10,
        "eval_batch": 16,
        "gen_batch": 8,
        "gen_tokens": 32,
        "matmuls": 10,
    },
    "quick": {
        "repetitions": 1,
        "steps": 2,
        "batch": 2,
        "max_length": 32,
        "eval_limit": 2,
        "eval_batch": 16,
        "gen_batch": 2,
        "gen_tokens": 4,
        "matmuls": 3,
    },
}
FORMULAS = {"train": "6*N*tokens", "evaluate": "2*N*positions", "generate": "2*N*positions"}


def matmul_rate(repeats: int) -> dict:
    """fp32 C = A @ B with 2048 x 2048 matrices on torch's threads: 2*n^3 FLOPs each; two warm-ups, then each
    product timed alone."""
    import torch

    generator = torch.Generator().manual_seed(SEED)
    a, b = (torch.randn(MATMUL_N, MATMUL_N, generator=generator) for _ in range(2))
    for _ in range(2):
        a @ b
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        rates.append(2 * MATMUL_N**3 / (time.perf_counter() - started))
    return {"flop_s": statistics.median(rates), "values": rates}


def training_rows(count: int) -> list[dict]:
    """BoolQ passages as prompt (the first 8 words) / completion (the rest): long enough that max_length cuts
    every row, so each step trains batch x max_length tokens of real English."""
    rows = []
    for line in BOOLQ.read_text().splitlines():
        words = json.loads(line)["messages"][0]["content"].split()
        rows.append({"prompt": " ".join(words[:8]), "completion": " ".join(words[8:])})
    return [rows[i % len(rows)] for i in range(count)]


def train_rate(model_dir: Path, size: dict) -> dict:
    """Our finetune stage on the real model; real tokens and seconds of steps 2..N."""
    import torch
    from datasets import Dataset

    from bench.gpu import BatchCounter, step_timer
    from bench.throughput import counted_collators
    from stages import finetune
    from stages.context import StageContext
    from stages.handoff import Handoff

    data = Dataset.from_list(training_rows(size["steps"] * size["batch"]))
    out, box = Path(tempfile.mkdtemp(prefix="bench-real-train-")), []
    try:
        with step_timer() as timer, counted_collators(box, BatchCounter):
            ctx = StageContext(
                stage_dir=out,
                handoff=Handoff(model_dir, model_dir),
                seed=SEED,
                max_length=size["max_length"],
                train_data=data,
            )
            config = finetune.Config(
                steps=size["steps"],
                batch_size=size["batch"],
                lr=LR,
                logging_steps=size["steps"],
                save_steps=size["steps"],
            )
            finetune.run(config, ctx)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    counter = box[-1]
    tokens = counter.tokens - counter.batches[0]
    return {
        "tokens": tokens,
        "seconds": timer.seconds,
        "threads": torch.get_num_threads(),
        "dtype": timer.seen["dtype"],
        "cells": counter.cells,
    }


class PositionCounter:
    """A forward pre-hook counting the positions (input_ids cells, padding included) of every forward call."""

    def __init__(self):
        self.positions, self.calls = 0, 0

    def __call__(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            self.positions += ids.numel()
            self.calls += 1


def evaluate_rate(model, tokenizer, size: dict) -> dict:
    """evaluate_suite on the ARC-Easy and PIQA slices, chat template on; positions the model computed, seconds."""
    from evaluation.harness import evaluate_suite
    from evaluation.suites import SUITES, Suite

    suite = Suite("bench_real", "general", ["real_arc_easy", "real_piqa"], SUITES["real_general"].include_path)
    counter = PositionCounter()
    handle = model.register_forward_pre_hook(counter, with_kwargs=True)
    try:
        started = time.perf_counter()
        results = evaluate_suite(
            model, tokenizer, suite, limit=size["eval_limit"], batch_size=size["eval_batch"], apply_chat_template=True
        )
        seconds = time.perf_counter() - started
    finally:
        handle.remove()
    return {
        "positions": counter.positions,
        "forward_calls": counter.calls,
        "seconds": seconds,
        "examples": sum(r.n for r in results),
        "scores": {r.task: r.score for r in results},
    }


def generate_rate(model, tokenizer, size: dict) -> dict:
    """Greedy generation of exactly gen_tokens new tokens for gen_batch BoolQ prompts, chat template on,
    left-padded; positions = prompt cells + new tokens."""
    import torch

    prompts = [json.loads(line)["messages"][:1] for line in BOOLQ.read_text().splitlines()[: size["gen_batch"]]]
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    model.eval()
    with torch.inference_mode():
        started = time.perf_counter()
        output = model.generate(
            **batch,
            do_sample=False,
            max_new_tokens=size["gen_tokens"],
            min_new_tokens=size["gen_tokens"],
            pad_token_id=tokenizer.pad_token_id,
        )
        seconds = time.perf_counter() - started
    new = output.shape[1] - batch["input_ids"].shape[1]
    return {
        "new_tokens": new * len(texts),
        "positions": batch["input_ids"].numel() + new * len(texts),
        "seconds": seconds,
    }


def measure(quick: bool = False, log=print) -> dict:
    """Every part once per repetition, the matmul rate measured right before each; ratios per repetition."""
    import torch

    from bases.smollm2 import ensure_smollm2
    from stages.model_io import load_model

    size = SIZES["quick" if quick else "full"]
    model_dir = ensure_smollm2()
    model, tokenizer = load_model(model_dir)
    n = sum(p.numel() for p in model.parameters())  # parameters() yields the tied embedding once
    raw = {"matmul": [], "train": [], "evaluate": [], "generate": []}
    for rep in range(size["repetitions"]):
        raw["matmul"].append(matmul_rate(size["matmuls"]))
        raw["train"].append(train_rate(model_dir, size))
        raw["evaluate"].append(evaluate_rate(model, tokenizer, size))
        raw["generate"].append(generate_rate(model, tokenizer, size))
        t, e, g = raw["train"][-1], raw["evaluate"][-1], raw["generate"][-1]
        log(
            f"  rep {rep} matmul {raw['matmul'][-1]['flop_s'] / 1e9:.1f} GFLOP/s; train {t['tokens'] / t['seconds']:,.0f} "
            f"tok/s; evaluate {e['positions'] / e['seconds']:,.0f} positions/s; generate "
            f"{g['new_tokens'] / g['seconds']:,.1f} new tok/s"
        )
    flops = {
        "train": [6 * n * r["tokens"] / r["seconds"] for r in raw["train"]],
        "evaluate": [2 * n * r["positions"] / r["seconds"] for r in raw["evaluate"]],
        "generate": [2 * n * r["positions"] / r["seconds"] for r in raw["generate"]],
    }
    matmul = [r["flop_s"] for r in raw["matmul"]]
    rates = {
        "train": [r["tokens"] / r["seconds"] for r in raw["train"]],
        "evaluate": [r["positions"] / r["seconds"] for r in raw["evaluate"]],
        "generate": [r["new_tokens"] / r["seconds"] for r in raw["generate"]],
    }
    parts = {
        name: {
            "rate": summary(rates[name], 1),
            "gflop_s": summary([f / 1e9 for f in flops[name]], 1),
            "of_matmul": summary([f / m for f, m in zip(flops[name], matmul)]),
            "formula": FORMULAS[name],
        }
        for name in flops
    }
    return {
        "model": "SmolLM2-135M-Instruct (bases/smollm2.py: the wheel's Q4_1 GGUF dequantized to fp32)",
        "params": n,
        "threads": torch.get_num_threads(),
        "size": "quick" if quick else "full",
        **size,
        "matmul_gflop_s": summary([m / 1e9 for m in matmul], 1),
        "parts": parts,
        "train_tokens_per_step": raw["train"][0]["tokens"] // max(1, size["steps"] - 1),
        "evaluate_examples": raw["evaluate"][0]["examples"],
        "raw": raw,
    }


def render(r: dict) -> list[str]:
    """The docs section: one row per part, its rate, its FLOP/s by the stated formula, and its share of matmul."""
    from bench.run import _mmm

    if not r:
        return ["", "## The real model: not measured yet (`python -m bench real_model`)"]
    e = r["raw"]["evaluate"][0]
    lines = [
        "",
        "## The real model on this CPU: SmolLM2-135M-Instruct against the machine's matmul rate",
        "",
        f"{r['model']}, N = {r['params']:,} parameters (the tied input embedding counted once, as the lm_head's "
        f"matmul), fp32, {r['threads']} torch threads, {r['repetitions']} repetitions, each part measured in "
        "the same process right after the matmul rate it is set against (`bench/realmodel.py`). **matmul**: "
        f"fp32 C = A @ B, {MATMUL_N} x {MATMUL_N}, 2·n³ FLOPs, median of {r['matmuls']} products on the same "
        f"threads: {_mmm(r['matmul_gflop_s'], '{:.1f}')} GFLOP/s.",
        "",
        f"- **train**: our finetune stage, AdamW, lr {LR:g}, batch {r['batch']} × {r['max_length']} tokens "
        f"(BoolQ passages cut at max_length), steps 2..{r['steps']} timed; FLOPs = 6·N·tokens.",
        f"- **evaluate**: `evaluate_suite` (lm-eval, chat template on) on ARC-Easy and PIQA, {r['eval_limit']} "
        f"rows each ({e['forward_calls']} forward calls, batch {r['eval_batch']}); positions = every input "
        "position the model computed, padding included; FLOPs = 2·N·positions.",
        f"- **generate**: greedy `model.generate`, {r['gen_batch']} BoolQ prompts × {r['gen_tokens']} new "
        "tokens; FLOPs = 2·N·(prompt positions + new tokens); rate = new tokens/s. Memory-bound: each new token "
        "reads every weight for a batch of a few rows.",
        "",
        "Attention's score FLOPs are not counted, so every ratio is a slight underestimate.",
        "",
        "| part | rate | GFLOP/s (formula) | share of the matmul rate |",
        "|---|---|---|---|",
    ]
    units = {"train": "trained tok/s", "evaluate": "positions/s", "generate": "new tok/s"}
    for name, p in r["parts"].items():
        fmt = "{:,.1f}" if name == "generate" else "{:,.0f}"
        lines.append(
            f"| {name} | {_mmm(p['rate'], fmt)} {units[name]} | {_mmm(p['gflop_s'], '{:.1f}')} "
            f"({p['formula'].replace('*', '·')}) | {_mmm(p['of_matmul'], '{:.0%}')} |"
        )
    return lines
