"""The DMT part of the report: a strategies table shaped like the paper's Table 1, the bar, and a plot."""

from __future__ import annotations

import re

from pipeline.atomic import write_bytes

LEAK = "format_leak"
SWEEP = re.compile(r"^dmt@k=(?P<k>.+)$")


def final_scores(frame):
    """Per recipe: math, code, domain and general means of its final stage (mean over seeds), plus base."""
    import pandas as pd

    scores = frame[frame.metric != LEAK]
    last = scores.groupby("recipe", sort=False).stage.agg(lambda s: list(dict.fromkeys(s))[-1])
    final = scores[scores.stage == scores.recipe.map(last)]
    base = scores[scores.stage == "base"].assign(recipe="base")
    both = pd.concat([final, base])
    by_task = both[both.suite == "domain"].pivot_table(index="recipe", columns="task", values="score", sort=False)
    by_task.columns = [c.replace("embedded_", "") for c in by_task.columns]
    general = both[both.suite == "general"].groupby("recipe", sort=False).score.mean().rename("general")
    table = pd.concat([by_task, general], axis=1)
    table.insert(len(by_task.columns), "domain", by_task.mean(axis=1))
    return table


def strategy_table(table) -> str:
    """Markdown: one row per strategy with deltas against domain_only (domain) and general_only (general)."""
    out = table.copy()
    if "domain_only" in out.index:
        out["Δdomain vs domain_only"] = out.domain - out.loc["domain_only", "domain"]
    if "general_only" in out.index:
        out["Δgeneral vs general_only"] = out.general - out.loc["general_only", "general"]
    return out.round(3).to_markdown()


def sweep_points(table) -> list[tuple[float, str, float]]:
    """(k, recipe, domain score) for every dmt@k recipe, sorted by k."""
    from fractions import Fraction

    points = []
    for recipe in table.index:
        match = SWEEP.match(str(recipe))
        if match:
            points.append((float(Fraction(match["k"])), recipe, float(table.loc[recipe, "domain"])))
    return sorted(points)


def dmt_checks(table) -> list[str]:
    """The issue's bar for the DMT comparison, measured on this run."""
    checks = []
    names = set(table.index)
    if {"sequential", "domain_only"} <= names:
        kept, ref = table.loc["sequential", "domain"], table.loc["domain_only", "domain"]
        loss = 1 - kept / ref if ref else float("nan")
        checks.append(("sequential loses >= 30% of domain_only's domain score", loss >= 0.30,
                       f"{kept:.3f} vs {ref:.3f}: loses {loss:.0%}"))
    dmt = next((r for r in ("dmt@k=1/256", "dmt") if r in names), None)
    if dmt and "sequential" in names:
        gap = table.loc[dmt, "domain"] - table.loc["sequential", "domain"]
        checks.append((f"{dmt} beats sequential on domain by >= 0.05", gap >= 0.05, f"{gap:+.3f}"))
    points = sweep_points(table)
    if len(points) > 1:
        rises = all(b[2] >= a[2] - 0.03 for a, b in zip(points, points[1:]))
        checks.append(("domain does not fall as k grows (tolerance 0.03)", rises,
                       ", ".join(f"k={r.split('=')[1]}: {d:.3f}" for _, r, d in points)))
    lines = ["| check | measured | pass |", "|---|---|---|"]
    return lines + [f"| {name} | {value} | {'yes' if ok else '**no**'} |" for name, ok, value in checks]


def domain_general_plot(table) -> bytes:
    """PNG: domain score against general score, one point per strategy and per k."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for recipe, row in table.drop(index="base", errors="ignore").iterrows():
        ax.scatter(row.general, row.domain, s=40)
        ax.annotate(str(recipe), (row.general, row.domain), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("general (mean of held-out general suite)")
    ax.set_ylabel("domain (mean of math, code)")
    ax.set_xlim(-0.02, 1.05)
    ax.set_ylim(-0.02, 1.05)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def dmt_sections(frame, table, run_dir) -> list[str]:
    """Markdown sections for a run with domain suites; also writes domain_vs_general.png."""
    final = final_scores(frame)
    write_bytes(run_dir / "domain_vs_general.png", domain_general_plot(final))
    return ["## Strategies (final stage of each, in the shape of the DMT paper's Table 1)", strategy_table(final),
            "## DMT: the bar", "\n".join(dmt_checks(final)), "![domain vs general](domain_vs_general.png)"]
