"""The target task's data: training rows, the held-out test suite, its answer labels and fingerprints."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from data_recipes.catalog import EMBEDDED_PREFIX


@dataclass
class TargetData:
    """Everything the stages and the evaluation need to know about the target task."""

    train: object  # datasets.Dataset with prompt/completion
    suite: object  # evaluation.suites.Suite of kind "target"
    labels: list[str]
    counts: dict = field(default_factory=dict)  # rows per source
    fingerprints: dict = field(default_factory=dict)  # sha256 per source
    dropped: dict = field(default_factory=dict)  # bad rows dropped per source (on_bad_rows: skip)


def load_target(config, tokenizer, data_dir: Path) -> TargetData:
    """Load the target task from the embedded generator or from the user's files / hub id."""
    from data_recipes.catalog import load_source

    train, train_print, dropped_train = load_source(config.source("train"), tokenizer)
    prints, dropped = {config.train: train_print}, {}
    if dropped_train:
        dropped[config.train] = dropped_train
    if config.train.startswith(EMBEDDED_PREFIX):
        return TargetData(train=train, suite=_embedded_suite(config.train), labels=_labels(config),
                          counts={config.train: len(train)}, fingerprints=prints)
    if config.test:
        test, prints[config.test], dropped_test = load_source(config.source("test"), tokenizer)
        if dropped_test:
            dropped[config.test] = dropped_test
    else:  # no test data given: hold out a fixed, seeded slice of the training file
        split = train.train_test_split(test_size=min(config.test_rows, len(train) // 5 or 1), seed=0)
        train, test = split["train"], split["test"]
    return TargetData(train=train, suite=_local_suite(config, test, data_dir), labels=_labels(config),
                      counts={"train": len(train), "test": len(test)}, fingerprints=prints, dropped=dropped)


def _labels(config) -> list[str]:
    from embedded.tasks import TARGET_LABELS

    task = config.train[len(EMBEDDED_PREFIX):] if config.train.startswith(EMBEDDED_PREFIX) else None
    return list(config.labels) or list(TARGET_LABELS.get(task, []))


def _embedded_suite(source: str):
    from evaluation.suites import SUITES

    task = f"embedded_{source[len(EMBEDDED_PREFIX):]}"
    suite = next((s for s in SUITES.values() if s.suite_kind == "target" and task in s.tasks), None)
    if suite is None:
        raise ValueError(f"target.train: no embedded target suite for {source!r}")
    return suite


def _local_suite(config, test, data_dir: Path):
    """Write the held-out rows as JSONL and an lm-eval task YAML for them into the run folder."""
    from evaluation.suites import local_task_suite
    from pipeline.atomic import write_text

    test_file = data_dir / f"{config.name}_test.jsonl"
    lines = (json.dumps({"prompt": r["prompt"], "completion": r["completion"]}) + "\n" for r in test)
    write_text(test_file, "".join(lines))
    # A folder of its own: lm-eval loads every YAML in the folder it is given.
    return local_task_suite(config.name, test_file, data_dir / "lm_eval_tasks", "target",
                            max_gen_toks=config.max_answer_tokens)
