"""Atomic file writes: temp file, fsync, rename. A crash never leaves a half-written file behind.

A writer killed between creating its temp file and the rename leaves `.<name>.<8 chars>.tmp` behind (and
safetensors, writing weights the same way, `.tmp<6 chars>`): `remove_leftovers` clears those on the next
start, under the same lock the writers hold. The file gets the mode a plain `open()` would give it (0666 less
the umask), not mkstemp's 0600, so a shared registry stays shared.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

LEFTOVER = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # mkstemp: prefix ".<name>.", 8 random characters, ".tmp"
# safetensors (Rust) writes weights to ".tmp" plus 6 random characters beside the file, then renames it
WEIGHTS_LEFTOVER = re.compile(r"^\.tmp[A-Za-z0-9]{6}$")


def write_text(path: Path, text: str) -> Path:
    """Write `text` to `path` so readers see either the old file or the whole new one."""
    return write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> Path:
    """Write bytes atomically: temp file in the same folder, fsync, rename, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def write_json(path: Path, data) -> Path:
    """Atomically write pretty, key-sorted JSON."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def current_umask() -> int:
    """This process's umask, read without changing it (Linux /proc), else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_leftovers(folder: Path, recursive: bool = True) -> list[Path]:
    """Delete the temp files killed writers left in `folder` (call with the folder's lock held); returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    hidden = folder.rglob(".*") if recursive else folder.glob(".*")
    found = [p for p in hidden if (LEFTOVER.match(p.name) or WEIGHTS_LEFTOVER.match(p.name)) and p.is_file()]
    for path in found:
        path.unlink(missing_ok=True)
    return found


def seal_tree(folder: Path, skip: tuple[str, ...] = ()) -> None:
    """Give every file under `folder` (but not its entries named in `skip`) the mode open() would, then fsync the
    files and folders: what a marker written next promises is readable by the umask's users, and on disk even
    if the machine loses power. safetensors writes weights through a 0600 temp file, hence the mode."""
    mode = 0o666 & ~current_umask()
    for top, folders, files in os.walk(folder):
        if top == str(folder):
            folders[:] = [name for name in folders if name not in skip]
            files = [name for name in files if name not in skip]
        for name in files:
            fd = os.open(os.path.join(top, name), os.O_RDONLY)
            try:
                os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(top))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
