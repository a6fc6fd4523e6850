"""Build the embedded base with the same CPU kernels on every x86-64 machine with AVX2.

torch picks its kernels for the CPU it runs on (AVX512, AVX2, ...) and MKL its matmul code path, and each rounds a
little differently: over the base's 1200 steps that builds a measurably different model (general exact match 0.975
with one machine's AVX512 kernels, 0.984 with ATen and MKL at AVX2 but MKL not strict, 0.971 with the whole pin
below), and every figure trained from it moves with it. So the
base is built in a fresh interpreter pinned to AVX2: ATen's kernels (ATEN_CPU_CAPABILITY), MKL's conditional
numerical reproducibility (MKL_CBWR) and oneDNN's (ONEDNN_MAX_CPU_ISA), one thread, no GPU. A CPU without AVX2, or
not x86-64, builds with what it has; build.json's `cpu` says which kernels built it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": "1",
    "CUDA_VISIBLE_DEVICES": "",
}


def can_pin() -> bool:
    """True on an x86-64 CPU whose kernels include AVX2."""
    from core.machine import cpu_kernels

    kernels = cpu_kernels()
    return kernels["machine"].lower() in ("x86_64", "amd64") and kernels["capability"] in ("AVX2", "AVX512")


def build_pinned(builder: str, spec, out_dir: Path) -> None:
    """Run `python -m builder SPEC_JSON OUT_DIR` with the pinned kernels; a failed build raises."""
    command = [sys.executable, "-m", builder, json.dumps(dataclasses.asdict(spec)), str(out_dir)]
    code = subprocess.run(command, env={**os.environ, **PINNED}).returncode
    if code:
        raise RuntimeError(
            f"building the embedded base model with pinned kernels failed (exit {code}); its output is above"
        )
