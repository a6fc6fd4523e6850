"""report.md and its figures from results.csv: the declared checks (the shipped files' ProMoT and DMT bars), the
DMT strategies table and the plots."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.engine.results_csv import write_csv
from pipeline.reports.dmt import domain_general_figure, final_scores, final_sd
from pipeline.reports.plot import figure
from pipeline.reports.report import write_report
from pipeline.reports.results import summarise

GENERAL = ["embedded_copy", "embedded_sort"]
ROOT = Path(__file__).resolve().parents[2]


def declare(folder, recipe_file):
    """The run's config.yaml with the checks and report section of a shipped recipe file, as a run writes it."""
    shipped = yaml.safe_load((ROOT / "recipes" / recipe_file).read_text())
    (folder / "config.yaml").write_text(yaml.safe_dump({key: shipped[key] for key in ("name", "checks", "report")}))


def rows(recipe, stage, general, target=None, leak=None, math=None, code=None, seed=0):
    out = [
        dict(recipe=recipe, seed=seed, stage=stage, task=t, suite="general", metric="exact_match", score=general, n=10)
        for t in GENERAL
    ]
    if target is not None:
        out.append(
            dict(
                recipe=recipe,
                seed=seed,
                stage=stage,
                task="embedded_letter_rule",
                suite="target",
                metric="exact_match",
                score=target,
                n=10,
            )
        )
    if leak is not None:
        out += [
            dict(recipe=recipe, seed=seed, stage=stage, task=t, suite="general", metric="format_leak", score=leak, n=10)
            for t in GENERAL
        ]
    for task, value in (("embedded_math", math), ("embedded_code", code)):
        if value is not None:
            out.append(
                dict(recipe=recipe, seed=seed, stage=stage, task=task, suite="domain", metric="m", score=value, n=10)
            )
    return out


def test_promot_report_measures_the_bar(tmp_path):
    data = []
    for seed, wobble in ((0, 0.0), (1, 0.02)):
        data += rows("sft", "base", 0.9, 0.5, 0.0, seed=seed) + rows(
            "sft", "finetune", 0.2 + wobble, 0.98, 0.7, seed=seed
        )
        data += rows("promot", "base", 0.9, 0.5, 0.0, seed=seed) + rows(
            "promot", "prompt_tune", 0.9, 0.6, 0.0, seed=seed
        )
        data += rows("promot", "finetune", 0.85, 0.96, 0.02 + wobble, seed=seed)
    write_csv(tmp_path / "results.csv", data)
    declare(tmp_path, "promot.yaml")
    report = write_report(tmp_path).read_text()
    assert "## ProMoT vs SFT: the bar" in report
    assert "| SFT forgets: general drop >= 0.20 | drop 0.690 | yes |" in report
    assert "| ProMoT keeps >= 80% of base general | 0.850 / 0.900 = 94.4% | yes |" in report
    assert "| ProMoT target within 0.05 of SFT | 0.960 vs 0.980 | yes |" in report
    assert "| SFT format leak > 30% | 70.0% | yes |" in report
    assert "0.210 ± 0.014" in report  # SFT general over two seeds
    assert (tmp_path / "report.png").stat().st_size > 1000


def test_promot_report_says_no_when_the_effect_is_missing(tmp_path):
    data = rows("sft", "base", 0.9, 0.5, 0.0) + rows("sft", "finetune", 0.89, 0.98, 0.05)
    data += rows("promot", "base", 0.9, 0.5, 0.0) + rows("promot", "finetune", 0.5, 0.7, 0.2)
    chat = {"embedded_copy": "real_arc_easy_chat", "embedded_sort": "real_piqa_chat"}  # real_general's generation group
    for row in data:  # each task scored with a standard error of 0.01
        row.update(stderr=0.01, task=chat.get(row["task"], row["task"]))
    write_csv(tmp_path / "results.csv", data)
    declare(tmp_path, "promot_smollm2.yaml")
    report = write_report(tmp_path).read_text()
    # SFT's drop of 0.010 is within its noise (unpaired: the rows have no per-example scores); ProMoT's 0.400 is not
    assert "| SFT forgets the generation group beyond 1.96 paired se | drop 0.010 (noise ±0.020) | **no** |" in report
    assert "| ProMoT's generation drop within 1.96 paired se | drop 0.400 (noise ±0.020) | **no** |" in report
    assert "| SFT learns the target: >= majority 0.520 + 0.10 | 0.980 | yes |" in report
    assert "| ProMoT target within 0.02 of SFT | 0.700 vs 0.980 | **no** |" in report
    assert "| ProMoT format leak < 10% | 20.0% | **no** |" in report


