"""The sandbox runs generated code in a limited child process; nothing it does reaches this process."""

import os
import socket
import subprocess
import sys

import pytest

from evaluation import sandbox
from evaluation.sandbox import NAMESPACE, NO_SOCKETS, Status, run_python

TEST_PID = os.getpid()


@pytest.fixture(autouse=True)
def test_process_survives():
    yield
    assert os.getpid() == TEST_PID  # the test process was neither replaced nor killed


@pytest.fixture(params=["process", "server"])
def run(request):
    """Every check runs both ways: a fresh interpreter per program (run_python), and a SandboxServer's forked
    child (check_completions), the server started at the first call so the network fixture applies to it."""
    if request.param == "process":
        yield run_python
        return
    servers = []

    def through_server(code, **limits):
        if not servers:
            servers.append(sandbox.SandboxServer())
        return servers[0].run(code, **limits)

    yield through_server
    for server in servers:
        server.close()


@pytest.fixture(params=["auto", "sockets_only"])
def network_mode(request, monkeypatch):
    """Each network test runs with the best isolation available and with the fallback forced."""
    if request.param == "sockets_only":
        monkeypatch.setattr(sandbox, "network_isolation", lambda: ((), NO_SOCKETS))
    return sandbox.network_isolation()[1]


def test_passing_code(run):
    result = run("def add(a, b):\n    return a + b\nassert add(1, 2) == 3\nprint('done')")
    assert result.passed and result.status == Status.PASSED == "passed"


def test_failing_assert_reports_program_line(run):
    result = run("x = 1\nassert x == 2, 'x is wrong'\n")
    assert not result.passed and result.status == "failed"
    assert result.detail.startswith("AssertionError: x is wrong (program line 2)")


def test_other_exceptions_and_syntax_errors_are_errors(run):
    assert run("1 / 0").status == "error"
    syntax = run("def broken(:\n")
    assert syntax.status == "error" and syntax.detail.startswith("SyntaxError")


def test_exiting_early_is_not_a_pass(run):
    assert run("import sys\nsys.exit(0)\nassert False").status == "error"


def test_infinite_loop_times_out(run):
    result = run("while True:\n    pass", timeout_s=1)
    assert result.status == "timeout" and not result.passed


def test_memory_bomb_is_stopped(run):
    result = run("blocks = []\nwhile True:\n    blocks.append(bytearray(50 << 20))", memory_mb=256)
    assert result.status == "error" and "MemoryError" in result.detail


def test_flood_of_output_is_cut(run):
    assert run("while True:\n    print('x' * 100000)", timeout_s=5).status == "error"


def test_cannot_write_or_delete_outside_its_folder(run, tmp_path):
    target, owned = tmp_path / "created.txt", tmp_path / "owned.txt"
    owned.write_text("original")
    attempts = [
        f"open({str(target)!r}, 'w').write('x')",
        f"import pathlib\npathlib.Path({str(owned)!r}).write_text('changed')",
        f"open({str(owned)!r}, 'a').write('more')",
        f"import os\nos.remove({str(owned)!r})",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
        f"import os\nos.close(os.open({str(target)!r}, os.O_CREAT | os.O_WRONLY))",
        "open('../escaped.txt', 'w').write('x')",
    ]
    for code in attempts:
        assert not run(code).passed, code
    assert not target.exists() and owned.read_text() == "original"


def test_can_write_inside_its_folder_which_is_removed_afterwards(run):
    code = ("import tempfile\nopen('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'\n"
            "with tempfile.NamedTemporaryFile('w') as handle:\n    handle.write('ok')\n")
    assert run(code).passed
    # TMPDIR is the sandbox folder; the assertion message smuggles its path out.
    folder = run("import tempfile\nassert False, tempfile.gettempdir()").detail.split(": ")[1].split(" (")[0]
    assert "forgetless-sandbox-" in folder and not os.path.exists(folder)


def test_environment_secrets_do_not_leak(run, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "secret")
    assert run("import os\nassert 'HF_TOKEN' not in os.environ").passed


def test_cannot_connect_to_a_listening_local_port(run, network_mode):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        port = server.getsockname()[1]
        result = run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n")
        with pytest.raises(socket.timeout):
            server.accept()  # nothing ever connected
    assert not result.passed and result.status == "error"
    assert result.detail.endswith(f"[{network_mode}]")


def test_socket_creation_is_refused(run, network_mode):
    result = run("import socket\nsocket.socket(socket.AF_UNIX)")
    assert result.status == "error" and "network access is disabled" in result.detail


def test_network_namespace_blocks_loopback_when_available():
    prefix, mode = sandbox.network_isolation()
    if mode != NAMESPACE:
        pytest.skip("this machine cannot create network namespaces; the sandbox falls back to disabling sockets")
    probe = "import socket, sys\nsys.exit(socket.socket().connect_ex(('127.0.0.1', 9)))"
    returncode = subprocess.run([*prefix, sys.executable, "-I", "-c", probe]).returncode
    assert returncode == 101  # ENETUNREACH: the namespace has no usable interface at all


def test_a_server_gives_each_program_a_fresh_child_and_folder():
    with sandbox.SandboxServer() as server:
        first = ("import os, sys\nopen('left.txt', 'w').write('x')\nos.environ['LEFT'] = '1'\nsys.modules['left'] = 1\n"
                 "assert False, os.getpid()")
        pid = server.run(first).detail.split(": ")[1].split(" ")[0]
        second = ("import os, sys\nassert not os.path.exists('left.txt')\nassert 'LEFT' not in os.environ\n"
                  f"assert 'left' not in sys.modules\nassert os.getpid() != {pid}\n")
        assert server.run(second).passed
        assert server.run("while True:\n    pass", timeout_s=1).status == "timeout"
        assert server.run("assert 1 + 1 == 2").passed  # still serving after a kill


def test_a_program_cannot_reach_the_servers_pipes_or_forge_a_verdict():
    forged = b'{"timed_out": false, "last_line": "", "returncode": 0}\n'
    code = ("import os, sys\nassert sys.stdin.read() == ''\n"
            f"for fd in range(64):\n    try:\n        os.write(fd, {forged!r})\n    except OSError:\n        pass\n"
            "raise RuntimeError('not a pass')\n")
    with sandbox.SandboxServer() as server:
        result = server.run(code)
        assert result.status == "error" and "not a pass" in result.detail
        assert server.run("assert True").passed  # the reply stream was not disturbed
