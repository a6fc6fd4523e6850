"""results.csv: one row per (recipe, seed, stage, task, metric); scores in [0, 1].

`stderr` is the score's standard error over the task's n examples (empty where not a per-example mean);
`primary` is 1 for the score a task counts with (its first metric; format_leak rows too) and 0 for its other
metrics (IFEval's loose accuracy, acc_norm), which the report lists but never averages. `paired_stderr`, on a
task's primary score row, is the standard error of (score - the base's score) over the examples both scored, the
base and the stage being scored on the same ones (stages/evaluate.py); 0 on the base's own rows, empty where unknown
(no per-example numbers, or a base evaluated before they were kept). A results.csv written before these columns
existed reads as stderr and paired_stderr unknown, every row primary (pipeline/engine/migrate.py).

A general suite that declares groups (evaluation/suites.py: real_general's knowledge and generation) adds a `group`
column after these, each general task's group, empty on the other rows; a run of a suite without groups (every
embedded one) has no such column, and its results.csv is as before.

After them comes one column per swept field (`k` for `sweep: {dmt.k: [...]}`), holding each swept copy's value as
the recipe file wrote it (`1/256`) and empty for recipes not swept; a file without such columns has no sweep."""

from __future__ import annotations

from pathlib import Path

from core.errors import UserError
from pipeline.engine.migrate import upgrade_results
from pipeline.formats import COLUMNS, GROUP, LEAK, OPTIONAL, SUITE_KINDS


def _schema(column: str) -> bool:
    return column in COLUMNS or column in OPTIONAL or column == GROUP


def _read(path: Path):
    """pandas.read_csv with the swept columns as text: `1/256` and `0.0010` stay as written."""
    import pandas as pd

    header = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, dtype={c: str for c in header if not _schema(c) or c == GROUP})


def read_csv(path: Path):
    """Load results.csv as a DataFrame, in the current format (its folder's version checked, an older one
    upgraded: pipeline/engine/migrate.py)."""
    _check_folder(Path(path).parent)
    return upgrade_results(_read(path))


def _check_folder(run_dir: Path) -> None:
    """Refuse results.csv of a folder whose manifest is of a newer format than this code reads (an unreadable
    manifest is no business of the results')."""
    from pipeline.engine.migrate import read_manifest

    try:
        read_manifest(run_dir / "manifest.json")
    except (OSError, ValueError):
        pass


def swept_columns(frame) -> list[str]:
    """The swept fields of a results table: its columns after the schema's own."""
    return [c for c in frame.columns if not _schema(c)]


def swept_values(frame) -> dict[str, dict]:
    """{recipe: {field: value}} from the swept columns, for every recipe with a value in one ({} for the others)."""
    found: dict[str, dict] = {}
    for column in swept_columns(frame):
        values = frame[["recipe", column]].dropna()
        for recipe, value in values[values[column].astype(str) != ""].drop_duplicates("recipe").itertuples(index=False):
            found.setdefault(str(recipe), {})[column] = value
    return found


def read_results(path: Path):
    """results.csv as a DataFrame, checked first: a file that is not a run's results table (not text, not CSV,
    other columns, a score that is no number in [0, 1], no base-model scores) is one line naming it and the row."""
    import pandas as pd

    from core.typed_yaml import shown

    path = Path(path)
    _check_folder(path.parent)
    try:
        frame = _read(path)
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start}); not a results table") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: empty; expected a results table with columns {','.join(COLUMNS)}") from None
    except pd.errors.ParserError as err:
        raise UserError(f"{path}: not a CSV table ({str(err).strip().splitlines()[-1]})") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or type(err).__name__})") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(
            f"{path}: not a results table: no column {', '.join(missing)} "
            f"(its header: {shown(','.join(map(str, frame.columns)))}; expected {','.join(COLUMNS)})"
        )
    if frame.empty:
        raise UserError(f"{path}: no rows (a run writes them as each stage is evaluated)")
    frame = upgrade_results(frame)

    def refuse(bad, what: str):
        if bad.any():
            row = int(bad.to_numpy().argmax())
            column = what.split()[0]
            value = frame[column].iloc[row]
            value = value.item() if hasattr(value, "item") else value  # a numpy scalar as the plain number it is
            raise UserError(f"{path}:{row + 2}: {column} {shown(value)} {what.split(' ', 1)[1]}")

    score, seed = pd.to_numeric(frame.score, errors="coerce"), pd.to_numeric(frame.seed, errors="coerce")
    for column in ("recipe", "stage"):
        refuse(frame[column].isna(), f"{column} is empty")
    refuse(~frame.suite.isin(SUITE_KINDS), f"suite is not one of {sorted(SUITE_KINDS)}")
    refuse(~score.between(0, 1), "score is not a number in [0, 1]")
    refuse(seed.isna() | (seed != seed.round()), "seed is not a whole number")
    stderr = pd.to_numeric(frame.stderr, errors="coerce")
    refuse(stderr.notna() & ~stderr.between(0, 1), "stderr is not a number in [0, 1]")
    paired = pd.to_numeric(frame.paired_stderr, errors="coerce")
    refuse(paired.notna() & ~paired.between(0, 1), "paired_stderr is not a number in [0, 1]")
    frame = frame.assign(
        score=score,
        seed=seed.astype(int),
        recipe=frame.recipe.astype(str),
        stage=frame.stage.astype(str),
        stderr=stderr,
        paired_stderr=paired,
        primary=pd.to_numeric(frame.primary, errors="coerce").fillna(1).astype(int),
    )
    scores = scored(frame)
    if scores[(scores.stage == "base") & (scores.suite == "general")].empty:
        raise UserError(
            f"{path}: no general scores of the base model (stage base), which every run evaluates "
            "first; not a finished run's results"
        )
    return frame


