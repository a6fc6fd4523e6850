"""The sandbox's ordinary verdicts, in every isolation mode this machine has: pass, fail, error, limits."""

import os

import pytest

from evaluation.sandbox import Judge, Mode, Program, Status, isolation_for, run_python

TEST_PID = os.getpid()
MODES = [mode for mode in Mode if isolation_for(mode) is not None]


@pytest.fixture(autouse=True)
def test_process_survives():
    yield
    assert os.getpid() == TEST_PID  # the test process was neither replaced nor killed


@pytest.fixture(params=MODES, ids=[mode.value for mode in MODES], scope="module")
def judge(request):
    """One judge per isolation mode for the whole file, as check_completions uses them: every program in a
    fresh runner, so nothing one test does reaches the next."""
    with Judge(isolation_for(request.param)) as judge:
        yield judge


def run(judge, source, test="", entry_point=None, **limits):
    return judge.run(Program(source, test, entry_point), **limits)


def test_passing_code(judge):
    result = run(judge, "def add(a, b):\n    return a + b\nprint('done')", "assert add(1, 2) == 3", "add")
    assert result.passed and result.status == Status.PASSED == "passed"
    assert result.detail.endswith(f"[{judge.isolation.mode.value}]")


def test_a_program_without_tests_passes_when_it_runs_to_the_end(judge):
    assert run(judge, "x = 1\nassert x == 1").passed


def test_failing_assert_in_the_tests_is_a_failure(judge):
    result = run(judge, "def add(a, b):\n    return a - b", "assert add(1, 2) == 3, 'wrong sum'", "add")
    assert not result.passed and result.status == "failed"
    assert result.detail.startswith("AssertionError: wrong sum (test line 1)")


def test_failing_assert_in_the_program_reports_its_line(judge):
    result = run(judge, "x = 1\nassert x == 2, 'x is wrong'\n")
    assert result.status == "failed" and result.detail.startswith("AssertionError: x is wrong (program line 2)")


def test_other_exceptions_and_syntax_errors_are_errors(judge):
    assert run(judge, "1 / 0").status == "error"
    syntax = run(judge, "def broken(:\n")
    assert syntax.status == "error" and syntax.detail.startswith("SyntaxError")
    raised = run(judge, "def f(x):\n    raise ValueError('no')", "assert f(1) == 1", "f")
    assert raised.status == "error" and "ValueError: no" in raised.detail


def test_an_exception_the_test_expects_crosses_by_name(judge):
    test = "try:\n    f(-1)\n    assert False, 'no error'\nexcept ValueError:\n    pass\n"
    assert run(judge, "def f(x):\n    if x < 0:\n        raise ValueError(x)\n    return x", test, "f").passed


def test_values_cross_with_their_exact_types(judge):
    source = (
        "def f(kind):\n    return {'list': [1, 2.5, None], 'tuple': (1, 'a'), 'set': {1, 2}, 'dict': {(1, 2): b'x'},"
        " 'complex': 1j, 'nan': float('nan'), 'big': 3 ** 5000, 'bool': True}[kind]"
    )
    test = (
        "assert f('list') == [1, 2.5, None] and type(f('tuple')) is tuple and f('set') == {1, 2}\n"
        "assert f('dict') == {(1, 2): b'x'} and f('complex') == 1j and f('nan') != f('nan')\n"
        "assert f('big') == 3 ** 5000 and f('bool') is True and f(kind='list')[1] == 2.5\n"
    )
    assert run(judge, source, test, "f").passed


def test_exiting_early_is_not_a_pass(judge):
    assert run(judge, "import sys\nsys.exit(0)\ndef f():\n    return 1", "assert f() == 1", "f").status == "error"


def test_infinite_loop_times_out(judge):
    result = run(judge, "def f():\n    while True:\n        pass", "assert f() == 1", "f", timeout_s=1)
    assert result.status == "timeout" and not result.passed


def test_memory_bomb_is_stopped(judge):
    result = run(judge, "blocks = []\nwhile True:\n    blocks.append(bytearray(50 << 20))", memory_mb=256)
    assert result.status == "error" and "MemoryError" in result.detail


def test_flood_of_output_is_stopped(judge):
    assert not run(judge, "while True:\n    print('x' * 100000)", timeout_s=2).passed


def test_can_write_inside_its_folder(judge):
    code = (
        "import tempfile\nopen('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'\n"
        "with tempfile.NamedTemporaryFile('w') as handle:\n    handle.write('ok')\n"
    )
    assert run(judge, code).passed


def test_run_python_is_the_one_program_shortcut():
    assert run_python("def f(x):\n    return x * 2", "assert f(2) == 4", "f").passed
    assert run_python("def f(x):\n    return x * 3", "assert f(2) == 4", "f").status == "failed"


def test_a_test_needs_its_entry_point():
    with pytest.raises(ValueError, match="entry_point"):
        Program("def f(): pass", "assert f() is None")


def test_a_judge_whose_sandbox_died_starts_a_new_one():
    import signal

    with Judge() as judge:
        assert run(judge, "def f():\n    return 1", "assert f() == 1", "f").passed
        os.killpg(judge_sandbox_pid(judge), signal.SIGKILL)  # the isolation tool and the zygote, from outside
        assert run(judge, "def f():\n    return 1", "assert f() == 1", "f").passed


def judge_sandbox_pid(judge) -> int:
    """The judge server's one child: the isolation tool (or the zygote itself, without isolation)."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = open(f"/proc/{name}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == judge.process.pid:
                return int(name)
    raise AssertionError("the judge has no sandbox process")
