"""report.md and report.png from results.csv: forgetting next to target gains, per recipe and stage.

The picture itself is drawn by pipeline.report_plot."""

from __future__ import annotations

import json
from pathlib import Path

from core.atomic import write_bytes, write_text
from core.errors import UserError
from pipeline.results import LEAK, over_seeds, read_results, summarise, with_optional

def _cell(mean, sd, seeds) -> str:
    if mean != mean:  # NaN: not measured at this stage
        return "–"
    return f"{mean:.3f} ± {sd:.3f}" if seeds > 1 else f"{mean:.3f}"


def stage_table(mean, sd, seeds) -> str:
    """Markdown: one row per recipe and stage, base first."""
    import pandas as pd

    from pipeline.uncertainty import Z, marker, standard_error

    rows = []
    shown = [c for c in mean.columns if not c.endswith("_se")]
    for (recipe, stage), m in mean.iterrows():
        s, n = sd.loc[(recipe, stage)], int(seeds.loc[(recipe, stage)])
        row = {"recipe": recipe, "stage": stage}
        for c in shown:
            row[c] = _cell(m[c], s[c], n)
            if f"{c}_se" in mean.columns and m[f"{c}_se"] == m[f"{c}_se"]:
                row[f"{c} se"] = f"{m[f'{c}_se']:.3f}"
            if c == "forgetting":
                se = standard_error(m.get("forgetting_se", float("nan")), s[c], n)
                row[f"forgetting ±{Z:g} se"] = "–" if se != se or stage == "base" else f"{Z * se:.3f}"
                row["significant"] = "–" if stage == "base" else marker(m[c], se)
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False)


def task_table(frame) -> str:
    """Markdown: every task's score per recipe and stage (mean over seeds), ± its standard error where known,
    with n; a task's other metrics (primary 0) on rows of their own."""
    scores = with_optional(frame)
    scores = scores[scores.metric != LEAK]
    index, columns = ["suite", "task", "metric", "n"], ["recipe", "stage"]
    score = scores.pivot_table(index=index, columns=columns, values="score", aggfunc="mean", sort=False)
    stderr = scores.pivot_table(index=index, columns=columns, values="stderr", aggfunc="mean", sort=False,
                                dropna=False).reindex(index=score.index, columns=score.columns)
    cells = score.copy().astype(object)
    for column in score.columns:
        cells[column] = [("–" if m != m else f"{m:.3f}" if s != s else f"{m:.3f} ± {s:.3f}")
                         for m, s in zip(score[column], stderr[column])]
    cells.columns = [f"{r}/{s}" for r, s in score.columns]
    return cells.reset_index().to_markdown(index=False)


def promot_checks(mean, seeds) -> list[str]:
    """The issue's bar for the ProMoT comparison, measured; lines of markdown (empty if not applicable)."""
    final = {r: mean.loc[r].iloc[-1] for r in mean.index.get_level_values(0).unique()}
    if not {"sft", "promot"} <= final.keys() or "target" not in mean.columns:
        return []
    base = mean.loc["sft"].loc["base"].general
    sft, promot = final["sft"], final["promot"]
    checks = [
        ("SFT forgets: general drop >= 0.20", -sft.forgetting >= 0.20, f"drop {-sft.forgetting:.3f}"),
        ("ProMoT keeps >= 80% of base general", promot.general >= 0.8 * base,
         f"{promot.general:.3f} / {base:.3f}" + (f" = {promot.general / base:.1%}" if base else "")),
        ("ProMoT target within 0.05 of SFT", abs(promot.target - sft.target) <= 0.05,
         f"{promot.target:.3f} vs {sft.target:.3f}"),
    ]
    if "format_leak" in mean.columns:
        checks += [("ProMoT format leak < 10%", promot.format_leak < 0.10, f"{promot.format_leak:.1%}"),
                   ("SFT format leak > 30%", sft.format_leak > 0.30, f"{sft.format_leak:.1%}")]
    else:  # a user's target without target.labels: the leak cannot be measured, and the report says so
        checks += [(f"{side} format leak", None, "not measured: set target.labels") for side in ("ProMoT", "SFT")]
    verdict = {True: "yes", False: "**no**", None: "n/a"}
    lines = ["| check | measured | pass |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {verdict[ok if ok is None else bool(ok)]} |" for name, ok, value in checks]
    return lines


def _resolved_name(run_dir: Path) -> str | None:
    """The recipe file's `name` from the run's config.yaml (its method's recipe is named the same)."""
    from pipeline.gate import run_config

    try:
        return run_config(run_dir).get("name")
    except (UserError, ValueError, AttributeError):
        return None


def plot(table) -> bytes:
    """PNG: forgetting vs gain per recipe, format leak, and each recipe's stages on its own axis."""
    from pipeline.report_plot import plot as draw

    return draw(table)


def write_report(run_dir: Path) -> Path:
    """Write report.md and report.png into the run folder from its results.csv."""
    run_dir = Path(run_dir)
    frame = read_results(run_dir / "results.csv")
    table = summarise(frame)
    mean, sd, seeds = over_seeds(table)
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text()) if (run_dir / "manifest.json").exists() else {}
        manifest = manifest if isinstance(manifest, dict) else {"code_version": "? (manifest.json is no JSON object)"}
    except (OSError, ValueError):  # the code version is all the report takes from it
        manifest = {"code_version": "? (manifest.json unreadable)"}
    write_bytes(run_dir / "report.png", plot(table))
    from pipeline.report_frontier import sections as frontier_sections

    method = str(_resolved_name(run_dir) or "")
    frontier, frontier_png = frontier_sections(table, method, run_dir.name)
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
        "(pipeline/uncertainty.py; `?` where a task has no standard error). The examples' part adds the base's and "
        "the stage's variances, ignoring that both are scored on the same examples, so it errs towards 'no'.",
        *frontier,
        "## Base → each stage", stage_table(mean, sd, seeds),
    ]
    checks = promot_checks(mean, seeds)
    if checks:
        parts += ["## ProMoT vs SFT: the bar", "\n".join(checks)]
    if "domain" in table.columns:
        from pipeline.report_dmt import dmt_sections

        parts += dmt_sections(frame, table, run_dir)
    parts += ["## Per task (mean over seeds)", task_table(frame),
              "![forgetting vs gain per recipe, format leak, and each recipe's stages](report.png)"]
    return write_text(run_dir / "report.md", "\n\n".join(parts) + "\n")
