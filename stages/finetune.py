"""Stage: full fine-tuning. Plain SFT, or ProMoT's stage 2 with an earlier soft prompt (or LoRA adapter) frozen."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from stages.context import StageContext, StageResult
from stages.frozen_adapter import frozen_prompt_trainer, point_adapter_at
from stages.handoff import Contract, Needs
from stages.train_config import TrainingConfig


@dataclass
class Config(TrainingConfig):
    """Full fine-tuning settings; `prompt_from` turns SFT into ProMoT stage 2."""

    prompt_from: str | list[str] | None = field(
        default=None,
        metadata={
            "help": "name of an earlier prompt_tune (or lora_tune) stage whose soft prompt "
            "(or LoRA adapter) is attached, frozen, while every base weight trains; a list "
            "of prompt_tune stages, one per target task, for multi-task ProMoT (each "
            "example carries its own task's prompt)"
        },
    )

    kind = "finetune"

    def contract(self) -> Contract:
        """Needs the adapter named by prompt_from, if set (each prompt, for a list), and hands it on (re-homed next
        to the model)."""
        if isinstance(self.prompt_from, list):
            return Contract(consumes=tuple(Needs(name, ("prompt",), "prompt_from") for name in self.prompt_from))
        needs = Needs(self.prompt_from, ("prompt", "lora"), "prompt_from")
        return Contract(consumes=(needs,) if self.prompt_from else ())

    def deepspeed_problems(self, raw: dict) -> list[str]:
        """Several prompts are read row by row in the forward (stages/multi_prompt.py): not from ZeRO-3 shards."""
        problems = super().deepspeed_problems(raw)
        if isinstance(self.prompt_from, list) and (raw.get("zero_optimization") or {}).get("stage") == 3:
            problems.append(
                "zero_optimization.stage: a finetune with several prompts (prompt_from: [...]) does not "
                "run under ZeRO-3; use ZeRO-2 or plain DDP"
            )
        return problems

    def __post_init__(self):
        super().__post_init__()
        if self.packing and self.prompt_from:
            raise ValueError(
                f"{self.name}.packing: not available with prompt_from (PEFT prepends the soft prompt "
                f"to each row, not to each packed example)"
            )
        if isinstance(self.prompt_from, list):
            if not self.prompt_from:
                raise ValueError(
                    f"{self.name}.prompt_from: an empty list; name the prompt_tune stages, or leave it out"
                )
            if len(set(self.prompt_from)) < len(self.prompt_from):
                raise ValueError(f"{self.name}.prompt_from: names a stage twice")


def freeze_prompt_train_model(peft_model) -> None:
    """Every base weight trains; the soft prompt gets no gradient and stays bit-identical."""
    for name, param in peft_model.named_parameters():
        param.requires_grad = "prompt_encoder" not in name


def freeze_lora_train_model(peft_model) -> None:
    """Every base weight trains; the LoRA adapter gets no gradient and stays bit-identical."""
    for name, param in peft_model.named_parameters():
        param.requires_grad = "lora_" not in name


FREEZE = {"prompt": freeze_prompt_train_model, "lora": freeze_lora_train_model}  # by the adapter's kind


def run(config: Config, ctx: StageContext) -> StageResult:
    """Fine-tune all weights, save a plain transformers folder, and pass the (unchanged) prompt or LoRA on."""
    import shutil

    from core import ranks
    from core.errors import UserError
    from stages.handoff import Scope
    from stages.model_io import attach_adapter, load_model
    from stages.training import forget_deepspeed, run_trainer, training_arguments

    if isinstance(config.prompt_from, list):  # multi-task ProMoT: one prompt per target task
        from stages.multi_prompt import run_multi

        return run_multi(config, ctx)
    adapter = ctx.handoff.adapters[config.prompt_from] if config.prompt_from else None
    if adapter is not None and adapter.scope == Scope.MERGED:  # already in the weights: attaching it adds it twice
        raise UserError(
            f"{config.name}.prompt_from: {config.prompt_from!r} is merged into the model already "
            f"(scope merged); leave prompt_from out, or give that stage scope target or every_suite"
        )
    # Arguments first: under ZeRO-3 the model then loads straight into its shards.
    args = training_arguments(config, ctx.stage_dir / "trainer", ctx.seed, ctx.deepspeed, tracking=ctx.tracking)
    adapter_in = adapter.path if adapter is not None else None
    model_dir = ctx.stage_dir / "model"
    try:
        model, tokenizer = load_model(ctx.model_dir, ctx.trust_remote_code)
        trainee = model
        if adapter_in is not None:
            trainee = attach_adapter(model, adapter_in, trainable=False)
            FREEZE[adapter.kind](trainee)
        metrics, trainer = run_trainer(
            trainee,
            tokenizer,
            ctx.train_data,
            config,
            args,
            ctx.max_length,
            trainer_class=frozen_prompt_trainer(adapter_in) if adapter_in else None,
            tracking=ctx.tracking,
            ctx=ctx,
        )
        # The Trainer's save gathers ZeRO-3 shards; rank 0 writes a plain save_pretrained folder.
        trainer.save_model(str(model_dir))
    finally:
        forget_deepspeed()
    if ranks.is_main():  # safetensors only, as load_model reads it: no pickled TrainingArguments
        (model_dir / "training_args.bin").unlink(missing_ok=True)
    adapters = {}
    if adapter_in is not None:
        adapter_out = ctx.stage_dir / "adapter"
        if ranks.is_main():  # the (unchanged) prompt, next to the model rather than inside it
            shutil.rmtree(adapter_out, ignore_errors=True)  # left by an attempt that died before DONE.json
            shutil.move(model_dir / "adapter", adapter_out)
            point_adapter_at(adapter_out, model_dir)
        adapters[config.prompt_from] = replace(ctx.handoff.adapters[config.prompt_from], path=adapter_out)
    return StageResult(model_dir=model_dir, adapters=adapters, metrics=metrics)
