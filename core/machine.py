"""What the machine's CPU kernels are: the instruction set torch's kernels use (AVX512, AVX2, ...).

Another instruction set rounds differently, and over many steps that trains a measurably different model, so runs
record it (manifest.json `launch.cpu`, the embedded base's build.json `cpu`).
"""

from __future__ import annotations

import platform


def cpu_kernels() -> dict:
    """The machine and the instruction set torch's CPU kernels use."""
    import torch

    return {"machine": platform.machine(), "capability": torch.backends.cpu.get_cpu_capability()}
