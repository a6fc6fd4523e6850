"""How many CPU threads torch uses: chosen, not left to torch's default of every core.

torch starts one thread per core whatever else runs there. With several processes on one machine (a
CPU launch of N ranks, or other jobs) those threads fight for the same cores: 60 steps took 99.3 s
with the default and 11.7 s with one thread on a busy 2-core machine. The default here is the cores
this process may run on (its CPU affinity) shared out among the processes launched on this machine;
the recipe's `threads:` overrides it (e.g. `threads: 1` on a machine shared with other jobs).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def default_threads() -> int:
    """The cores this process may use, divided among the ranks started on this machine, at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, cores // max(1, local_processes))


def set_threads(setting: int | None) -> int:
    """Apply the recipe's `threads` (None: default_threads()) to torch; returns the count used."""
    import torch

    threads = setting or default_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    log.info(
        "%d CPU thread(s) for torch (%s)",
        threads,
        "threads: in the recipe"
        if setting
        else "the cores this process may use / processes on this machine; set threads: to change",
    )
    return threads
