"""results.csv schema: fixed columns, suite kinds, scores in [0, 1]; written atomically."""

import pandas as pd
import pytest

from pipeline.results import COLUMNS, read_csv, stage_rows, write_csv

ROW = {"task": "embedded_copy", "suite": "general", "metric": "exact_match", "score": 0.5, "n": 10}


def test_rows_are_labelled_and_written(tmp_path):
    rows = stage_rows("promot", 1, "finetune", [ROW])
    path = write_csv(tmp_path / "results.csv", rows)
    frame = pd.read_csv(path)
    assert list(frame.columns) == COLUMNS + ["stderr", "primary"]
    row = frame.iloc[0].to_dict()
    assert row.pop("stderr") != row.pop("stderr", 0)  # NaN: no standard error given
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
    assert row.primary == 1 and row.stderr != row.stderr


def test_missing_column_is_refused(tmp_path):
    row = {k: v for k, v in ROW.items() if k != "n"}
    with pytest.raises(ValueError, match="lacks"):
        write_csv(tmp_path / "results.csv", stage_rows("sft", 0, "base", [row]))
