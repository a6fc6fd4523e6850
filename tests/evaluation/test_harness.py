"""evaluate_suite end to end on a tiny random model: shapes, scoring, errors, per-sample answers."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PromptTuningConfig, get_peft_model

from embedded.tasks import make_examples
from evaluation.format_leak import format_leak_share
from evaluation.harness import TaskLoadError, evaluate_suite
from evaluation.suites import SUITES, Suite, local_task_suite


@pytest.fixture(scope="module")
def model(tiny_llama):
    return tiny_llama(seed=3)


def test_general_suite_returns_one_result_per_task(model, tokenizer):
    model.train()
    torch.manual_seed(123)
    next_draw = torch.rand(3)
    torch.manual_seed(123)
    results = evaluate_suite(model, tokenizer, SUITES["embedded_general"], limit=5)
    # A training run around the evaluation keeps its mode and its random stream.
    assert model.training
    assert torch.equal(torch.rand(3), next_draw)
    assert [r.task for r in results] == SUITES["embedded_general"].tasks
    for r in results:
        assert (r.suite_kind, r.metric, r.filter, r.n) == ("general", "exact_match", "strip", 5)
        assert 0.0 <= r.score <= 1.0
        assert len(r.responses) == 5 and all(isinstance(x, str) for x in r.responses)
        assert all(x == x.strip() for x in r.responses)  # the strip filter's output


def test_exact_match_scores_the_models_own_answers_as_right(model, tokenizer, tmp_path):
    """Feed back the model's answers as targets (half of them corrupted): the score must be 0.5."""
    suite = SUITES["embedded_general"]
    first = evaluate_suite(model, tokenizer, Suite("copy", "general", suite.tasks[1:2], suite.include_path), limit=4)[0]
    prompts = [e["prompt"] for e in make_examples("copy", "test", 4)]
    rows = [
        {"prompt": p, "completion": r if i % 2 == 0 else r + " x"}
        for i, (p, r) in enumerate(zip(prompts, first.responses))
    ]
    jsonl = tmp_path / "copy.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    local = local_task_suite("copy_again", jsonl, tmp_path / "tasks", "general", max_gen_toks=16)
    again = evaluate_suite(model, tokenizer, local)[0]
    assert again.n == 4
    assert again.responses == first.responses  # same greedy decoding, same answers
    assert again.score == 0.5
    assert (again.task, again.suite_kind) == ("copy_again", "general")


def test_prompt_tuned_model_on_target_suite(tiny_llama, tokenizer):
    """A PEFT prompt-tuning model goes through the whole harness (scoring is checked in the trap test)."""
    peft_model = get_peft_model(
        tiny_llama(seed=3), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, prompt_tuning_init="RANDOM")
    )
    results = evaluate_suite(peft_model, tokenizer, SUITES["embedded_target"], limit=3, batch_size=2)
    assert [(r.task, r.suite_kind, r.n) for r in results] == [("embedded_letter_rule", "target", 3)]


def test_unknown_task_raises_naming_it(model, tokenizer):
    suite = Suite("typo", "general", ["embedded_reverse", "embedded_revrse"], SUITES["embedded_general"].include_path)
    with pytest.raises(TaskLoadError, match="embedded_revrse"):
        evaluate_suite(model, tokenizer, suite, limit=1)


def test_broken_task_yaml_raises_naming_the_file(model, tokenizer, tmp_path):
    (tmp_path / "good.yaml").write_text("task: good\ndataset_path: json\n")
    (tmp_path / "broken.yaml").write_text("task: broken\ncustom_dataset: !function nowhere.load\n")
    with pytest.raises(TaskLoadError, match="broken.yaml"):
        evaluate_suite(model, tokenizer, Suite("s", "general", ["good"], str(tmp_path)), limit=1)


def test_format_leak_share_counts_answers_made_only_of_labels():
    labels = ["True", "False"]
    assert format_leak_share([" True", "False ", "f a c", "True story", "true"], labels) == pytest.approx(0.6)
    # As the label scorer reads an answer: any case, without the punctuation around a word.
    assert format_leak_share(["Yes.", "No, no", "Yes it is", "yes!"], ["yes", "no"]) == pytest.approx(0.75)
    assert format_leak_share(["True True", "False True False", "True 3", "", "a True"], labels) == pytest.approx(0.4)
    assert format_leak_share([], labels) == 0.0


def test_format_leak_leaves_out_samples_whose_answer_is_a_label():
    labels = ["True", "False"]
    responses, references = ["True", "True", "a b"], ["False", "c d", "a b"]
    assert format_leak_share(responses, labels, references) == pytest.approx(0.5)


def test_no_git_noise_outside_a_repository(model, tokenizer, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)  # lm-eval runs `git describe` here; outside a repository git complains
    evaluate_suite(model, tokenizer, SUITES["embedded_target"], limit=1)
    assert "not a git repository" not in capfd.readouterr().err
