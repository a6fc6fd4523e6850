"""The evaluator's side: a `Program` (untrusted source plus trusted tests) in, a `SandboxResult` out.

`Judge` starts one judge server (judge.py) and talks to it over pipes; each program then costs one runner
start inside the isolation (about 15 ms under bubblewrap). `run_python` is the one-program shortcut.
"""

from __future__ import annotations

import enum
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from evaluation.sandbox.isolation import SANDBOX_DIR, Isolation, chosen


class Status(str, enum.Enum):
    """How a sandboxed run ended."""

    PASSED = "passed"
    FAILED = "failed"  # a test's assertion failed
    TIMEOUT = "timeout"
    ERROR = "error"  # any other exception, crash, early exit or limit


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one sandboxed run; `detail` is one line and ends with the isolation used, in brackets."""

    passed: bool
    status: Status
    detail: str


@dataclass(frozen=True)
class Program:
    """What to check. `source` is untrusted and runs in the runner; `setup` and `test` are trusted and run in
    the judge, calling `entry_point` in the program. With `check`, the test defines `check(candidate)`
    (HumanEval); without it, the test is plain asserts. With no test, passing means running to the end."""

    source: str
    test: str = ""
    entry_point: str | None = None
    setup: str = ""
    check: bool = False

    def __post_init__(self):
        if self.test and not self.entry_point:
            raise ValueError("a program with a test needs the entry_point the test calls")


class Judge:
    """One judge server, for one thread at a time: checks programs one by one, each in a fresh runner."""

    def __init__(self, isolation: Isolation | None = None):
        self.isolation = isolation or chosen()
        self.home = os.path.realpath(tempfile.mkdtemp(prefix="forgetless-judge-"))
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": self.home, "TMPDIR": self.home}
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", str(SANDBOX_DIR / "judge.py")],
            cwd=self.home,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._send({"runner": list(self.isolation.command), "private_tmp": self.isolation.private_tmp})

    def run(self, program: Program, timeout_s: float = 5.0, memory_mb: int = 512) -> SandboxResult:
        """Check one program; the judge gives it timeout_s in all, from its runner's start to the last test."""
        request = {
            "program": program.source,
            "test": program.test,
            "entry_point": program.entry_point,
            "setup": program.setup,
            "check": program.check,
            "timeout_s": timeout_s,
            "memory_mb": memory_mb,
        }
        self._send(request)
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s + 30)
        line = self.process.stdout.readline() if ready else b""
        if not line:
            self.close()
            raise RuntimeError(f"the sandbox's judge stopped answering (exit code {self.process.returncode})")
        reply = json.loads(line)
        status = Status(reply["status"])
        return SandboxResult(status is Status.PASSED, status, f"{reply['detail']} [{self.isolation.mode.value}]")

    def _send(self, message: dict) -> None:
        try:
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            self.close()
            raise RuntimeError("the sandbox's judge is gone") from None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # the judge's loop ends at end of input
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_python(
    source: str,
    test: str = "",
    entry_point: str | None = None,
    *,
    setup: str = "",
    check: bool = False,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    isolation: Isolation | None = None,
) -> SandboxResult:
    """Run one program in the sandbox (see `Program`) and return how it ended."""
    with Judge(isolation) as judge:
        return judge.run(Program(source, test, entry_point, setup, check), timeout_s=timeout_s, memory_mb=memory_mb)
