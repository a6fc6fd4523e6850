"""report.md and report.png from results.csv: forgetting next to target gains, per recipe and stage.

The picture itself is drawn by pipeline.reports.plot."""

from __future__ import annotations

from pathlib import Path

from core.atomic import write_bytes, write_text
from core.errors import UserError
from pipeline.engine.migrate import read_manifest, read_marker, upgrade_results
from pipeline.reports.results import LEAK, over_seeds, read_results, summarise, swept_values


def _cell(mean, sd, seeds) -> str:
    if mean != mean:  # NaN: not measured at this stage
        return "–"
    return f"{mean:.3f} ± {sd:.3f}" if seeds > 1 else f"{mean:.3f}"


def stage_table(mean, sd, seeds) -> str:
    """Markdown: one row per recipe and stage, base first."""
    import pandas as pd

    from pipeline.reports.uncertainty import Z, marker, standard_error

    rows = []
    shown = [c for c in mean.columns if not c.endswith("_se")]
    for (recipe, stage), m in mean.iterrows():
        s, n = sd.loc[(recipe, stage)], int(seeds.loc[(recipe, stage)])
        row = {"recipe": recipe, "stage": stage}
        for c in shown:
            name = c.replace("_", " ") if c.endswith("_forgetting") else c  # a group's: "knowledge forgetting"
            row[name] = _cell(m[c], s[c], n)
            if f"{c}_se" in mean.columns and m[f"{c}_se"] == m[f"{c}_se"]:
                row[f"{name} se"] = f"{m[f'{c}_se']:.3f}"
            if c == "forgetting" or c.endswith("_forgetting"):  # the suite's, or a group's (knowledge_forgetting)
                se = standard_error(m.get(f"{c}_se", float("nan")), s[c], n)
                group = "" if c == "forgetting" else c.removesuffix("_forgetting") + " "
                row[f"{group}forgetting ±{Z:g} se"] = "–" if se != se or stage == "base" else f"{Z * se:.3f}"
                row[f"{group}significant".strip()] = "–" if stage == "base" else marker(m[c], se)
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False)


def task_table(frame) -> str:
    """Markdown: every task's score per recipe and stage (mean over seeds), ± its standard error where known,
    with n; a task's other metrics (primary 0) on rows of their own."""
    scores = upgrade_results(frame)
    scores = scores[scores.metric != LEAK]
    index, columns = ["suite", "task", "metric", "n"], ["recipe", "stage"]
    score = scores.pivot_table(index=index, columns=columns, values="score", aggfunc="mean", sort=False)
    stderr = scores.pivot_table(
        index=index, columns=columns, values="stderr", aggfunc="mean", sort=False, dropna=False
    ).reindex(index=score.index, columns=score.columns)
    cells = score.copy().astype(object)
    for column in score.columns:
        cells[column] = [
            ("–" if m != m else f"{m:.3f}" if s != s else f"{m:.3f} ± {s:.3f}")
            for m, s in zip(score[column], stderr[column])
        ]
    cells.columns = [f"{r}/{s}" for r, s in score.columns]
    return cells.reset_index().to_markdown(index=False)


