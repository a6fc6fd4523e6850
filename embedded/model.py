"""The embedded base model: a tiny Llama pretrained on the general tasks; the default ships, others are cached.

`ensure_base_model()` returns a folder that `AutoModelForCausalLM` / `AutoTokenizer` load offline.
The default spec's base ships with the package (embedded/base/, embedded/shipped.py): the same bytes on every
machine, checked by sha256 on every use. Any other spec (the tests' TEST_SPEC) is trained on its first use and
cached; its folder name hashes the spec and this package's source, so a code change builds a fresh base. The
default spec is rebuilt with the same CPU kernels on any x86-64 machine with AVX2 (embedded/portable.py), which
repeats it bit for bit only where MKL's reproducible mode holds (Intel CPUs): `python -m embedded.shipped rebuild`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch
from datasets import Dataset, concatenate_datasets
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

from core.machine import cpu_kernels
from embedded.tasks import GENERAL_TASKS, make_examples
from embedded.tokenizer import MODEL_MAX_LENGTH, build_tokenizer
from stages import sft_data

MANIFEST = "build.json"  # written last: a base folder without it is an unfinished build


class Schedule(str, enum.Enum):
    """Learning-rate decay after warmup."""

    COSINE = "cosine"
    LINEAR = "linear"


@dataclasses.dataclass(frozen=True)
class BaseModelSpec:
    """Architecture and pretraining recipe of the embedded base model."""

    hidden_size: int = dataclasses.field(default=128, metadata={"help": "Model width."})
    num_layers: int = dataclasses.field(default=4, metadata={"help": "Decoder layers."})
    num_heads: int = dataclasses.field(default=4, metadata={"help": "Attention heads."})
    intermediate_size: int = dataclasses.field(default=512, metadata={"help": "FFN width."})
    max_position_embeddings: int = dataclasses.field(default=MODEL_MAX_LENGTH, metadata={"help": "Longest sequence."})
    tie_embeddings: bool = dataclasses.field(default=True, metadata={"help": "Share input/output embeddings."})
    examples_per_task: int = dataclasses.field(default=5000, metadata={"help": "Train examples per general task."})
    # sort needs ~3x the examples of the others: with a uniform mix it stalls at ~0.8 exact match.
    task_weights: tuple[tuple[str, int], ...] = dataclasses.field(
        default=(("sort", 3),), metadata={"help": "(task, k) pairs: task gets k * examples_per_task."}
    )
    max_steps: int = dataclasses.field(default=1200, metadata={"help": "Optimizer steps."})
    batch_size: int = dataclasses.field(default=64, metadata={"help": "Examples per step."})
    learning_rate: float = dataclasses.field(default=3e-3, metadata={"help": "Peak learning rate."})
    warmup_ratio: float = dataclasses.field(default=0.05, metadata={"help": "Fraction of steps warming up."})
    schedule: Schedule = dataclasses.field(default=Schedule.COSINE, metadata={"help": "Decay after warmup."})
    max_length: int = dataclasses.field(default=64, metadata={"help": "Truncation length of a train row."})
    eval_examples: int = dataclasses.field(default=100, metadata={"help": "Test examples per task in build.json."})
    seed: int = dataclasses.field(default=0, metadata={"help": "Seed of init and data order."})
    portable_kernels: bool = dataclasses.field(
        default=True,
        metadata={"help": "Build with the same CPU kernels on any x86-64 CPU with AVX2 (embedded/portable.py)."},
    )

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio={self.warmup_ratio} must be in [0, 1)")
        if self.max_length > self.max_position_embeddings:
            raise ValueError(f"max_length={self.max_length} exceeds max_position_embeddings")
        for task, k in self.task_weights:
            if task not in GENERAL_TASKS or int(k) != k or k < 1:
                raise ValueError(f"task_weights: ({task!r}, {k}) needs a general task and a whole k >= 1")
        object.__setattr__(self, "schedule", Schedule(self.schedule))  # accept plain strings
        object.__setattr__(self, "task_weights", tuple((t, int(k)) for t, k in self.task_weights))


DEFAULT_SPEC = BaseModelSpec()
# For unit tests: builds in a few seconds; its quality is irrelevant.
# Built in this process (no child interpreter to start), with this machine's kernels.
TEST_SPEC = BaseModelSpec(
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    intermediate_size=64,
    examples_per_task=64,
    max_steps=8,
    batch_size=16,
    eval_examples=8,
    portable_kernels=False,
)


def cache_root_dir(cache_root: str | os.PathLike | None = None) -> Path:
    """Resolve the cache root: the argument, else $FORGETLESS_CACHE, else ~/.cache/forgetless."""
    root = cache_root or os.environ.get("FORGETLESS_CACHE") or Path.home() / ".cache" / "forgetless"
    return Path(root).expanduser()


def spec_hash(spec: BaseModelSpec) -> str:
    """Hash the spec and the source that builds the model, so any change names a new folder."""
    digest = hashlib.sha256(json.dumps(dataclasses.asdict(spec), sort_keys=True).encode())
    sources = sorted(Path(__file__).parent.glob("*.py")) + [Path(sft_data.__file__)]
    for path in sources:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_base_model(spec: BaseModelSpec | None = None, cache_root: str | os.PathLike | None = None) -> Path:
    """Return the folder of the base model for `spec`: the default spec's is shipped (its sha256 checked; a
    damaged file raises a one-line UserError naming it), any other is cached, and built first if missing."""
    spec = spec or DEFAULT_SPEC
    if spec == DEFAULT_SPEC:
        from embedded.shipped import verified

        return verified()
    root = cache_root_dir(cache_root)
    root.mkdir(parents=True, exist_ok=True)
    from bases.cache import build_once

    return build_once(
        root / f"embedded-base-{spec_hash(spec)}",
        MANIFEST,
        "the embedded base model",
        lambda tmp: _build(spec, tmp),
        "building the embedded base model once (~2-3 min on CPU) into",
    )


def _build(spec: BaseModelSpec, out_dir: Path) -> None:
    """Build with the pinned kernels where the machine has them (embedded/portable.py), else here, as it is."""
    from embedded.portable import build_pinned, can_pin

    if spec.portable_kernels and can_pin():
        build_pinned(__name__, spec, out_dir)  # runs this module's __main__ below
    else:
        build_base_model(spec, out_dir)


def build_base_model(spec: BaseModelSpec, out_dir: Path) -> dict:
    """Pretrain the base on the general tasks, save model + tokenizer, and write build.json last."""
    started = time.time()
    with _cpu_threads():
        tokenizer = build_tokenizer()
        torch.manual_seed(spec.seed)  # the init is the only randomness before Trainer seeds itself
        model = LlamaForCausalLM(llama_config(spec, tokenizer))
        _pretrain(model, tokenizer, spec, out_dir / "_trainer")
        shutil.rmtree(out_dir / "_trainer", ignore_errors=True)
        exact_match = {
            task: greedy_exact_match(model, tokenizer, make_examples(task, "test", spec.eval_examples))
            for task in GENERAL_TASKS
        }
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    manifest = {
        "spec": dataclasses.asdict(spec),
        "spec_hash": spec_hash(spec),
        "trained_on": list(GENERAL_TASKS),
        "exact_match": exact_match,
        "num_parameters": model.num_parameters(),
        "build_seconds": round(time.time() - started, 1),
        "versions": {"torch": torch.__version__, "transformers": sys.modules["transformers"].__version__},
        "cpu": cpu_kernels(),  # the kernels that built it (embedded/portable.py)
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def llama_config(spec: BaseModelSpec, tokenizer) -> LlamaConfig:
    """Llama config of the base for this tokenizer."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def _pretrain(model, tokenizer, spec: BaseModelSpec, output_dir: Path) -> None:
    # Only the general tasks: the target and domain tasks must stay new to the base.
    weights = dict(spec.task_weights)
    parts = [
        Dataset.from_list(make_examples(task, "train", spec.examples_per_task * weights.get(task, 1)))
        for task in GENERAL_TASKS
    ]
    train = sft_data.tokenize_for_sft(concatenate_datasets(parts), tokenizer, spec.max_length)
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=spec.max_steps,
        per_device_train_batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        warmup_steps=spec.warmup_ratio,  # a value below 1 is read as a fraction of max_steps
        lr_scheduler_type=spec.schedule.value,
        optim="adamw_torch",
        seed=spec.seed,
        save_strategy="no",
        logging_steps=max(1, spec.max_steps // 10),
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=False,
    )
    collator = sft_data.sft_collator(tokenizer)
    Trainer(model=model, args=args, train_dataset=train, data_collator=collator, processing_class=tokenizer).train()
    model.generation_config.update(
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )


@torch.no_grad()
def greedy_exact_match(
    model, tokenizer, examples: list[dict], max_new_tokens: int = 16, batch_size: int = 128
) -> float:
    """Fraction of examples whose greedy continuation, decoded and stripped, equals the completion."""
    if not examples:
        return 0.0
    was_training = model.training
    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generation appends on the right
    try:
        hits = 0
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            enc = tokenizer(
                [ex["prompt"] for ex in batch], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(model.device)
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            hits += sum(text.strip() == ex["completion"].strip() for text, ex in zip(texts, batch))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return hits / len(examples)


@contextlib.contextmanager
def _cpu_threads():
    # One thread: this model's matmuls are too small to split, and on a shared 2-core machine two
    # spinning OpenMP threads measured 10x slower per step (1-2 s vs 0.15 s) whenever another
    # process held a core. A fixed count also keeps CPU results bit-identical between builds.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


if __name__ == "__main__":  # the child interpreter of embedded/portable.py: python -m embedded.model SPEC_JSON OUT_DIR
    build_base_model(BaseModelSpec(**json.loads(sys.argv[1])), Path(sys.argv[2]))
