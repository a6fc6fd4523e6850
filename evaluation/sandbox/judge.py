"""The judge: runs each problem's trusted tests in a process the program never shares memory with.

`python -I -S judge.py` serves one evaluator thread (client.py): a line of settings, then one JSON request
a line in and one verdict a line out. For each request it forks a judge child in a session of its own,
which starts a fresh runner inside the isolation (runner.py), hands it the program, and runs the tests
here, calling the program's functions through `Candidate` proxies. Only values cross (wire.py), so the
program can answer calls but never write the verdict. A program passes only when every check returned:
an exit by any route, a crash, a garbled or out-of-order reply is a failure, and each problem's runner is
new, so nothing a program does can shift another's verdict. Standard library only.
"""

import ctypes
import gc
import json
import math
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wire  # noqa: E402

DIGITS = 100_000  # big ints cross (a factorial is a fair answer); far past this, converting them costs too much
PR_SET_CHILD_SUBREAPER = 36


class ProgramGone(BaseException):
    """The runner stopped answering properly. A BaseException, so a test's `except Exception` cannot hide it."""


def _unguessable() -> int:
    """A request's sequence number: random, so a program cannot write its replies ahead of the requests (a count
    would let it forge `{"seq": 1, "value": ...}` before the first call, and race the checks for early replies)."""
    return secrets.randbits(62)


def _builtin_exception(name: str) -> type:
    import builtins

    found = getattr(builtins, str(name), None)
    return found if isinstance(found, type) and issubclass(found, Exception) else RuntimeError


class Channel:
    """The judge's end of one runner's pipes. Replies are read unbuffered by Python, so the judge can tell a
    reply to its own call from bytes the program wrote on its own ahead of time: those fail the program."""

    def __init__(self, requests_fd: int, replies_fd: int):
        self.requests_fd, self.replies_fd = requests_fd, replies_fd
        self.pending, self.seq, self.broken = bytearray(), 0, None

    def send(self, message: dict) -> None:
        data = memoryview(wire.dumps(message))
        try:
            while data:
                data = data[os.write(self.requests_fd, data) :]
        except OSError:
            self.fail("the program ended before its tests finished")

    def receive(self) -> dict | None:
        """The next message; None at end of input."""
        while b"\n" not in self.pending:
            if len(self.pending) > wire.MAX_MESSAGE_BYTES:
                self.fail("the program sent a reply over the size limit")
            chunk = os.read(self.replies_fd, 1 << 16)
            if not chunk:
                return None
            self.pending += chunk
        line, _, rest = bytes(self.pending).partition(b"\n")
        self.pending = bytearray(rest)
        try:
            return wire.parse_message(line)
        except wire.WireError as error:
            self.fail(f"the program garbled its reply ({error})")

    def quiet(self) -> bool:
        """No bytes waiting that the judge has not asked for."""
        ready, _, _ = select.select([self.replies_fd], [], [], 0)
        return not self.pending and not ready

    def fail(self, reason: str):
        self.broken = self.broken or reason
        raise ProgramGone(self.broken)

    def finish(self) -> None:
        """The last round trip: a program that left early, or wrote replies of its own, fails here."""
        if self.broken:
            raise ProgramGone(self.broken)
        if not self.quiet():
            self.fail("the program wrote replies nobody asked for")
        self.seq = _unguessable()  # a reply written before the request cannot carry it
        self.send({"seq": self.seq, "end": True})
        if self.receive() != {"seq": self.seq, "end": True}:
            self.fail("the program did not stay to the end of its tests")

    def call(self, name: str, args: tuple, kwargs: dict):
        if self.broken:
            raise ProgramGone(self.broken)
        if not self.quiet():
            self.fail("the program wrote replies nobody asked for")
        self.seq = _unguessable()  # a reply written before the request cannot carry it
        self.send({"seq": self.seq, "call": name, "args": wire.encode(list(args)), "kwargs": wire.encode(kwargs)})
        reply = self.receive()
        if reply is None:
            self.fail(f"the program ended during a call to {name}")
        if reply.get("seq") != self.seq:
            self.fail("the program sent a reply out of sequence")
        if "raised" in reply:
            raise _builtin_exception(reply["raised"])(f"{reply.get('message', '')} (raised by the program)")
        if "value" not in reply:
            self.fail("the program sent a reply with no value")
        try:
            return wire.decode(reply["value"])
        except wire.WireError as error:
            self.fail(f"the program sent a value that is not one ({error})")


