"""report.md and report.png from results.csv: forgetting next to target gains, per recipe and stage.

The picture itself is drawn by pipeline.report_plot."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.atomic import write_bytes, write_text
from pipeline.errors import UserError
from pipeline.results import COLUMNS, SUITE_KINDS, read_csv

LEAK = "format_leak"


def read_results(path: Path):
    """results.csv as a DataFrame, checked first: a file that is not a run's results table (not text, not CSV,
    other columns, a score that is no number in [0, 1], no base-model scores) is one line naming it and the row."""
    import pandas as pd

    from pipeline.typed_yaml import shown

    path = Path(path)
    try:
        frame = read_csv(path)
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
        raise UserError(f"{path}: not a results table: no column {', '.join(missing)} "
                        f"(its header: {shown(','.join(map(str, frame.columns)))}; expected {','.join(COLUMNS)})")
    if frame.empty:
        raise UserError(f"{path}: no rows (a run writes them as each stage is evaluated)")

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
    frame = frame.assign(score=score, seed=seed.astype(int), recipe=frame.recipe.astype(str),
                         stage=frame.stage.astype(str))
    scores = frame[frame.metric != LEAK]
    if scores[(scores.stage == "base") & (scores.suite == "general")].empty:
        raise UserError(f"{path}: no general scores of the base model (stage base), which every run evaluates "
                        "first; not a finished run's results")
    return frame


def summarise(frame):
    """Per (recipe, seed, stage): general mean, target score and format-leak share."""
    import pandas as pd

    scores = frame[frame.metric != LEAK]
    keys = ["recipe", "seed", "stage"]
    general = scores[scores.suite == "general"].groupby(keys, sort=False).score.mean().rename("general")
    target = scores[scores.suite == "target"].groupby(keys, sort=False).score.mean().rename("target")
    domain = scores[scores.suite == "domain"].groupby(keys, sort=False).score.mean().rename("domain")
    leak = frame[frame.metric == LEAK].groupby(keys, sort=False).score.mean().rename("format_leak")
    table = pd.concat([general, target, domain, leak], axis=1).reset_index()
    table = table.dropna(axis=1, how="all")  # a ProMoT run has no domain column, a DMT run no target
    base = table[table.stage == "base"].set_index(["recipe", "seed"]).general
    table["forgetting"] = table.general - table.set_index(["recipe", "seed"]).index.map(base).to_numpy()
    return table


def over_seeds(table):
    """Mean and sd over seeds for every (recipe, stage), keeping stage order."""
    columns = [c for c in ["general", "forgetting", "target", "domain", "format_leak"] if c in table.columns]
    grouped = table.groupby(["recipe", "stage"], sort=False)[columns]
    mean, sd = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
    return mean, sd, grouped.size().rename("seeds")


def _cell(mean, sd, seeds) -> str:
    if mean != mean:  # NaN: not measured at this stage
        return "–"
    return f"{mean:.3f} ± {sd:.3f}" if seeds > 1 else f"{mean:.3f}"


def stage_table(mean, sd, seeds) -> str:
    """Markdown: one row per recipe and stage, base first."""
    import pandas as pd

    rows = []
    for (recipe, stage), m in mean.iterrows():
        s, n = sd.loc[(recipe, stage)], int(seeds.loc[(recipe, stage)])
        rows.append({"recipe": recipe, "stage": stage, **{c: _cell(m[c], s[c], n) for c in mean.columns}})
    return pd.DataFrame(rows).to_markdown(index=False)


def task_table(frame) -> str:
    """Markdown: every task's score per recipe and stage (mean over seeds)."""
    scores = frame[frame.metric != LEAK]
    pivot = scores.pivot_table(index=["suite", "task"], columns=["recipe", "stage"], values="score",
                               aggfunc="mean", sort=False)
    pivot.columns = [f"{r}/{s}" for r, s in pivot.columns]
    return pivot.round(3).to_markdown()


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
    parts = [
        f"# Report: {run_dir.name}",
        f"code version `{manifest.get('code_version', '?')}`, seeds {sorted(frame.seed.unique().tolist())}. "
        "General = mean score of the held-out general suite (run without any soft prompt); "
        "forgetting = general − base general (negative means forgotten); target = target-task score "
        "(with the soft prompt where the recipe has one); domain = mean of the domain suites (math, code); "
        "format_leak = share of general-suite answers that are in the target task's label format. "
        "Values are mean ± sd over seeds.",
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
