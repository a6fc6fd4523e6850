"""GPU tokens/s and MFU: our finetune stage vs a plain transformers.Trainer, on a randomly initialised
Llama-style model in bf16 (sdpa, or flash attention where `flash_attn` imports).

Each mode runs in a fresh process (`python -m bench.gpu child MODE MODEL_DIR STEPS BATCH MAX_LENGTH`, one JSON
line back, as in bench/memory.py), so GPU peak memory is per mode. `--size tiny --in-process` smoke-tests on a CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from bench.memory import peak_rss_mb
from bench.stats import summary
from bench.throughput import CountingCollator, counted_collators

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "gpu.json"
SEED, LR, LOGGING_STEPS = 0, 1e-4, 25
SIZES = {  # LlamaConfig fields; input and output embeddings untied
    "0.5b": dict(
        vocab_size=32000,
        hidden_size=1536,
        num_hidden_layers=16,
        num_attention_heads=12,
        num_key_value_heads=12,
        intermediate_size=4096,
        max_position_embeddings=2048,
    ),
    "tiny": dict(
        vocab_size=512,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=256,
    ),
}
MODES = {
    "plain": "plain Trainer script: dtype auto, sdpa, bf16=True on CUDA, padded batches",
    "pipeline": "our finetune stage (stages.finetune.run), bf16: true on CUDA, padded batches",
    "pipeline_packed": "our finetune stage with packing: true and bf16: true on CUDA",
    "plain_flash": "plain Trainer script with attn_implementation flash_attention_2",
}
PEAK_BF16 = (
    ("H100 PCIe", 756e12),
    ("H100 80GB HBM3", 989e12),
    ("H100 SXM", 989e12),
    ("H200", 989e12),
    ("A100", 312e12),
)  # dense bf16 FLOP/s by device-name substring; NVL parts are left to --peak-tflops
FORMULA = (
    "MFU = tokens x F / seconds / peak over steps 2..N, F = 6*N + 12*L*d*S_attn FLOPs per token "
    "(PaLM, appendix B): N = parameters without the input embedding (lm_head in), L layers, d hidden size, "
    "S_attn = mean example length (attention stays within each example); real tokens only, padding not counted"
)


def build_model(out_dir: Path, size: str) -> dict:
    """A seeded, randomly initialised LlamaForCausalLM (bf16 with CUDA, else fp32) and a WordLevel tokenizer
    over "w0".."w{V-5}" plus 4 specials, saved side by side; returns the config and parameter counts."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    spec = SIZES[size]
    words = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(spec["vocab_size"] - 4)]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=spec["max_position_embeddings"],
    )
    tokenizer.save_pretrained(out_dir)
    torch.manual_seed(SEED)  # initialised on the CPU in fp32: the same weights whatever the device
    model = LlamaForCausalLM(
        LlamaConfig(**spec, tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    )
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model.to(dtype).save_pretrained(out_dir)
    embedding = model.get_input_embeddings().weight
    return {
        "size": size,
        **spec,
        "dtype": str(dtype).removeprefix("torch."),
        "params": sum(p.numel() for p in model.parameters()),
        "params_no_embedding": sum(p.numel() for p in model.parameters() if p is not embedding),
    }


def make_rows(n: int, max_length: int, vocab_size: int) -> list[dict]:
    """n seeded prompt/completion rows of random words; tokens per row (eos included) lognormal with median
    max_length/4, clipped to [16, max_length], the prompt about a third."""
    rng = random.Random(SEED)
    rows = []
    for _ in range(n):
        total = min(max_length, max(16, round(rng.lognormvariate(math.log(max_length / 4), 0.9))))
        words = [f"w{rng.randrange(vocab_size - 4)}" for _ in range(total - 1)]
        rows.append({"prompt": " ".join(words[: total // 3]), "completion": " ".join(words[total // 3 :])})
    return rows


def length_stats(lengths: list[int]) -> dict:
    ordered = sorted(lengths)
    return {
        "rows": len(ordered),
        "mean": round(sum(ordered) / len(ordered), 1),
        "p50": ordered[len(ordered) // 2],
        "p90": ordered[int(0.9 * (len(ordered) - 1))],
        "max": ordered[-1],
        "token_weighted_mean": round(sum(x * x for x in ordered) / sum(ordered), 1),
    }


def flops_per_token(params_no_embedding: int, layers: int, hidden: int, s_attn: float) -> float:
    """Model FLOPs per trained token, forward and backward: 6*N + 12*L*d*S_attn."""
    return 6 * params_no_embedding + 12 * layers * hidden * s_attn


def peak_flops(device: str, peak_tflops: float | None = None) -> float | None:
    """Dense bf16 peak FLOP/s: --peak-tflops if given, else by device name, else None."""
    if peak_tflops:
        return peak_tflops * 1e12
    return None if "NVL" in device else next((value for name, value in PEAK_BF16 if name in device), None)


def device_name() -> str:
    import platform

    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.machine()})"


@contextmanager
def step_timer():
    """Times steps 2..N alone (first step's end to last step's end, GPU synchronised: no load, no save, no
    first-step warm-up) and notes the attention, dtype and autocast the Trainer trains with. Added to
    transformers' default callbacks, so the plain Trainer and our stage carry it alike."""
    import torch
    import transformers.trainer as trainer_module
    from transformers import TrainerCallback

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

    class StepTimer(TrainerCallback):
        started, seconds, seen = None, None, {}

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.seen = {
                "attn": model.config._attn_implementation,
                "bf16_autocast": bool(args.bf16),
                "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
            }

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (1, state.max_steps):
                sync()
                if state.global_step == 1:
                    self.started = time.perf_counter()
                else:
                    self.seconds = time.perf_counter() - self.started

    timer = StepTimer()
    trainer_module.DEFAULT_CALLBACKS.append(timer)
    try:
        yield timer
    finally:
        trainer_module.DEFAULT_CALLBACKS.remove(timer)


class BatchCounter(CountingCollator):
    """A CountingCollator that also keeps each batch's real tokens: the first is the warm-up step's."""

    def __init__(self, inner):
        super().__init__(inner)
        self.batches = []

    def __call__(self, features):
        self.batches.append(sum(len(f["input_ids"]) for f in features))
        return super().__call__(features)


def run_mode(mode: str, model_dir: Path, steps: int, batch: int, max_length: int) -> dict:
    """One mode, in this process: seconds, real tokens, tensor cells, peak memory (GPU allocated, else RSS)."""
    import torch
    from datasets import Dataset

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    vocab = json.loads((Path(model_dir) / "config.json").read_text())["vocab_size"]
    data = Dataset.from_list(make_rows(steps * batch, max_length, vocab))
    out, box = Path(tempfile.mkdtemp(prefix=f"bench-gpu-{mode}-")), []
    try:
        with step_timer() as timer:
            started = time.perf_counter()
            if mode.startswith("plain"):
                attn = "flash_attention_2" if mode == "plain_flash" else "sdpa"
                train_s = _plain(model_dir, data, out, steps, batch, max_length, box, attn)
            else:
                train_s = _pipeline(model_dir, data, out, steps, batch, max_length, box, mode == "pipeline_packed")
            wall = time.perf_counter() - started
    finally:
        shutil.rmtree(out, ignore_errors=True)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mb()  # RSS: the process's peak so far
    counter = box[-1]
    return {
        "mode": mode,
        "device": device_name(),
        "tokens": counter.tokens,
        "cells": counter.cells,
        "wall_s": wall,
        "train_s": train_s,
        "steady_tokens": counter.tokens - counter.batches[0],
        "steady_s": timer.seconds,
        **timer.seen,
        "peak_memory_mb": peak,
        "peak_reserved_mb": torch.cuda.max_memory_reserved() / 2**20 if cuda else None,
    }


def _plain(model_dir, data, out, steps, batch, max_length, box, attn) -> float:
    """bench/throughput.py's plain script, in bf16 on CUDA; returns train() seconds."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, set_seed

    from stages.sft_data import sft_collator, tokenize_for_sft

    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="auto", attn_implementation=attn)
    rows = tokenize_for_sft(data, tokenizer, max_length)
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=LR,
        warmup_steps=round(0.03 * steps),
        logging_steps=LOGGING_STEPS,
        save_strategy="no",
        report_to=[],
        seed=SEED,
        data_seed=SEED,
        bf16=cuda,
        use_cpu=not cuda,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    set_seed(SEED)
    box.append(BatchCounter(sft_collator(tokenizer)))
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=box[-1], processing_class=tokenizer)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trainer.save_model(str(out / "model"))  # as our stage saves its model
    return seconds


def _pipeline(model_dir, data, out, steps, batch, max_length, box, packing) -> float:
    """Our stage called directly, as bench/packing.py's stage_run; returns its train() seconds."""
    import torch

    from stages import finetune
    from stages.context import StageContext
    from stages.handoff import Handoff

    with counted_collators(box, BatchCounter):
        ctx = StageContext(
            stage_dir=out,
            handoff=Handoff(Path(model_dir), Path(model_dir)),
            seed=SEED,
            max_length=max_length,
            train_data=data,
        )
        config = finetune.Config(
            steps=steps,
            batch_size=batch,
            lr=LR,
            logging_steps=LOGGING_STEPS,
            packing=packing,
            bf16=torch.cuda.is_available(),
        )
        return finetune.run(config, ctx).metrics["train_seconds"]


def run_child(mode: str, model_dir: Path, steps: int, batch: int, max_length: int) -> dict:
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)]))  # make gpu-check's wheels first
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "TQDM_DISABLE": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [sys.executable, "-m", "bench.gpu", "child", mode, *map(str, (model_dir, steps, batch, max_length))]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"bench.gpu child {mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def rate(run: dict, key: str) -> float:
    """Real tokens per second: over steps 2..N for "steady", else over the whole call or train()."""
    return run["steady_tokens"] / run["steady_s"] if key == "steady" else run["tokens"] / run[f"{key}_s"]