class Candidate:
    """Stands in for the program's function in the tests: each call is a round trip to the runner."""

    def __init__(self, channel: Channel, name: str):
        self.channel, self.__name__ = channel, name

    def __call__(self, *args, **kwargs):
        return self.channel.call(self.__name__, args, kwargs)


def judge(request: dict, requests_fd: int, replies_fd: int, guards: bool) -> dict:
    """One problem, in the judge child: load the program into its runner, run the tests, return the verdict."""
    channel = Channel(requests_fd, replies_fd)
    try:
        channel.send(
            {
                "program": request["program"],
                "memory_mb": request["memory_mb"],
                "cpu_s": math.ceil(request["timeout_s"]) + 1,
                "guards": guards,
            }
        )
        first = channel.receive()
        if first is None:
            return _verdict("error", "the program ended before its tests ran")
        if "error" in first:
            return _verdict("failed" if first.get("failed") else "error", str(first["error"]))
        if first != {"ready": True} or not channel.quiet():
            return _verdict("error", "the program wrote to its reply channel on its own")
        if not request.get("test"):
            channel.finish()
            return _verdict("passed", "ran to the end")
        return _run_tests(request, channel)
    except ProgramGone as gone:
        return _verdict("error", str(gone))


def _run_tests(request: dict, channel: Channel) -> dict:
    entry_point = request["entry_point"]
    candidate = Candidate(channel, entry_point)
    namespace = {"__name__": "__judge__"}
    try:
        if request.get("setup"):
            try:  # HumanEval's prompt holds trusted helpers some tests use (poly, encode_cyclic)
                exec(compile(request["setup"], "<prompt>", "exec"), namespace)
            except Exception:
                pass
        namespace[entry_point] = candidate
        exec(compile(request["test"], "<test>", "exec"), namespace)
        if request.get("check"):
            namespace["check"](candidate)
    except ProgramGone:
        raise
    except BaseException as error:
        if channel.broken:
            raise ProgramGone(channel.broken) from None
        return _verdict("failed" if isinstance(error, AssertionError) else "error", _describe(error))
    channel.finish()  # also when a test swallowed a failure: `broken` stays set
    return _verdict("passed", "passed")


def _verdict(status: str, detail: str) -> dict:
    return {"status": status, "detail": detail.replace("\n", " ")[:500]}


