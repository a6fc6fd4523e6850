"""Named data sources of a recipe file, loaded once and shared by every stage that draws from them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_GENERAL = "embedded:general"  # all seven general tasks of the embedded base, evenly
DEFAULT_EMBEDDED_ROWS = 4000


@dataclass
class SourceConfig:
    """One data source: an embedded task, a local .jsonl/.json/.parquet/.csv file, or a hub id."""

    source: str = field(metadata={"help": "embedded:<task>, embedded:general, a file, or a datasets hub id"})
    rows: int | None = field(default=None, metadata={"help": "cap on rows (embedded: rows to generate)"})
    format: str = field(default="auto", metadata={"help": "prompt_completion, alpaca, messages, sharegpt, gsm8k or auto"})
    split: str = field(default="train", metadata={"help": "split to read"})

    def __post_init__(self):
        if self.rows is not None and self.rows < 1:
            raise ValueError(f"rows: must be >= 1, got {self.rows}")


def rows_fingerprint(rows: list[dict]) -> str:
    """Content hash of generated rows, so the manifest pins synthetic data too."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


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
    return make_examples(source[len(EMBEDDED_PREFIX):], split, n)


def load_source(config: SourceConfig, tokenizer):
    """Load one source as a datasets.Dataset of prompt/completion rows, plus its content fingerprint."""
    from datasets import Dataset

    from data_recipes.formats import detect_format, to_examples
    from data_recipes.sources import fingerprint, load_rows

    if config.source.startswith(EMBEDDED_PREFIX):
        rows = embedded_rows(config.source, config.split, config.rows)
        return Dataset.from_list(rows), rows_fingerprint(rows)
    raw = load_rows(config.source, split=config.split)
    fmt = detect_format(raw.column_names) if config.format == "auto" else config.format
    data = to_examples(raw, fmt, tokenizer, source=config.source)
    if config.rows:
        data = data.select(range(min(config.rows, len(data))))
    try:
        print_ = fingerprint(config.source)
    except OSError:
        print_ = f"hub:{config.source}"
    return data, print_


def known_sources() -> list[str]:
    """Every embedded source name, for validation messages."""
    from embedded.tasks import ALL_TASKS

    return [EMBEDDED_GENERAL] + [EMBEDDED_PREFIX + t for t in ALL_TASKS]
