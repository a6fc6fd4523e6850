"""Typed settings shared by every training stage (a PEFT-style dataclass with help text)."""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field

from data_recipes.mixes import DEFAULT_SOURCES, Mix
from stages.handoff import Contract
from stages.losses import KLTo, Loss

PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][\w.-]*$")
MAX_NAME_BYTES = 200  # a name becomes a folder or file name (plus a suffix); file systems allow 255 bytes


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a folder inside the run folder, or None: plain characters, at most MAX_NAME_BYTES."""
    from core.typed_yaml import shown

    if not PLAIN_NAME.match(name):
        return f"{shown(name)} must be a plain name (letters, digits, _ . -)"
    if len(name.encode()) > MAX_NAME_BYTES:
        return f"{shown(name)} is {len(name.encode())} bytes long; at most {MAX_NAME_BYTES} (it names a folder)"
    return None


class Scheduler(str, enum.Enum):
    """Learning-rate schedules offered by transformers."""

    LINEAR = "linear"
    COSINE = "cosine"
    CONSTANT = "constant"
    CONSTANT_WITH_WARMUP = "constant_with_warmup"


class Criterion(str, enum.Enum):
    """Which checkpoint a stage with `selection` keeps (stages/selection.py)."""

    TARGET = "target"  # the best validation target score
    TARGET_WITH_RETENTION = "target_with_retention"  # the best target among checks that keep the base's general score


SELECTING_KINDS = ("finetune", "joint_tune", "lora_tune")  # the kinds whose run hands its context to run_trainer


@dataclass
class Selection:
    """Checkpoint selection: score a validation split every N steps and keep the best weights (stages/selection.py)."""

    every: int = field(default=100, metadata={"help": "score the validation split every N steps (and at the last)"})
    criterion: Criterion = field(
        default=Criterion.TARGET,
        metadata={
            "help": (
                "target: the best validation target score; target_with_retention: the best target among checks whose "
                "general validation score is >= min_general_ratio x the base model's"
            )
        },
    )
    min_general_ratio: float = field(default=0.95, metadata={"help": "target_with_retention's bar, in (0, 1]"})
    validation_rows: int = field(
        default=100,
        metadata={
            "help": (
                "target rows held out of the stage's training rows, and general-suite docs after the final evaluation's "
                "`limit` ones, scored at each check"
            )
        },
    )


@dataclass
class TrainingConfig:
    """Optimisation settings for one training stage, run by the transformers Trainer."""

    name: str = field(default="", metadata={"help": "stage name, unique in its recipe; default: the kind"})
    data: Mix = field(
        default_factory=lambda: Mix.of(DEFAULT_SOURCES),
        metadata={
            "help": (
                "the stage's data mix, from 'target' and the recipe's data section: [a, b] trains on each in full; "
                "{a: 1, b: 1/256} draws a seeded share of each without replacement, and a number above 1 is a weight "
                "that upsamples (2.5: the whole source twice plus a seeded half); {sources: {...}, seed: 7} gives the mix "
                "a seed of its own (default: the stage's). Shorthand: data: [a] with replay: [b] and k: 1/256 "
                "is {a: 1, b: 1/256} (DMT stage 2)"
            )
        },
    )
    steps: int = field(default=300, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=32, metadata={"help": "examples per step (per device x accumulation)"})
    grad_accum: int = field(default=1, metadata={"help": "gradient accumulation steps"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate"})
    scheduler: Scheduler = field(default=Scheduler.LINEAR, metadata={"help": "learning-rate schedule"})
    warmup_ratio: float = field(default=0.03, metadata={"help": "share of steps spent warming up"})
    weight_decay: float = 0.0
    logging_steps: int = 25
    save_steps: int = field(default=100, metadata={"help": "checkpoint every N steps (resume restarts from the last)"})
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept per stage"})
    packing: bool = field(
        default=False,
        metadata={
            "help": "padding-free batches: each step's examples packed into rows of max_length, attention kept within "
            "each example (same loss, fewer pad tokens)"
        },
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute activations in the backward pass: less memory, more compute"}
    )
    bf16: bool = field(
        default=False,
        metadata={
            "help": "bf16 mixed precision (autocast) on a GPU that supports it; the weights keep the dtype they load in"
        },
    )
    selection: Selection | None = field(
        default=None,
        metadata={
            "omit_default": True,
            "help": (
                "keep the best checkpoint by a validation score instead of the last: {every: 100, criterion: "
                "target_with_retention, min_general_ratio: 0.95, validation_rows: 100} (README: Checkpoint selection)"
            ),
        },
    )
    loss: Loss = field(
        default=Loss.CE,
        metadata={
            "omit_default": True,
            "help": (
                "the token loss: ce (cross-entropy), dft (each token's CE times its detached probability), eaft (CE times "
                "the detached top-20 entropy / 3, to the power loss_alpha), asft (dft plus loss_alpha x KL to a frozen "
                "reference, kl_to: input by default); stages/losses.py says which reference code each follows"
            ),
        },
    )
    loss_alpha: float | None = field(
        default=None,
        metadata={
            "omit_default": True,
            "help": ("eaft: the entropy weight's exponent (default 1.0); asft: the KL term's weight (default 0.1)"),
        },
    )
    kl_to: KLTo | None = field(
        default=None,
        metadata={
            "omit_default": True,
            "help": (
                "add kl_weight x KL(reference || model) over answer tokens, the reference frozen: base (the recipe's base "
                "model) or input (the model this stage starts from)"
            ),
        },
    )
    kl_weight: float = field(default=0.0, metadata={"omit_default": True, "help": "the weight of kl_to's term, > 0"})

    def __post_init__(self):
        self.name = self.name or self.kind
        problem = name_problem(self.name)  # it becomes a folder name inside the run folder
        if problem:
            raise ValueError(f"name: {problem}")
        if self.steps < self.min_steps:
            raise ValueError(f"{self.name}.steps: must be >= {self.min_steps}, got {self.steps}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError(f"{self.name}.batch_size/grad_accum: must be >= 1")
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"{self.name}.batch_size: {self.batch_size} is not divisible by grad_accum {self.grad_accum}"
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"{self.name}.lr: must be > 0 and finite, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"{self.name}.weight_decay: must be >= 0 and finite, got {self.weight_decay}")
        if self.save_steps < 1 or self.save_total_limit < 1:
            raise ValueError(f"{self.name}.save_steps/save_total_limit: must be >= 1")
        if not 0 <= self.warmup_ratio < 1:  # also refuses nan
            raise ValueError(f"{self.name}.warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        if self.selection is not None:
            problem = self.selection_problem()
            if problem:
                raise ValueError(f"{self.name}.selection.{problem}")
        problem = self.loss_problem()
        if problem:
            raise ValueError(f"{self.name}.{problem}")

    def loss_problem(self) -> str | None:
        """What is wrong with the loss settings, as 'field: why', or None."""
        if self.loss_alpha is not None:
            if self.loss not in (Loss.EAFT, Loss.ASFT):
                return f"loss_alpha: only eaft and asft take it, and loss is {Loss(self.loss).value}"
            if not (math.isfinite(self.loss_alpha) and self.loss_alpha >= 0):
                return f"loss_alpha: must be >= 0 and finite, got {self.loss_alpha}"
        if not (math.isfinite(self.kl_weight) and self.kl_weight >= 0):
            return f"kl_weight: must be >= 0 and finite, got {self.kl_weight}"
        if self.loss == Loss.ASFT and self.kl_weight:
            return "kl_weight: asft weighs its own KL term with loss_alpha; leave kl_weight out"
        if self.kl_weight and self.kl_to is None:
            return "kl_weight: set kl_to (base or input) to say which model the KL term anchors to"
        if self.kl_to is not None and self.loss != Loss.ASFT and not self.kl_weight:
            return "kl_weight: must be > 0 with kl_to"
        anchored = self.kl_to is not None or self.loss == Loss.ASFT
        if anchored and (self.kind in ("prompt_tune", "joint_tune") or getattr(self, "prompt_from", None)):
            return (
                "kl_to: a KL term needs the reference model's logits for the same positions, and a soft prompt "
                "or frozen adapter changes them; use it on a plain finetune or lora_tune stage"
            )
        return None

    def deepspeed_problems(self, raw: dict) -> list[str]:
        """A KL reference is a whole second model on every process: not from ZeRO-3 shards."""
        anchored = self.kl_to is not None or self.loss == Loss.ASFT
        if anchored and (raw.get("zero_optimization") or {}).get("stage") == 3:
            return [
                f"zero_optimization.stage: {self.name}'s KL term (kl_to or loss asft) needs a whole reference "
                f"model on every process, which ZeRO-3 does not give; use ZeRO-2 or plain DDP"
            ]
        return []

    def selection_problem(self) -> str | None:
        """What is wrong with `selection` here, as 'field: why', or None."""
        chosen = self.selection
        if self.kind not in SELECTING_KINDS:
            return f"every: not available for {self.kind} (only {', '.join(SELECTING_KINDS)})"
        if chosen.every < 1:
            return f"every: must be >= 1, got {chosen.every}"
        if chosen.every > self.steps:
            return f"every: must be <= steps ({self.steps}), got {chosen.every}"
        if not (math.isfinite(chosen.min_general_ratio) and 0 < chosen.min_general_ratio <= 1):
            return f"min_general_ratio: must be in (0, 1], got {chosen.min_general_ratio}"
        if chosen.validation_rows < 1:
            return f"validation_rows: must be >= 1, got {chosen.validation_rows}"
        sources = [name for name, _ in self.data.shares()]
        if sources != ["target"] or self.data.one_shot:
            return (
                f"validation_rows: the target's validation rows are held out of the stage's training rows, so the "
                f"stage must train on the target alone, zero-shot (data: [target]); it draws from {sources}"
                + (" with one_shot" if self.data.one_shot else "")
            )
        if isinstance(getattr(self, "prompt_from", None), list):
            return "every: not available with several prompts (prompt_from: [...])"
        return None

    kind = "train"
    min_steps = 1

    def contract(self) -> Contract:
        """What the stage consumes and produces besides the model folder (stages/handoff.py): nothing, here."""
        return Contract()
