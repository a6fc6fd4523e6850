"""The frontier: what each configuration gained on its target (or domain) against how much general skill it kept.

One point per recipe and stage (a swept value is a recipe of its own, `dmt@k=1/256`), mean over seeds, with
95% error bars from pipeline/reports/uncertainty.py. Retention = general / base general (1 = nothing forgotten);
gain = score − base score on the target task, or on the domain suites where the file has no target. A point
is on the Pareto front when no other point has both a retention and a gain at least as high, one of them
higher. The paper's method is the recipe file's `report: {method: ...}`, by default the recipe named like the
file (`promot` in promot.yaml), with its swept copies (`dmt@k=...` in dmt.yaml, known from results.csv's columns).
"""

from __future__ import annotations

import math

from pipeline.reports.uncertainty import Z, standard_error


def gain_column(table) -> str | None:
    return next((c for c in ("target", "domain") if c in table.columns), None)


def points(table) -> list[dict]:
    """Every trained (recipe, stage) as a frontier point; `table` is summarise()'s per-seed table."""
    gain = gain_column(table)
    if gain is None or "general" not in table.columns:
        return []
    found = []
    for (recipe, stage), rows in table[table.stage != "base"].groupby(["recipe", "stage"], sort=False):
        retention, gains, retention_se, gain_se = [], [], [], []
        for _, row in rows.iterrows():
            base = table[(table.recipe == recipe) & (table.seed == row.seed) & (table.stage == "base")]
            if base.empty or not base.general.iloc[0]:
                continue
            base = base.iloc[0]
            retention.append(row.general / base.general)
            retention_se.append(row.get("forgetting_se", math.nan) / base.general)
            gains.append(row[gain] - base[gain])
            gain_se.append(math.hypot(row.get(f"{gain}_se", math.nan), base.get(f"{gain}_se", math.nan)))
        if retention:
            found.append(
                dict(
                    recipe=recipe,
                    stage=stage,
                    seeds=len(retention),
                    retention=_mean(retention),
                    gain=_mean(gains),
                    retention_err=Z * standard_error(_mean(retention_se), _sd(retention), len(retention)),
                    gain_err=Z * standard_error(_mean(gain_se), _sd(gains), len(gains)),
                )
            )
    found = _merge_shared(found)
    for p in found:
        p["dominated_by"] = [f"{q['recipe']}/{q['stage']}" for q in found if _dominates(q, p)]
        p["front"] = not p["dominated_by"]
    return found


def _merge_shared(found: list[dict]) -> list[dict]:
    """One point for a stage several recipes share (DMT's domain stage, trained once and reused): the same stage
    name with the same scores is one point, its other recipes listed in `same_as`."""
    kept: dict[tuple, dict] = {}
    for p in found:
        same = (p["stage"], p["retention"], p["gain"], p["seeds"])
        if same in kept:
            kept[same]["same_as"].append(p["recipe"])
        else:
            kept[same] = {**p, "same_as": []}
    return list(kept.values())


def _dominates(a: dict, b: dict) -> bool:
    return (
        a["retention"] >= b["retention"]
        and a["gain"] >= b["gain"]
        and (a["retention"] > b["retention"] or a["gain"] > b["gain"])
    )


def _mean(values) -> float:
    values = [v for v in values if v == v]
    return sum(values) / len(values) if values else math.nan


def _sd(values) -> float:
    if len(values) < 2:
        return math.nan
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _method(found: list[dict], method: str, swept: dict) -> list[dict]:
    """The paper's method's final stages: the recipe named `method` and its swept copies."""
    from pipeline.recipe.sweep import is_copy

    finals = {}
    for p in found:
        for recipe in [p["recipe"], *p.get("same_as", [])]:
            if recipe == method or (recipe in swept and is_copy(recipe, method, swept[recipe])):
                finals[recipe] = p  # points keep stage order: the last one is the final stage
    return list({id(p): p for p in finals.values()}.values())


def _pm(value: float, err: float) -> str:
    return f"{value:.3f}" if err != err else f"{value:.3f} ± {err:.3f}"