def test_dmt_report_table_and_bar(tmp_path):
    data = rows("domain_only", "base", 0.9, math=0.0, code=0.0) + rows("domain_only", "domain", 0.1, math=0.8, code=0.9)
    data += rows("general_only", "general", 0.95, math=0.0, code=0.0)
    data += rows("sequential", "code", 0.1, math=0.0, code=0.9) + rows(
        "sequential", "general", 0.95, math=0.05, code=0.1
    )
    for k, math, code in (("1/256", 0.1, 0.2), ("1/64", 0.3, 0.4), ("1/16", 0.28, 0.8)):
        data += rows(f"dmt@k={k}", "domain", 0.1, math=0.8, code=0.9) + rows(
            f"dmt@k={k}", "general", 0.95, math=math, code=code
        )
    write_csv(tmp_path / "results.csv", data, {f"dmt@k={k}": {"k": k} for k in ("1/256", "1/64", "1/16")})
    declare(tmp_path, "dmt.yaml")
    report = write_report(tmp_path).read_text()
    assert "## DMT: the bar" in report
    assert "| sequential loses >= 30% of domain_only's domain score | 0.075 vs 0.850: loses 91% | yes |" in report
    assert "| dmt@k=1/256 beats sequential on domain by >= 0.05 | +0.075 | yes |" in report
    assert "k=1/256: 0.150, k=1/64: 0.350, k=1/16: 0.540 | yes |" in report
    table = report.split("Table 1)")[1]
    assert "Δdomain vs domain_only" in table and "Δgeneral vs general_only" in table
    assert (tmp_path / "domain_vs_general.png").exists()
    frame = pd.read_csv(tmp_path / "results.csv")
    assert set(frame.suite) == {"general", "domain"}


# report.png: the figure objects, not pixels. The old plot drew every recipe on one shared x axis (the last
# recipe's stage names under everybody's points), hid prompt_tuning's line under promot's, and had no
# format-leak panel and no error bars.


def promot_frame(seeds=(0, 1)):
    data = []
    for seed in seeds:
        wobble = 0.02 * seed
        data += rows("sft", "base", 0.9, 0.5, 0.0, seed=seed)
        data += rows("sft", "finetune", 0.2 + wobble, 0.98, 0.7, seed=seed)
        data += rows("prompt_tuning", "base", 0.9, 0.5, 0.0, seed=seed)
        data += rows("prompt_tuning", "prompt_tune", 0.9, 0.6 + wobble, 0.0, seed=seed)
        data += rows("promot", "base", 0.9, 0.5, 0.0, seed=seed)
        data += rows("promot", "prompt_tune", 0.9, 0.6 + wobble, 0.0, seed=seed)
        data += rows("promot", "finetune", 0.85 - wobble, 0.96, 0.02 + wobble, seed=seed)
    return pd.DataFrame(data)


def axes_by_gid(fig):
    found = {}
    for ax in fig.axes:
        found[ax.get_gid()] = ax
        for child in ax.child_axes:
            found[child.get_gid()] = child
    return found


def errorbars(ax):
    from matplotlib.container import ErrorbarContainer

    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def recipe_markers(ax):
    """Per recipe label: the errorbar container drawn for it."""
    return {c.get_label(): c for c in errorbars(ax) if c.get_label() and not c.get_label().startswith("_")}


def label_boxes(fig, ax):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return {t.get_text(): t.get_window_extent(renderer) for t in ax.texts if (t.get_gid() or "").startswith("label:")}


