"""Fault injection: record every write point of a process, or SIGKILL it at one of them.

A write point is one of:
  rename  right after an os.replace / os.rename onto a path (an atomic write's commit, a folder moved into place)
  write   halfway through writing a file: the process dies with the first half of the bytes on disk

Python's own files are caught at open(); the writers that bypass it are caught at their Python entry points:
torch.save (C++), safetensors' save_file (Rust, temp file then rename: a kill leaves its temp file) and the
tokenizers library's tokenizer.json (Rust); shutil's copies open their target with open(), then sendfile.
A point is named by its kind, its path relative to the watched folder (a random temp name reduced to a
pattern) and its occurrence, so a rerun of the same command meets the same points in the same order.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sys
from pathlib import Path

_open = io.open
_replace, _rename = os.replace, os.rename
_TEMP = re.compile(r"^(\..+\.)[a-z0-9_]{8}(\.tmp)$")  # core.atomic's temp files
_RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{8}")  # a registry run folder: named by the time it started


class Injector:
    """Watches writes under `root`; in record mode logs each point, in kill mode dies at `target`."""

    def __init__(self, root: Path, log: Path | None = None, target: dict | None = None):
        self.root, self.log, self.target = Path(root).resolve(), log, target
        self.seen: dict[tuple[str, str], int] = {}

    def point(self, kind: str, path) -> bool:
        """Count one point; True when the process must die at it (the caller makes the damage first)."""
        name = self.name(path)
        if name is None:
            return False
        nth = self.seen.get((kind, name), 0)
        self.seen[(kind, name)] = nth + 1
        here = {"kind": kind, "path": name, "nth": nth}
        if self.log is not None:
            with _open(self.log, "a") as handle:
                handle.write(json.dumps(here) + "\n")
        return self.target == here

    def name(self, path) -> str | None:
        """`path` relative to the root with temp names and registry run ids as patterns; None outside the root."""
        if isinstance(path, int):
            path = os.readlink(f"/proc/self/fd/{path}")
        try:
            relative = Path(os.path.abspath(os.fspath(path))).relative_to(self.root)
        except ValueError:
            return None
        return pattern(relative)


def pattern(relative: Path) -> str:
    """A path relative to the watched folder as points name it: temp names and registry run ids as patterns."""
    relative = Path(relative)
    return _RUN_ID.sub("<run>", str(relative.with_name(_TEMP.sub(r"\1*\2", relative.name))))


def die() -> None:
    """SIGKILL this process: no finally, no atexit, no flush, as an operator's kill -9."""
    os.kill(os.getpid(), signal.SIGKILL)


def truncate_to_half(path) -> None:
    """Leave the first half of a finished file, as a writer killed halfway through it would."""
    size = os.path.getsize(path)
    os.truncate(path, size // 2)


class TornFile:
    """A file opened for writing that dies halfway through it when it is closed."""

    def __init__(self, handle):
        self._handle = handle

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        return iter(self._handle)

    def close(self):
        self._handle.flush()
        fd = self._handle.fileno()
        os.ftruncate(fd, os.fstat(fd).st_size // 2)
        die()


def install(injector: Injector) -> None:
    """Patch every writer this project's runs use (call once, before the run)."""

    def opened(file, mode="r", *args, **kwargs):
        handle = _open(file, mode, *args, **kwargs)
        if any(flag in mode for flag in "wax+") and injector.point("write", file):
            return TornFile(handle)
        return handle

    def replaced(src, dst, *args, **kwargs):
        _replace(src, dst, *args, **kwargs)
        if injector.point("rename", dst):
            die()

    def renamed(src, dst, *args, **kwargs):
        _rename(src, dst, *args, **kwargs)
        if injector.point("rename", dst):
            die()

    io.open = opened
    import builtins

    builtins.open = opened
    os.replace, os.rename = replaced, renamed
    _patch_native(injector)


def _wrap_after(owner, attribute: str, target_of, injector: Injector) -> None:
    """A writer that bypasses open(): let it finish, then leave half of its file and die at that point."""
    original = getattr(owner, attribute)

    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        target = target_of(args, kwargs)
        if isinstance(target, (str, os.PathLike)) and injector.point("write", target):
            truncate_to_half(target)
            die()
        return result

    _rebind(original, wrapped)
    setattr(owner, attribute, wrapped)


def _patch_native(injector: Injector) -> None:
    import safetensors.torch
    import torch
    from transformers import tokenization_utils_tokenizers as fast

    _wrap_after(torch, "save", lambda args, kwargs: args[1] if len(args) > 1 else kwargs.get("f"), injector)
    original_save_file = safetensors.torch.save_file

    def save_file(tensors, filename, metadata=None):
        if injector.point("write", filename):  # Rust writes a temp file, then renames it: die in between
            data = safetensors.torch.save(tensors, metadata)
            temp = Path(filename).parent / ".tmpKILLED"
            with _open(temp, "wb") as handle:
                handle.write(data[: len(data) // 2])
            die()
        original_save_file(tensors, filename, metadata)
        if injector.point("rename", filename):
            die()

    _rebind(original_save_file, save_file)
    safetensors.torch.save_file = save_file
    backend = fast.TokenizersBackend
    original_save = backend._save_pretrained

    def save_pretrained(self, save_directory, *args, **kwargs):
        names = original_save(self, save_directory, *args, **kwargs)
        tokenizer_file = names[-1]  # the one file the Rust library wrote
        if injector.point("write", tokenizer_file):
            truncate_to_half(tokenizer_file)
            die()
        return names

    backend._save_pretrained = save_pretrained


def _rebind(original, replacement) -> None:
    """Point every module that imported `original` by name (`from x import f as g`) at the replacement."""
    for module in list(sys.modules.values()):
        names = getattr(module, "__dict__", {})
        for name, value in list(names.items()):
            if value is original:
                setattr(module, name, replacement)
