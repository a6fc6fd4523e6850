"""Stage: joint tuning, the ProMoT paper's ablation. A soft prompt and every model weight train together, in one stage.

The paper finds it behaves like SFT: with the weights free to move, the prompt no longer soaks up the task's
format. Each part keeps the learning rate of its own ProMoT stage: `prompt_lr` (prompt tuning's) for the prompt,
`lr` (fine-tuning's) for the weights, as two optimizer param groups of one Trainer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from stages import prompt_tune
from stages.context import StageContext, StageResult
from stages.handoff import Adapter, Scope


@dataclass
class Config(prompt_tune.Config):
    """Joint settings: prompt tuning's prompt options, fine-tuning's lr for the weights, prompt_lr for the prompt."""

    lr: float = field(default=1e-3, metadata={"help": "peak learning rate of the model weights (finetune's)"})
    prompt_lr: float = field(default=0.3, metadata={"help": "peak learning rate of the soft prompt (prompt_tune's)"})

    kind = "joint_tune"
    min_steps = 1  # nothing trains at 0 steps: that control is prompt_tune's

    def __post_init__(self):
        super().__post_init__()
        if not (math.isfinite(self.prompt_lr) and self.prompt_lr > 0):
            raise ValueError(f"{self.name}.prompt_lr: must be > 0 and finite, got {self.prompt_lr}")

    def deepspeed_problems(self, raw: dict) -> list[str]:
        """What this stage cannot train under a DeepSpeed config (its JSON as a dict), as `field: message` lines."""
        problems = []
        if (raw.get("zero_optimization") or {}).get("stage") == 3:  # its checkpoints would lose the sharded prompt
            problems.append("zero_optimization.stage: joint_tune does not run under ZeRO-3; use ZeRO-2 or plain DDP")
        if "optimizer" in raw:
            problems.append(
                "optimizer: would replace joint_tune's two learning rates (lr, prompt_lr) with one; "
                "remove it (the Trainer builds the optimizer)"
            )
        return problems


def is_prompt(name: str) -> bool:
    """True for the soft prompt's parameters in a PEFT prompt-tuning model."""
    return "prompt_encoder" in name


def joint_trainer(prompt_lr: float):
    """A Trainer with two learning rates (prompt, weights) whose checkpoints hold the full weights and the prompt.

    Saving and resuming the full weights is finetune's frozen-prompt Trainer; the prompt here moves, so each
    checkpoint saves its current value (not a copy of the starting one) and a resume loads it back.
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from stages.frozen_adapter import frozen_prompt_trainer
    from stages.model_io import save_prompt

    class JointTrainer(frozen_prompt_trainer(None)):
        def create_optimizer(self, model=None):
            if self.optimizer is not None:
                return self.optimizer
            model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(model))
            groups = {}  # (lr, weight decay) -> parameters, the Trainer's decay rule within each part
            for name, param in model.named_parameters():
                if param.requires_grad:
                    lr = prompt_lr if is_prompt(name) else self.args.learning_rate
                    groups.setdefault((lr, self.args.weight_decay if name in decay else 0.0), []).append(param)
            optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            self.optimizer = optimizer_cls(
                [
                    {"params": params, "lr": lr, "weight_decay": decay_rate}
                    for (lr, decay_rate), params in groups.items()
                ],
                **kwargs,
            )
            return self.optimizer

        def _save(self, output_dir=None, state_dict=None):
            output_dir = Path(output_dir or self.args.output_dir)
            if not self.args.should_save:
                return
            wrapped = self.accelerator.unwrap_model(self.model)
            wrapped.get_base_model().save_pretrained(output_dir, safe_serialization=True)
            save_prompt(wrapped, output_dir / "adapter")
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            super()._load_from_checkpoint(resume_from_checkpoint, model)  # the full weights
            wrapped = self.accelerator.unwrap_model(model or self.model)
            prompt = load_file(str(Path(resume_from_checkpoint) / "adapter" / "adapter_model.safetensors"))
            set_peft_model_state_dict(wrapped, prompt)

    return JointTrainer


def refuse_unsupported_deepspeed(config: Config, deepspeed) -> None:
    """One line, before anything loads, for a DeepSpeed setup this stage cannot train correctly."""
    import json

    from core.errors import UserError

    if not deepspeed:
        return
    raw = deepspeed if isinstance(deepspeed, dict) else json.loads(Path(deepspeed).read_text())
    problems = config.deepspeed_problems(raw)
    if problems:
        shown = "the DeepSpeed config" if isinstance(deepspeed, dict) else deepspeed
        raise UserError(f"{config.name}: {shown}: {problems[0]}")


def run(config: Config, ctx: StageContext) -> StageResult:
    """Train prompt and weights together; save a plain transformers folder and the prompt as a PEFT adapter."""
    import shutil

    import torch
    from peft import get_peft_model

    from core import ranks
    from stages.frozen_adapter import point_adapter_at
    from stages.model_io import load_model
    from stages.training import forget_deepspeed, run_trainer, training_arguments

    refuse_unsupported_deepspeed(config, ctx.deepspeed)
    args = training_arguments(config, ctx.stage_dir / "trainer", ctx.seed, ctx.deepspeed, tracking=ctx.tracking)
    model_dir = ctx.stage_dir / "model"
    try:
        torch.manual_seed(ctx.seed)  # the sampled-vocabulary / random init depends on it
        model, tokenizer = load_model(ctx.model_dir, ctx.trust_remote_code)
        peft_model = get_peft_model(model, prompt_tune.peft_config(config, ctx.model_dir, ctx.extra.get("labels", [])))
        for param in peft_model.parameters():  # PEFT froze the base: every weight trains here
            param.requires_grad = True
        metrics, trainer = run_trainer(
            peft_model,
            tokenizer,
            ctx.train_data,
            config,
            args,
            ctx.max_length,
            trainer_class=joint_trainer(config.prompt_lr),
            tracking=ctx.tracking,
            ctx=ctx,
        )
        metrics["trainable_parameters"] = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        trainer.save_model(str(model_dir))  # the weights, with the prompt in model_dir/adapter
    finally:
        forget_deepspeed()
    adapter_dir = ctx.stage_dir / "adapter"
    if ranks.is_main():  # the prompt next to the model rather than inside it, named as belonging to it
        (model_dir / "training_args.bin").unlink(missing_ok=True)  # safetensors only, as load_model reads it
        shutil.rmtree(adapter_dir, ignore_errors=True)  # left by an attempt that died before DONE.json
        shutil.move(model_dir / "adapter", adapter_dir)
        point_adapter_at(adapter_dir, model_dir)
    return StageResult(
        model_dir=model_dir,
        adapters={config.name: Adapter(adapter_dir, "prompt", Scope.TARGET, ctx.target_tasks())},
        metrics=metrics,
    )
