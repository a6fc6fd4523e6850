"""Per-task statistics (pipeline/reports/task_stats.py) against numbers computed by hand, and the report's groups
(knowledge, generation) from a results.csv whose suite declares them."""

import json
import math

import pandas as pd
import pytest

from pipeline.engine.results_csv import write_csv
from pipeline.reports.report import write_report
from pipeline.reports.results import GROUP, read_results, summarise
from pipeline.reports.task_stats import base_needed, examples_needed, paired, task_rows

BASE = {0: 1, 1: 1, 2: 0, 3: 0, 4: 1}
STAGE = {0: 1, 1: 0, 2: 1, 3: 0, 4: 0}


def test_paired_statistics_by_hand():
    p = paired(BASE, STAGE)
    # differences 0, -1, 1, 0, -1: mean -0.2; squared deviations .04 .64 1.44 .04 .64 = 2.8, / 4 = 0.7
    assert (p.n, p.difference) == (5, pytest.approx(-0.2))
    assert p.difference_sd == pytest.approx(math.sqrt(0.7))
    assert p.se == pytest.approx(math.sqrt(0.7 / 5))  # 0.3742
    assert p.detectable == pytest.approx(2 * math.sqrt(0.7 / 5))  # 0.7483
    assert p.needed == (3112, "paired")  # (2 * sqrt(0.7) / 0.03)^2 = 3111.1
    assert (p.right_to_wrong, p.wrong_to_right) == (2, 1)  # docs 1 and 4; doc 2
    assert p.base_sd == pytest.approx(math.sqrt(0.3))  # 1 1 0 0 1: 1.2 / 4


def test_examples_needed_from_the_base_alone_is_the_unpaired_bound():
    assert base_needed(math.sqrt(0.3)) == 2667  # (2 * sqrt(2 * 0.3) / 0.03)^2 = 2666.7
    assert examples_needed(0.5) == 1112  # (2 * 0.5 / 0.03)^2 = 1111.1
    assert examples_needed(0.0) is None and examples_needed(float("nan")) is None
    same = paired(BASE, BASE)  # nothing changed: the differences say nothing, the base's sd does
    assert (same.se, same.right_to_wrong, same.wrong_to_right) == (0.0, 0, 0)
    assert same.needed == (2667, "base, unpaired")


def test_pairs_only_the_examples_both_scored_with_json_keys():
    p = paired({str(k): v for k, v in BASE.items()}, {0: 1, 1: 0, 9: 1})  # per_example.json's keys are strings
    assert (p.n, p.right_to_wrong, p.wrong_to_right) == (2, 1, 0)


def _write_run(folder, reused=False):
    rows = []
    for stage, values in (("base", BASE), ("finetune", STAGE)):
        for task, _group, vals in (("real_arc_easy", "knowledge", BASE), ("real_arc_easy_chat", "generation", values)):
            score = sum(vals.values()) / 5
            paired_se = 0.0 if stage == "base" else paired(BASE, vals).se
            rows.append(
                dict(
                    recipe="sft",
                    seed=0,
                    stage=stage,
                    task=task,
                    suite="general",
                    metric="acc",
                    score=score,
                    n=5,
                    stderr=0.2,
                    primary=1,
                    paired_stderr=paired_se,
                )
            )
    write_csv(folder / "results.csv", rows)
    (folder / "base" / "evaluate").mkdir(parents=True)
    (folder / "base" / "evaluate" / "per_example.json").write_text(
        json.dumps({"real_arc_easy": BASE, "real_arc_easy_chat": BASE})
    )
    made = "seed0/other/finetune-eval" if reused else "seed0/sft/finetune-eval"
    (folder / made).mkdir(parents=True)
    (folder / made / "per_example.json").write_text(json.dumps({"real_arc_easy": BASE, "real_arc_easy_chat": STAGE}))
    stages = {"seed0/sft/finetune-eval": {"status": "reused", "reused_from": made}} if reused else {}
    (folder / "manifest.json").write_text(json.dumps({"code_version": "x", "stages": stages}))


