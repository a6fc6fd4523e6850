"""Stage: on-policy self-distillation fine-tuning (Shenfeld et al. 2026's SDFT) through TRL's SDFTTrainer.

Shenfeld, Damani, Hübotter and Agrawal, "Self-Distillation Enables Continual Learning" (arXiv 2601.19897), as TRL
1.16.0 implements it (the version the lock holds): `trl.experimental.sdft.SDFTTrainer` and `SDFTConfig`, in
trl/experimental/sdft/sdft_trainer.py and sdft_config.py. The loss, the sampling and the teacher are TRL's; this
module only builds the dataset TRL expects, maps our settings onto its SDFTConfig and saves the model.

Each step the model (the student) samples `num_generations` answers per prompt from the prompt alone, on-policy;
the teacher, the same model with the row's demonstration (the reference answer) in its prompt, scores the same
answers, and the student is trained toward the teacher's token distribution on them (TRL's `distillation_*`
settings: a top-k divergence by default). No gradient ever flows through the reference answer's own tokens: the
demonstration only conditions the teacher, which is why the paper finds it forgets less than SFT. The teacher is
`teacher: base` (this stage's input model, frozen), `ema` (an average of the student) or `live` (the student itself).

The dataset is TRL's: `prompt` (the stage's prompt as the recipe renders it, chat template included) and
`privileged_context` (the reference answer, stripped), put together for the teacher by `teacher_template` (TRL's
default `{prompt}\\n\\n{privileged_context}`). TRL cuts prompts to `max_length` tokens from the left (the teacher's
too, demonstration included) and samples at most `max_new_tokens`. It encodes a prompt with the tokenizer's own
special tokens, as every other stage does (data_recipes/encoding.py); a prompt that already starts with the BOS text
is handed over without it, so it does not get a second one. With a chat template the teacher's demonstration comes
after the rendered prompt, inside the assistant's turn, not in the user's turn as TRL does for conversational rows:
the rows reach a stage rendered.

`batch_size` counts completions per optimizer step, as TRL does: `batch_size / num_generations` prompts per step.
`num_generations` defaults to 1 (TRL's is 8, a GRPO habit: SDFT's loss needs no group of samples), so a step sees
as many prompts as a finetune step. The stage hands on a plain transformers folder, like finetune. TRL's telemetry
ping is switched off, and TRL's version is part of the stage key (its experimental API may change numbers).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from stages import finetune
from stages.context import StageContext, StageResult
from stages.losses import Loss

TRL_DEFAULT_TEMPLATE = "{prompt}\n\n{privileged_context}"


class Teacher(str, enum.Enum):
    """TRL's teacher_model_kind."""

    BASE = "base"  # the stage's input model, frozen
    EMA = "ema"  # an exponential moving average of the student (teacher_update_rate every teacher_sync_steps)
    LIVE = "live"  # the student itself


class Distillation(str, enum.Enum):
    """TRL's distillation_mode."""

    TOPK_LOGITS = "topk_logits"
    FULL_LOGITS = "full_logits"
    SAMPLED_TOKEN = "sampled_token"


