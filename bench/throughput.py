"""Training tokens/s of our stages vs a plain transformers.Trainer script, same model/data/batch/steps/collator."""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from bench.stats import summary

STEPS, BATCH, MAX_LENGTH, SEED = 60, 32, 48, 0
TARGET_ROWS, GENERAL_ROWS, GENERAL_K = 2000, 1000, "1/4"


class CountingCollator:
    """Wraps a collator: counts the real tokens of the examples it gets (the non-pad tokens of a padded batch)
    and the cells of the tensors it builds (padding included)."""

    def __init__(self, inner):
        self.inner, self.tokens, self.cells = inner, 0, 0

    def __call__(self, features):
        batch = self.inner(features)
        self.tokens += sum(len(f["input_ids"]) for f in features)
        self.cells += batch["input_ids"].numel()
        return batch


@contextmanager
def counted_collators(box: list, counter=CountingCollator):
    """While inside, every collator our stages build (padded or packed) is wrapped in `counter` and appended
    to `box`: the stage's own data path, counted without changing it."""
    import stages.training as training

    originals = training.sft_collator, training.packed_collator
    training.sft_collator = lambda *a: box.append(counter(originals[0](*a))) or box[-1]
    training.packed_collator = lambda *a: box.append(counter(originals[1](*a))) or box[-1]
    try:
        yield box
    finally:
        training.sft_collator, training.packed_collator = originals


def datasets():
    """Target rows (letter_rule) and a mix: target in full plus a seeded k of the 8 general tasks."""
    from datasets import Dataset

    from core.typed_yaml import parse_fraction
    from data_recipes.mixes import Mix, Portion, build_mix
    from embedded.tasks import GENERAL_TASKS, make_examples

    target = Dataset.from_list(make_examples("letter_rule", "train", TARGET_ROWS))
    sources = {
        "target": target,
        **{t: Dataset.from_list(make_examples(t, "train", GENERAL_ROWS)) for t in GENERAL_TASKS},
    }
    mix = Mix((Portion(("target",)), Portion(tuple(GENERAL_TASKS), parse_fraction(GENERAL_K))), SEED)
    return {"target": target, "mix": build_mix(mix, sources).dataset}


def plain_run(kind: str, base: Path, data, out: Path, counter_box: list, steps: int = STEPS) -> tuple[float, float]:
    """A plain script: load, tokenize, Trainer.train, save. Returns (wall seconds, train() seconds)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, set_seed

    from stages.sft_data import sft_collator, tokenize_for_sft

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base))
    lr = 1e-3
    if kind == "prompt_tune":
        from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

        torch.manual_seed(SEED)
        model = get_peft_model(
            model,
            PromptTuningConfig(
                task_type=TaskType.CAUSAL_LM, num_virtual_tokens=16, prompt_tuning_init=PromptTuningInit.RANDOM
            ),
        )
        lr = 0.3
    rows = tokenize_for_sft(data, tokenizer, MAX_LENGTH)
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=BATCH,
        learning_rate=lr,
        warmup_steps=round(0.03 * steps),
        logging_steps=25,
        save_strategy="no",
        report_to=[],
        seed=SEED,
        data_seed=SEED,
        use_cpu=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    set_seed(SEED)
    collator = CountingCollator(sft_collator(tokenizer))
    counter_box.append(collator)
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator, processing_class=tokenizer)
    train_started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_started
    trainer.save_model(str(out / "model"))
    return time.perf_counter() - started, train_seconds


def pipeline_run(kind: str, base: Path, data, out: Path, counter_box: list, steps: int = STEPS) -> tuple[float, float]:
    """Our stage called directly with a StageContext. Returns (wall seconds, its train() seconds)."""
    from stages import finetune, prompt_tune
    from stages.context import StageContext
    from stages.handoff import Handoff

    with counted_collators(counter_box):
        ctx = StageContext(
            stage_dir=out,
            handoff=Handoff(base, base),
            seed=SEED,
            max_length=MAX_LENGTH,
            train_data=data,
            extra={"labels": ["True", "False"]},
        )
        started = time.perf_counter()
        if kind == "prompt_tune":
            config = prompt_tune.Config(steps=steps, batch_size=BATCH, lr=0.3, num_virtual_tokens=16, init="random")
            result = prompt_tune.run(config, ctx)
        else:
            result = finetune.run(finetune.Config(steps=steps, batch_size=BATCH, lr=1e-3), ctx)
        return time.perf_counter() - started, result.metrics["train_seconds"]


WORKLOADS = {  # name: (stage kind, data)
    "prompt_tune": ("prompt_tune", "target"),
    "finetune": ("finetune", "target"),
    "finetune_mix": ("finetune", "mix"),
}


def measure(repetitions: int = 3, log=print, steps: int = STEPS) -> dict:
    """Interleave plain and pipeline runs (order alternates per repetition); ratios per repetition."""
    from embedded.model import ensure_base_model

    base = ensure_base_model()
    data = datasets()
    raw = {name: {"plain": [], "pipeline": []} for name in WORKLOADS}
    for rep in range(repetitions):
        for name, (kind, source) in WORKLOADS.items():
            order = ("plain", "pipeline") if rep % 2 == 0 else ("pipeline", "plain")
            for side in order:
                out = Path(tempfile.mkdtemp(prefix=f"bench-{name}-{side}-"))
                box: list = []
                try:
                    runner = plain_run if side == "plain" else pipeline_run
                    wall, train = runner(kind, base, data[source], out, box, steps)
                finally:
                    shutil.rmtree(out, ignore_errors=True)
                tokens = box[-1].tokens
                raw[name][side].append({"tokens": tokens, "wall_s": wall, "train_s": train})
                log(
                    f"  rep {rep} {name:13s} {side:8s} {tokens} tokens, {wall:.2f} s wall, "
                    f"{tokens / wall:,.0f} tok/s ({tokens / train:,.0f} in train())"
                )
    results = {}
    for name, sides in raw.items():
        plain, pipe = sides["plain"], sides["pipeline"]
        assert all(a["tokens"] == b["tokens"] for a, b in zip(plain, pipe)), f"{name}: token counts differ"
        results[name] = {
            "ratio_wall": summary(
                [p["tokens"] / p["wall_s"] / (q["tokens"] / q["wall_s"]) for p, q in zip(pipe, plain)]
            ),
            "ratio_train": summary(
                [p["tokens"] / p["train_s"] / (q["tokens"] / q["train_s"]) for p, q in zip(pipe, plain)]
            ),
            "pipeline_tok_s": summary([p["tokens"] / p["wall_s"] for p in pipe], 1),
            "plain_tok_s": summary([q["tokens"] / q["wall_s"] for q in plain], 1),
            "tokens": plain[0]["tokens"],
            "data": WORKLOADS[name][1],
            "rows": len(data[WORKLOADS[name][1]]),
            "raw": sides,
        }
    return {
        "model": str(base),
        "steps": steps,
        "batch_size": BATCH,
        "max_length": MAX_LENGTH,
        "repetitions": repetitions,
        "mix": f"letter_rule x{TARGET_ROWS} + {GENERAL_K} of 8 general tasks x{GENERAL_ROWS}",
        "workloads": results,
    }