def _describe(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    line = next((f.lineno for f in reversed(frames) if f.filename == "<test>"), None)
    return f"{type(error).__name__}: {error}".rstrip(": ") + (f" (test line {line})" if line else "")


class Sandbox:
    """The runner's zygote inside the isolation, restarted whenever it is gone or did not come back clean."""

    def __init__(self, settings: dict):
        self.settings, self.process, self.control = settings, None, None

    def start_program(self, workdir: str) -> tuple[int, int]:
        """Have the zygote fork a child for one program; returns the judge's ends of its two pipes."""
        for attempt in (1, 2):
            if self.process is None or self.process.poll() is not None:
                self._start()
            to_child, from_judge = os.pipe()
            to_judge, from_child = os.pipe()
            try:
                message = json.dumps({"workdir": workdir, "wipe": self.settings["private_tmp"]}).encode()
                socket.send_fds(self.control, [message], [to_child, from_child])
                return from_judge, to_judge
            except OSError:
                self.stop()
                for fd in (from_judge, to_judge):
                    os.close(fd)
                if attempt == 2:
                    raise
            finally:
                os.close(to_child)
                os.close(from_child)

    def end_program(self) -> bool:
        """Kill the program's child; the zygote answers once it is gone and /tmp is empty. False when it did not
        (it died, or could not wipe): the sandbox is stopped, and the next program starts a fresh one."""
        try:
            self.control.send(b"end")
            ready, _, _ = select.select([self.control], [], [], 10)
            if ready and self.control.recv(64) == b"clean":
                return True
        except OSError:
            pass
        self.stop()
        return False

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cwd = "/" if self.settings["private_tmp"] else tempfile.gettempdir()
        self.process = subprocess.Popen(
            self.settings["runner"],
            stdin=theirs,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
        theirs.close()
        self.control = ours

    def stop(self) -> None:
        if self.process is not None:
            _kill_session(self.process.pid)
            self.process.wait()
            self.control.close()
        self.process = None


def serve_one(request: dict, sandbox: Sandbox) -> dict:
    """One request: a runner child in the sandbox, a judge child here, timeout_s for both, then clean up."""
    private = sandbox.settings["private_tmp"]
    workdir = "/tmp" if private else tempfile.mkdtemp(prefix="forgetless-sandbox-")
    try:
        for attempt in (1, 2):
            requests_fd, replies_fd = sandbox.start_program(workdir)
            try:
                verdict = _judged(request, requests_fd, replies_fd, guards=not private)
            finally:
                clean = sandbox.end_program()
            # A sandbox that died under the program (killed from outside, or by the program where nothing
            # isolates it) gets one more try in a fresh sandbox; the second verdict stands.
            if clean or attempt == 2:
                return verdict
    finally:
        if not private:
            shutil.rmtree(workdir, ignore_errors=True)


def _judged(request: dict, requests_fd: int, replies_fd: int, guards: bool) -> dict:
    """Fork the judge child, give it timeout_s, then kill whatever is left of its session."""
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:
        verdict = _verdict("error", "the judge failed")
        try:
            os.setsid()
            os.close(readable)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            _close_all_but(requests_fd, replies_fd, writable)  # the zygote's control socket among them
            verdict = judge(request, requests_fd, replies_fd, guards)
        except BaseException as error:
            verdict = _verdict("error", f"the judge failed: {type(error).__name__}: {error}")
        finally:
            os.write(writable, json.dumps(verdict).encode())
            os._exit(0)
    os.close(writable)
    os.close(requests_fd)
    os.close(replies_fd)
    try:
        finished = _wait(pid, request["timeout_s"])
        _kill_session(pid)
        if not finished:
            os.waitpid(pid, 0)
            return _verdict("timeout", f"timed out after {request['timeout_s']:g}s")
        with os.fdopen(readable, "rb") as pipe:
            readable = None
            data = pipe.read()
        return json.loads(data) if data else _verdict("error", "the judge failed")
    finally:
        if readable is not None:
            os.close(readable)


def _close_all_but(*kept: int) -> None:
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2 and int(name) not in kept:
            try:
                os.close(int(name))
            except OSError:
                pass


def _wait(pid: int, timeout_s: float) -> bool:
    """Wait for the child at most timeout_s; True when it exited (and is reaped)."""
    deadline = time.monotonic() + timeout_s
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        while True:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if pidfd is None:
                time.sleep(min(left, 0.002))
            else:
                select.select([pidfd], [], [], left)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _kill_session(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _reap() -> None:
    """Collect the runners orphaned to us (we are their subreaper), so none is left as a zombie."""
    while True:
        try:
            done, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not done:
            return


def main() -> None:
    sys.set_int_max_str_digits(DIGITS)
    wire.warm_up()
    gc.freeze()  # forks then share these objects: a collection in a child would copy every page it visits
    try:
        ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    lines = sys.stdin.buffer
    sandbox = Sandbox(json.loads(lines.readline()))
    try:
        for line in lines:
            reply = serve_one(json.loads(line), sandbox)
            sys.stdout.buffer.write(json.dumps(reply).encode() + b"\n")
            sys.stdout.buffer.flush()
            _reap()
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
