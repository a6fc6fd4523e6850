"""Hostile programs, tried as an attacker would through the judge that code scoring uses: each fails cleanly.

After every program: the evaluator (this process) is alive, the same judge still passes an honest program
(no verdict shifted), and the judge's sandbox holds exactly the processes it held before (the program left
none behind). The checks on secrets, files and sockets run under bubblewrap, the isolation CI installs;
`.ci/run` sets FORGETLESS_REQUIRE_BWRAP=1, so there a missing bubblewrap fails instead of skipping.
"""

import os
import socket
import subprocess
import sys
import time

import pytest

from evaluation.sandbox import Judge, Mode, Program, isolation_for

TEST = "assert f(2) == 4"  # the honest answer: def f(x): return x * 2
HONEST = Program("def f(x):\n    return x * 2\n", TEST, "f")
TEST_PID = os.getpid()
BWRAP = isolation_for(Mode.BUBBLEWRAP)
needs_bwrap = pytest.mark.skipif(
    BWRAP is None and not os.environ.get("FORGETLESS_REQUIRE_BWRAP"),
    reason="bubblewrap is not installed (apt-get install bubblewrap)",
)

# name -> a program that defines a wrong f, or none, and tries to pass anyway or to do harm.
FORGERS = {
    "posix._exit after defining": "import posix\ndef f(x):\n    return 0\nposix._exit(0)",
    "posix._exit during the call": "def f(x):\n    import posix\n    posix._exit(0)",
    "the runner's exit through frames": (
        "import sys\ndef f(x):\n    return 0\nframe = sys._getframe()\nwhile frame.f_back:\n    frame = frame.f_back\n"
        "frame.f_globals['os']._exit(0)"
    ),
    "libc _exit through ctypes": "import ctypes\ndef f(x):\n    return 0\nctypes.CDLL(None)._exit(0)",
    "sys.exit(0)": "import sys\ndef f(x):\n    return 0\nsys.exit(0)",
    "SystemExit during the call": "def f(x):\n    raise SystemExit(0)",
    "the runner's own sender, then exit": (
        "import os, sys\nsend = sys._getframe(1).f_locals['send']\nsend({'ready': True})\n"
        "send({'seq': 1, 'value': 4})\nsend({'seq': 2, 'end': True})\nos._exit(0)"
    ),
    "fake replies on every descriptor": (
        "import os\nfor fd in range(64):\n    try:\n"
        '        os.write(fd, b\'{"ready": true}\\n{"seq": 1, "value": 4}\\n{"seq": 2, "end": true}\\n\')\n'
        "    except OSError:\n        pass\ndef f(x):\n    return 0"
    ),
    "fake passes on stdout and stderr": (
        'import sys\nprint(\'passed\')\nprint(\'{"status": "passed", "detail": "passed"}\')\n'
        'sys.stderr.write(\'{"status": "passed"}\\n\')\ndef f(x):\n    return 0'
    ),
    "an object equal to everything": "class Any:\n    def __eq__(self, other):\n        return True\ndef f(x):\n    return Any()",
    "an int subclass equal to everything": (
        "class Int(int):\n    def __eq__(self, other):\n        return True\ndef f(x):\n    return Int(0)"
    ),
    "a reply over the size limit": "def f(x):\n    return 'x' * (20 << 20)",
    "a value nested too deep": "def f(x):\n    value = []\n    for _ in range(10000):\n        value = [value]\n    return value",
    "kill the zygote and everything it can see": (
        "import os\nfor pid in (1, os.getppid(), -1):\n    try:\n        os.kill(pid, 9)\n    except OSError:\n"
        "        pass\ndef f(x):\n    return 0"
    ),
    "a fork bomb": "import posix\nwhile True:\n    posix.fork()",
    "threads": "import threading\nthreading.Thread(target=lambda: None).start()\ndef f(x):\n    return 0",
    "a new session and a loop": "import os\nos.setsid()\ndef f(x):\n    while True:\n        pass",
    "the zygote's descriptors and memory": (
        "import os\nfor path in ('/proc/1/fd', '/proc/1/mem'):\n    try:\n        os.listdir(path)\n    except OSError:\n"
        "        pass\nos.open('/proc/1/mem', os.O_RDWR)"
    ),
    "ptrace and process_vm_writev": (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nassert libc.ptrace(16, 1, 0, 0) == 0, 'no ptrace'"
    ),
}


def test_bubblewrap_is_here_where_ci_requires_it():
    if os.environ.get("FORGETLESS_REQUIRE_BWRAP") and BWRAP is None:
        pytest.fail("FORGETLESS_REQUIRE_BWRAP is set but bubblewrap does not work here (apt-get install bubblewrap)")


def descendants(pid: int) -> set[tuple[int, str]]:
    """(pid, start time) of every process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    started = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = open(f"/proc/{name}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(name))
            started[int(name)] = fields[19]
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add((child, started[child]))
            todo.append(child)
    return found


def settled(judge: Judge, expected: set, seconds: float = 5.0) -> set:
    """The judge's processes, once they are back to `expected` (killed processes take a moment to go)."""
    deadline = time.monotonic() + seconds
    while (now := descendants(judge.process.pid)) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return now


@pytest.fixture(
    scope="module", params=[m for m in (Mode.BUBBLEWRAP, Mode.UNSHARE) if isolation_for(m)], ids=lambda mode: mode.value
)
def judge(request):
    with Judge(isolation_for(request.param)) as judge:
        assert judge.run(HONEST).passed
        yield judge
    assert descendants(judge.process.pid) == set()


