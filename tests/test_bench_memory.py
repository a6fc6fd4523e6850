"""The memory benchmark's child reports its own peak, not the peak of the process that started it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux only: ru_maxrss carries over there")
def test_a_child_of_a_large_parent_reports_its_own_peak():
    ballast = bytearray(400 << 20)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))  # touch every page: 400 MB resident
    code = (
        "import resource; from bench.memory import peak_rss_mb; "
        "print(peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    own, maxrss = map(float, done.stdout.split())
    assert own < 100, maxrss  # a bare interpreter; ru_maxrss said > 400 here (Linux keeps it through fork + exec)
    del ballast