def measure(
    size: str,
    steps: int,
    batch: int,
    max_length: int,
    repetitions: int,
    modes: list[str],
    in_process: bool = False,
    log=print,
) -> dict:
    """Build the model once, then every mode once per repetition, the order reversed on odd repetitions. A mode
    that fails (flash attention or packing refused, out of memory) is recorded with its error and not rerun."""
    model_dir = Path(tempfile.mkdtemp(prefix=f"bench-gpu-{size}-"))
    raw, errors = {mode: [] for mode in modes}, {}
    try:
        model = build_model(model_dir, size)
        for rep in range(repetitions):
            for mode in [m for m in (modes if rep % 2 == 0 else modes[::-1]) if m not in errors]:
                try:
                    run = (run_mode if in_process else run_child)(mode, model_dir, steps, batch, max_length)
                except Exception as error:
                    errors[mode] = f"{type(error).__name__}: {error}"[-3000:]
                    log(f"  rep {rep} {mode:15s} FAILED: {errors[mode][-300:]}")
                    continue
                raw[mode].append(run)
                log(
                    f"  rep {rep} {mode:15s} {run['tokens']} tokens, {run['wall_s']:.2f} s wall, "
                    f"{rate(run, 'wall'):,.0f} tok/s (wall), {rate(run, 'steady'):,.0f} tok/s (steps 2..N)"
                )
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)
    lengths = [
        len(r["prompt"].split()) + len(r["completion"].split()) + 1
        for r in make_rows(steps * batch, max_length, model["vocab_size"])
    ]
    return {
        "settings": {
            "size": size,
            "steps": steps,
            "batch_size": batch,
            "max_length": max_length,
            "lr": LR,
            "repetitions": repetitions,
            "modes": {m: MODES[m] for m in modes},
            "in_process": in_process,
        },
        "model": model,
        "lengths": length_stats(lengths),
        "errors": errors,
        "raw": {mode: runs for mode, runs in raw.items() if mode not in errors},
    }


