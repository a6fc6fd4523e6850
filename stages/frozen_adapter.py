"""A frozen adapter beside a fine-tune: checkpoints that hold the trained weights as the plain model names them,
with a copy of each (unchanged) adapter, and an adapter re-homed onto the model trained under it."""

from __future__ import annotations


def frozen_prompt_trainer(prompt_dir, copies: dict | None = None):
    """A Trainer whose checkpoints hold the full base weights, not just the frozen prompt.

    The Trainer saves a PeftModel as its adapter alone, which is right for prompt tuning but would
    lose every trained weight of ProMoT stage 2 (and break resume). Everything else stays the Trainer's.
    The prompt never changes, so each checkpoint gets a copy of the adapter it came from (`prompt_dir`; with
    several prompts, `copies` maps each one's folder in the checkpoint to where it came from).
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
                state_dict = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
            else:  # whole weights on this rank: saved as the base model names them
                state_dict = None
            if any("lora_" in name for name, _ in base.named_parameters()):
                state_dict = plain_weights(base.state_dict() if state_dict is None else state_dict)
            base.save_pretrained(output_dir, state_dict=state_dict, safe_serialization=True)
            for folder, source in (copies or {"adapter": prompt_dir}).items():
                if source is not None:
                    shutil.copytree(source, os.path.join(output_dir, folder), dirs_exist_ok=True)
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


def plain_weights(state_dict: dict) -> dict:
    """A LoRA-wrapped model's weights as the plain base architecture names them: the adapter's own weights left
    out (it is saved as its own folder), each wrapped layer's `.base_layer.` dropped from its name."""
    return {name.replace(".base_layer.", "."): weight for name, weight in state_dict.items() if "lora_" not in name}


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
