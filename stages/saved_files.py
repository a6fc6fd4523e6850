"""Is a saved folder whole? Checks the files a load or a resume reads, without loading any weights.

A writer killed halfway leaves a file cut short: JSON that does not parse, a safetensors file shorter than its
header says, a torch file (a zip archive) without the directory written at its end. Each check reads headers
only, so a checkpoint of any size is checked in milliseconds.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

TORCH_SUFFIXES = (".pt", ".pth", ".bin")  # torch.save's zip archives: optimizer, scheduler, RNG, arguments


def file_problem(path: Path) -> str | None:
    """What is wrong with one saved file, or None (files of other kinds are not checked)."""
    path = Path(path)
    reason = _reason(path)
    return f"{path.name}: {reason}" if reason else None


def folder_problem(folder: Path, required: tuple[str, ...] = ()) -> str | None:
    """The first problem of a saved folder: a required file missing, or any file cut short; None if whole."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder}: not found"
    for name in required:
        if not any(folder.glob(name)):
            return f"{name}: missing"
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        reason = _reason(path)
        if reason:
            return f"{path.relative_to(folder)}: {reason}"
    return None


def model_problem(model_dir) -> str | None:
    """Why a saved model folder would not load (config and weights), or None."""
    return folder_problem(Path(model_dir), ("config.json", "*.safetensors"))


def adapter_problem(adapter_dir) -> str | None:
    """Why a saved soft prompt (PEFT adapter folder) would not load, or None."""
    return folder_problem(Path(adapter_dir), ("adapter_config.json", "adapter_model.safetensors"))


def _reason(path: Path) -> str | None:
    try:
        if path.suffix == ".json":
            json.loads(path.read_bytes())
        elif path.suffix == ".safetensors":
            return _safetensors_reason(path)
        elif path.suffix in TORCH_SUFFIXES:
            with zipfile.ZipFile(path):
                pass
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return None


def _safetensors_reason(path: Path) -> str | None:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else None
        if length is None or 8 + length > size:
            return f"cut short inside its header ({size} bytes)"
        header = json.loads(handle.read(length))
    end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"), default=0)
    if 8 + length + end != size:
        return f"{size} bytes, but its header describes {8 + length + end}"
    return None
