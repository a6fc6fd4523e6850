"""The run lock: refuses a live owner, takes over from a dead one, and is released on exit."""

import os
import subprocess
import sys

import pytest

from pipeline.run_lock import RunLock, RunLocked


def test_live_owner_refuses_and_dead_owner_is_taken_over(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "run.lock").write_text(str(sleeper.pid))
        with pytest.raises(RunLocked, match=f"in use by process {sleeper.pid}"):
            with RunLock(tmp_path):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with RunLock(tmp_path):  # its owner is gone now: the stale lock is cleared
        assert (tmp_path / "run.lock").read_text() == str(os.getpid())
    assert not (tmp_path / "run.lock").exists()
