"""report.png from summarise()'s table: forgetting against gain, each recipe's own stages, and format leak.

Panel 1 places every recipe's final stage by its target (or domain) gain over the base model and its
general-suite change against the base, so forgetting and learning are read off one point. Panel 2 shows
the format leak of every recipe's final stage. Below them, one small panel per recipe draws that recipe's
stages on its own axis (recipes have different stages, so they never share tick labels). Error bars are
the sd over seeds, drawn only where a recipe has more than one seed.

`figure()` returns the matplotlib Figure (tests inspect its axes); `plot()` renders it to PNG bytes.
Axes carry gids: "scatter" (its zoomed inset, where points crowd: "scatter-zoom"), "leak" (only where a
format leak was measured), "stages:<recipe>"; recipe artists carry the recipe as label, point labels the
gid "label:<text>".
"""

from __future__ import annotations

import io
import math

DPI = 110
MARKERS = ["o", "s", "D", "^", "v", "P", "X", "<", ">", "h", "p", "*"]
METRIC_STYLE = {  # per metric in the per-recipe panels; the colour there is the recipe's
    "general": dict(linestyle="-", marker="o", markerfacecolor=None),
    "target": dict(linestyle="--", marker="s", markerfacecolor="none"),  # hollow: equal values stay visible
    "domain": dict(linestyle="--", marker="s", markerfacecolor="none"),
    "format_leak": dict(linestyle=":", marker="^", markerfacecolor="none"),
}
GAIN_NAMES = {"target": "target task", "domain": "domain (mean of math, code)"}
METRIC_NAMES = {
    "general": "general (no prompt)",
    "target": "target (prompt where one exists)",
    "domain": "domain (math, code)",
    "format_leak": "format leak",
}
COLUMNS = 4  # per-recipe panels in one row


def recipe_styles(recipes) -> dict[str, dict]:
    """A fixed colour and marker per recipe, in the order given (same in every panel)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(recipes) <= 10 else "tab20"]
    return {r: dict(color=cmap(i % cmap.N), marker=MARKERS[i % len(MARKERS)]) for i, r in enumerate(recipes)}


def stage_order(table) -> dict[str, list[str]]:
    """Each recipe's stages in the order they ran (first appearance), base first."""
    return {recipe: list(dict.fromkeys(part.stage)) for recipe, part in table.groupby("recipe", sort=False)}


def _sd(values) -> float:
    """sd over seeds; NaN (no error bar, not a zero one) with fewer than two values."""
    values = [v for v in values if v == v]
    if len(values) < 2:
        return float("nan")
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _mean(values) -> float:
    values = [v for v in values if v == v]
    return sum(values) / len(values) if values else float("nan")


def final_points(table, gain: str) -> list[dict]:
    """Per recipe, its final stage: gain over base, general change, format leak; mean and sd over seeds.

    `gain` is the score column the recipe trains for ("target" or "domain"). A recipe without a base row
    gets NaN gain and forgetting (it cannot be placed against the base).
    """
    points = []
    for recipe, stages in stage_order(table).items():
        part = table[table.recipe == recipe]
        final = stages[-1]
        gains, forgets, leaks = [], [], []
        for _, rows in part.groupby("seed", sort=False):
            by_stage = rows.set_index("stage")
            if final not in by_stage.index:
                continue
            row = by_stage.loc[final]
            base = by_stage.loc["base"] if "base" in by_stage.index and final != "base" else None
            value = row.get(gain, float("nan"))
            gains.append(value - base[gain] if base is not None and gain in base else float("nan"))
            forgets.append(row.forgetting if base is not None else float("nan"))
            leaks.append(row.get("format_leak", float("nan")))
        base_leak = part[part.stage == "base"].get("format_leak")
        points.append(
            dict(
                recipe=recipe,
                stage=final,
                seeds=len(gains),
                gain=_mean(gains),
                gain_sd=_sd(gains),
                forgetting=_mean(forgets),
                forgetting_sd=_sd(forgets),
                leak=_mean(leaks),
                leak_sd=_sd(leaks),
                base_leak=_mean(base_leak.tolist()) if base_leak is not None else float("nan"),
            )
        )
    return points


def _seed_note(counts) -> str:
    counts = set(counts)
    if counts == {1}:
        return "one seed: no error bars"
    if 1 in counts:
        return "error bars: sd over seeds (none for one-seed recipes)"
    return f"error bars: sd over {max(counts)} seeds" if len(counts) == 1 else "error bars: sd over seeds"


def _err(value) -> list | None:
    """An errorbar argument: None (no bar at all) where the sd is undefined."""
    return None if value != value else [value]


