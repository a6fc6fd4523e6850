"""Load and save models the safe way: safetensors only, no remote code unless asked."""

from __future__ import annotations

import logging
from contextlib import contextmanager, nullcontext
from pathlib import Path

log = logging.getLogger(__name__)


def load_tokenizer(model_dir: Path | str, trust_remote_code: bool = False):
    """Load a tokenizer from a folder or hub id; a missing pad token falls back to eos."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        log.warning("tokenizer of %s has no pad token; using eos (%r)", model_dir, tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_dir: Path | str, trust_remote_code: bool = False):
    """Load a causal LM and its tokenizer from a folder or hub id; pad falls back to eos."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(model_dir, trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), trust_remote_code=trust_remote_code, use_safetensors=True
    )
    return model, tokenizer


def attach_adapter(model, adapter_dir: Path, trainable: bool = False, name: str = "default"):
    """Attach a saved PEFT adapter (a soft prompt, a LoRA adapter) to a model; frozen unless `trainable`."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=name, is_trainable=trainable)


def wrap_for_training(model, peft_config, stage_name: str):
    """The model wrapped by PEFT for a trainable adapter (LoRA, OSF); a `target_modules` the model lacks is one line."""
    from peft import get_peft_model

    from core.errors import UserError

    try:
        return get_peft_model(model, peft_config)
    except ValueError as error:  # PEFT's "Target modules {...} not found in the base model"
        raise UserError(f"{stage_name}.target_modules: {error}") from None


def trainable_parameters(model) -> int:
    """Parameters that train (a ZeRO-3 shard counts its whole tensor)."""
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad)


def save_prompt(peft_model, out_dir: Path) -> Path:
    """Save a soft prompt as a PEFT adapter; every rank calls it, rank 0 writes."""
    from core import ranks

    with prompt_gathered(peft_model):
        peft_model.save_pretrained(str(out_dir), is_main_process=ranks.is_main())
    return out_dir


@contextmanager
def prompt_gathered(peft_model):
    """The whole soft prompt on every rank, for PEFT to save.

    Under ZeRO-3 each rank holds a shard of the prompt: DeepSpeed gathers it (a collective, so every rank
    enters). PEFT saves a trainable prompt by running the prompt encoder, on rank 0 alone, which under
    ZeRO-3 waits forever for the other ranks (transformers#29980). For prompt tuning that forward returns
    the embedding weight itself, so PEFT reads the weight instead, as it does for a frozen prompt.
    """
    gather = nullcontext()
    if prompt_is_sharded(peft_model):
        import deepspeed

        gather = deepspeed.zero.GatheredParameters(list(peft_model.prompt_encoder.parameters()))
    config = peft_model.active_peft_config
    inference_mode = config.inference_mode
    with gather:
        config.inference_mode = True
        try:
            yield
        finally:
            config.inference_mode = inference_mode


def prompt_is_sharded(peft_model) -> bool:
    """True when ZeRO-3 has split the soft prompt across ranks (its parameters carry a DeepSpeed id)."""
    return any(hasattr(p, "ds_id") for p in peft_model.prompt_encoder.parameters())
