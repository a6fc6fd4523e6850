"""Which operating-system isolation the program gets, and the command that starts the runner inside it.

Best first: bubblewrap (own user, PID, mount, network, IPC and UTS namespaces; a read-only view of only the
Python installation and /usr; a private /tmp; no capabilities; an empty environment), then util-linux's
`unshare` (own PID, network, IPC and mount namespaces, but the real filesystem, guarded only at the Python
level, which io.FileIO, posix.open, dir_fd and ctypes get past), then none. Code evaluation uses bubblewrap;
it never falls back on its own: unshare only when FORGETLESS_SANDBOX=unshare-weaker says so, none only when the
recipe says `evaluation.unsafe_code_execution`. Else it refuses, naming both.
Every mode adds the runner's own layers: resource limits and the seccomp filter (seccomp.py).
"""

from __future__ import annotations

import enum
import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SANDBOX_DIR = Path(__file__).resolve().parent
MOUNTED_DIR = "/sandbox"  # where bubblewrap shows the runner's folder (read-only)
NOBODY = "65534"
FORCE_VARIABLE = "FORGETLESS_SANDBOX"
WEAKER = "unshare-weaker"  # FORCE_VARIABLE's value that opts in to the unshare fallback: the name says what it is
MISSING = (
    "code evaluation needs bubblewrap, which does not work here: install the 'bubblewrap' package "
    f"(apt-get install bubblewrap); or set {FORCE_VARIABLE}={WEAKER} to accept unshare's weaker isolation "
    "(the real filesystem, writes outside its folder stopped only by Python-level guards that ctypes, "
    "io.FileIO and posix.open get past); or set evaluation.unsafe_code_execution: true to run "
    "model-written code with no isolation"
)


class Mode(str, enum.Enum):
    BUBBLEWRAP = "bubblewrap"
    UNSHARE = "unshare"
    NONE = "none"


class SandboxUnavailable(RuntimeError):
    """No isolation works on this machine and unisolated code execution was not allowed."""


@dataclass(frozen=True)
class Isolation:
    """A way to start the runner: `command` runs runner.py, whose protocol is on its stdin and stdout."""

    mode: Mode
    command: tuple[str, ...]

    @property
    def private_tmp(self) -> bool:
        """Whether the runner gets a /tmp of its own (else the judge makes it a folder and removes it)."""
        return self.mode is Mode.BUBBLEWRAP


def _python() -> str:
    return os.path.realpath(sys.executable)


def _bubblewrap_prefix(bwrap: str) -> list[str]:
    view = []
    for path in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(path):
            view += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            view += ["--ro-bind", path, path]
    for prefix in {os.path.realpath(sys.base_prefix), os.path.dirname(os.path.dirname(_python()))}:
        if not prefix.startswith("/usr/"):
            view += ["--ro-bind", prefix, prefix]
    return [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--uid",
        NOBODY,
        "--gid",
        NOBODY,
        "--cap-drop",
        "ALL",
        "--clearenv",
        *view,
        "--ro-bind",
        str(SANDBOX_DIR),
        MOUNTED_DIR,
        "--proc",
        "/proc",
        "--ro-bind",
        "/proc/sys",
        "/proc/sys",
        "--dev",
        "/dev",
        "--remount-ro",
        "/dev",
        "--size",
        str(256 << 20),
        "--tmpfs",
        "/tmp",
        "--remount-ro",
        "/",
        "--chdir",
        "/tmp",
        "--setenv",
        "HOME",
        "/tmp",
        "--setenv",
        "TMPDIR",
        "/tmp",
        "--setenv",
        "LANG",
        "C.UTF-8",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--",
    ]


def _unshare_prefix(unshare: str) -> list[str]:
    # Root creates the namespaces directly; anyone else needs a user namespace for them (the fallback).
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return [
        unshare,
        *user,
        "--pid",
        "--net",
        "--ipc",
        "--uts",
        "--mount",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--",
    ]


def _prefix(mode: Mode) -> list[str] | None:
    """The command prefix for `mode`, or None where its tool is not installed."""
    if mode is Mode.NONE:
        return []
    tool = shutil.which("bwrap" if mode is Mode.BUBBLEWRAP else "unshare")
    if tool is None:
        return None
    return _bubblewrap_prefix(tool) if mode is Mode.BUBBLEWRAP else _unshare_prefix(tool)


@functools.lru_cache(maxsize=None)
def isolation_for(mode: Mode) -> Isolation | None:
    """`mode`'s isolation if it works here (one probe run, cached), else None."""
    prefix = _prefix(Mode(mode))
    if prefix is None:
        return None
    runner = f"{MOUNTED_DIR}/runner.py" if mode is Mode.BUBBLEWRAP else str(SANDBOX_DIR / "runner.py")
    if mode is not Mode.NONE:
        try:
            probe = subprocess.run([*prefix, _python(), "-I", "-S", "-c", "pass"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if probe.returncode != 0:
            return None
    return Isolation(Mode(mode), (*prefix, _python(), "-I", "-S", runner))


CHOICES = {Mode.BUBBLEWRAP.value: Mode.BUBBLEWRAP, WEAKER: Mode.UNSHARE, Mode.NONE.value: Mode.NONE}


def forced_mode() -> Mode | None:
    """The mode FORGETLESS_SANDBOX names, or None when it is unset; a value not in CHOICES raises."""
    forced = os.environ.get(FORCE_VARIABLE)
    if not forced:
        return None
    if forced not in CHOICES:
        raise SandboxUnavailable(f"{FORCE_VARIABLE}={forced!r}: must be one of {list(CHOICES)}")
    return CHOICES[forced]


def best_available() -> Isolation:
    """Bubblewrap where it works, else Mode.NONE, or only the mode FORGETLESS_SANDBOX names: `unshare-weaker`
    is the only way to the unshare fallback (the opt-in names its weaker guarantee), `none` shows the refusal.
    The variable can narrow the choice or accept the weaker one; it never waives the refusal of none."""
    forced = forced_mode()
    if forced is not None:
        return isolation_for(forced) or isolation_for(Mode.NONE)
    return isolation_for(Mode.BUBBLEWRAP) or isolation_for(Mode.NONE)


_policy = {"allow_unisolated": False}


def allow_unisolated(allowed: bool) -> None:
    """Set by the recipe's `evaluation.unsafe_code_execution`; off by default."""
    _policy["allow_unisolated"] = bool(allowed)


def chosen() -> Isolation:
    """The isolation code evaluation uses; raises SandboxUnavailable rather than run code unisolated, or in the
    weaker fallback, by accident. Where the recipe waived isolation altogether, unshare still beats none."""
    isolation = best_available()
    if isolation.mode is Mode.NONE:
        if not _policy["allow_unisolated"]:
            raise SandboxUnavailable(MISSING)
        if forced_mode() is None:
            isolation = isolation_for(Mode.UNSHARE) or isolation
    return isolation
