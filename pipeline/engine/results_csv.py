"""results.csv as the run engine writes it: each evaluation's rows labelled, checked and written atomically.

The columns, and what each holds, are pipeline/formats.py's and pipeline/reports/results.py's docstring."""

from __future__ import annotations

from pathlib import Path

from core.atomic import write_text
from pipeline.formats import COLUMNS, GROUP, OPTIONAL, SUITE_KINDS


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


def write_csv(path: Path, rows: list[dict], swept: dict[str, dict] | None = None) -> Path:
    """Validate and atomically write results.csv; `swept` ({recipe: {field: value}}, RecipeFile.swept) adds one
    column per swept field."""
    import pandas as pd

    for row in rows:
        check_row(row)
    frame = pd.DataFrame(rows, columns=COLUMNS + list(OPTIONAL))
    frame = frame.fillna({"primary": 1}).astype({"primary": int})
    group_column = _groups_of(frame)
    if group_column is not None:
        frame[GROUP] = group_column
    swept = swept or {}
    for key in dict.fromkeys(key for values in swept.values() for key in values):
        if key in frame.columns:
            raise ValueError(f"swept field {key!r} is also a results.csv column")  # the recipe loader refuses it
        frame[key] = [str(swept[r][key]) if key in swept.get(r, {}) else "" for r in frame.recipe]
    return write_text(path, frame.to_csv(index=False, float_format="%.6f"))


def _groups_of(frame) -> list[str] | None:
    """Each row's group (general rows of a task a suite groups; "" elsewhere); None when no row has one."""
    from evaluation.suites import task_groups

    known = task_groups()
    groups = [known.get(task, "") if suite == "general" else "" for task, suite in zip(frame.task, frame.suite)]
    return groups if any(groups) else None
