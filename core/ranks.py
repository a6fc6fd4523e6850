"""Who does what when one run is several processes (accelerate launch, torchrun, deepspeed): rank 0 writes.

Every rank trains (the Trainer splits the batch and syncs gradients); rank 0 alone decides what to skip,
evaluates, and writes the lock, manifest, markers, results and report. A single `pipeline run` is rank 0 of 1.
"""

from __future__ import annotations

import os
from datetime import timedelta

# Rank 0 evaluates alone while the other ranks wait at a barrier; a real evaluation can outlast
# torch's default collective timeout (10 min for NCCL), which would kill the waiting ranks.
BARRIER_TIMEOUT = timedelta(hours=2)


def state():
    """accelerate's process state; the first call joins the process group the launcher set up."""
    import torch
    from accelerate import PartialState

    # Same `cpu` as TrainingArguments(use_cpu=...): with cpu=False on a CPU-only machine accelerate
    # would quietly run every launched process as a separate, non-distributed copy.
    cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return PartialState(cpu=cpu, timeout=BARRIER_TIMEOUT)


def launched() -> tuple[int, int]:
    """(rank, world size) as the launcher set them in the environment, (0, 1) without one. Reads no process
    group and imports no torch, so the CLI can ask it on any path (errors of import-light commands included)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def world_size() -> int:
    """How many processes share each optimizer step (1 without a launcher)."""
    return state().num_processes


def is_main() -> bool:
    """True on the process that writes the run folder."""
    return state().is_main_process


def wait_for_everyone() -> None:
    """Barrier: no rank goes on before all arrive (a no-op in a single process)."""
    state().wait_for_everyone()


def in_group() -> bool:
    """True once this process has joined the launcher's process group."""
    import sys

    if "torch" not in sys.modules:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def leave() -> None:
    """Wait for every rank, then leave the launcher's process group, before this process exits.

    A rank that exits as soon as its own work is done (rank 1 after "nothing to do", say) while the group's
    threads are still up is torn down by the C++ runtime and aborts ("terminate called without an active
    exception", exit -6), failing the launch. A no-op without a process group (a single `pipeline run`).
    """
    import sys

    if "torch" not in sys.modules:  # --help, ls, validate without a launcher: torch was never imported
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        wait_for_everyone()
        dist.destroy_process_group()


def from_main(compute):
    """Call `compute()` on rank 0 only and hand its (picklable) value to every rank."""
    from accelerate.utils import broadcast_object_list

    box = [compute() if is_main() else None]
    if state().num_processes > 1:
        broadcast_object_list(box, from_process=0)
    return box[0]


def max_over_ranks(value: int) -> int:
    """The largest `value` any rank holds: one scalar all-reduce, cheap enough for every training step.

    It never starts a process group: in a single process (or before the launcher's group is joined) it returns
    `value` untouched. The tensor lives where the backend reduces: CPU for gloo, this rank's GPU for NCCL.
    """
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if "nccl" in dist.get_backend() else "cpu"
    box = torch.tensor([value], dtype=torch.int32, device=device)
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return int(box.item())