@pytest.mark.parametrize("name", list(FORGERS))
def test_a_hostile_program_fails_cleanly(judge, name):
    before = descendants(judge.process.pid)
    assert len(before) >= 2  # the isolation tool and the zygote
    result = judge.run(Program(FORGERS[name], TEST, "f"), timeout_s=2)
    assert not result.passed, result.detail
    assert os.getpid() == TEST_PID
    assert judge.run(HONEST).passed  # the next verdict is not shifted
    after = settled(judge, before)
    # Killing the zygote (or a failed wipe) restarts the sandbox: the new one holds the same number of processes.
    assert after == before or len(after) == len(before), (before, after)


def test_a_program_cannot_answer_for_a_later_call():
    # Three calls: the program answers the first honestly and slips a right answer to the second into the pipe.
    source = (
        "import sys\ndef f(x):\n    if x == 1:\n        sys._getframe(1).f_locals['send']({'seq': 2, 'value': 4})\n"
        "    return x * 2 if x == 1 else 0"
    )
    with Judge() as judge:
        assert not judge.run(Program(source, "assert f(1) == 2\nassert f(2) == 4", "f")).passed


@needs_bwrap
def test_no_secret_of_the_machine_is_readable():
    victim = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ, "FORGETLESS_SECRET": "hunter2"}
    )
    # The program reports what it found in a few words (a verdict's detail is cut at 500 characters).
    source = (
        "import os\nfound = []\nfor pid in os.listdir('/proc'):\n    try:\n"
        "        found += [v for v in open(f'/proc/{pid}/environ', 'rb').read().decode().split('\\0')"
        " if v.startswith('FORGETLESS_SECRET')]\n"
        "    except (OSError, ValueError):\n        pass\n"
        "for path in ('/etc/shadow', '/etc/passwd', '/root/.bash_history'):\n    try:\n"
        "        found.append(open(path).read()[:5])\n    except OSError:\n        pass\n"
        "assert False, ' '.join(found[:3] + sorted(os.environ))"
    )
    try:
        with Judge(BWRAP) as judge:
            seen = judge.run(Program(source)).detail
        # The control: run directly, the same program finds the secret.
        control = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True).stderr
    finally:
        victim.kill()
        victim.wait()
    assert "hunter2" not in seen and "root:" not in seen
    assert "hunter2" in control or os.geteuid() != 0  # another user's environ is unreadable anyway
    visible = seen.rsplit(" (program line", 1)[0].split(": ", 1)[1].split()  # nothing found: just the names
    assert set(visible) <= {"HOME", "LANG", "PATH", "PWD", "TMPDIR"}, visible  # set by the sandbox, not inherited


@needs_bwrap
def test_nothing_is_written_outside_its_folder(tmp_path):
    project_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "written-by-sandbox.txt")
    targets = [str(tmp_path / name) for name in ("fileio", "posix", "libc", "system")] + [
        project_file,
        "/tmp/forgetless-escape",
    ]
    source = (
        "import ctypes, io, os, posix\nlibc = ctypes.CDLL(None)\n"
        f"targets = {targets!r}\nfor path in targets:\n"
        "    for attempt in (lambda: io.FileIO(path, 'w').write(b'x'),\n"
        "                    lambda: posix.close(posix.open(path, os.O_CREAT | os.O_WRONLY, 0o644)),\n"
        "                    lambda: libc.close(libc.open(path.encode(), os.O_CREAT | os.O_WRONLY, 0o644)),\n"
        "                    lambda: libc.system(f'touch {path}'.encode()),\n"
        "                    lambda: os.system(f'touch {path}')):\n"
        "        try:\n            attempt()\n        except OSError:\n            pass\n"
    )
    with Judge(BWRAP) as judge:
        assert judge.run(Program(source)).passed  # it ran to the end: every attempt was made
    assert [path for path in targets if os.path.exists(path)] == []


@needs_bwrap
def test_no_socket_reaches_a_listener_outside(tmp_path):
    path = str(tmp_path / "listener.sock")
    with socket.socket(socket.AF_UNIX) as listener, socket.socket() as tcp:
        listener.bind(path)
        listener.listen()
        listener.settimeout(0.2)
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        tcp.settimeout(0.2)
        source = (
            "import _socket\nerrors = []\n"
            f"for family, address in ((_socket.AF_UNIX, {path!r}), (_socket.AF_INET, ('127.0.0.1', {tcp.getsockname()[1]}))):\n"
            "    try:\n        _socket.socket(family, _socket.SOCK_STREAM).connect(address)\n"
            "    except OSError as error:\n        errors.append(error.errno)\n"
            "assert len(errors) == 2, 'connected'"
        )
        with Judge(BWRAP) as judge:
            assert judge.run(Program(source)).passed
        for server in (listener, tcp):
            with pytest.raises(socket.timeout):
                server.accept()


@needs_bwrap
def test_one_program_leaves_nothing_for_the_next():
    plant = (
        "import os\nopen('/tmp/planted', 'w').write('x')\nos.makedirs('/tmp/locked/deep')\nos.chmod('/tmp/locked', 0)\n"
        "try:\n    with open('/tmp/fill', 'wb') as handle:\n        while True:\n"
        "            handle.write(b'x' * (1 << 20))\nexcept OSError:\n    pass\n"
    )
    look = (
        "import os\nassert os.listdir('/tmp') == [], os.listdir('/tmp')\n"
        "open('/tmp/room', 'wb').write(b'x' * (1 << 20))\n"
    )
    with Judge(BWRAP) as judge:
        judge.run(Program(plant))
        assert judge.run(Program(look)).passed
