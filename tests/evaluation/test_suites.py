"""Every registered suite loads in lm-eval; user JSONL files become lm-eval tasks."""

from __future__ import annotations

import json

import pytest
import yaml

from embedded.tasks import GENERAL_TASKS, TARGET_LABELS, make_examples
from evaluation import harness
from evaluation.harness import TaskLoadError, task_manager_for
from evaluation.suites import EMBEDDED_TASKS_DIR, SUITES, Suite, hub_suite, local_task_suite
from evaluation.tasks.embedded.data import TEST_EXAMPLES, load_embedded_task


@pytest.mark.parametrize("name", sorted(n for n in SUITES if n.startswith("embedded_")))
def test_every_registered_suite_builds_its_tasks(name):  # the real suites: tests/evaluation/test_real_suite.py
    suite = SUITES[name]
    assert suite.name == name
    loaded = task_manager_for(suite).load(list(suite.tasks))["tasks"]
    assert sorted(loaded) == sorted(suite.tasks)
    for task in loaded.values():
        docs = task.test_docs()
        assert len(docs) == TEST_EXAMPLES
        assert task.config.generation_kwargs["do_sample"] is False
        # Short answers; a code function needs a few more tokens than the other tasks.
        assert task.config.generation_kwargs["max_gen_toks"] == (24 if task.config.task == "embedded_code" else 16)


def test_registry_matches_the_embedded_tasks():
    assert SUITES["embedded_general"].tasks == [f"embedded_{t}" for t in GENERAL_TASKS]
    assert SUITES["embedded_general"].suite_kind == "general"
    assert SUITES["embedded_target"].labels == TARGET_LABELS["letter_rule"]
    assert [SUITES[n].suite_kind for n in ("embedded_math", "embedded_code", "embedded_domain")] == ["domain"] * 3
    assert SUITES["embedded_domain"].tasks == ["embedded_math", "embedded_code"]


def test_loader_returns_the_deterministic_test_split():
    data = load_embedded_task("reverse", n=5, version=1.0, config_source="x.yaml")
    assert list(data) == ["test"]
    assert data["test"].to_list() == [
        {"prompt": e["prompt"], "completion": e["completion"]} for e in make_examples("reverse", "test", 5)
    ]


def test_cli_group_lists_the_general_tasks():
    group = yaml.safe_load((EMBEDDED_TASKS_DIR / "embedded_general.yaml").read_text())
    assert group["task"] == SUITES["embedded_general"].tasks


def test_suite_rejects_a_bad_kind():
    with pytest.raises(ValueError, match="suite_kind"):
        Suite("x", "generic", ["t"])


def test_hub_suite_indexes_lm_eval_builtin_tasks(monkeypatch):
    calls = []

    class FakeManager:  # the real built-in index takes ~10 s to walk; only the wiring is tested
        all_tasks = ["gsm8k"]

        def __init__(self, **kwargs):
            calls.append(kwargs)

    monkeypatch.setattr(harness, "TaskManager", FakeManager)
    suite = hub_suite(["gsm8k"], "domain")
    assert suite.include_path is None and suite.tasks == ["gsm8k"]
    task_manager_for(suite)
    assert calls == [{}]  # defaults included
    with pytest.raises(TaskLoadError, match="triviaqa"):
        task_manager_for(hub_suite(["triviaqa"], "general"))


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_local_task_suite_writes_a_loadable_task(tmp_path):
    rows = [{"prompt": "copy : a b =", "completion": "a b"}, {"prompt": "copy : c =", "completion": "c"}]
    jsonl = _write_jsonl(tmp_path / "mine.jsonl", rows)
    suite = local_task_suite("my_task", jsonl, tmp_path / "tasks", "target", labels=["a"])
    assert (suite.name, suite.suite_kind, suite.tasks, suite.labels) == ("my_task", "target", ["my_task"], ["a"])
    config = yaml.safe_load((tmp_path / "tasks" / "my_task.yaml").read_text())
    assert config["dataset_kwargs"]["data_files"]["test"] == str(jsonl.resolve())
    task = task_manager_for(suite).load(["my_task"])["tasks"]["my_task"]
    assert [task.doc_to_target(d) for d in task.test_docs()] == ["a b", "c"]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"prompt": "x"}\n', r"bad\.jsonl:1: missing field\(s\) \['completion'\]"),
        ('{"prompt": "x", "completion": "y"}\nnot json\n', r"bad\.jsonl:2: not valid JSON"),
        ("\n", "no examples"),
    ],
)
def test_local_task_suite_names_the_bad_line(tmp_path, content, message):
    (tmp_path / "bad.jsonl").write_text(content)
    with pytest.raises(ValueError, match=message):
        local_task_suite("bad", tmp_path / "bad.jsonl", tmp_path / "tasks", "general")


def test_local_task_suite_rejects_a_path_as_name(tmp_path):
    with pytest.raises(ValueError, match="local task name"):
        local_task_suite("../evil", tmp_path / "x.jsonl", tmp_path, "general")
