"""Load and save models the safe way: safetensors only, no remote code unless asked."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def load_model(model_dir: Path | str, trust_remote_code: bool = False):
    """Load a causal LM and its tokenizer from a folder or hub id; pad falls back to eos."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        log.warning("tokenizer of %s has no pad token; using eos (%r)", model_dir, tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), trust_remote_code=trust_remote_code, use_safetensors=True
    )
    return model, tokenizer


def attach_prompt(model, adapter_dir: Path, trainable: bool = False):
    """Attach a saved soft prompt (PEFT adapter) to a model; frozen unless `trainable`."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)


def save_model(model, tokenizer, out_dir: Path) -> Path:
    """Save a plain transformers folder (safetensors) that loads without this tool."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return out_dir
