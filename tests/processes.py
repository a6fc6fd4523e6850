"""Start the pipeline as a real process and wait for the files it writes (resume and preemption tests)."""

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start(command, **env):
    """Run `command` from the repository root, stdout and stderr together as text."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, timeout=600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def wait_for(path: Path, proc, timeout=240):
    """Poll until `path` exists; fail with the process output if it ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"process ended before {path} appeared:\n{finish(proc)}"
        assert time.monotonic() < deadline, f"timed out waiting for {path}"
        time.sleep(0.05)