@dataclass
class Config(finetune.Config):
    """On-policy self-distillation (TRL's SDFTConfig): sampled answers, a teacher that sees the reference."""

    max_new_tokens: int = field(
        default=64, metadata={"help": "the longest sampled answer, in tokens (TRL's max_completion_length)"}
    )
    num_generations: int = field(
        default=1,
        metadata={"help": "answers sampled per prompt; batch_size (completions per step) must be a multiple of it"},
    )
    temperature: float = field(
        default=1.0, metadata={"help": "sampling temperature (TRL scales both models' logits by it)"}
    )
    teacher: Teacher = field(
        default=Teacher.BASE,
        metadata={"help": "base: the input model, frozen; ema: an average of the student; live: the student itself"},
    )
    teacher_update_rate: float = field(
        default=0.05, metadata={"help": "teacher ema: the average's update rate, in (0, 1]"}
    )
    teacher_sync_steps: int = field(default=1, metadata={"help": "teacher ema: optimizer steps between updates"})
    teacher_template: str = field(
        default=TRL_DEFAULT_TEMPLATE,
        metadata={"help": "the teacher's prompt, with {prompt} and {privileged_context} (the reference answer)"},
    )
    generate_from_teacher: bool = field(
        default=False, metadata={"help": "sample from the teacher's prompt instead of the student's (off-policy)"}
    )
    distillation_mode: Distillation = field(
        default=Distillation.TOPK_LOGITS,
        metadata={"help": "topk_logits (the student's top-k tokens), full_logits, or sampled_token (reverse KL)"},
    )
    distillation_alpha: float = field(
        default=0.5,
        metadata={
            "help": "the divergence: 0 forward KL, 1 reverse KL, between them a generalized JSD; sampled_token: 1"
        },
    )
    distillation_topk: int = field(default=100, metadata={"help": "topk_logits: tokens in the support"})
    distillation_is_clip: float | None = field(
        default=2.0, metadata={"help": "clip of the importance ratio to the sampling-time student; null: none"}
    )
    distillation_add_tail: bool = field(
        default=False, metadata={"help": "topk_logits: one more bucket for the mass outside the top k"}
    )
    num_loss_tokens_to_skip: int = field(default=0, metadata={"help": "the first answer tokens left out of the loss"})

    kind = "sdft"

    def __post_init__(self):
        super().__post_init__()
        self.teacher, self.distillation_mode = Teacher(self.teacher), Distillation(self.distillation_mode)
        problem = self.sdft_problem()
        if problem:
            raise ValueError(f"{self.name}.{problem}")

    def sdft_problem(self) -> str | None:
        """What cannot work with TRL's SDFTTrainer here, as 'field: why', or None."""
        if self.prompt_from:
            return (
                "prompt_from: not available for sdft (TRL samples from and scores the plain model); use a finetune "
                "stage for ProMoT's stage 2"
            )
        if self.packing:
            return "packing: not available for sdft (TRL builds each batch from the answers it samples)"
        if self.loss != Loss.CE or self.kl_to is not None:
            return (
                f"{'loss' if self.loss != Loss.CE else 'kl_to'}: sdft's loss is TRL's self-distillation loss "
                f"(distillation_mode, distillation_alpha, ...); leave loss and kl_to out"
            )
        if self.max_new_tokens < 1 or self.num_generations < 1 or self.teacher_sync_steps < 1:
            return "max_new_tokens/num_generations/teacher_sync_steps: must be >= 1"
        if self.batch_size % self.num_generations:
            return (
                f"batch_size: {self.batch_size} completions per step is not a multiple of num_generations "
                f"{self.num_generations} (TRL samples num_generations answers for each prompt of a step)"
            )
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            return f"temperature: must be > 0 and finite, got {self.temperature}"
        if not (math.isfinite(self.teacher_update_rate) and 0 < self.teacher_update_rate <= 1):
            return f"teacher_update_rate: must be in (0, 1], got {self.teacher_update_rate}"
        if not (math.isfinite(self.distillation_alpha) and 0 <= self.distillation_alpha <= 1):
            return f"distillation_alpha: must be in [0, 1], got {self.distillation_alpha}"
        if self.distillation_mode == Distillation.SAMPLED_TOKEN and self.distillation_alpha != 1:
            return "distillation_alpha: sampled_token distills by reverse KL only (TRL): set distillation_alpha: 1.0"
        if self.distillation_topk < 1:
            return f"distillation_topk: must be >= 1, got {self.distillation_topk}"
        clip = self.distillation_is_clip
        if clip is not None and not (math.isfinite(clip) and clip > 0):
            return f"distillation_is_clip: must be > 0 and finite, or null, got {clip}"
        if not 0 <= self.num_loss_tokens_to_skip < self.max_new_tokens:
            return (
                f"num_loss_tokens_to_skip: must be in [0, max_new_tokens) (no answer token would be left to learn "
                f"from), got {self.num_loss_tokens_to_skip}"
            )
        return template_problem(self.teacher_template)

    def deepspeed_problems(self, raw: dict) -> list[str]:
        """Not run under ZeRO-3 here: TRL then builds a second, sharded teacher and gathers the student's whole weights
        for every generation, which no test of this project has run (make test-dist covers the other kinds)."""
        problems = super().deepspeed_problems(raw)
        if (raw.get("zero_optimization") or {}).get("stage") == 3:
            problems.append(
                "zero_optimization.stage: sdft is not run under ZeRO-3 here (TRL's teacher would be a second "
                "sharded model, the student gathered whole for every generation: untested); use ZeRO-2 or plain DDP"
            )
        return problems

    def key_inputs(self) -> dict:
        """Inputs of the stage key besides its settings: TRL's version (its experimental trainer may change)."""
        from importlib import metadata

        try:
            return {"trl": metadata.version("trl")}
        except metadata.PackageNotFoundError:
            return {"trl": None}


def template_problem(template: str) -> str | None:
    """What is wrong with a teacher template, as 'teacher_template: why', or None."""
    missing = [name for name in ("{prompt}", "{privileged_context}") if name not in template]
    if missing:
        return f"teacher_template: must contain {' and '.join(missing)}"
    try:
        template.format(prompt="", privileged_context="")
    except (KeyError, IndexError, ValueError) as error:
        return (
            f"teacher_template: {error!r}; only {{prompt}} and {{privileged_context}} may be in braces "
            f"(write {{{{ and }}}} for literal braces)"
        )
    return None


