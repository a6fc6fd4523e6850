"""Stage: full fine-tuning. Plain SFT, or ProMoT's stage 2 with an earlier soft prompt (or LoRA adapter) frozen."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from stages.context import StageContext, StageResult
from stages.handoff import Contract, Needs
from stages.train_config import TrainingConfig


@dataclass
class Config(TrainingConfig):
    """Full fine-tuning settings; `prompt_from` turns SFT into ProMoT stage 2."""

    prompt_from: str | None = field(
        default=None, metadata={"help": "name of an earlier prompt_tune (or lora_tune) stage whose soft prompt "
                                        "(or LoRA adapter) is attached, frozen, while every base weight trains"}
    )

    kind = "finetune"

    def contract(self) -> Contract:
        """Needs the adapter named by prompt_from, if set, and hands it on (re-homed next to the model)."""
        needs = Needs(self.prompt_from, ("prompt", "lora"), "prompt_from")
        return Contract(consumes=(needs,) if self.prompt_from else ())

    def __post_init__(self):
        super().__post_init__()
        if self.packing and self.prompt_from:
            raise ValueError(f"{self.name}.packing: not available with prompt_from (PEFT prepends the soft prompt "
                             f"to each row, not to each packed example)")


def frozen_prompt_trainer(prompt_dir):
    """A Trainer whose checkpoints hold the full base weights, not just the frozen prompt.

    The Trainer saves a PeftModel as its adapter alone, which is right for prompt tuning but would
    lose every trained weight of ProMoT stage 2 (and break resume). Everything else stays the Trainer's.
    The prompt never changes, so each checkpoint gets a copy of the adapter it came from (`prompt_dir`).
    A frozen LoRA adapter wraps the layers it targets: the weights are saved (and read back) under the plain
    base model's names (see plain_weights), so a checkpoint and the final model load without PEFT.
    """
    import os
    import shutil

    from safetensors.torch import load_file
    from transformers import Trainer

    class FrozenPromptTrainer(Trainer):
        def _save(self, output_dir=None, state_dict=None):
            output_dir = output_dir or self.args.output_dir
            if not self.args.should_save:
                return
            wrapped = self.accelerator.unwrap_model(self.model)
            base = wrapped.get_base_model()
            if any(hasattr(p, "ds_id") for p in base.parameters()):  # ZeRO-3: only the Trainer's gathered copy is whole
                prefix = next(name for name, module in wrapped.named_modules() if module is base) + "."
                state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
            else:  # whole weights on this rank: saved as the base model names them
                state_dict = None
            if any("lora_" in name for name, _ in base.named_parameters()):
                state_dict = plain_weights(base.state_dict() if state_dict is None else state_dict)
            base.save_pretrained(output_dir, state_dict=state_dict, safe_serialization=True)
            shutil.copytree(prompt_dir, os.path.join(output_dir, "adapter"), dirs_exist_ok=True)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            wrapped = self.accelerator.unwrap_model(model or self.model)
            weights = load_file(os.path.join(resume_from_checkpoint, "model.safetensors"), device="cpu")
            base = wrapped.get_base_model()
            own = {name.replace(".base_layer.", "."): name for name in base.state_dict() if "lora_" not in name}
            result = base.load_state_dict({own.get(k, k): v for k, v in weights.items()}, strict=False)
            unexpected = [k for k in result.unexpected_keys]
            if unexpected:
                raise RuntimeError(f"{resume_from_checkpoint}: unexpected weights {unexpected[:3]}")

    return FrozenPromptTrainer


def freeze_prompt_train_model(peft_model) -> None:
    """Every base weight trains; the soft prompt gets no gradient and stays bit-identical."""
    for name, param in peft_model.named_parameters():
        param.requires_grad = "prompt_encoder" not in name


def plain_weights(state_dict: dict) -> dict:
    """A LoRA-wrapped model's weights as the plain base architecture names them: the adapter's own weights left
    out (it is saved as its own folder), each wrapped layer's `.base_layer.` dropped from its name."""
    return {name.replace(".base_layer.", "."): weight for name, weight in state_dict.items() if "lora_" not in name}


def freeze_lora_train_model(peft_model) -> None:
    """Every base weight trains; the LoRA adapter gets no gradient and stays bit-identical."""
    for name, param in peft_model.named_parameters():
        param.requires_grad = "lora_" not in name


FREEZE = {"prompt": freeze_prompt_train_model, "lora": freeze_lora_train_model}  # by the adapter's kind


def point_adapter_at(adapter_dir, model_dir) -> None:
    """The prompt belongs to the stage-2 model now: name it as the adapter's base, for AutoPeftModel.

    Stage 1 saved the original base's path there; loading the adapter with
    AutoPeftModelForCausalLM.from_pretrained would put the prompt on that model instead. Absolute,
    since PEFT resolves the path from wherever the user loads it.
    """
    import json

    from core.atomic import write_json

    config_file = adapter_dir / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = str(model_dir.resolve())
    write_json(config_file, config)


def run(config: Config, ctx: StageContext) -> StageResult:
    """Fine-tune all weights, save a plain transformers folder, and pass the (unchanged) prompt or LoRA on."""
    import shutil

    from core import ranks
    from core.errors import UserError
    from stages.handoff import Scope
    from stages.model_io import attach_adapter, load_model
    from stages.training import forget_deepspeed, run_trainer, training_arguments

    adapter = ctx.handoff.adapters[config.prompt_from] if config.prompt_from else None
    if adapter is not None and adapter.scope == Scope.MERGED:  # already in the weights: attaching it adds it twice
        raise UserError(f"{config.name}.prompt_from: {config.prompt_from!r} is merged into the model already "
                        f"(scope merged); leave prompt_from out, or give that stage scope target or every_suite")
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
        metrics, trainer = run_trainer(trainee, tokenizer, ctx.train_data, config, args, ctx.max_length,
                                       trainer_class=frozen_prompt_trainer(adapter_in) if adapter_in else None,
                                       tracking=ctx.tracking)
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
