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
from pipeline.config import TargetConfig

ROWS = {
    "prompt_completion": lambda i: {"prompt": f"size of item {i}?", "completion": f" small {i}"},
    "alpaca": lambda i: {"instruction": f"Size of item {i}?", "input": "", "output": f"small {i}"},
    "messages": lambda i: {"messages": [{"role": "user", "content": f"Size of item {i}?"},
                                        {"role": "assistant", "content": f"small {i}"}]},
    "sharegpt": lambda i: {"conversations": [{"from": "human", "value": f"Size of item {i}?"},
                                             {"from": "gpt", "value": f"small {i}"}]},
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


@pytest.mark.parametrize("fmt", sorted(ROWS))
def test_right_answers_score_one_in_every_format(fmt, tmp_path):
    data = tmp_path / "target.jsonl"
    data.write_text("".join(json.dumps(ROWS[fmt](i)) + "\n" for i in range(6)))
    target = load_target(TargetConfig(name="mine", train=str(data), test=str(data), format=fmt),
                         build_tokenizer(), tmp_path / "data")
    test_rows = [json.loads(line) for line in (tmp_path / "data" / "mine_test.jsonl").read_text().splitlines()]
    answers = {row["prompt"]: row["completion"] for row in test_rows}
    output = simple_evaluate(model=Oracle(answers), tasks=["mine"], task_manager=task_manager_for(target.suite),
                             bootstrap_iters=0)
    scores = output["results"]["mine"]
    assert scores["exact_match,strip"] == 1.0, (fmt, test_rows[0])
