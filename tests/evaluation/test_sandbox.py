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


@pytest.fixture(params=["auto", "sockets_only"])
def network_mode(request, monkeypatch):
    """Each network test runs with the best isolation available and with the fallback forced."""
    if request.param == "sockets_only":
        monkeypatch.setattr(sandbox, "network_isolation", lambda: ((), NO_SOCKETS))
    return sandbox.network_isolation()[1]


def test_passing_code():
    result = run_python("def add(a, b):\n    return a + b\nassert add(1, 2) == 3\nprint('done')")
    assert result.passed and result.status == Status.PASSED == "passed"


def test_failing_assert_reports_program_line():
    result = run_python("x = 1\nassert x == 2, 'x is wrong'\n")
    assert not result.passed and result.status == "failed"
    assert result.detail.startswith("AssertionError: x is wrong (program line 2)")


def test_other_exceptions_and_syntax_errors_are_errors():
    assert run_python("1 / 0").status == "error"
    syntax = run_python("def broken(:\n")
    assert syntax.status == "error" and syntax.detail.startswith("SyntaxError")


def test_exiting_early_is_not_a_pass():
    assert run_python("import sys\nsys.exit(0)\nassert False").status == "error"


def test_infinite_loop_times_out():
    result = run_python("while True:\n    pass", timeout_s=1)
    assert result.status == "timeout" and not result.passed


def test_memory_bomb_is_stopped():
    result = run_python("blocks = []\nwhile True:\n    blocks.append(bytearray(50 << 20))", memory_mb=256)
    assert result.status == "error" and "MemoryError" in result.detail


def test_flood_of_output_is_cut():
    assert run_python("while True:\n    print('x' * 100000)", timeout_s=5).status == "error"


def test_cannot_write_or_delete_outside_its_folder(tmp_path):
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
        assert not run_python(code).passed, code
    assert not target.exists() and owned.read_text() == "original"


def test_can_write_inside_its_folder_which_is_removed_afterwards():
    code = ("import tempfile\nopen('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'\n"
            "with tempfile.NamedTemporaryFile('w') as handle:\n    handle.write('ok')\n")
    assert run_python(code).passed
    # TMPDIR is the sandbox folder; the assertion message smuggles its path out.
    folder = run_python("import tempfile\nassert False, tempfile.gettempdir()").detail.split(": ")[1].split(" (")[0]
    assert "forgetless-sandbox-" in folder and not os.path.exists(folder)


def test_environment_secrets_do_not_leak(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "secret")
    assert run_python("import os\nassert 'HF_TOKEN' not in os.environ").passed


def test_cannot_connect_to_a_listening_local_port(network_mode):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        port = server.getsockname()[1]
        result = run_python(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n")
        with pytest.raises(socket.timeout):
            server.accept()  # nothing ever connected
    assert not result.passed and result.status == "error"
    assert result.detail.endswith(f"[{network_mode}]")


def test_socket_creation_is_refused(network_mode):
    result = run_python("import socket\nsocket.socket(socket.AF_UNIX)")
    assert result.status == "error" and "network access is disabled" in result.detail


def test_network_namespace_blocks_loopback_when_available():
    prefix, mode = sandbox.network_isolation()
    if mode != NAMESPACE:
        pytest.skip("this machine cannot create network namespaces; the sandbox falls back to disabling sockets")
    probe = "import socket, sys\nsys.exit(socket.socket().connect_ex(('127.0.0.1', 9)))"
    returncode = subprocess.run([*prefix, sys.executable, "-I", "-c", probe]).returncode
    assert returncode == 101  # ENETUNREACH: the namespace has no usable interface at all