def scored(frame):
    """The rows a mean is taken over: every task's primary score, not the format leak or a task's other metrics."""
    frame = upgrade_results(frame)  # a table made in memory, as one read from a folder
    return frame[(frame.metric != LEAK) & (frame.primary == 1)]


def summarise(frame):
    """Per (recipe, seed, stage): general mean, target score and format-leak share, and (where every task has
    one) the standard error of general, forgetting and target from the tasks' own standard errors; forgetting's
    from the tasks' paired ones where every general task has one."""
    import pandas as pd

    frame = upgrade_results(frame)
    scores = scored(frame)
    keys = ["recipe", "seed", "stage"]
    parts = []
    for suite in ("general", "target", "domain"):
        rows = scores[scores.suite == suite].groupby(keys, sort=False)
        parts += [rows.score.mean().rename(suite), rows.stderr.agg(_mean_stderr).rename(f"{suite}_se")]
    leak = frame[frame.metric == LEAK].groupby(keys, sort=False).score.mean().rename("format_leak")
    general = scores[scores.suite == "general"].groupby(keys, sort=False)
    paired = general.paired_stderr.agg(_mean_stderr).rename("paired_se")  # NaN unless every task has one
    table = pd.concat([*parts, leak, paired], axis=1).reset_index()
    table = table.dropna(axis=1, how="all")  # a ProMoT run has no domain column, a DMT run no target
    by_run = table.set_index(["recipe", "seed"]).index
    base = table[table.stage == "base"].set_index(["recipe", "seed"])
    table["forgetting"] = table.general - by_run.map(base.general).to_numpy()
    if "general_se" in table.columns:
        # The base and the stage are scored on the same examples: the paired standard error (of each task's
        # per-example differences) counts that pairing. Where a general task lacks it (no per-example numbers, an
        # older run), adding the two variances ignores it, which is conservative (larger).
        unpaired = (table.general_se**2 + by_run.map(base.general_se).to_numpy() ** 2) ** 0.5
        table["forgetting_se"] = table.pop("paired_se").fillna(unpaired) if "paired_se" in table else unpaired
    table = table.drop(columns="paired_se", errors="ignore")
    for group in groups(frame):
        table = _with_group(table, scores[(scores.suite == "general") & (scores[GROUP] == group)], group)
    return table


def groups(frame) -> list[str]:
    """The general suite's groups in results order ([] for a suite without groups)."""
    if GROUP not in frame.columns:
        return []
    return [g for g in dict.fromkeys(frame[GROUP].fillna("").astype(str)) if g]


def _with_group(table, rows, group: str):
    """The group's mean (`knowledge`), its standard error, its forgetting and the forgetting's paired standard
    error (the unpaired bound where a task lacks a paired one), as summarise() computes the whole suite's."""
    import pandas as pd

    keys = ["recipe", "seed", "stage"]
    by = rows.groupby(keys, sort=False)
    part = pd.concat(
        [
            by.score.mean().rename(group),
            by.stderr.agg(_mean_stderr).rename(f"{group}_se"),
            by.paired_stderr.agg(_mean_stderr).rename("paired"),
        ],
        axis=1,
    ).reset_index()
    table = table.merge(part, on=keys, how="left")
    by_run = table.set_index(["recipe", "seed"]).index
    base = table[table.stage == "base"].set_index(["recipe", "seed"])
    table[f"{group}_forgetting"] = table[group] - by_run.map(base[group]).to_numpy()
    unpaired = (table[f"{group}_se"] ** 2 + by_run.map(base[f"{group}_se"]).to_numpy() ** 2) ** 0.5
    table[f"{group}_forgetting_se"] = table.pop("paired").fillna(unpaired)
    return table


def _mean_stderr(stderrs):
    """The standard error of a mean over tasks: sqrt(sum se^2) / tasks; unknown if any task's is."""
    if stderrs.isna().any() or stderrs.empty:
        return float("nan")
    return float((stderrs**2).sum() ** 0.5 / len(stderrs))


def over_seeds(table):
    """Mean and sd over seeds for every (recipe, stage), keeping stage order."""
    from evaluation.suites import GROUPS

    grouped_columns = [c for c in table.columns if c.split("_")[0] in GROUPS]  # summarise's group columns
    columns = [
        c
        for c in [
            "general",
            "general_se",
            "forgetting",
            "forgetting_se",
            "target",
            "target_se",
            "domain",
            "domain_se",
            "format_leak",
        ]
        if c in table.columns
    ] + grouped_columns
    grouped = table.groupby(["recipe", "stage"], sort=False)[columns]
    mean, sd = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
    return mean, sd, grouped.size().rename("seeds")
