"""Stage: prompt tuning. Train a soft prompt of p virtual tokens on the target task; every model weight is frozen."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from stages.context import StageContext, StageResult
from stages.handoff import Adapter, Contract, Makes, Scope
from stages.train_config import TrainingConfig


class PromptInit(str, enum.Enum):
    """How the soft prompt starts (Lester et al.'s options)."""

    TEXT = "text"  # embeddings of `init_text`
    SAMPLED_VOCAB = "sampled_vocab"  # embeddings of random vocabulary tokens
    CLASS_LABELS = "class_labels"  # embeddings of the target labels, repeated
    RANDOM = "random"


@dataclass
class Config(TrainingConfig):
    """Prompt-tuning settings; ProMoT uses a high LR because only the prompt moves."""

    num_virtual_tokens: int = field(default=16, metadata={"help": "soft prompt length p"})
    init: PromptInit = field(
        default=PromptInit.SAMPLED_VOCAB, metadata={"help": "text, sampled_vocab, class_labels, random"}
    )
    init_text: str | None = field(default=None, metadata={"help": "text for init=text"})
    lr: float = 0.3

    kind = "prompt_tune"
    min_steps = 0  # 0 steps = a frozen, untrained prompt (the paper's control)

    def contract(self) -> Contract:
        """Hands on a soft prompt under the stage's name, attached for the target task only."""
        return Contract(produces=(Makes(self.name, "prompt", Scope.TARGET),))

    def __post_init__(self):
        super().__post_init__()
        if self.num_virtual_tokens < 1:
            raise ValueError(f"{self.name}.num_virtual_tokens: must be >= 1, got {self.num_virtual_tokens}")
        if self.packing:
            raise ValueError(
                f"{self.name}.packing: not available for prompt tuning (PEFT prepends the soft prompt "
                f"to each row, not to each packed example)"
            )
        if self.init == PromptInit.TEXT and not self.init_text:
            raise ValueError(f"{self.name}.init_text: required when init is 'text'")


def peft_config(config: Config, model_dir, labels: list[str]):
    """Translate our init modes into PEFT's PromptTuningConfig."""
    from peft import PromptTuningConfig, PromptTuningInit

    text = config.init_text
    if config.init == PromptInit.CLASS_LABELS:
        if not labels:
            raise ValueError(f"{config.name}.init: class_labels needs target.labels")
        text = " ".join(labels)  # PEFT repeats the text's tokens to fill p positions
    mode = {
        PromptInit.TEXT: PromptTuningInit.TEXT,
        PromptInit.CLASS_LABELS: PromptTuningInit.TEXT,
        PromptInit.SAMPLED_VOCAB: PromptTuningInit.SAMPLE_VOCAB,
        PromptInit.RANDOM: PromptTuningInit.RANDOM,
    }[config.init]
    return PromptTuningConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=config.num_virtual_tokens,
        prompt_tuning_init=mode,
        prompt_tuning_init_text=text if mode == PromptTuningInit.TEXT else None,
        tokenizer_name_or_path=str(model_dir) if mode == PromptTuningInit.TEXT else None,
    )


def prompt_trainer():
    """A Trainer whose checkpoints can hold a soft prompt that ZeRO-3 has sharded (see model_io.prompt_gathered)."""
    from transformers import Trainer

    from stages.model_io import prompt_is_sharded, save_prompt

    class PromptTrainer(Trainer):
        def save_model(self, output_dir=None, _internal_call=False):
            peft_model = self.accelerator.unwrap_model(self.model)
            if not prompt_is_sharded(peft_model):
                return super().save_model(output_dir, _internal_call)
            # The Trainer's own ZeRO-3 save would hang in PEFT; DeepSpeed's checkpoint, written next to
            # this adapter, is what a resume reads.
            save_prompt(peft_model, Path(output_dir or self.args.output_dir))

    return PromptTrainer


def run(config: Config, ctx: StageContext) -> StageResult:
    """Train the prompt and save it as a PEFT adapter; the model weights pass through unchanged."""
    import torch
    from peft import get_peft_model

    from stages.model_io import load_model, save_prompt
    from stages.training import forget_deepspeed, run_trainer, training_arguments

    # Arguments first: under ZeRO-3 the model then loads straight into its shards.
    args = (
        training_arguments(config, ctx.stage_dir / "trainer", ctx.seed, ctx.deepspeed, tracking=ctx.tracking)
        if config.steps
        else None
    )
    try:
        torch.manual_seed(ctx.seed)  # the sampled-vocabulary / random init depends on it
        model, tokenizer = load_model(ctx.model_dir, ctx.trust_remote_code)
        peft_model = get_peft_model(model, peft_config(config, ctx.model_dir, ctx.extra.get("labels", [])))
        metrics, _ = run_trainer(
            peft_model,
            tokenizer,
            ctx.train_data,
            config,
            args,
            ctx.max_length,
            trainer_class=prompt_trainer(),
            tracking=ctx.tracking,
        )
        # ds_numel: a ZeRO-3 parameter's full size (its numel() is the local shard's)
        metrics["trainable_parameters"] = sum(
            getattr(p, "ds_numel", p.numel()) for p in peft_model.parameters() if p.requires_grad
        )
        adapter_dir = save_prompt(peft_model, ctx.stage_dir / "adapter")
    finally:
        forget_deepspeed()
    # The weights did not change, so the next stage starts from the same checkpoint.
    return StageResult(
        model_dir=ctx.model_dir,
        adapters={config.name: Adapter(adapter_dir, "prompt", Scope.TARGET, ctx.target_tasks())},
        metrics=metrics,
    )
