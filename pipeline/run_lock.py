"""One run folder, one owner: a lock file holding the owner's PID, cleared when that PID is gone."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import UserError


class RunLocked(UserError):
    """Another live process owns this run folder."""


class RunLock:
    """Context manager that owns `run_dir/run.lock` for the duration of a run."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "run.lock"

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                owner = _read_pid(self.path)
                if owner is not None and _alive(owner) and owner != os.getpid():
                    raise RunLocked(f"{self.path.parent}: run folder is in use by process {owner}; "
                                    f"wait for it or stop it, then rerun") from None
                self.path.unlink(missing_ok=True)  # stale: its owner is gone
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(str(os.getpid()))
            return self
        raise RunLocked(f"{self.path}: could not take the run lock")

    def __exit__(self, *exc):
        if _read_pid(self.path) == os.getpid():
            self.path.unlink(missing_ok=True)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
