"""Evaluation suites: named lists of lm-eval tasks, each marked general, target or domain."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import yaml

EMBEDDED_TASKS_DIR = Path(__file__).resolve().parent / "tasks" / "embedded"
EMBEDDED_GENERAL = ["reverse", "copy", "sort", "add", "count", "fact", "translate"]
LOCAL_MAX_GEN_TOKS = 256  # user tasks: answers are longer than the embedded tasks' few words


class SuiteKind(str, Enum):
    """What a suite measures: retained general ability, the fine-tuned target, or a domain."""

    GENERAL = "general"
    TARGET = "target"
    DOMAIN = "domain"


@dataclass(frozen=True)
class Suite:
    """A set of lm-eval tasks evaluated together; include_path None means lm-eval's own task index."""

    name: str
    suite_kind: str
    tasks: list[str]
    include_path: str | None = None
    labels: list[str] | None = None  # target answer labels, to measure format leak on other suites

    def __post_init__(self):
        if self.suite_kind not in {k.value for k in SuiteKind}:
            raise ValueError(f"Suite {self.name!r}: suite_kind must be one of "
                             f"{[k.value for k in SuiteKind]}, got {self.suite_kind!r}")
        if not self.tasks:
            raise ValueError(f"Suite {self.name!r}: tasks is empty")


def _embedded(name: str, kind: SuiteKind, tasks: list[str], labels=None) -> Suite:
    return Suite(name, kind.value, [f"embedded_{t}" for t in tasks], str(EMBEDDED_TASKS_DIR), labels)


SUITES: dict[str, Suite] = {
    "embedded_general": _embedded("embedded_general", SuiteKind.GENERAL, EMBEDDED_GENERAL),
    "embedded_target": _embedded("embedded_target", SuiteKind.TARGET, ["letter_rule"], ["True", "False"]),
    "embedded_math": _embedded("embedded_math", SuiteKind.DOMAIN, ["math"]),
}


def hub_suite(task_names: list[str], kind: str, name: str | None = None) -> Suite:
    """Build a suite of lm-eval's built-in task names (data from the Hugging Face hub)."""
    return Suite(name or "hub:" + ",".join(task_names), kind, list(task_names), None)


def local_task_suite(name: str, jsonl_path: str | Path, out_dir: str | Path, kind: str,
                     labels: list[str] | None = None, max_gen_toks: int = LOCAL_MAX_GEN_TOKS) -> Suite:
    """Write an lm-eval task YAML for a prompt/completion JSONL file into out_dir and return its Suite."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):  # it names the YAML file and the lm-eval task
        raise ValueError(f"local task name {name!r}: use letters, digits, '_', '.', '-' only")
    jsonl_path = Path(jsonl_path).resolve()
    _check_jsonl(jsonl_path)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "task": name,
        "dataset_path": "json",  # datasets' packaged json builder: local files, no hub access
        "dataset_kwargs": {"data_files": {"test": str(jsonl_path)}},
        "output_type": "generate_until",
        "test_split": "test",
        "doc_to_text": "{{prompt}}",
        "doc_to_target": "{{completion}}",
        "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": max_gen_toks},
        "filter_list": [{"name": "strip", "filter": [{"function": "remove_whitespace"},
                                                     {"function": "take_first"}]}],
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         "ignore_case": False, "ignore_punctuation": False}],
        "metadata": {"version": 1.0, "source": str(jsonl_path)},
    }
    # lm-eval always adds the tokenizer's eos to `until`, so an empty list means "stop at eos".
    header = f"# Written by forgetless for {jsonl_path.name}. Run: lm_eval --include_path {out_dir} --tasks {name}\n"
    (out_dir / f"{name}.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False))
    return Suite(name, kind, [name], str(out_dir), labels)


def _check_jsonl(path: Path) -> None:
    """Fail early, naming file and line, if a row lacks the prompt/completion fields."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such JSONL file")
    rows = 0
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            rows += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            missing = {"prompt", "completion"} - set(row)
            if missing:
                raise ValueError(f"{path}:{lineno}: missing field(s) {sorted(missing)}")
    if rows == 0:
        raise ValueError(f"{path}: no examples")
