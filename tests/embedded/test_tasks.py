"""Synthetic task data: deterministic, disjoint splits, balanced target, valid code."""

import collections

import pytest

from embedded.tasks import (
    ALL_TASKS,
    DOMAIN_TASKS,
    FIXED_TABLE_TASKS,
    GENERAL_TASKS,
    SPLITS,
    TARGET_LABELS,
    TARGET_TASKS,
    make_examples,
    task_kind,
)


def test_registries():
    assert len(GENERAL_TASKS) == 8
    assert set(ALL_TASKS) == set(GENERAL_TASKS) | set(TARGET_TASKS) | set(DOMAIN_TASKS)
    assert [task_kind(t) for t in ("reverse", "letter_rule", "math")] == ["general", "target", "domain"]
    with pytest.raises(KeyError):
        task_kind("nope")


@pytest.mark.parametrize("task", sorted(ALL_TASKS))
def test_make_examples_is_deterministic_and_prefix_stable(task):
    first = make_examples(task, "train", 200)
    assert first == make_examples(task, "train", 200)
    assert first[:50] == make_examples(task, "train", 50)
    for ex in first:
        for text in (ex["prompt"], ex["completion"]):
            assert text == " ".join(text.split()) and text  # single spaces, no padding


@pytest.mark.parametrize("task", sorted(set(ALL_TASKS) - FIXED_TABLE_TASKS))
def test_splits_are_disjoint_and_deduplicated(task):
    prompts = {split: [ex["prompt"] for ex in make_examples(task, split, 300)] for split in SPLITS}
    for split, texts in prompts.items():
        assert len(set(texts)) == len(texts), split
    assert not set(prompts["train"]) & set(prompts["test"])
    assert not set(prompts["train"]) & set(prompts["validation"])
    assert not set(prompts["validation"]) & set(prompts["test"])


def test_target_labels_are_balanced_and_follow_the_rule():
    examples = make_examples("letter_rule", "train", 2000)
    counts = collections.Counter(ex["completion"] for ex in examples)
    assert set(counts) == set(TARGET_LABELS["letter_rule"])
    assert 0.45 < counts["True"] / len(examples) < 0.55
    for ex in examples:
        letter = ex["prompt"].split("hypothesis : ")[1].split()[0]
        assert ex["completion"] == ("True" if letter <= "h" else "False")


def test_code_completions_pass_their_tests():
    for ex in make_examples("code", "test", 200):
        namespace = {}
        exec(ex["completion"], namespace)  # the space-separated completion is valid Python
        exec(ex["test"], namespace)
        assert callable(namespace[ex["entry_point"]])


def test_math_answers_are_gsm8k_style():
    for ex in make_examples("math", "test", 200):
        marker, value = ex["completion"].split()
        assert marker == "####" and int(value) == eval(ex["prompt"].split(":")[1].rstrip("= "))
        assert int(value) >= 0


def test_unknown_task_or_split_is_an_error():
    with pytest.raises(KeyError):
        make_examples("nope", "train", 1)
    with pytest.raises(ValueError):
        make_examples("copy", "dev", 1)


def test_fixed_table_answers_are_right():
    from embedded.tasks import FACTS

    for ex in make_examples("add", "test", 200):
        a, b = ex["prompt"].split()[2::2][:2]
        assert ex["completion"].replace(" ", "") == str(int(a) + int(b))
    for ex in make_examples("fact", "test", 50):
        assert ex["completion"] == FACTS[ex["prompt"].split()[2]]
