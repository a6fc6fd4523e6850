"""Named data sources of a recipe file, loaded once and shared by every stage that draws from them."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import NamedTuple

log = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_GENERAL = "embedded:general"  # all seven general tasks of the embedded base, evenly
DEFAULT_EMBEDDED_ROWS = 4000


@dataclass
class SourceConfig:
    """One data source: an embedded task, a local .jsonl/.json/.parquet/.csv file, or a hub id."""

    source: str = field(metadata={"help": "embedded:<task>, embedded:general, a file, or a datasets hub id"})
    rows: int | None = field(default=None, metadata={"help": "cap on rows (embedded: rows to generate)"})
    format: str = field(
        default="auto", metadata={"help": "prompt_completion, alpaca, messages, sharegpt, gsm8k or auto"}
    )
    split: str = field(default="train", metadata={"help": "split to read"})
    on_bad_rows: str = field(
        default="error", metadata={"help": "error, or skip: drop rows that do not convert (counted in the manifest)"}
    )
    revision: str | None = field(
        default=None, metadata={"help": "a hub dataset's branch, tag or commit (None: its default branch)"}
    )

    def __post_init__(self):
        if self.rows is not None and self.rows < 1:
            raise ValueError(f"rows: must be >= 1, got {self.rows}")
        if self.on_bad_rows not in ("error", "skip"):
            raise ValueError(f"on_bad_rows: must be 'error' or 'skip', got {self.on_bad_rows!r}")


class LoadedSource(NamedTuple):
    """A source's prompt/completion rows, its content fingerprint, and how many bad rows were dropped."""

    data: object  # datasets.Dataset
    fingerprint: str
    dropped: int = 0


def rows_fingerprint(rows: list[dict]) -> str:
    """Content hash of generated rows, so the manifest pins synthetic data too."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def tokens_fingerprint(rows, tokenizer, max_length: int, chunk: int = 1000) -> str:
    """Content hash of rows as a training stage sees them: the token ids and loss labels of every row, after its
    format and the chat template rendered it and the tokenizer encoded it (stages/sft_data.py), with its task tag.

    So a stage's key follows the format, the chat template, the tokenizer, a hub dataset's split and revision: any
    of them that changes a token changes the key.
    """
    from stages.sft_data import encode_batch

    digest = hashlib.sha256()
    for start in range(0, len(rows), chunk):
        batch = rows[start : start + chunk]  # datasets.Dataset slice: a dict of columns
        encoded = encode_batch({"prompt": batch["prompt"], "completion": batch["completion"]}, tokenizer, max_length)
        tasks = batch.get("task") or [""] * len(encoded["input_ids"])
        for ids, labels, task in zip(encoded["input_ids"], encoded["labels"], tasks):
            digest.update(json.dumps([ids, labels, task]).encode())
    return digest.hexdigest()


def embedded_rows(source: str, split: str, rows: int | None) -> list[dict]:
    """Generate an embedded source's rows deterministically."""
    from embedded.tasks import GENERAL_TASKS, make_examples

    n = rows or DEFAULT_EMBEDDED_ROWS
    if source == EMBEDDED_GENERAL:
        per_task, extra = divmod(n, len(GENERAL_TASKS))
        out = []
        for i, task in enumerate(GENERAL_TASKS):
            out += make_examples(task, split, per_task + (i < extra))
        return out
    return make_examples(source[len(EMBEDDED_PREFIX) :], split, n)


def load_source(config: SourceConfig, tokenizer) -> LoadedSource:
    """Load one source as prompt/completion rows: the first `rows` rows of it, converted, bad ones per on_bad_rows."""
    from datasets import Dataset

    from data_recipes.formats import detect_format, to_examples
    from data_recipes.sources import fingerprint, load_rows

    if config.source.startswith(EMBEDDED_PREFIX):
        rows = embedded_rows(config.source, config.split, config.rows)
        return LoadedSource(Dataset.from_list(rows), rows_fingerprint(rows))
    raw = load_rows(config.source, split=config.split, revision=config.revision)
    if config.rows:  # the cap first: a bad row past it is never read into training, so it is no error
        raw = raw.select(range(min(config.rows, len(raw))))
    fmt = detect_format(raw.column_names) if config.format == "auto" else config.format
    data = to_examples(raw, fmt, tokenizer, source=config.source, on_bad_rows=config.on_bad_rows)
    dropped = len(raw) - len(data)
    if dropped:
        log.warning(
            "%s: dropped %d of %d rows that do not convert (on_bad_rows: skip)", config.source, dropped, len(raw)
        )
    try:
        print_ = fingerprint(config.source)
    except OSError:  # a hub dataset: its rows are keyed by their token ids (pipeline/engine/plan.py)
        print_ = f"hub:{config.source}" + (f"@{config.revision}" if config.revision else "")
    return LoadedSource(data, print_, dropped)


def known_sources() -> list[str]:
    """Every embedded source name, for validation messages."""
    from embedded.tasks import ALL_TASKS

    return [EMBEDDED_GENERAL] + [EMBEDDED_PREFIX + t for t in ALL_TASKS]
