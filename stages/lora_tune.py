"""Stage: LoRA tuning. Train a PEFT LoRA adapter on the stage's data; every model weight is frozen.

The ProMoT paper's other stage-1 ablation ("LoRA instead of prompt tuning helps far less"): with scope `target`
the adapter plays the soft prompt's part, attached only for the target task. Scope `every_suite` is a plain
LoRA fine-tune (attached for every suite), and `merged` folds it into the weights the next stage starts from.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

from stages.context import StageContext, StageResult
from stages.handoff import Adapter, Contract, Makes, Scope
from stages.train_config import TrainingConfig

LLAMA_ATTENTION = ["q_proj", "v_proj"]  # the LoRA paper's choice, named as Llama-style models name them


@dataclass
class Config(TrainingConfig):
    """LoRA settings (PEFT's LoraConfig) and when the adapter is attached."""

    r: int = field(default=8, metadata={"help": "LoRA rank"})
    alpha: float = field(default=16, metadata={"help": "LoRA scaling numerator (the update is scaled by alpha / r)"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA path's input, in training"})
    target_modules: list[str] = field(
        default_factory=lambda: list(LLAMA_ATTENTION),
        metadata={
            "help": "names of the linear layers that get an adapter (Llama-style: q_proj, k_proj, v_proj, o_proj, ...)"
        },
    )
    scope: Scope = field(
        default=Scope.TARGET,
        metadata={
            "help": (
                "target: attached only for the target task (in ProMoT's stage 1 place); every_suite: attached for every "
                "suite (a plain LoRA fine-tune); merged: folded into the weights, the next stage starts from them"
            )
        },
    )
    lr: float = 1e-3

    kind = "lora_tune"

    def contract(self) -> Contract:
        """Hands on a LoRA adapter under the stage's name, with the configured scope (merged: recorded only)."""
        return Contract(produces=(Makes(self.name, "lora", self.scope),))

    def __post_init__(self):
        super().__post_init__()
        if self.r < 1:
            raise ValueError(f"{self.name}.r: must be >= 1, got {self.r}")
        if not self.alpha > 0:
            raise ValueError(f"{self.name}.alpha: must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:  # also refuses nan
            raise ValueError(f"{self.name}.dropout: must be in [0, 1), got {self.dropout}")
        if not self.target_modules or not all(isinstance(m, str) and m for m in self.target_modules):
            raise ValueError(f"{self.name}.target_modules: must name at least one module, got {self.target_modules}")


def lora_config(config: Config):
    """Our fields as PEFT's LoraConfig."""
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM",
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
    )


def lora_gathered(peft_model):
    """The whole LoRA weights on every rank (under ZeRO-3 each holds a shard), for PEFT to save."""
    params = [p for name, p in peft_model.named_parameters() if "lora_" in name]
    if not any(hasattr(p, "ds_id") for p in params):
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params)


def run(config: Config, ctx: StageContext) -> StageResult:
    """Train the adapter and save it as a PEFT folder; with scope merged, also the merged plain model."""
    import torch

    from core import ranks
    from core.errors import UserError
    from stages.model_io import load_model, trainable_parameters, wrap_for_training
    from stages.training import forget_deepspeed, run_trainer, training_arguments

    # Arguments first: under ZeRO-3 the model then loads straight into its shards.
    args = training_arguments(config, ctx.stage_dir / "trainer", ctx.seed, ctx.deepspeed, tracking=ctx.tracking)
    adapter_dir, model_dir = ctx.stage_dir / "adapter", ctx.model_dir
    try:
        torch.manual_seed(ctx.seed)  # LoRA's A matrices start random
        model, tokenizer = load_model(ctx.model_dir, ctx.trust_remote_code)
        peft_model = wrap_for_training(model, lora_config(config), config.name)
        metrics, _ = run_trainer(
            peft_model, tokenizer, ctx.train_data, config, args, ctx.max_length, tracking=ctx.tracking, ctx=ctx
        )
        metrics["trainable_parameters"] = trainable_parameters(peft_model)
        with lora_gathered(peft_model):
            peft_model.save_pretrained(str(adapter_dir), is_main_process=ranks.is_main())
        if config.scope == Scope.MERGED:
            if any(hasattr(p, "ds_id") for p in peft_model.parameters()):
                raise UserError(
                    f"{config.name}.scope: merged is not available under ZeRO-3 (the weights are "
                    f"sharded); use scope every_suite, or a DeepSpeed config below stage 3"
                )
            model_dir = ctx.stage_dir / "model"
            if ranks.is_main():  # a plain transformers folder: the next stage starts from it
                merged = peft_model.merge_and_unload()
                merged.save_pretrained(str(model_dir), safe_serialization=True)
                tokenizer.save_pretrained(str(model_dir))
            ranks.wait_for_everyone()
    finally:
        forget_deepspeed()
    # Target / every_suite: the weights did not change, so the next stage starts from the same checkpoint.
    tasks = ctx.target_tasks() if config.scope == Scope.TARGET else ()
    return StageResult(
        model_dir=model_dir, adapters={config.name: Adapter(adapter_dir, "lora", config.scope, tasks)}, metrics=metrics
    )
