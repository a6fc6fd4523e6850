"""Run model-written code so that it can neither forge its verdict, nor escape, nor kill the evaluator.

Three processes: the evaluator (client.py), a judge that runs the trusted tests (judge.py), and for each
program a fresh runner inside OS isolation (isolation.py, runner.py, seccomp.py) that the judge calls
through pipes, passing only plain values (wire.py). The README's "Code evaluation sandbox" section gives
the threat model: what each layer stops, and what it does not.
"""

from evaluation.sandbox.client import Judge, Program, SandboxResult, Status, run_python
from evaluation.sandbox.isolation import (
    Isolation,
    Mode,
    SandboxUnavailable,
    allow_unisolated,
    best_available,
    chosen,
    isolation_for,
)

__all__ = [
    "Isolation",
    "Judge",
    "Mode",
    "Program",
    "SandboxResult",
    "SandboxUnavailable",
    "Status",
    "allow_unisolated",
    "best_available",
    "chosen",
    "isolation_for",
    "run_python",
]