def _limits(values, errors, floor: float, minimum_span: float = 0.2, pad: float = 0.12) -> tuple[float, float]:
    """Axis limits holding every value ± error and the reference `floor`, padded."""
    lows = [floor] + [v - (e if e == e else 0) for v, e in zip(values, errors) if v == v]
    highs = [floor] + [v + (e if e == e else 0) for v, e in zip(values, errors) if v == v]
    low, high = min(lows), max(highs)
    if high - low < minimum_span:
        middle = (high + low) / 2
        low, high = middle - minimum_span / 2, middle + minimum_span / 2
    span = high - low
    return low - pad * span, high + pad * span


def place_labels(ax, points, texts, colours, errors=(), avoid=(), fontsize=9):
    """Label every (x, y) data point without labels overlapping each other, the points or the axes edge.

    Tries positions on growing rings around each point; a label pushed off its first ring gets a leader
    line. Points drawn on the same pixel share one label ("a = b"). `errors`: (x sd, y sd) per point, NaN
    for none, whose bars labels also keep clear of; `avoid`: more display-pixel rectangles to keep clear.
    Call after the figure's layout is final (positions are checked in display pixels).
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    scale = fig.dpi / 72.0
    pixels = [tuple(ax.transData.transform(xy)) for xy in points]
    groups: list[list[int]] = []  # points on the same spot share a label
    for i, px in enumerate(pixels):
        for group in groups:
            if math.dist(pixels[group[0]], px) < 2:
                group.append(i)
                break
        else:
            groups.append([i])
    marker = 6 * scale
    obstacles = [(px - marker, py - marker, px + marker, py + marker) for px, py in pixels] + list(avoid)
    for (x, y), (dx, dy) in zip(points, errors):
        for a, b in (((x - dx, y), (x + dx, y)), ((x, y - dy), (x, y + dy))):
            if a == a and b == b and a != b:
                (ax0, ay0), (ax1, ay1) = ax.transData.transform(a), ax.transData.transform(b)
                obstacles.append(
                    (
                        min(ax0, ax1) - 4 * scale,
                        min(ay0, ay1) - 4 * scale,
                        max(ax0, ax1) + 4 * scale,
                        max(ay0, ay1) + 4 * scale,
                    )
                )
    placed = []
    # Crowded points first: they have the fewest free spots.
    groups.sort(key=lambda g: -sum(1 for q in pixels if math.dist(pixels[g[0]], q) < 40 * scale))
    annotations = []
    for group in groups:
        i = group[0]
        label = _shared_label([texts[j] for j in group])
        colour = colours[i] if len(group) == 1 else "black"
        text = ax.annotate(
            label,
            points[i],
            xytext=(0, 0),
            textcoords="offset points",
            fontsize=fontsize,
            color=colour,
            ha="left",
            va="bottom",
            zorder=6,
            arrowprops=dict(arrowstyle="-", color=colour, lw=0.8, alpha=0.8, shrinkA=1, shrinkB=4),
        )
        box = text.get_window_extent(renderer)
        width, height = box.width, box.height
        best, best_cost = None, None
        for ring in range(1, 14):
            radius = (8 + 10 * (ring - 1)) * scale
            for angle in (35, -35, 145, -145, 90, -90, 0, 180, 60, -60, 120, -120):
                a = math.radians(angle)
                cx, cy = pixels[i][0] + radius * math.cos(a), pixels[i][1] + radius * math.sin(a)
                # anchor the label's near corner (or edge middle) on the ring
                x0 = cx if math.cos(a) > 0.3 else cx - width if math.cos(a) < -0.3 else cx - width / 2
                y0 = cy if math.sin(a) > 0.3 else cy - height if math.sin(a) < -0.3 else cy - height / 2
                rect = (x0, y0, x0 + width, y0 + height)
                inside = (
                    rect[0] >= frame.x0 + 2
                    and rect[2] <= frame.x1 - 2
                    and rect[1] >= frame.y0 + 2
                    and rect[3] <= frame.y1 - 2
                )
                cost = sum(_overlap(rect, o) for o in obstacles + placed) + (0 if inside else 1e6) + ring
                if best_cost is None or cost < best_cost:
                    best, best_cost = (rect, ring), cost
            if best_cost == best[1]:  # a free spot on this ring: no overlap, inside the axes
                break
        rect, ring = best
        text.xyann = ((rect[0] - pixels[i][0]) / scale, (rect[1] - pixels[i][1]) / scale)
        text.arrow_patch.set_visible(ring > 1)
        text.set_gid("label:" + label)
        placed.append(rect)
        annotations.append(text)
    return annotations


def _shared_label(names, width=48) -> str:
    """ "a = b = c", wrapped onto several lines when long."""
    lines, line = [], ""
    for name in names:
        piece = name if not line else f"{line} = {name}"
        if line and len(piece) > width:
            lines.append(line + " =")
            piece = name
        line = piece
    return "\n".join([*lines, line])


def _overlap(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _draw_points(ax, drawn, styles, size=9):
    """Every recipe's final point (hollow, its own marker and colour) ± sd, and the base at the origin."""
    ax.axhline(0, color="0.45", lw=1, ls="--", zorder=1)
    ax.axvline(0, color="0.45", lw=1, ls="--", zorder=1)
    ax.plot([0], [0], marker="*", markersize=size + 2, color="black", linestyle="none", label="base", zorder=2)
    for p in drawn:
        style = styles[p["recipe"]]
        ax.errorbar(
            p["gain"],
            p["forgetting"],
            xerr=_err(p["gain_sd"]),
            yerr=_err(p["forgetting_sd"]),
            fmt=style["marker"],
            markersize=size,
            markerfacecolor="none",
            markeredgewidth=2,
            color=style["color"],
            ecolor=style["color"],
            elinewidth=1.2,
            capsize=4,
            label=p["recipe"],
            zorder=3,
        )
    ax.grid(alpha=0.3)