def summarize(measured: dict, peak_tflops: float | None = None) -> dict:
    """Per mode: median (min - max) of tok/s, model TFLOP/s, MFU and peak memory; ratios per repetition."""
    raw, model = measured["raw"], measured["model"]
    per_token = flops_per_token(
        model["params_no_embedding"], model["num_hidden_layers"], model["hidden_size"], measured["lengths"]["mean"]
    )
    peak = peak_flops(measured["meta"]["device"], peak_tflops)
    modes = {}
    for mode, runs in raw.items():
        flops = [rate(r, "steady") * per_token for r in runs]
        modes[mode] = {
            "tokens": runs[0]["tokens"],
            "cells": runs[0]["cells"],
            **{f"tok_s_{key}": summary([rate(r, key) for r in runs], 1) for key in ("steady", "train", "wall")},
            "model_tflop_s": summary([f / 1e12 for f in flops], 4),
            "mfu": summary([f / peak for f in flops], 6) if peak else None,
            "peak_memory_mb": summary([r["peak_memory_mb"] for r in runs], 1),
            "peak_reserved_mb": summary([r["peak_reserved_mb"] for r in runs], 1)
            if runs[0]["peak_reserved_mb"] is not None
            else None,
            **{key: runs[0][key] for key in ("attn", "dtype", "bf16_autocast")},
        }
    ratios = {}
    for top, bottom in (("pipeline", "plain"), ("pipeline_packed", "pipeline"), ("plain_flash", "plain")):
        if top in raw and bottom in raw:
            pairs = list(zip(raw[top], raw[bottom]))
            ratios[f"{top}/{bottom}"] = {
                key: summary([rate(a, key) / rate(b, key) for a, b in pairs]) for key in ("steady", "wall")
            }
    return {
        **measured,
        "flops": {"formula": FORMULA, "per_token": per_token, "s_attn": measured["lengths"]["mean"]},
        "peak_flops": peak,
        "peak_source": "--peak-tflops" if peak_tflops else ("device table" if peak else None),
        "same_tokens": len({runs[0]["tokens"] for runs in raw.values()}) == 1,
        "modes": modes,
        "ratios": ratios,
    }


