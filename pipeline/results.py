"""results.csv: one row per (recipe, seed, stage, task, metric); scores in [0, 1].

`stderr` is the score's standard error over the task's n examples (empty where not a per-example mean);
`primary` is 1 for the score a task counts with (its first metric; format_leak rows too) and 0 for its other
metrics (IFEval's loose accuracy, acc_norm), which the report lists but never averages. A results.csv written
before these two columns existed reads as stderr unknown, every row primary."""

from __future__ import annotations

from pathlib import Path

from pipeline.atomic import write_text

COLUMNS = ["recipe", "seed", "stage", "task", "suite", "metric", "score", "n"]
OPTIONAL = {"stderr": float("nan"), "primary": 1}  # columns added later: a missing one reads as this value
SUITE_KINDS = {"general", "target", "domain"}


def stage_rows(recipe: str, seed: int, stage: str, rows: list[dict]) -> list[dict]:
    """Label an evaluation's rows with the recipe, seed and stage they belong to."""
    return [{"recipe": recipe, "seed": seed, "stage": stage, **row} for row in rows]


def check_row(row: dict) -> None:
    """Reject a row that breaks the schema; a bug, so it raises."""
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise ValueError(f"results row lacks {missing}: {row}")
    if row["suite"] not in SUITE_KINDS:
        raise ValueError(f"results row has suite {row['suite']!r}, expected one of {sorted(SUITE_KINDS)}")
    if not 0.0 <= float(row["score"]) <= 1.0:
        raise ValueError(f"results row has score {row['score']} outside [0, 1]: {row}")


def write_csv(path: Path, rows: list[dict]) -> Path:
    """Validate and atomically write results.csv."""
    import pandas as pd

    for row in rows:
        check_row(row)
    frame = pd.DataFrame(rows, columns=COLUMNS + list(OPTIONAL))
    frame = frame.fillna({"primary": 1}).astype({"primary": int})
    return write_text(path, frame.to_csv(index=False, float_format="%.6f"))


def read_csv(path: Path):
    """Load results.csv as a DataFrame."""
    import pandas as pd

    return with_optional(pd.read_csv(path))


def with_optional(frame):
    """The frame with the columns added later (OPTIONAL) at their defaults where it lacks them (a new frame; the
    caller's is left as it is)."""
    missing = {column: default for column, default in OPTIONAL.items() if column not in frame.columns}
    return frame.assign(**missing) if missing else frame