@pytest.fixture
def close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def test_each_recipe_draws_its_own_stages_on_its_own_axis(close_figures):
    fig = figure(summarise(promot_frame()))
    axes = axes_by_gid(fig)
    ticks = {
        r: [t.get_text() for t in axes[f"stages:{r}"].get_xticklabels()] for r in ("sft", "prompt_tuning", "promot")
    }
    assert ticks == {
        "sft": ["base", "finetune"],
        "prompt_tuning": ["base", "prompt_tune"],
        "promot": ["base", "prompt_tune", "finetune"],
    }
    sft_general = errorbars(axes["stages:sft"])[0].lines[0]  # data line of the first errorbar: general
    assert list(sft_general.get_xdata()) == [0, 1] and list(sft_general.get_ydata()) == pytest.approx([0.9, 0.21])


def test_every_recipe_is_its_own_labelled_point_against_the_base(close_figures):
    fig = figure(summarise(promot_frame()))
    scatter = axes_by_gid(fig)["scatter"]
    markers = recipe_markers(scatter)
    assert set(markers) == {"sft", "prompt_tuning", "promot"}
    points = {r: (c.lines[0].get_xdata()[0], c.lines[0].get_ydata()[0]) for r, c in markers.items()}
    # x: final target minus base target; y: final general minus base general (means over seeds)
    assert points["sft"] == pytest.approx((0.98 - 0.5, 0.21 - 0.9))
    assert points["prompt_tuning"] == pytest.approx((0.61 - 0.5, 0.0))
    assert points["promot"] == pytest.approx((0.96 - 0.5, 0.84 - 0.9))
    assert all(c.lines[0].get_visible() for c in markers.values())
    # each its own hollow marker, so points on top of each other stay visible
    assert len({c.lines[0].get_marker() for c in markers.values()}) == 3
    base = [line for line in scatter.lines if line.get_label() == "base"]
    assert base and (base[0].get_xdata()[0], base[0].get_ydata()[0]) == (0, 0)
    boxes = label_boxes(fig, scatter)
    assert set(boxes) == {"sft", "prompt_tuning", "promot", "base"}
    frame = scatter.get_window_extent()
    for name, box in boxes.items():
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, name
        assert not any(box.overlaps(other) for n, other in boxes.items() if n != name), name


def test_format_leak_panel_per_recipe_with_the_base(close_figures):
    fig = figure(summarise(promot_frame()))
    leak = axes_by_gid(fig)["leak"]
    assert [t.get_text() for t in leak.get_xticklabels()] == ["base", "sft", "prompt_tuning", "promot"]
    heights = [bar.get_height() for bar in leak.patches]
    assert heights == pytest.approx([0.0, 0.7, 0.0, 0.03])  # final stage, mean over seeds


def test_error_bars_with_several_seeds(close_figures):
    fig = figure(summarise(promot_frame(seeds=(0, 1, 2))))
    axes = axes_by_gid(fig)
    markers = recipe_markers(axes["scatter"])
    assert all(c.has_xerr and c.has_yerr for c in markers.values())
    # the sd over seeds: promot's general 0.85, 0.83, 0.81 -> sd 0.02
    yerr = markers["promot"].lines[2][1].get_segments()[0]
    assert yerr[1][1] - yerr[0][1] == pytest.approx(2 * 0.02)
    assert [c.has_yerr for c in errorbars(axes["leak"]) if c.get_label() == "promot"] == [True]
    assert all(c.has_yerr for c in errorbars(axes["stages:promot"]))
    assert "sd over 3 seeds" in axes["scatter"].get_title()


def test_no_error_bars_with_one_seed(close_figures):
    fig = figure(summarise(promot_frame(seeds=(0,))))
    axes = axes_by_gid(fig)
    markers = recipe_markers(axes["scatter"])
    assert markers and not any(c.has_xerr or c.has_yerr for c in markers.values())
    assert not errorbars(axes["leak"])  # no zero-length bar either
    assert not any(c.has_yerr for c in errorbars(axes["stages:promot"]))
    assert "no error bars" in axes["scatter"].get_title()