def sdft_settings(config: Config, max_length: int, trust_remote_code: bool = False) -> dict:
    """Our fields as TRL's SDFTConfig fields (besides the TrainingArguments ones every stage maps)."""
    return {
        "max_prompt_length": max_length,
        "max_completion_length": config.max_new_tokens,
        "num_generations": config.num_generations,
        "temperature": config.temperature,
        "teacher_model_kind": config.teacher.value,
        "teacher_update_rate": config.teacher_update_rate,
        "teacher_sync_steps": config.teacher_sync_steps,
        "teacher_prompt_template": config.teacher_template,
        "generate_from_teacher": config.generate_from_teacher,
        "distillation_mode": config.distillation_mode.value,
        "distillation_alpha": config.distillation_alpha,
        "distillation_topk": config.distillation_topk,
        "distillation_is_clip": config.distillation_is_clip,
        "distillation_add_tail": config.distillation_add_tail,
        "num_loss_tokens_to_skip": config.num_loss_tokens_to_skip,
        "trust_remote_code": trust_remote_code,
        "shuffle_dataset": True,
    }


def sdft_arguments(config: Config, ctx: StageContext):
    """TRL's SDFTConfig for the stage: our TrainingArguments mapping (stages/training.py) plus sdft_settings."""
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # the stage names TRL's version in its key instead
    from trl.experimental.sdft import SDFTConfig

    from stages.training import training_arguments

    return training_arguments(
        config,
        ctx.stage_dir / "trainer",
        ctx.seed,
        ctx.deepspeed,
        tracking=ctx.tracking,
        arguments_class=SDFTConfig,
        **sdft_settings(config, ctx.max_length, ctx.trust_remote_code),
    )


def sdft_rows(rows, tokenizer):
    """TRL's columns from prompt/completion rows: the prompt, and the reference answer as privileged context. A
    prompt that starts with the BOS text loses it when the tokenizer adds its own (data_recipes/encoding.py)."""
    import datasets

    from data_recipes.encoding import special_prefix

    bos = tokenizer.bos_token
    adds_bos = bool(bos) and bool(special_prefix(tokenizer))
    prompts = [p[len(bos) :] if adds_bos and p.startswith(bos) else p for p in rows["prompt"]]
    return datasets.Dataset.from_dict(
        {"prompt": prompts, "privileged_context": [c.strip() for c in rows["completion"]]}
    )


def trainer_class():
    """TRL's SDFTTrainer, without its usage ping to the Hub (a training run here makes no network call)."""
    from trl.experimental.sdft import SDFTTrainer

    class Trainer(SDFTTrainer):
        def _send_telemetry(self):
            return None

    return Trainer


def run(config: Config, ctx: StageContext) -> StageResult:
    """Self-distil on-policy with TRL's SDFTTrainer; save a plain transformers folder."""
    from core import ranks
    from core.errors import UserError
    from stages.model_io import load_model
    from stages.training import fit, forget_deepspeed

    args = sdft_arguments(config, ctx)  # before the model loads, as under ZeRO-3 every stage does
    model_dir = ctx.stage_dir / "model"
    try:
        model, tokenizer = load_model(ctx.model_dir, ctx.trust_remote_code)
        vocab = model.get_output_embeddings().weight.shape[0]
        if config.distillation_mode == Distillation.TOPK_LOGITS and config.distillation_topk > vocab:
            raise UserError(
                f"{config.name}.distillation_topk: {config.distillation_topk} is more than the model's "
                f"{vocab} tokens; set it to at most {vocab}"
            )
        rows = sdft_rows(ctx.train_data, tokenizer)
        trainer = trainer_class()(model=model, args=args, train_dataset=rows, processing_class=tokenizer)
        metrics = fit(trainer, ctx.tracking)
        logs = trainer.state.log_history
        metrics.update(
            train_rows=len(rows),
            distillation_loss_history=[
                log["sdft/distillation_loss"] for log in logs if "sdft/distillation_loss" in log
            ],
            completion_length_history=[
                log["completions/mean_length"] for log in logs if "completions/mean_length" in log
            ],
        )
        # The Trainer's save gathers ZeRO shards; rank 0 writes a plain save_pretrained folder.
        trainer.save_model(str(model_dir))
    finally:
        forget_deepspeed()
    if ranks.is_main():  # safetensors only, as load_model reads it: no pickled TrainingArguments
        (model_dir / "training_args.bin").unlink(missing_ok=True)
    return StageResult(model_dir=model_dir, metrics=metrics)