class TableScores:
    """The report's table over seeds (over_seeds) as the checks' Scores, with the swept values of results.csv."""

    def __init__(self, mean, sd, seeds, swept: dict):
        self.mean, self.sd, self.seeds, self.swept_values = mean, sd, seeds, swept

    def recipes(self) -> list[str]:
        """Recipes in results order."""
        return list(dict.fromkeys(self.mean.index.get_level_values(0)))

    def swept(self, recipe: str) -> dict:
        """The recipe's swept values, from results.csv's swept columns."""
        return self.swept_values.get(recipe, {})

    def final_stage(self, recipe: str) -> str:
        """The recipe's last stage in results order."""
        return self.mean.loc[recipe].index[-1]

    def _cell(self, table, recipe: str, stage: str, column: str) -> float | None:
        if (recipe, stage) not in table.index or column not in table.columns:
            return None
        value = float(table.loc[(recipe, stage), column])
        return None if value != value else value

    def value(self, recipe: str, stage: str, measure: str) -> float | None:
        """Mean over seeds; the general drop is the forgetting's negative."""
        if measure.endswith("general_drop"):  # also a group's: generation_general_drop
            forgetting = self._cell(self.mean, recipe, stage, measure.replace("general_drop", "forgetting"))
            return None if forgetting is None else -forgetting
        return self._cell(self.mean, recipe, stage, measure)

    def se(self, recipe: str, stage: str, measure: str) -> float | None:
        """Standard error over examples and seeds (pipeline/reports/uncertainty.py)."""
        from pipeline.reports.uncertainty import standard_error

        column = measure.replace("general_drop", "forgetting") if measure.endswith("general_drop") else measure
        examples = self._cell(self.mean, recipe, stage, f"{column}_se")
        spread = self._cell(self.sd, recipe, stage, column)
        if spread is None or (recipe, stage) not in self.seeds.index:
            return None
        return standard_error(
            float("nan") if examples is None else examples, spread, int(self.seeds.loc[(recipe, stage)])
        )

    def reference(self, measure: str) -> None:
        """A report compares with no accepted run."""
        return None


def declared_checks(config: dict, mean, sd, seeds, swept: dict, source: str) -> list[str]:
    """The recipe file's `checks:` (from the run's config.yaml) measured: a heading and a table, or nothing."""
    from pipeline.recipe.checks import from_config
    from pipeline.reports.checks import checks_table, measure_check

    checks, report = from_config(config, source)
    if not checks:
        return []
    scores = TableScores(mean, sd, seeds, swept)
    return [f"## {report.checks_title}", checks_table([measure_check(check, scores) for check in checks])]


