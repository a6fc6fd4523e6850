"""The target task's data: training rows, the held-out test suite, its answer labels and fingerprints."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from data_recipes.catalog import EMBEDDED_PREFIX

log = logging.getLogger(__name__)
FINAL_ANSWER = re.compile(r"####\s*\S")


@dataclass
class TargetData:
    """Everything the stages and the evaluation need to know about the target task."""

    train: object  # datasets.Dataset with prompt/completion
    suite: object  # evaluation.suites.Suite of kind "target"; a user's task has one once write_suite ran
    labels: list[str]
    counts: dict = field(default_factory=dict)  # rows per source
    fingerprints: dict = field(default_factory=dict)  # sha256 per source
    dropped: dict = field(default_factory=dict)  # bad rows dropped per source (on_bad_rows: skip)
    scoring: dict = field(default_factory=dict)  # how the test answers are scored: scorer, max_answer_tokens
    test: object = None  # a user's held-out rows (datasets.Dataset), written by write_suite
    test_fingerprint: str = ""  # the content of the rows the target is scored on
    config: object = None

    def write_suite(self, data_dir: Path) -> None:
        """Write the held-out rows and their lm-eval task YAML into data_dir (nothing for an embedded target)."""
        if self.test is not None:
            self.suite = _local_suite(
                self.config, self.test, Path(data_dir), self.scoring["scorer"], self.scoring["max_answer_tokens"]
            )


def load_target(config, tokenizer) -> TargetData:
    """Load the target task from the embedded generator or from the user's files / hub id; writes nothing."""
    from data_recipes.catalog import load_source, rows_fingerprint

    train, train_print, dropped_train = load_source(config.source("train"), tokenizer)
    prints, dropped = {config.train: train_print}, {}
    if dropped_train:
        dropped[config.train] = dropped_train
    if config.train.startswith(EMBEDDED_PREFIX):
        return TargetData(
            train=train,
            suite=_embedded_suite(config.train),
            labels=_labels(config),
            counts={config.train: len(train)},
            fingerprints=prints,
            test_fingerprint=f"{config.train}:test:{config.test_rows}",
            config=config,
        )
    if config.test:
        test, prints[config.test], dropped_test = load_source(config.source("test"), tokenizer)
        if dropped_test:
            dropped[config.test] = dropped_test
    else:  # no test data given: hold out a fixed, seeded slice of the training file
        split = train.train_test_split(test_size=min(config.test_rows, len(train) // 5 or 1), seed=0)
        train, test = split["train"], split["test"]
    from evaluation.suites import DEFAULT_ANSWER_TOKENS

    scorer = target_scorer(config, test)
    tokens = config.max_answer_tokens or DEFAULT_ANSWER_TOKENS[scorer]
    log.info("target %s: %d test rows scored by %s, up to %d answer tokens", config.name, len(test), scorer, tokens)
    return TargetData(
        train=train,
        suite=None,
        labels=_labels(config),
        counts={"train": len(train), "test": len(test)},
        fingerprints=prints,
        dropped=dropped,
        scoring={"scorer": scorer, "max_answer_tokens": tokens},
        test=test,
        test_fingerprint=rows_fingerprint(test.to_list()),
        config=config,
    )


def target_scorer(config, test) -> str:
    """The scorer `target.scorer` names, or for auto the one the test answers call for."""
    if config.scorer != "auto":
        return config.scorer
    if {"test", "entry_point"} <= set(test.column_names):
        return "code"
    answers = [answer.strip() for answer in test["completion"]]
    if answers and all(FINAL_ANSWER.search(answer) for answer in answers):
        return "math"
    if config.labels and answers and all(answer in config.labels for answer in answers):
        return "label"
    return "exact"


def _labels(config) -> list[str]:
    from embedded.tasks import TARGET_LABELS

    task = config.train[len(EMBEDDED_PREFIX) :] if config.train.startswith(EMBEDDED_PREFIX) else None
    return list(config.labels) or list(TARGET_LABELS.get(task, []))


def _embedded_suite(source: str):
    from evaluation.suites import SUITES

    task = f"embedded_{source[len(EMBEDDED_PREFIX) :]}"
    suite = next((s for s in SUITES.values() if s.suite_kind == "target" and task in s.tasks), None)
    if suite is None:
        raise ValueError(f"target.train: no embedded target suite for {source!r}")
    return suite


def _local_suite(config, test, data_dir: Path, scorer: str, tokens: int):
    """Write the held-out rows as JSONL and an lm-eval task YAML for them into the run folder."""
    from core.atomic import write_text
    from evaluation.suites import local_task_suite

    test_file = data_dir / f"{config.name}_test.jsonl"
    columns = ["prompt", "completion"] + (["test", "entry_point"] if scorer == "code" else [])
    lines = (json.dumps({c: r[c] for c in columns}) + "\n" for r in test)
    write_text(test_file, "".join(lines))
    # A folder of its own: lm-eval loads every YAML in the folder it is given.
    return local_task_suite(
        config.name, test_file, data_dir / "lm_eval_tasks", "target", max_gen_toks=tokens, scorer=scorer
    )


def tagged_targets(targets: list[TargetData]) -> dict:
    """Several targets as training sources: each target's rows under its own name, with a `task` column naming it,
    and all of them, in the recipe's order, as "target" (multi-task ProMoT's stage 2 mixes the tasks)."""
    from datasets import concatenate_datasets

    tagged = {t.config.name: t.train.add_column("task", [t.config.name] * len(t.train)) for t in targets}
    return {**tagged, "target": concatenate_datasets(list(tagged.values()))}
