"""Stage: prompt tuning. Train a soft prompt of p virtual tokens on the target task; every model weight is frozen."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from stages.context import StageContext, StageResult
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
    init: PromptInit = field(default=PromptInit.SAMPLED_VOCAB, metadata={"help": "text, sampled_vocab, class_labels, random"})
    init_text: str | None = field(default=None, metadata={"help": "text for init=text"})
    lr: float = 0.3

    kind = "prompt_tune"
    min_steps = 0  # 0 steps = a frozen, untrained prompt (the paper's control)

    def __post_init__(self):
        super().__post_init__()
        if self.num_virtual_tokens < 1:
            raise ValueError(f"{self.name}.num_virtual_tokens: must be >= 1, got {self.num_virtual_tokens}")
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


def run(config: Config, ctx: StageContext) -> StageResult:
    """Train the prompt and save it as a PEFT adapter; the model weights pass through unchanged."""
    import torch
    from peft import get_peft_model

    from stages.model_io import load_model
    from stages.training import run_trainer

    torch.manual_seed(ctx.seed)  # the sampled-vocabulary / random init depends on it
    model, tokenizer = load_model(ctx.model_dir, ctx.trust_remote_code)
    peft_model = get_peft_model(model, peft_config(config, ctx.model_dir, ctx.extra.get("labels", [])))
    metrics = run_trainer(peft_model, tokenizer, ctx.train_data, config, ctx.stage_dir / "trainer", ctx.seed,
                          ctx.max_length)
    metrics["trainable_parameters"] = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    adapter_dir = ctx.stage_dir / "adapter"
    peft_model.save_pretrained(str(adapter_dir))
    # The weights did not change, so the next stage starts from the same checkpoint.
    return StageResult(model_dir=ctx.model_dir, adapter_dir=adapter_dir, metrics=metrics)
