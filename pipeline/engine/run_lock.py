"""One run folder, one owner: an OS lock (fcntl.flock) on `run.lock`, held for the whole run.

The kernel holds the lock for the owner's open file and drops it when that process ends, however it ends
(exit, exception, SIGKILL, a machine or container restart), so a lock is never stale and a leftover file
proves nothing: whoever can take the flock owns the folder. The file's text (the owner's pid and host) is
there only for the message another job prints; no PID is trusted or probed. Only rank 0 of a launch takes
the lock (orchestrator.run_recipe); the other ranks never write into the run folder.

The owner deletes the file on release while still holding the lock. A job that opened the file just before
that deletion may then lock the deleted file, so a lock counts only once the locked file is still the one at
`run.lock` (same device and inode); otherwise the job opens the path again.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from core.errors import UserError

NAME = "run.lock"
ATTEMPTS = 50  # opens of the path before giving up: each retry means another job released or replaced it
OWNER_WAIT_S = 1.0  # how long to wait for a just-started owner to write its pid, for the message


class RunLocked(UserError):
    """Another live process owns this run folder."""


class RunLock:
    """Context manager that owns `run_dir/run.lock` for the duration of a run."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / NAME
        self._fd: int | None = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(ATTEMPTS):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as err:  # a read-only or foreign-owned run folder
                raise RunLocked(f"{self.path}: cannot open the run lock ({err.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise RunLocked(f"{self.path}: cannot lock the run folder ({err.strerror})") from None
                owner = _owner(fd)
                os.close(fd)
                raise RunLocked(
                    f"{self.path.parent}: run folder is in use by {owner}; wait for it or stop it, then rerun"
                ) from None
            if _same_file(fd, self.path):
                _write_owner(fd)
                self._fd = fd
                return self
            os.close(fd)  # we locked a file its owner had just deleted on release: open the path again
        raise RunLocked(f"{self.path}: could not take the run lock (the file keeps being replaced)")

    def __exit__(self, *exc):
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):  # delete while still locked: nobody can hold this file now
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # releases the lock


def _same_file(fd: int, path: Path) -> bool:
    """True when the open file `fd` is still the file at `path` (not deleted or replaced since it was opened)."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino)


def _write_owner(fd: int) -> None:
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode(), 0)


def _owner(fd: int) -> str:
    """'process <pid>' (plus ' on <host>' when not this one) as the lock's holder wrote it, for the message."""
    deadline = time.monotonic() + OWNER_WAIT_S
    while True:
        try:
            owner = json.loads(os.pread(fd, 4096, 0).decode())
            pid, host = int(owner["pid"]), str(owner.get("host") or "")
            break
        except (OSError, ValueError, TypeError, KeyError):
            if time.monotonic() >= deadline:  # written by something else, or the holder is still starting
                return "another process"
            time.sleep(0.02)  # the holder locked the file but has not written its pid yet
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"process {pid}{where}"
