"""Stage: orthogonal subspace fine-tuning (OSF). Each weight matrix trains only along the directions orthogonal to its
top singular subspace, which stays frozen: no replay data needed (PEFT's OSFConfig, Nayak et al. 2025).

PEFT splits every targeted weight W = U_high S_high V_high^T + U_low S_low V_low^T by SVD; the top `rank_ratio` of
each matrix's singular directions (the "high" part) is frozen, the rest trains, and gradients are projected to stay
orthogonal to the frozen part. At the end the parts are merged back (PEFT's merge_and_unload): the stage hands on a
plain transformers folder, like finetune, and its model loads with AutoModelForCausalLM alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from stages.context import StageContext, StageResult
from stages.train_config import TrainingConfig


@dataclass
class Config(TrainingConfig):
    """OSF settings (PEFT's OSFConfig)."""

    rank_ratio: float = field(
        default=0.5,
        metadata={
            "help": (
                "the share of each weight matrix's singular directions kept frozen (PEFT's effective_rank as a fraction of "
                "the smaller dimension), in (0, 1); the rest trains"
            )
        },
    )
    target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": (
                "names of the linear layers OSF wraps; default: PEFT's choice for the architecture (all linear layers of "
                "the attention and MLP blocks for Llama-style models)"
            )
        },
    )
    lr: float = 1e-4

    kind = "osf_tune"

    def __post_init__(self):
        super().__post_init__()
        if not (math.isfinite(self.rank_ratio) and 0 < self.rank_ratio < 1):
            raise ValueError(f"{self.name}.rank_ratio: must be in (0, 1), got {self.rank_ratio}")
        if self.target_modules is not None and not (
            self.target_modules and all(isinstance(m, str) and m for m in self.target_modules)
        ):
            raise ValueError(f"{self.name}.target_modules: must name at least one module, got {self.target_modules}")

    def deepspeed_problems(self, raw: dict) -> list[str]:
        """PEFT's OSF takes an SVD of each whole weight when it wraps it: not of ZeRO-3 shards."""
        problems = super().deepspeed_problems(raw)
        if (raw.get("zero_optimization") or {}).get("stage") == 3:
            problems.append(
                "zero_optimization.stage: osf_tune does not run under ZeRO-3 (PEFT's OSF decomposes each "
                "whole weight matrix); use ZeRO-2 or plain DDP"
            )
        return problems


def osf_config(config: Config):
    """Our fields as PEFT's OSFConfig."""
    from peft import OSFConfig

    return OSFConfig(
        task_type="CAUSAL_LM",
        effective_rank=float(config.rank_ratio),
        target_modules=list(config.target_modules) if config.target_modules else None,
    )


def run(config: Config, ctx: StageContext) -> StageResult:
    """Train inside each weight's orthogonal subspace, merge, and save a plain transformers folder."""
    from core import ranks
    from stages.model_io import load_model, trainable_parameters, wrap_for_training
    from stages.training import forget_deepspeed, run_trainer, training_arguments

    args = training_arguments(config, ctx.stage_dir / "trainer", ctx.seed, ctx.deepspeed, tracking=ctx.tracking)
    model_dir = ctx.stage_dir / "model"
    try:
        model, tokenizer = load_model(ctx.model_dir, ctx.trust_remote_code)
        peft_model = wrap_for_training(model, osf_config(config), config.name)
        metrics, _ = run_trainer(
            peft_model, tokenizer, ctx.train_data, config, args, ctx.max_length, tracking=ctx.tracking, ctx=ctx
        )
        metrics["trainable_parameters"] = trainable_parameters(peft_model)
        if ranks.is_main():
            merged = peft_model.merge_and_unload()
            merged.save_pretrained(str(model_dir), safe_serialization=True)
            tokenizer.save_pretrained(str(model_dir))
        ranks.wait_for_everyone()
    finally:
        forget_deepspeed()
    return StageResult(model_dir=model_dir, metrics=metrics)