@pytest.mark.parametrize("reused", [False, True])
def test_task_rows_read_each_evaluations_per_example_file(tmp_path, reused):
    _write_run(tmp_path, reused)
    rows = {(r["stage"], r["task"]): r for r in task_rows(read_results(tmp_path / "results.csv"), tmp_path)}
    chat = rows[("finetune", "real_arc_easy_chat")]
    assert chat["group"] == "generation"
    assert chat["forgetting"] == pytest.approx(-0.2) and chat["paired se"] == pytest.approx(math.sqrt(0.7 / 5))
    assert chat["detectable (2 se)"] == pytest.approx(2 * math.sqrt(0.7 / 5))
    assert (chat["n for -0.03"], chat["from"], chat["right→wrong"], chat["wrong→right"]) == (3112, "paired", 2, 1)
    kept = rows[("finetune", "real_arc_easy")]  # unchanged answers: n from the base, no flips
    assert (kept["n for -0.03"], kept["from"], kept["right→wrong"], kept["wrong→right"]) == (
        2667,
        "base, unpaired",
        0,
        0,
    )
    base = rows[("base", "real_arc_easy")]
    assert (base["recipe"], base["forgetting"], base["n for -0.03"]) == ("(all)", None, 2667)


def test_without_per_example_files_the_counts_are_unknown(tmp_path):
    _write_run(tmp_path)
    (tmp_path / "seed0/sft/finetune-eval/per_example.json").unlink()
    row = [r for r in task_rows(read_results(tmp_path / "results.csv"), tmp_path) if r["stage"] == "finetune"][0]
    assert row["forgetting"] == pytest.approx(0.0) and (row["right→wrong"], row["n for -0.03"]) == (None, None)


def test_the_report_shows_each_group_with_its_paired_se_and_the_per_task_statistics(tmp_path):
    _write_run(tmp_path)
    frame = read_results(tmp_path / "results.csv")
    assert list(frame[GROUP][:2]) == ["knowledge", "generation"]
    table = summarise(frame).set_index("stage")
    assert table.loc["finetune", "generation_forgetting"] == pytest.approx(-0.2)
    assert table.loc["finetune", "generation_forgetting_se"] == pytest.approx(math.sqrt(0.7 / 5))
    assert table.loc["finetune", "knowledge_forgetting"] == 0.0
    assert table.loc["finetune", "forgetting"] == pytest.approx(-0.1)
    # the suite's forgetting se: sqrt(0 + 0.14) / 2 tasks
    assert table.loc["finetune", "forgetting_se"] == pytest.approx(math.sqrt(0.7 / 5) / 2)
    report = write_report(tmp_path).read_text()
    header = next(line for line in report.splitlines() if line.startswith("| recipe") and "knowledge" in line)
    for column in ("knowledge", "knowledge forgetting se", "generation forgetting ±1.96 se", "generation significant"):
        assert f" {column} " in header
    assert "## Per task: forgetting, what it can detect, flips" in report
    line = next(line for line in report.splitlines() if "| finetune" in line and "real_arc_easy_chat" in line)
    assert [c.strip() for c in line.split("|")[4:-1]] == [
        "generation",
        "5",
        "0.400",
        "-0.200",
        "0.374",
        "0.748",
        "3112",
        "paired",
        "2",
        "1",
    ]


def test_an_embedded_suite_gets_no_group_column(tmp_path):
    rows = [
        dict(
            recipe="sft",
            seed=0,
            stage="base",
            task="embedded_copy",
            suite="general",
            metric="exact_match",
            score=0.5,
            n=4,
        )
    ]
    write_csv(tmp_path / "results.csv", rows)
    assert (tmp_path / "results.csv").read_text().splitlines()[
        0
    ] == "recipe,seed,stage,task,suite,metric,score,n,stderr,primary,paired_stderr"
    table = summarise(pd.read_csv(tmp_path / "results.csv"))
    assert not [c for c in table.columns if c.startswith(("knowledge", "generation"))]