def frontier_table(found: list[dict], gain: str) -> str:
    """Markdown: every point, front first by gain."""
    lines = [
        f"| recipe | stage | general retention | {gain} gain | seeds | on the front | dominated by |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in sorted(found, key=lambda p: (not p["front"], -p["gain"])):
        recipe = p["recipe"] + (f" (= {', '.join(p['same_as'])})" if p.get("same_as") else "")
        lines.append(
            f"| {recipe} | {p['stage']} | {_pm(p['retention'], p['retention_err'])} | "
            f"{_pm(p['gain'], p['gain_err'])} | {p['seeds']} | {'**yes**' if p['front'] else 'no'} | "
            f"{', '.join(p['dominated_by']) or '–'} |"
        )
    return "\n".join(lines)


def summary(found: list[dict], method: str, gain: str, swept: dict | None = None) -> str:
    """What the frontier says, in sentences: the front, what dominates most, and where the paper's method is."""
    front = [p for p in found if p["front"]]
    names = [f"`{p['recipe']}/{p['stage']}`" for p in sorted(front, key=lambda p: -p["gain"])]
    lines = [f"On the front ({len(front)} of {len(found)} points): {', '.join(names)}."]
    counts = {
        f"{p['recipe']}/{p['stage']}": sum(f"{p['recipe']}/{p['stage']}" in q["dominated_by"] for q in found)
        for p in front
    }
    best = max(counts, key=counts.get) if counts else None
    if best and counts[best]:
        lines.append(
            f"`{best}` dominates the most configurations ({counts[best]}): no other keeps at least as much "
            f"general skill and gains at least as much {gain}."
        )
    finals = _method(found, method, swept or {})
    if not finals:
        lines.append(f"No recipe named `{method}` (this file's method) to place on it.")
    for p in finals:
        where = (
            f"`{p['recipe']}/{p['stage']}` (retention {_pm(p['retention'], p['retention_err'])}, "
            f"{gain} gain {_pm(p['gain'], p['gain_err'])})"
        )
        if p["front"]:
            lines.append(f"The method's final stage {where} is on the front.")
        else:
            lines.append(
                f"The method's final stage {where} is not on the front: dominated by "
                f"{', '.join(f'`{n}`' for n in p['dominated_by'])} (by the means; the error bars say how "
                "far apart they are)."
            )
    return " ".join(lines)


def figure(found: list[dict], gain: str, title: str):
    """The frontier picture: every point ± 95%, the front joined by a line, the base at (1, 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.reports.plot import DPI, GAIN_NAMES, label_points, recipe_styles

    styles = recipe_styles(list(dict.fromkeys(p["recipe"] for p in found)))
    fig = plt.figure(figsize=(10, 6.5), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_gid("frontier")

    def draw(axes):
        axes.axhline(0, color="0.45", lw=1, ls="--", zorder=1)
        axes.axvline(1, color="0.45", lw=1, ls="--", zorder=1)
        axes.plot([1], [0], marker="*", markersize=12, color="black", linestyle="none", zorder=2)
        front = sorted((p for p in found if p["front"]), key=lambda p: p["retention"])
        if len(front) > 1:
            axes.plot(
                [p["retention"] for p in front],
                [p["gain"] for p in front],
                color="0.2",
                lw=1.5,
                zorder=2,
                label="Pareto front",
            )
        for p in found:
            style = styles[p["recipe"]]
            axes.errorbar(
                p["retention"],
                p["gain"],
                xerr=_bar(p["retention_err"]),
                yerr=_bar(p["gain_err"]),
                fmt=style["marker"],
                markersize=9,
                markeredgewidth=2,
                color=style["color"],
                markerfacecolor=style["color"] if p["front"] else "none",
                elinewidth=1.1,
                capsize=3,
                zorder=3,
            )
        axes.grid(alpha=0.3)

    draw(ax)
    ax.set_xlabel("general retention: general / base general  (1 = nothing forgotten)  →  kept more")
    ax.set_ylabel(f"{GAIN_NAMES.get(gain, gain)}: gain over base  →  learned more")
    ax.set_title(f"{title}: every recipe and stage, mean over seeds ± 95% (filled: on the Pareto front)", fontsize=11)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.93, bottom=0.1)
    fig.canvas.draw()
    names = [
        f"{p['recipe']}/{p['stage']}" + (f" (+{len(p['same_as'])} recipes)" if p.get("same_as") else "") for p in found
    ] + ["base"]
    label_points(
        ax,
        [(p["retention"], p["gain"]) for p in found] + [(1.0, 0.0)],
        [
            (
                p["retention_err"] / Z if p["retention_err"] == p["retention_err"] else math.nan,
                p["gain_err"] / Z if p["gain_err"] == p["gain_err"] else math.nan,
            )
            for p in found
        ]
        + [(math.nan, math.nan)],
        names,
        [styles[p["recipe"]]["color"] for p in found] + ["black"],
        draw,
    )
    return fig


def _bar(err: float):
    return None if err != err else [err]


def sections(table_, method: str, title: str, swept: dict | None = None) -> tuple[list[str], bytes | None]:
    """The report's frontier section (markdown parts) and its PNG; nothing where there is no gain to plot.
    `swept` ({recipe: {field: value}}) names the method's swept copies."""
    from pipeline.reports.plot import to_png

    gain = gain_column(table_)
    found = points(table_)
    if not found:
        return [], None
    png = to_png(figure(found, gain, title))
    return (
        [
            "## Frontier: gain against general retention",
            "![gain against general retention, every recipe and stage, Pareto front](frontier.png)",
            summary(found, method, gain, swept),
            frontier_table(found, gain),
        ],
        png,
    )
