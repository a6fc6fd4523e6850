"""results.csv schema: fixed columns, suite kinds, scores in [0, 1]; written atomically."""

import pandas as pd
import pytest

from pipeline.engine.results_csv import stage_rows, write_csv
from pipeline.reports.results import COLUMNS, read_csv, read_results, summarise

ROW = {"task": "embedded_copy", "suite": "general", "metric": "exact_match", "score": 0.5, "n": 10}


def test_rows_are_labelled_and_written(tmp_path):
    rows = stage_rows("promot", 1, "finetune", [ROW])
    path = write_csv(tmp_path / "results.csv", rows)
    frame = pd.read_csv(path)
    assert list(frame.columns) == COLUMNS + ["stderr", "primary", "paired_stderr"]
    row = frame.iloc[0].to_dict()
    assert row.pop("stderr") != row.pop("stderr", 0)  # NaN: no standard error given
    assert row.pop("paired_stderr") != row.pop("paired_stderr", 0)
    assert row == {"recipe": "promot", "seed": 1, "stage": "finetune", **ROW, "primary": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temp file left behind


@pytest.mark.parametrize("bad", [{"score": 1.5}, {"score": -0.1}, {"suite": "other"}])
def test_bad_rows_are_refused_and_nothing_is_written(tmp_path, bad):
    rows = stage_rows("sft", 0, "base", [{**ROW, **bad}])
    with pytest.raises(ValueError):
        write_csv(tmp_path / "results.csv", rows)
    assert not (tmp_path / "results.csv").exists()


def test_a_results_table_from_before_stderr_reads_with_defaults(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text(",".join(COLUMNS) + "\npromot,0,base,embedded_copy,general,exact_match,0.5,10\n")
    row = read_csv(path).iloc[0]
    assert row.primary == 1 and row.stderr != row.stderr and row.paired_stderr != row.paired_stderr


def test_a_results_table_from_before_paired_stderr_reads_and_summarises_unpaired(tmp_path):
    path = write_csv(tmp_path / "results.csv", forgetting_rows(paired=(0.0, 0.0, 0.01, 0.02)))
    old = pd.read_csv(path).drop(columns=["paired_stderr"])  # as written before the column existed
    old.to_csv(path, index=False)
    frame = read_results(path)
    assert frame.paired_stderr.isna().all()
    assert summarise(frame).set_index("stage").forgetting_se["finetune"] == pytest.approx(UNPAIRED)


def test_missing_column_is_refused(tmp_path):
    row = {k: v for k, v in ROW.items() if k != "n"}
    with pytest.raises(ValueError, match="lacks"):
        write_csv(tmp_path / "results.csv", stage_rows("sft", 0, "base", [row]))


# Two general tasks, base and finetune, each task's stderr 0.04 (base) and 0.03 (finetune).
UNPAIRED = ((0.04**2 + 0.04**2) / 4 + (0.03**2 + 0.03**2) / 4) ** 0.5


def forgetting_rows(paired):
    """results rows of base and finetune on tasks a and b; `paired` is each row's paired_stderr, in order."""
    rows = [
        {"task": task, "suite": "general", "metric": "acc", "score": score, "n": 100, "stderr": se}
        for task, score, se in [("a", 0.8, 0.04), ("b", 0.6, 0.04), ("a", 0.7, 0.03), ("b", 0.5, 0.03)]
    ]
    rows = [{**row, "paired_stderr": p} for row, p in zip(rows, paired)]
    return stage_rows("sft", 0, "base", rows[:2]) + stage_rows("sft", 0, "finetune", rows[2:])


def test_forgetting_se_is_the_paired_one_where_every_general_task_has_it():
    table = summarise(pd.DataFrame(forgetting_rows(paired=(0.0, 0.0, 0.01, 0.02)))).set_index("stage")
    assert table.forgetting["finetune"] == pytest.approx(-0.1)
    assert table.forgetting_se["finetune"] == pytest.approx((0.01**2 + 0.02**2) ** 0.5 / 2)
    assert table.forgetting_se["base"] == 0.0
    assert "paired_se" not in table.columns and "paired_stderr" not in table.columns


def test_forgetting_se_falls_back_to_adding_the_variances_when_a_task_lacks_a_paired_one():
    table = summarise(pd.DataFrame(forgetting_rows(paired=(0.0, 0.0, 0.01, None)))).set_index("stage")
    assert table.forgetting_se["finetune"] == pytest.approx(UNPAIRED)
    none = summarise(pd.DataFrame(forgetting_rows(paired=(None,) * 4))).set_index("stage")
    assert none.forgetting_se["finetune"] == pytest.approx(UNPAIRED)
    assert "paired_se" not in none.columns
