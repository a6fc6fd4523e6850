"""The frontier report and the significance marks, from synthetic results with known standard errors."""

import pandas as pd
import pytest

from pipeline.engine.results_csv import write_csv
from pipeline.reports import frontier as frontier
from pipeline.reports.report import write_report
from pipeline.reports.results import read_results, summarise
from pipeline.reports.uncertainty import Z, marker, standard_error


def rows(recipe, stage, general, target, seed=0, se=0.01):
    return [
        dict(
            recipe=recipe,
            seed=seed,
            stage=stage,
            task=task,
            suite="general",
            metric="exact_match",
            score=general,
            n=100,
            stderr=se,
        )
        for task in ("copy", "sort")
    ] + [
        dict(
            recipe=recipe,
            seed=seed,
            stage=stage,
            task="rule",
            suite="target",
            metric="exact_match",
            score=target,
            n=100,
            stderr=se,
        )
    ]


def run_folder(tmp_path, data, name="promot"):
    write_csv(tmp_path / "results.csv", data)
    (tmp_path / "config.yaml").write_text(f"name: {name}\n")
    return tmp_path


def frame(seeds=(0, 1)):
    data = []
    for seed in seeds:
        wobble = 0.01 * seed
        for recipe in ("sft", "promot", "weak"):
            data += rows(recipe, "base", 0.8, 0.2, seed)
        data += rows("sft", "finetune", 0.4 + wobble, 0.9, seed)  # learns most, forgets most
        data += rows("promot", "prompt_tune", 0.8, 0.5 + wobble, seed)
        data += rows("promot", "finetune", 0.78 + wobble, 0.88, seed)  # keeps almost all, learns almost as much
        data += rows("weak", "finetune", 0.7, 0.6 + wobble, seed)  # dominated by promot/finetune
    return data


def test_points_retention_gain_and_the_pareto_front(tmp_path):
    table = summarise(read_results(run_folder(tmp_path, frame()) / "results.csv"))
    found = {f"{p['recipe']}/{p['stage']}": p for p in frontier.points(table)}
    assert set(found) == {"sft/finetune", "promot/prompt_tune", "promot/finetune", "weak/finetune"}
    promot = found["promot/finetune"]
    assert promot["retention"] == pytest.approx((0.78 + 0.79) / 2 / 0.8)
    assert promot["gain"] == pytest.approx(0.68)
    assert {name for name, p in found.items() if p["front"]} == {
        "sft/finetune",
        "promot/prompt_tune",
        "promot/finetune",
    }
    assert found["weak/finetune"]["dominated_by"] == ["promot/finetune"]
    # 95% bars: the examples' standard error and the seeds' spread together
    assert promot["gain_err"] > Z * 0.01 and promot["retention_err"] > 0


def test_the_report_leads_with_the_frontier_and_says_where_the_method_is(tmp_path):
    report = write_report(run_folder(tmp_path, frame())).read_text()
    assert report.index("## Frontier") < report.index("## Base → each stage")
    assert "The method's final stage `promot/finetune`" in report and "is on the front" in report
    assert "| weak | finetune |" in report and "promot/finetune |" in report
    assert (tmp_path / "frontier.png").stat().st_size > 10_000


def test_a_method_off_the_front_is_named_with_what_dominates_it(tmp_path):
    data = [r for r in frame() if r["recipe"] != "promot"]
    for seed in (0, 1):
        data += rows("promot", "base", 0.8, 0.2, seed) + rows("promot", "finetune", 0.6, 0.5, seed)
    report = write_report(run_folder(tmp_path, data)).read_text()
    assert "is not on the front: dominated by `weak/finetune`" in report


def test_forgetting_is_marked_significant_only_beyond_its_noise(tmp_path):
    data = []
    for seed in (0, 1):
        data += rows("sft", "base", 0.8, 0.2, seed) + rows("sft", "finetune", 0.4, 0.9, seed)  # a drop of 0.4
        data += rows("promot", "base", 0.8, 0.2, seed) + rows("promot", "finetune", 0.79, 0.9, seed)  # of 0.01
    section = write_report(run_folder(tmp_path, data)).read_text().split("## Base → each stage")[1]
    lines = section.split("\n## ")[0].splitlines()  # this table only: the per-task tables after it have stages too
    header = [cell.strip() for cell in lines[2].split("|")]
    cells = [dict(zip(header, (cell.strip() for cell in line.split("|")))) for line in lines[4:] if "|" in line]
    significant = {row["recipe"]: row["significant"] for row in cells if row["stage"] == "finetune"}
    assert significant == {"sft": "yes", "promot": "no"}
    assert {row["significant"] for row in cells if row["stage"] == "base"} == {"–"}


def test_standard_error_joins_examples_and_seeds():
    assert standard_error(0.03, 0.04, 4) == pytest.approx((0.03**2 + 0.04**2 / 4) ** 0.5)
    assert standard_error(0.03, float("nan"), 1) == pytest.approx(0.03)
    assert standard_error(float("nan"), 0.1, 3) != standard_error(float("nan"), 0.1, 3)  # unknown stays unknown
    assert (marker(0.1, 0.03), marker(0.05, 0.03), marker(0.1, float("nan"))) == ("yes", "no", "?")


def test_no_gain_column_means_no_frontier():
    table = pd.DataFrame({"recipe": ["a"], "seed": [0], "stage": ["base"], "general": [0.5]})
    assert frontier.points(table) == [] and frontier.sections(table, "a", "x") == ([], None)


def test_a_stage_several_recipes_share_is_one_point(tmp_path):
    data = []
    for recipe in ("domain_only", "dmt@k=1/256"):
        data += rows(recipe, "base", 0.8, 0.2) + rows(recipe, "domain", 0.3, 0.7)  # reused: the same scores
    data += rows("dmt@k=1/256", "general", 0.8, 0.5)
    table = summarise(read_results(run_folder(tmp_path, data, name="dmt") / "results.csv"))
    shared = [p for p in frontier.points(table) if p["stage"] == "domain"]
    assert len(shared) == 1 and shared[0]["recipe"] == "domain_only" and shared[0]["same_as"] == ["dmt@k=1/256"]
    assert "| domain_only (= dmt@k=1/256) | domain |" in write_report(tmp_path).read_text()
