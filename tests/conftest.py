"""Under pytest-xdist (make test: one worker per core), each worker runs on a core of its own.

A worker and every process it starts (pipeline runs, DDP ranks) are pinned to that core, so torch's threads never
oversubscribe the machine: the pipeline sizes its threads from the CPU affinity (pipeline/engine/threads.py), and torch's
OpenMP pool from OMP_NUM_THREADS.
"""

import os


def pytest_configure(config):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > len(cores):
        return  # more workers than cores: pinning would only stack them
    os.sched_setaffinity(0, {cores[int(worker.removeprefix("gw")) % len(cores)]})
    os.environ["OMP_NUM_THREADS"] = "1"