def _scatter(ax, points, styles, gain):
    """Panel 1: one point per recipe's final stage, general change against gain, base at the origin."""
    ax.set_gid("scatter")
    drawn = [p for p in points if p["gain"] == p["gain"] and p["forgetting"] == p["forgetting"]]
    _draw_points(ax, drawn, styles)
    ax.set_xlim(*_limits([p["gain"] for p in drawn], [p["gain_sd"] for p in drawn], 0.0))
    ax.set_ylim(*_limits([p["forgetting"] for p in drawn], [p["forgetting_sd"] for p in drawn], 0.0))
    ax.set_xlabel(f"{GAIN_NAMES.get(gain, gain)}: gain over base  (final stage − base)  →  learned more")
    ax.set_ylabel("general suite: change vs base\n(below 0 = forgotten)")
    missing = [p["recipe"] for p in points if p not in drawn]
    ax.set_title(
        f"Forgetting vs gain, final stage of each recipe ({_seed_note(p['seeds'] for p in drawn)})", fontsize=11
    )
    if missing:
        ax.text(
            0.01,
            0.01,
            "not placed (no base row): " + ", ".join(missing),
            transform=ax.transAxes,
            fontsize=8,
            color="0.3",
            va="bottom",
        )
    return drawn


def _crowd(pixels, reach) -> list[int]:
    """The largest group of points chained by distances under `reach` pixels (indices; [] if none)."""
    best = []
    seen = set()
    for start in range(len(pixels)):
        if start in seen:
            continue
        group, todo = [], [start]
        seen.add(start)
        while todo:
            i = todo.pop()
            group.append(i)
            for j in range(len(pixels)):
                if j not in seen and math.dist(pixels[i], pixels[j]) < reach:
                    seen.add(j)
                    todo.append(j)
        if len(group) > len(best):
            best = group
    return sorted(best) if len(best) > 1 else []


def label_points(ax, xy, errors, names, colours, draw):
    """Label a scatter's points; a crowd of nearby (not identical) points is labelled in a zoomed inset.

    `errors`: (x sd, y sd) per point (NaN: none); `draw(inset)` draws the scatter's content again into the
    inset, whose gid is the scatter's + "-zoom". Returns the inset or None. Call once the layout is final.
    """
    fig = ax.figure
    scale = fig.dpi / 72.0
    pixels = [tuple(ax.transData.transform(v)) for v in xy]
    crowd = _crowd(pixels, 24 * scale)
    spread = (
        max((max(pixels[i][k] for i in crowd) - min(pixels[i][k] for i in crowd) for k in (0, 1)), default=0)
        if crowd
        else 0
    )
    frame = ax.get_window_extent()
    overlapping = any(2 <= math.dist(pixels[i], pixels[j]) < 10 * scale for i in crowd for j in crowd if i < j)
    # An inset only where markers overlap without sitting on one spot (those share one label), and the
    # crowd is small enough for a zoom to spread it out.
    if not overlapping or spread > 0.25 * min(frame.width, frame.height):
        place_labels(ax, xy, names, colours, errors)
        return None
    inset = _zoom(ax, [xy[i] for i in crowd], pixels, draw)
    fig.canvas.draw()  # the inset's position and transforms are final only after a draw
    box = inset.get_tightbbox(fig.canvas.get_renderer())
    rest = [i for i in range(len(xy)) if i not in crowd]
    crowd_box = (
        min(pixels[i][0] for i in crowd) - 10 * scale,
        min(pixels[i][1] for i in crowd) - 10 * scale,
        max(pixels[i][0] for i in crowd) + 10 * scale,
        max(pixels[i][1] for i in crowd) + 10 * scale,
    )
    place_labels(
        ax,
        [xy[i] for i in rest],
        [names[i] for i in rest],
        [colours[i] for i in rest],
        [errors[i] for i in rest],
        avoid=[(box.x0, box.y0, box.x1, box.y1), crowd_box],
    )
    place_labels(
        inset,
        [xy[i] for i in crowd],
        [names[i] for i in crowd],
        [colours[i] for i in crowd],
        [errors[i] for i in crowd],
        fontsize=8,
    )
    return inset


