"""The runner: a zygote inside the isolation (see isolation.py) that forks one fresh child per program. Only
the child ever runs untrusted code; the zygote imports what children need once, so a program costs a fork,
not an interpreter start (about 30 ms under bubblewrap).

Control, from the judge server on a Unix socket at fd 0 (one datagram a message): {"workdir", "wipe"} with two
pipe fds attached starts a child on them; b"end" kills that child, wipes the private /tmp, and answers
b"clean". The zygote is PID 1 of the sandbox's PID namespace, so signals from its children are ignored,
and it is not dumpable, so children cannot open its memory or fds through /proc.

The child's protocol, one JSON object a line (wire.py), on its two pipes, which the program's own prints
never reach (fds 0-2 are /dev/null by then):
  in:  {"program", "memory_mb", "cpu_s", "guards"}   then {"seq", "call", "args", "kwargs"} ... {"seq", "end"}
  out: {"ready": true} or {"error", "failed"}         then {"seq", "value"} or {"seq", "raised", "message"} ...
                                                       and {"seq", "end": true}: still there when the tests ended
It never decides a verdict: all it can send are values. Standard library only: `python -I -S runner.py`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import builtins  # noqa: E402
import ctypes  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402

import seccomp  # noqa: E402
import wire  # noqa: E402

MAX_FILE_BYTES = 16 << 20
PR_SET_DUMPABLE = 4
CAPABILITY_VERSION_3 = 0x20080522
FILTER = seccomp.filter_program() if seccomp.supported() else None
WIPED = ("/tmp",)  # the only writable place under bubblewrap; each child leaves it empty for the next


def main() -> None:
    sys.set_int_max_str_digits(100_000)  # as the judge (judge.DIGITS)
    wire.warm_up()
    gc.freeze()  # forks then share these objects: a collection in a child would copy every page it visits
    control = socket.socket(fileno=os.dup(0))
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(number, signal.SIG_IGN)
    while True:
        message, fds, _, _ = socket.recv_fds(control, 1 << 16, 2)
        if not message or len(fds) != 2:
            os._exit(0)
        run = json.loads(message)
        workdir = run["workdir"]
        pid = os.fork()
        if pid == 0:
            control.close()
            _child(fds[0], fds[1], workdir, libc)
        for fd in fds:
            os.close(fd)
        if control.recv(64) != b"end":
            os._exit(0)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        if run["wipe"] and not _wipe():
            os._exit(0)  # the judge server starts a fresh sandbox
        control.send(b"clean")


def _wipe() -> bool:
    """Empty the private /tmp; False if anything is left (the judge then starts a fresh sandbox)."""
    for folder in WIPED:
        for entry in os.scandir(folder):
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, onerror=_unlock)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass
        if os.listdir(folder):
            return False
    return True


def _unlock(function, path, _):
    """rmtree's error hook: a child may have left a folder without permissions; give them back, try again."""
    os.chmod(os.path.dirname(path), 0o700)
    os.chmod(path, 0o700) if os.path.isdir(path) else None
    function(path)


def _child(requests_fd: int, replies_fd: int, workdir: str, libc) -> None:
    """In the fork: read the program, limit and filter this process, run the program, answer calls; never returns."""
    try:
        requests, send = os.fdopen(requests_fd, "rb"), _sender(replies_fd)
        setup = wire.read_message(requests)
        if setup is None:
            os._exit(0)
        _isolate(setup, workdir, libc)
        namespace = {"__name__": "__main__", "__builtins__": builtins}
        try:
            exec(compile(setup["program"], "<program>", "exec"), namespace)
        except BaseException as error:  # SystemExit too: a program that exits early did not pass
            send({"error": _describe(error), "failed": isinstance(error, AssertionError)})
            os._exit(0)
        send({"ready": True})
        while True:
            request = wire.read_message(requests)
            if request is None:
                os._exit(0)
            send(_answer(namespace, request))
    finally:
        os._exit(0)


def _answer(namespace: dict, request: dict) -> dict:
    seq = request.get("seq")
    if request.get("end"):
        return {"seq": seq, "end": True}
    try:
        function = namespace.get(request.get("call"))
        if not callable(function):
            raise NameError(f"the program defines no function {request.get('call')!r}")
        args = wire.decode(request["args"])
        kwargs = wire.decode(request["kwargs"])
        return {"seq": seq, "value": wire.encode(function(*args, **kwargs))}
    except BaseException as error:
        return {"seq": seq, "raised": type(error).__name__, "message": _describe(error)[:2000]}


def _sender(fd: int):
    def send(message: dict) -> None:
        try:
            data = wire.dumps(message)
        except (wire.WireError, TypeError, ValueError) as error:
            data = wire.dumps({"seq": message.get("seq"), "raised": "TypeError", "message": str(error)[:2000]})
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    return send


def _isolate(setup: dict, workdir: str, libc) -> None:
    """Folder, limits, no capabilities, seccomp; the Python-level guards where the OS gives no mount view."""
    os.chdir(workdir)
    os.environ.update(HOME=workdir, TMPDIR=workdir)  # where tempfile looks first
    memory = setup["memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (setup["cpu_s"], setup["cpu_s"] + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; we want the kill, not a caught OSError
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # root is exempt: seccomp refuses fork and clone anyway
    _drop_capabilities(libc)
    if setup["guards"]:
        _restrict_writes(os.path.realpath(workdir))
    if FILTER:
        seccomp.install(FILTER, libc)


def _drop_capabilities(libc) -> None:
    """Empty every capability set (root in the fallback modes keeps its uid, but no longer its powers)."""
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _restrict_writes(workdir: str) -> None:
    """Without a mount namespace of its own the program sees the real filesystem: refuse, at the Python level,
    any write, removal or rename outside its folder. ctypes, io.FileIO, posix.open and calls with dir_fd get past
    this, which is why unshare is only used on request (FORGETLESS_SANDBOX=unshare-weaker, isolation.py)."""
    import _io
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

    def guarded(function, paths=1):
        def call(*args, **kwargs):
            for path in args[:paths]:
                if not inside(path):
                    refuse(path)
            return function(*args, **kwargs)

        return call

    builtins.open = io.open = _io.open = guarded_open
    os.open, os.mkdir = guarded_os_open, guarded_mkdir
    for name in ("remove", "unlink", "rmdir", "truncate", "chmod", "chown", "utime", "mkfifo", "mknod"):
        setattr(os, name, guarded(getattr(os, name)))
    os.rename, os.replace = guarded(os.rename, 2), guarded(os.replace, 2)
    os.symlink = os.link = None  # a link inside the folder could point outside it


def _describe(error: BaseException) -> str:
    line, frame = None, error.__traceback__  # walked by hand: importing traceback costs 5 ms a start
    while frame is not None:
        if frame.tb_frame.f_code.co_filename == "<program>":
            line = frame.tb_lineno
        frame = frame.tb_next
    where = f" (program line {line})" if line else ""
    return f"{type(error).__name__}: {error}".rstrip(": ").replace("\n", " ") + where


if __name__ == "__main__":
    main()