def render(results: dict) -> list[str]:
    """The docs section: device, command, settings, one row per mode, the ratios."""
    from bench.run import _mmm

    meta, s, model, n, peak = (results[k] for k in ("meta", "settings", "model", "lengths", "peak_flops"))
    how = "in that one process" if s["in_process"] else f"a fresh process (`{meta['child_command']}`)"
    lines = [
        "",
        "## GPU: our stages vs a plain Trainer",
        "",
        f"Device: {meta['device']} (CUDA {meta['cuda']}, torch {meta['torch']}, transformers "
        f"{meta['transformers']}). Command: `{meta['command']}`; each mode {how}.",
        "",
        f"A randomly initialised Llama ({s['size']}: {model['params']:,} parameters, {model['num_hidden_layers']} "
        f"layers, hidden {model['hidden_size']}, vocabulary {model['vocab_size']:,}), saved in {model['dtype']}; "
        f"{s['steps']} steps, batch {s['batch_size']}, max_length {s['max_length']}, {s['repetitions']} "
        f"repetitions (order reversed on odd ones). Data: {n['rows']} rows of random words, tokens per example "
        f"mean {n['mean']}, p50 {n['p50']}, p90 {n['p90']}, max {n['max']}.",
        "",
        f"{FORMULA}. F = {results['flops']['per_token']:,.0f}; peak "
        + (f"{peak / 1e12:g} TFLOP/s ({results['peak_source']})." if peak else "unknown, so no MFU.")
        + " **steps 2..N**: from the end of the first optimizer step (its warm-up left out) to the end of the "
        "last, GPU synchronised, tokens of those steps; **wall**: all tokens over the whole call (load, "
        "tokenize, train, save).",
        "",
        "| mode | tokens / cells | tok/s (steps 2..N) | tok/s (wall) | model TFLOP/s | MFU | peak memory MB | "
        "attention, dtype, bf16 autocast |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, r in results["modes"].items():
        memory = (
            f"{_mmm(r['peak_memory_mb'], '{:,.0f}')} allocated, {_mmm(r['peak_reserved_mb'], '{:,.0f}')} reserved"
            if r["peak_reserved_mb"]
            else f"{_mmm(r['peak_memory_mb'], '{:,.0f}')} RSS"
        )
        lines.append(
            f"| `{mode}`: {MODES[mode]} | {r['tokens']:,} / {r['cells']:,} | "
            f"{_mmm(r['tok_s_steady'], '{:,.0f}')} | {_mmm(r['tok_s_wall'], '{:,.0f}')} | "
            f"{_mmm(r['model_tflop_s'], '{:.3g}')} | {_mmm(r['mfu'], '{:.1%}') if r['mfu'] else 'n/a'} | "
            f"{memory} | {r['attn']}, {r['dtype']}, {r['bf16_autocast']} |"
        )
    lines += [
        f"| `{mode}` | failed: {error.splitlines()[-1][:200]} | | | | | | |"
        for mode, error in results["errors"].items()
    ]
    lines += ["", "| ratio of tok/s | steps 2..N | wall |", "|---|---|---|"]
    return lines + [
        f"| {name} | {_mmm(r['steady'], '{:.3f}')} | {_mmm(r['wall'], '{:.3f}')} |"
        for name, r in results["ratios"].items()
    ]


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, measure, write the results JSON and print the markdown section."""
    import importlib.util
    import shlex

    argv = sys.argv[1:] if argv is None else argv
    flash = importlib.util.find_spec("flash_attn") is not None
    modes = ["plain", "pipeline", "pipeline_packed"] + (["plain_flash"] if flash else [])
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="0.5b")
    parser.add_argument("--steps", type=int, default=30, help="at least 2: the first is left out of MFU")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak TFLOP/s, for a device not in PEAK_BF16")
    parser.add_argument("--in-process", action="store_true", help="every mode in this process (CPU smoke test)")
    parser.add_argument("--modes", default=",".join(modes), help=f"comma-separated, of: {', '.join(MODES)}")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON (default: %(default)s)")
    args = parser.parse_args(argv)
    if set(args.modes.split(",")) - set(MODES):
        parser.error(f"--modes: unknown {sorted(set(args.modes.split(',')) - set(MODES))}")
    if args.steps < 2:
        parser.error("--steps: at least 2 (MFU leaves the first, warm-up step out)")
    if not 16 <= args.max_length <= SIZES[args.size]["max_position_embeddings"]:
        parser.error(f"--max-length: must be in [16, {SIZES[args.size]['max_position_embeddings']}]")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["TQDM_DISABLE"] = "1"
    import torch
    import transformers
    from datasets.utils.logging import disable_progress_bar

    from core import atomic

    if args.size != "tiny" and not torch.cuda.is_available():
        print(
            f"bench.gpu: --size {args.size} needs a CUDA GPU and none is available; use --size tiny to "
            "smoke-test on a CPU",
            file=sys.stderr,
        )
        return 2
    disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    measured = measure(
        args.size, args.steps, args.batch, args.max_length, args.repetitions, args.modes.split(","), args.in_process
    )
    meta = {
        "device": device_name(),
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": sys.version.split()[0],
        "command": shlex.join(["python", "-m", "bench.gpu", *argv]),
        "child_command": "python -m bench.gpu child MODE MODEL_DIR STEPS BATCH MAX_LENGTH",
    }
    results = summarize({"meta": meta, **measured}, args.peak_tflops)
    atomic.write_text(args.out, json.dumps(results, indent=1) + "\n")
    print("\n".join(render(results)))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        import logging

        logging.disable(logging.WARNING)
        print(json.dumps(run_mode(sys.argv[2], Path(sys.argv[3]), *map(int, sys.argv[4:7]))))
    else:
        sys.exit(main())