def _label_scatter(ax, drawn, styles):
    """Label panel 1: every recipe and the base."""
    return label_points(
        ax,
        [(p["gain"], p["forgetting"]) for p in drawn] + [(0.0, 0.0)],
        [(p["gain_sd"], p["forgetting_sd"]) for p in drawn] + [(math.nan, math.nan)],
        [p["recipe"] for p in drawn] + ["base"],
        [styles[p["recipe"]]["color"] for p in drawn] + ["black"],
        lambda inset: _draw_points(inset, drawn, styles, size=8),
    )


def _zoom(ax, crowd_xy, pixels, draw):
    """A zoomed inset of the crowded points, put where it covers no point of the main axes."""
    xs, ys = [v[0] for v in crowd_xy], [v[1] for v in crowd_xy]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 0.004)
    frame = ax.get_window_extent()
    width, height = 0.34, 0.40
    centre = ax.transData.transform((sum(xs) / len(xs), sum(ys) / len(ys)))
    best, best_cost = None, None
    for fx in (0.1, 0.37, 0.63):  # the left one clear of the inset's own tick labels
        for fy in (0.1, 0.34, 0.56):
            x0, y0 = frame.x0 + fx * frame.width, frame.y0 + fy * frame.height
            rect = (x0 - 30, y0 - 30, x0 + width * frame.width + 10, y0 + height * frame.height + 10)
            covered = sum(1 for px, py in pixels if rect[0] <= px <= rect[2] and rect[1] <= py <= rect[3])
            cost = covered * 1e6 + math.dist(centre, (x0 + width * frame.width / 2, y0 + height * frame.height / 2))
            if best_cost is None or cost < best_cost:
                best, best_cost = (fx, fy), cost
    inset = ax.inset_axes([best[0], best[1], width, height])
    inset.set_gid(f"{ax.get_gid()}-zoom")
    draw(inset)
    inset.set_xlim(min(xs) - 0.9 * span, max(xs) + 0.9 * span)
    inset.set_ylim(min(ys) - 0.9 * span, max(ys) + 0.9 * span)
    inset.tick_params(labelsize=7)
    from matplotlib.ticker import MaxNLocator

    inset.xaxis.set_major_locator(MaxNLocator(5))
    inset.yaxis.set_major_locator(MaxNLocator(5))
    inset.set_title("zoom", fontsize=8, pad=2)
    ax.indicate_inset_zoom(inset, edgecolor="0.35")
    return inset


def _leak(ax, points, styles):
    """Panel 2: format leak of every recipe's final stage (± sd where >1 seed), the base model's first."""
    ax.set_gid("leak")
    measured = [p for p in points if p["leak"] == p["leak"]]
    ax.set_title("Format leak, final stage\n(share of general answers in the target's label format)", fontsize=11)
    from matplotlib.ticker import PercentFormatter

    base = _mean([p["base_leak"] for p in measured])
    bars = ([dict(recipe="base", leak=base, leak_sd=float("nan"))] if base == base else []) + measured
    top = max(0.1, max(p["leak"] + (p["leak_sd"] if p["leak_sd"] == p["leak_sd"] else 0) for p in bars))
    for i, p in enumerate(bars):
        colour = styles[p["recipe"]]["color"] if p["recipe"] in styles else "0.55"
        ax.bar(
            i,
            p["leak"],
            color=colour,
            alpha=0.85,
            width=0.65,
            label=p["recipe"],
            hatch="//" if p["recipe"] == "base" else None,
            edgecolor="white" if p["recipe"] == "base" else None,
        )
        if p["leak_sd"] == p["leak_sd"]:
            ax.errorbar(
                i,
                p["leak"],
                yerr=[p["leak_sd"]],
                fmt="none",
                ecolor="black",
                capsize=4,
                elinewidth=1.2,
                label=p["recipe"],
            )
        high = p["leak"] + (p["leak_sd"] if p["leak_sd"] == p["leak_sd"] else 0)
        ax.text(i, high + 0.02 * top, f"{p['leak']:.1%}", ha="center", va="bottom", fontsize=9)
    tilt = len(bars) > 3
    ax.set_xticks(
        range(len(bars)), [p["recipe"] for p in bars], rotation=25 if tilt else 0, ha="right" if tilt else "center"
    )
    ax.set_xlim(-0.6, len(bars) - 0.4)
    ax.set_ylim(0, top * 1.2)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.grid(alpha=0.3, axis="y")


