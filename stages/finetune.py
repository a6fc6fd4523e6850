"""Stage: full fine-tuning. Plain SFT, or ProMoT's stage 2 with an earlier soft prompt prepended and frozen."""

from __future__ import annotations

from dataclasses import dataclass, field

from stages.context import StageContext, StageResult
from stages.train_config import TrainingConfig


@dataclass
class Config(TrainingConfig):
    """Full fine-tuning settings; `prompt_from` turns SFT into ProMoT stage 2."""

    prompt_from: str | None = field(
        default=None, metadata={"help": "name of an earlier prompt_tune stage whose prompt is prepended, frozen"}
    )

    kind = "finetune"


def freeze_prompt_train_model(peft_model) -> None:
    """Every base weight trains; the soft prompt gets no gradient and stays bit-identical."""
    for name, param in peft_model.named_parameters():
        param.requires_grad = "prompt_encoder" not in name


def run(config: Config, ctx: StageContext) -> StageResult:
    """Fine-tune all weights, save a plain transformers folder, and pass the (unchanged) prompt on."""
    from stages.model_io import attach_prompt, load_model, save_model
    from stages.training import run_trainer

    model, tokenizer = load_model(ctx.model_dir, ctx.trust_remote_code)
    adapter_in = ctx.adapters[config.prompt_from] if config.prompt_from else None
    trainee = model
    if adapter_in is not None:
        trainee = attach_prompt(model, adapter_in, trainable=False)
        freeze_prompt_train_model(trainee)
    metrics = run_trainer(trainee, tokenizer, ctx.train_data, config, ctx.stage_dir / "trainer", ctx.seed,
                          ctx.max_length)
    model_dir = save_model(model, tokenizer, ctx.stage_dir / "model")  # `model` is the base inside the wrapper
    adapter_out = None
    if adapter_in is not None:
        adapter_out = ctx.stage_dir / "adapter"
        trainee.save_pretrained(str(adapter_out))  # saves only the (frozen) prompt
    return StageResult(model_dir=model_dir, adapter_dir=adapter_out, metrics=metrics)
