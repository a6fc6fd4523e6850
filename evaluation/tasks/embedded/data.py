"""Data for the embedded lm-eval tasks: `custom_dataset` builds the test split in memory, offline."""

from __future__ import annotations

import sys
from pathlib import Path

import datasets

TEST_EXAMPLES = 200  # per task; `limit` cuts this down for smoke runs

try:
    from embedded.tasks import make_examples
except ImportError:
    # lm-eval imports this file by path; from the CLI (`--include_path`) outside an installed
    # checkout the repo root is not importable yet, so put it on the path (evaluation/tasks/embedded/..).
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from embedded.tasks import make_examples


def load_embedded_task(task: str, n: int = TEST_EXAMPLES, **_metadata) -> datasets.DatasetDict:
    """Return the `test` split of one embedded task as a DatasetDict (prompt/completion, code: test/entry_point)."""
    # lm-eval calls custom_dataset(**metadata, **dataset_kwargs); metadata (version, config_source,
    # CLI model_args) is not ours to interpret, hence **_metadata.
    # Every field is kept: the code task's scorer needs each row's `test` and `entry_point`.
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(make_examples(task, "test", n))})
