"""The target task's data: training rows, the held-out test suite, its answer labels and fingerprints."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_TRAIN_ROWS = 4000  # default when the embedded task's size is not capped


@dataclass
class TargetData:
    """Everything the stages and the evaluation need to know about the target task."""

    train: object  # datasets.Dataset with prompt/completion
    suite: object  # evaluation.suites.Suite of kind "target"
    labels: list[str]
    counts: dict = field(default_factory=dict)  # rows per source
    fingerprints: dict = field(default_factory=dict)  # sha256 per source


def rows_fingerprint(rows: list[dict]) -> str:
    """Content hash of generated rows, so the manifest pins synthetic data too."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def load_target(config, tokenizer, data_dir: Path) -> TargetData:
    """Load the target task from the embedded generator or from the user's files / hub id."""
    if config.train.startswith(EMBEDDED_PREFIX):
        return _embedded_target(config)
    return _user_target(config, tokenizer, data_dir)


def _embedded_target(config) -> TargetData:
    from datasets import Dataset

    from embedded.tasks import TARGET_LABELS, make_examples
    from evaluation.suites import SUITES

    task = config.train[len(EMBEDDED_PREFIX):]
    rows = make_examples(task, "train", config.train_rows or EMBEDDED_TRAIN_ROWS)
    suite = next((s for s in SUITES.values() if s.suite_kind == "target" and f"embedded_{task}" in s.tasks), None)
    if suite is None:
        raise ValueError(f"target.train: no embedded target suite for task {task!r}")
    labels = list(config.labels) or list(TARGET_LABELS.get(task, []))
    return TargetData(train=Dataset.from_list(rows), suite=suite, labels=labels,
                      counts={config.train: len(rows)}, fingerprints={config.train: rows_fingerprint(rows)})


def _user_target(config, tokenizer, data_dir: Path) -> TargetData:
    from data_recipes.formats import detect_format, to_examples
    from data_recipes.sources import fingerprint, load_rows
    from evaluation.suites import local_task_suite
    from pipeline.atomic import write_text

    raw = load_rows(config.train, split="train")
    fmt = detect_format(raw.column_names) if config.format == "auto" else config.format
    train = to_examples(raw, fmt, tokenizer)
    if config.test:
        test = to_examples(load_rows(config.test, split="test"), fmt, tokenizer)
    else:  # no test data given: hold out a fixed, seeded slice of the training file
        split = train.train_test_split(test_size=min(config.test_rows, len(train) // 5 or 1), seed=0)
        train, test = split["train"], split["test"]
    if config.train_rows:
        train = train.select(range(min(config.train_rows, len(train))))
    test = test.select(range(min(config.test_rows, len(test))))
    test_file = data_dir / f"{config.name}_test.jsonl"
    write_text(test_file, "".join(json.dumps({"prompt": r["prompt"], "completion": r["completion"]}) + "\n"
                                  for r in test))
    suite = local_task_suite(config.name, test_file, data_dir, "target")
    prints = {config.train: _source_fingerprint(config.train, fingerprint)}
    if config.test:
        prints[config.test] = _source_fingerprint(config.test, fingerprint)
    return TargetData(train=train, suite=suite, labels=list(config.labels),
                      counts={"train": len(train), "test": len(test)}, fingerprints=prints)


def _source_fingerprint(source: str, fingerprint) -> str:
    return fingerprint(source) if Path(source).exists() else f"hub:{source}"