def test_recipes_on_the_same_spot_share_one_label(close_figures):
    frame = pd.DataFrame(
        rows("sft", "base", 0.5, 0.5, 0.0)
        + rows("sft", "finetune", 0.5, 0.5, 0.0)
        + rows("promot", "base", 0.5, 0.5, 0.0)
        + rows("promot", "finetune", 0.5, 0.5, 0.0)
    )
    fig = figure(summarise(frame))
    scatter = axes_by_gid(fig)["scatter"]
    assert set(recipe_markers(scatter)) == {"sft", "promot"}
    assert list(label_boxes(fig, scatter)) == ["sft = promot = base"]


def dmt_frame(seeds=(0,)):
    data = []
    for seed in seeds:
        w = 0.01 * seed
        data += rows("general_only", "base", 0.97, math=0.03, code=0.0, seed=seed)
        data += rows("general_only", "general", 0.98 + w, math=0.02, code=0.0, seed=seed)
        data += rows("sequential", "base", 0.97, math=0.03, code=0.0, seed=seed)
        data += rows("sequential", "code", 0.1, math=0.0, code=0.7, seed=seed)
        data += rows("sequential", "general", 0.975, math=0.03, code=0.01 + w, seed=seed)
        data += rows("domain_only", "base", 0.97, math=0.03, code=0.0, seed=seed)
        data += rows("domain_only", "domain", 0.13, math=0.12, code=0.72 - w, seed=seed)
        for k, code in (("1/256", 0.37), ("1/16", 0.62)):
            data += rows(f"dmt@k={k}", "base", 0.97, math=0.03, code=0.0, seed=seed)
            data += rows(f"dmt@k={k}", "domain", 0.13, math=0.12, code=0.72, seed=seed)
            data += rows(f"dmt@k={k}", "general", 0.985, math=0.1, code=code + w, seed=seed)
    return pd.DataFrame(data)


def test_dmt_report_png_uses_domain_gain_and_has_no_leak_panel(close_figures):
    fig = figure(summarise(dmt_frame()))
    axes = axes_by_gid(fig)
    assert "leak" not in axes
    assert "domain" in axes["scatter"].get_xlabel()
    assert [t.get_text() for t in axes["stages:sequential"].get_xticklabels()] == ["base", "code", "general"]
    assert set(recipe_markers(axes["scatter"])) == {
        "general_only",
        "sequential",
        "domain_only",
        "dmt@k=1/256",
        "dmt@k=1/16",
    }
    # general_only, sequential and the base crowd the origin: they are labelled in a zoomed inset
    zoom = axes["scatter-zoom"]
    assert set(label_boxes(fig, zoom)) == {"general_only", "sequential", "base"}
    assert set(label_boxes(fig, axes["scatter"])) == {"domain_only", "dmt@k=1/256", "dmt@k=1/16"}


@pytest.mark.parametrize("seeds", [(0,), (0, 1, 2)])
def test_dmt_domain_vs_general_has_the_base_every_strategy_and_sd_over_seeds(close_figures, seeds):
    frame = dmt_frame(seeds)
    fig = domain_general_figure(final_scores(frame), final_sd(frame))
    axes = axes_by_gid(fig)
    ax = axes["domain_vs_general"]
    markers = recipe_markers(ax)
    assert set(markers) == {"general_only", "sequential", "domain_only", "dmt@k=1/256", "dmt@k=1/16"}
    assert all(c.has_xerr == (len(seeds) > 1) and c.has_yerr == (len(seeds) > 1) for c in markers.values())
    assert [line.get_label() for line in ax.lines if line.get_label() == "base"] == ["base"]
    labels = {
        **label_boxes(fig, ax),
        **(label_boxes(fig, axes["domain_vs_general-zoom"]) if "domain_vs_general-zoom" in axes else {}),
    }
    assert set(labels) == {*markers, "base"}
    main = label_boxes(fig, ax)
    assert not any(a.overlaps(b) for n, a in main.items() for m, b in main.items() if n != m)
