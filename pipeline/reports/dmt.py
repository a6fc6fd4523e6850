"""The DMT part of the report: a strategies table shaped like the paper's Table 1, and a plot.

Which recipes the table's deltas compare with is the recipe file's `report: {compare: ...}`; the sweep the plot
joins in order is results.csv's swept column (`k`). The checks are the file's own (`checks:`, pipeline/recipe/checks.py).
"""

from __future__ import annotations

from core.atomic import write_bytes


def final_scores(frame):
    """Per recipe: math, code, domain and general means of its final stage (mean over seeds), plus base."""
    import pandas as pd

    from pipeline.reports.results import scored

    scores = scored(frame)
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


def strategy_table(table, compare: dict[str, str]) -> str:
    """Markdown: one row per strategy, with a delta column per `compare` entry (measure -> recipe), e.g.
    {domain: domain_only, general: general_only}."""
    out = table.copy()
    for measure, recipe in compare.items():
        if recipe in out.index and measure in out.columns:
            out[f"Δ{measure} vs {recipe}"] = out[measure] - out.loc[recipe, measure]
    return out.round(3).to_markdown()


def sweep_points(table, swept: dict[str, dict]) -> tuple[str | None, list[str]]:
    """(field, recipes) of the first swept field: the recipes swept on it, in order of its value."""
    from pipeline.recipe.sweep import sort_key

    field = next((key for values in swept.values() for key in values), None)
    recipes = [r for r in table.index if field in swept.get(str(r), {})]
    return field, sorted(recipes, key=lambda r: sort_key(swept[str(r)][field]))


def final_sd(frame):
    """sd over seeds of final_scores()'s domain and general per recipe; NaN where a recipe has one seed."""
    import pandas as pd

    per_seed = [
        final_scores(frame[frame.seed == seed])[["domain", "general"]].assign(seed=seed) for seed in frame.seed.unique()
    ]
    both = pd.concat(per_seed).rename_axis("recipe").reset_index()
    return both.groupby("recipe", sort=False)[["domain", "general"]].std(ddof=1)  # NaN for one value


def domain_general_figure(table, sd=None, swept: dict | None = None):
    """Figure: domain score against general score, one point per strategy's final stage (± sd over seeds
    where there is more than one), the base as the reference, the swept copies joined in order of their value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.reports.plot import DPI, label_points, recipe_styles

    strategies = [r for r in table.index if r != "base"]
    styles = recipe_styles(strategies)
    sd = sd.reindex(table.index) if sd is not None else None
    nan = float("nan")

    def err(recipe, column):
        return nan if sd is None else float(sd.loc[recipe, column])

    field, sweep = sweep_points(table, swept or {})

    def draw(ax, size=9):
        if "base" in table.index:
            base = table.loc["base"]
            ax.axvline(base.general, color="0.45", lw=1, ls="--", zorder=1)
            ax.axhline(base.domain, color="0.45", lw=1, ls="--", zorder=1)
            ax.plot(
                [base.general],
                [base.domain],
                marker="*",
                markersize=size + 2,
                color="black",
                linestyle="none",
                label="base",
                zorder=2,
            )
        for a, b in zip(sweep, sweep[1:]):
            ax.annotate(
                "",
                (table.loc[b, "general"], table.loc[b, "domain"]),
                (table.loc[a, "general"], table.loc[a, "domain"]),
                arrowprops=dict(arrowstyle="-|>", color="0.55", lw=1, shrinkA=7, shrinkB=7),
                zorder=2,
            )
        for recipe in strategies:
            row, style = table.loc[recipe], styles[recipe]
            xerr, yerr = err(recipe, "general"), err(recipe, "domain")
            ax.errorbar(
                row.general,
                row.domain,
                xerr=None if xerr != xerr else [xerr],
                yerr=None if yerr != yerr else [yerr],
                fmt=style["marker"],
                markersize=size,
                markerfacecolor="none",
                markeredgewidth=2,
                color=style["color"],
                elinewidth=1.2,
                capsize=4,
                label=recipe,
                zorder=3,
            )
        ax.grid(alpha=0.3)

    fig, ax = plt.subplots(figsize=(8, 6.5), dpi=DPI)
    ax.set_gid("domain_vs_general")
    draw(ax)
    ax.set_xlim(-0.02, 1.05)
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlabel("general (mean of the held-out general suite)  →  kept general ability")
    ax.set_ylabel("domain (mean of math, code)  →  learned the domain")
    seeds = "one seed: no error bars" if sd is None or sd.isna().all().all() else "error bars: sd over seeds"
    note = f"; arrows: the {field} sweep as {field} grows" if len(sweep) > 1 else ""
    ax.set_title(f"Final stage of each strategy ({seeds}{note})", fontsize=10)
    fig.tight_layout()
    names = [*strategies, "base"] if "base" in table.index else strategies
    label_points(
        ax,
        [(table.loc[r, "general"], table.loc[r, "domain"]) for r in names],
        [(err(r, "general"), err(r, "domain")) if r != "base" else (nan, nan) for r in names],
        names,
        [styles[r]["color"] if r != "base" else "black" for r in names],
        lambda inset: draw(inset, 8),
    )
    return fig


def domain_general_plot(table, sd=None, swept: dict | None = None) -> bytes:
    """PNG: domain score against general score, one point per strategy and swept value, base as reference."""
    from pipeline.reports.plot import to_png

    return to_png(domain_general_figure(table, sd, swept))


def dmt_sections(frame, run_dir, compare: dict, checks: list[str], swept: dict) -> list[str]:
    """Markdown sections for a run with domain suites, the file's checks after the table; writes
    domain_vs_general.png."""
    final = final_scores(frame)
    write_bytes(run_dir / "domain_vs_general.png", domain_general_plot(final, final_sd(frame), swept))
    return [
        "## Strategies (final stage of each, in the shape of the DMT paper's Table 1)",
        strategy_table(final, compare),
        *checks,
        "![domain vs general](domain_vs_general.png)",
    ]
