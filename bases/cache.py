"""Build a base model folder once into the cache, safely when several processes ask at once."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from core.atomic import seal_tree


def build_once(final: Path, manifest: str, what: str, build: Callable[[Path], object], notice: str) -> Path:
    """`final` if it holds `manifest` (written last by a finished build); else build it under an exclusive lock.

    The build writes into a temporary sibling that is renamed into place, so a crash never leaves a folder that
    looks finished. Holding the lock, anything left under the name (or a temporary sibling) is a crashed build and
    is removed. A second process waits for the first, saying so on stderr, then finds the folder done.
    """
    if (final / manifest).is_file():
        return final
    root = final.parent
    with open(root / f".{final.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"forgetless: waiting for another process building {what} into {final} (lock {lock.name})",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / manifest).is_file():
            return final
        for stale in [final, *root.glob(f".{final.name}.tmp-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
        print(f"forgetless: {notice} {final}", file=sys.stderr, flush=True)
        build(tmp)
        seal_tree(tmp)  # safetensors writes weights 0600: every file gets the umask's mode, and is fsynced
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; the finished base is as readable as any cache
        os.replace(tmp, final)
    return final