def _stages(ax, recipe, part, stages, metrics, style):
    """One recipe's stages on its own axis: general, target/domain and format leak, ± sd where >1 seed."""
    ax.set_gid(f"stages:{recipe}")
    grouped = part.groupby("stage", sort=False)
    mean = grouped[metrics].mean().reindex(stages)
    seeds = grouped.seed.nunique().reindex(stages)
    sd = grouped[metrics].std(ddof=1).reindex(stages)
    x = list(range(len(stages)))
    for metric in metrics:
        values = mean[metric]
        if values.isna().all():
            continue
        errors = sd[metric].where(seeds > 1) if (seeds > 1).any() else None
        ax.errorbar(
            x,
            values,
            yerr=None if errors is None else errors.to_numpy(),
            capsize=3,
            elinewidth=1,
            markersize=5,
            label=METRIC_NAMES[metric],
            color=style["color"],
            **METRIC_STYLE[metric],
        )
    ax.set_xticks(x, stages, rotation=20 if max(len(s) for s in stages) > 8 else 0, fontsize=9)
    ax.set_xlim(-0.35, len(stages) - 0.65)
    ax.set_ylim(-0.04, 1.06)
    ax.grid(alpha=0.3)
    n = int(seeds.max())
    ax.set_title(f"{recipe}  ({n} seed{'s' if n != 1 else ''})", color=style["color"], fontsize=10, fontweight="bold")


def figure(table):
    """The report figure (a matplotlib Figure, not yet saved) from summarise()'s table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gain = "target" if "target" in table.columns else "domain"
    stages = stage_order(table)
    recipes = list(stages)
    styles = recipe_styles(recipes)
    points = final_points(table, gain)
    metrics = [m for m in ("general", gain, "format_leak") if m in table.columns]

    columns = min(COLUMNS, max(1, len(recipes)))
    rows = math.ceil(len(recipes) / columns)
    fig = plt.figure(figsize=(13, 5.6 + 2.8 * rows), dpi=DPI)
    outer = fig.add_gridspec(2, 1, height_ratios=[4.2, 2.1 * rows], hspace=0.3)
    if any(p["leak"] == p["leak"] for p in points):
        top = outer[0].subgridspec(1, 2, width_ratios=[1.75, 1], wspace=0.22)
        scatter = fig.add_subplot(top[0])
        _leak(fig.add_subplot(top[1]), points, styles)
    else:  # no target labels (a DMT run): no format leak to show, the scatter takes the row
        scatter = fig.add_subplot(outer[0])
    drawn = _scatter(scatter, points, styles, gain)
    grid = outer[1].subgridspec(rows, columns, hspace=0.75, wspace=0.12)
    first = None
    for i, recipe in enumerate(recipes):
        ax = fig.add_subplot(grid[i // columns, i % columns], sharey=first)
        first = first or ax
        _stages(ax, recipe, table[table.recipe == recipe], stages[recipe], metrics, styles[recipe])
        if i % columns:
            ax.tick_params(labelleft=False)
        else:
            ax.set_ylabel("score / share")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="0.25", markersize=5, **METRIC_STYLE[m]) for m in metrics]
    fig.legend(
        handles,
        [METRIC_NAMES[m] for m in metrics],
        loc="lower center",
        ncol=len(metrics),
        fontsize=9,
        frameon=False,
        title="lower panels: each recipe's own stages, in its colour (base = the base model before training)",
        title_fontsize=9,
    )
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.075, right=0.985, top=1 - 0.5 / height, bottom=1.15 / height)
    # Labels go last: their collision checks need the final layout.
    _label_scatter(scatter, drawn, styles)
    return fig


def to_png(fig) -> bytes:
    """Render a figure to PNG bytes and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def plot(table) -> bytes:
    """report.png's bytes."""
    return to_png(figure(table))