def _resolved_config(run_dir: Path) -> dict:
    """The run's config.yaml as data ({} when it is missing or unreadable: the report needs results only)."""
    from pipeline.engine.records import run_config

    try:
        config = run_config(run_dir)
    except (UserError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def kept_checkpoints(run_dir: Path) -> list[str]:
    """A table of the stages that kept a checkpoint by `selection` (stages/selection.py): which step, by what."""
    import pandas as pd

    rows = []
    for marker in sorted(run_dir.glob("seed*/*/*/DONE.json")):
        try:
            metrics = read_marker(marker).get("metrics") or {}
        except (OSError, ValueError):
            continue
        if "selected_step" in metrics:
            seed, recipe, stage = marker.parent.relative_to(run_dir).parts
            chosen = metrics.get("selection") or {}
            rows.append(
                {
                    "recipe": recipe,
                    "seed": seed.removeprefix("seed"),
                    "stage": stage,
                    "kept step": metrics["selected_step"],
                    "checks": len(metrics.get("selection_history", [])),
                    "criterion": chosen.get("criterion", "?"),
                    "note": chosen.get("note", ""),
                }
            )
    if not rows:
        return []
    return ["## Kept checkpoints (selection)", pd.DataFrame(rows).to_markdown(index=False)]


def mixed_versions(run_dir: Path) -> list[str]:
    """One note line when the run folder's stages were made by different code or library versions (each DONE.json's
    `versions`, pipeline/engine/markers.py; a stage from before they were recorded counts as "not recorded"), else none."""
    made = []
    for marker in sorted(run_dir.glob("**/DONE.json")):
        try:
            made.append(read_marker(marker).get("versions"))
        except (OSError, ValueError):
            continue
    if not any(isinstance(v, dict) for v in made):
        return []  # a run folder from before versions were recorded: nothing to compare
    made = [v if isinstance(v, dict) else {} for v in made]
    differ = []
    for name in dict.fromkeys(key for v in made for key in v):
        counts = {}
        for v in made:
            value = str(v.get(name, "not recorded"))
            counts[value] = counts.get(value, 0) + 1
        if len(counts) > 1:
            differ.append(f"{name} " + " / ".join(f"{value} ({n})" for value, n in counts.items()))
    if not differ:
        return []
    return [
        f"**Note: this run folder's stages were made by different versions** (stages per version, from DONE.json "
        f"`versions`): {'; '.join(differ)}."
    ]


def plot(table) -> bytes:
    """PNG: forgetting vs gain per recipe, format leak, and each recipe's stages on its own axis."""
    from pipeline.reports.plot import plot as draw

    return draw(table)


def _groups_note(frame) -> list[str]:
    """What the group columns are, for a general suite that declares groups (nothing for one without)."""
    from pipeline.reports.results import groups

    found = groups(frame)
    if not found:
        return []
    return [
        f"The general suite has {len(found)} groups ({', '.join(found)}; results.csv `group`, evaluation/suites.py): "
        "knowledge is scored by log-likelihood over fixed choices (kept knowledge; a format leak cannot move it), "
        "generation on what the model says (an answer in another format scores 0). Each group has its own mean, "
        "forgetting and the forgetting's paired standard error beside the whole suite's."
    ]


def write_report(run_dir: Path) -> Path:
    """Write report.md and report.png into the run folder from its results.csv."""
    run_dir = Path(run_dir)
    frame = read_results(run_dir / "results.csv")
    table = summarise(frame)
    mean, sd, seeds = over_seeds(table)
    try:
        manifest = read_manifest(run_dir / "manifest.json") if (run_dir / "manifest.json").exists() else {}
        manifest = manifest if isinstance(manifest, dict) else {"code_version": "? (manifest.json is no JSON object)"}
    except (OSError, ValueError):  # the code version is all the report takes from it
        manifest = {"code_version": "? (manifest.json unreadable)"}
    write_bytes(run_dir / "report.png", plot(table))
    from pipeline.reports.frontier import sections as frontier_sections

    config = _resolved_config(run_dir)
    report = config.get("report") if isinstance(config.get("report"), dict) else {}
    method = str(report.get("method") or config.get("name") or "")  # the frontier's method: the file's own recipe
    swept = swept_values(frame)
    frontier, frontier_png = frontier_sections(table, method, run_dir.name, swept)
    if frontier_png is not None:
        write_bytes(run_dir / "frontier.png", frontier_png)
    parts = [
        f"# Report: {run_dir.name}",
        f"code version `{manifest.get('code_version', '?')}`, seeds {sorted(frame.seed.unique().tolist())}. "
        "General = mean score of the held-out general suite (run without any soft prompt); "
        "forgetting = general − base general (negative means forgotten); target = target-task score "
        "(with the soft prompt where the recipe has one); domain = mean of the domain suites (math, code); "
        "format_leak = share of general-suite answers that are in the target task's label format. "
        "Values are mean ± sd over seeds; an `se` column is the standard error over the examples scored (the mean "
        "over seeds of each seed's), and the per-task table gives score ± standard error. A forgetting is "
        "`significant` when it is beyond 1.96 standard errors of the mean over seeds, examples and seeds together "
        "(pipeline/reports/uncertainty.py; `?` where a task has no standard error). The forgetting's examples' part is paired "
        "(the base and the stage are scored on the same examples: results.csv `paired_stderr`); where a task has no "
        "per-example numbers it adds the two variances, which errs towards 'no'.",
        *mixed_versions(run_dir),
        *frontier,
        *_groups_note(frame),
        "## Base → each stage",
        stage_table(mean, sd, seeds),
    ]
    checks = declared_checks(config, mean, sd, seeds, swept, str(run_dir / "config.yaml"))
    if "domain" in table.columns:  # the DMT sections: the strategies table, then the checks, then the figure
        from pipeline.reports.dmt import dmt_sections

        parts += dmt_sections(frame, run_dir, report.get("compare") or {}, checks, swept)
    else:
        parts += checks
    parts += kept_checkpoints(run_dir)
    from pipeline.reports.task_stats import section as task_statistics

    parts += [
        "## Per task (mean over seeds)",
        task_table(frame),
        *task_statistics(frame, run_dir),
        "![forgetting vs gain per recipe, format leak, and each recipe's stages](report.png)",
    ]
    return write_text(run_dir / "report.md", "\n\n".join(parts) + "\n")
