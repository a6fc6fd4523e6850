"""A user's target task in every format: a model that gives the right answers scores 1.0.

The answers come from an oracle lm-eval model that replies to each prompt with its reference completion,
exactly as a trained model generates it (with the leading space the converters train on). It runs through
the path a run takes: load_target writes the task YAML, lm-eval scores it.
"""

from __future__ import annotations

import json

import pytest
from lm_eval import simple_evaluate
from lm_eval.api.model import LM

from data_recipes.target import load_target
from embedded.tokenizer import build_tokenizer
from evaluation.harness import task_manager_for
from pipeline.recipe.config import TargetConfig

ROWS = {
    "prompt_completion": lambda i: {"prompt": f"size of item {i}?", "completion": f" small {i}"},
    "alpaca": lambda i: {"instruction": f"Size of item {i}?", "input": "", "output": f"small {i}"},
    "messages": lambda i: {
        "messages": [{"role": "user", "content": f"Size of item {i}?"}, {"role": "assistant", "content": f"small {i}"}]
    },
    "sharegpt": lambda i: {
        "conversations": [{"from": "human", "value": f"Size of item {i}?"}, {"from": "gpt", "value": f"small {i}"}]
    },
    "gsm8k": lambda i: {"question": f"What is {i}+1?", "answer": f"{i}+1={i + 1}\n#### {i + 1}"},
}


class Oracle(LM):
    """Answers every prompt with its reference completion, as generated after the prompt."""

    def __init__(self, answers: dict[str, str]):
        super().__init__()
        self.answers = answers

    def generate_until(self, requests, disable_tqdm: bool = False):
        return [self.answers[request.args[0]] for request in requests]

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError


def _score(tmp_path, rows, answer=lambda row: row["completion"], **target):
    """The target's (metric, score, max_gen_toks) when the model answers each test prompt with answer(row)."""
    data = tmp_path / "target.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    loaded = load_target(TargetConfig(name="mine", train=str(data), test=str(data), **target), build_tokenizer())
    loaded.write_suite(tmp_path / "data")
    test_rows = [json.loads(line) for line in (tmp_path / "data" / "mine_test.jsonl").read_text().splitlines()]
    output = simple_evaluate(
        model=Oracle({row["prompt"]: answer(row) for row in test_rows}),
        tasks=["mine"],
        task_manager=task_manager_for(loaded.suite),
        bootstrap_iters=0,
    )
    key = next(k for k in output["results"]["mine"] if "," in k and "_stderr" not in k)
    tokens = output["configs"]["mine"]["generation_kwargs"]["max_gen_toks"]
    return key.split(",")[0], output["results"]["mine"][key], tokens


@pytest.mark.parametrize("fmt", sorted(ROWS))
def test_right_answers_score_one_in_every_format(fmt, tmp_path):
    metric, score, tokens = _score(tmp_path, [ROWS[fmt](i) for i in range(6)], format=fmt)
    # GSM8K answers are scored by value, with room for the reasoning; the rest by exact text.
    assert (metric, score, tokens) == (("math_acc", 1.0, 256) if fmt == "gsm8k" else ("exact_match", 1.0, 64))


def test_labels_are_scored_by_the_answers_first_word(tmp_path):
    rows = [{"prompt": f"is {i} even ?", "completion": " True" if i % 2 == 0 else " False"} for i in range(6)]
    punctuated = lambda row: row["completion"] + ". Because it is."  # noqa: E731
    assert _score(tmp_path, rows, punctuated, labels=["True", "False"]) == ("label_acc", 1.0, 8)
    assert _score(tmp_path, rows, punctuated, scorer="exact")[:2] == ("exact_match", 0.0)


def test_code_rows_are_run_against_their_tests(tmp_path):
    rows = [
        {
            "prompt": f"def add_{i}(a):\n",
            "completion": f"    return a + {i}\n",
            "entry_point": f"add_{i}",
            "test": f"def check(candidate):\n    assert candidate(1) == {1 + i}\n",
        }
        for i in range(4)
    ]
    assert _score(tmp_path, rows) == ("pass@1", 1.0, 512)
    wrong = lambda row: "    return 0\n"  # noqa: E731
    assert _score(tmp_path, rows, wrong, max_answer_tokens=32) == ("pass@1", 0.0, 32)


def test_a_label_answer_is_read_in_any_case():
    from evaluation.domain_scoring import score_label

    assert score_label({"completion": "no"}, ["No, it does not cost money."]) == {"label_acc": 1.0}
    assert score_label({"completion": "yes"}, ["No, it does not."]) == {"label_acc": 0.0}
