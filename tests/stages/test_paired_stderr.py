"""The paired standard error of a stage's score minus the base's, from per-example values on the same docs."""

import math

import pytest

from evaluation.harness import per_example
from stages.evaluate import _with_paired_stderr, paired_stderr, read_per_example

BASE = {0: 1.0, 1: 1.0, 2: 1.0, 3: 0.0}
STAGE = {0: 1.0, 1: 1.0, 2: 0.0, 3: 0.0, 9: 1.0}  # doc 9: scored by the stage only, left out of the pairing


def test_paired_stderr_by_hand():
    # differences on docs 0-3: 0, 0, -1, 0; mean -1/4; sum of squares 3/16 + 9/16 = 3/4; sd = sqrt(3/4 / 3) = 1/2
    assert paired_stderr(STAGE, BASE) == pytest.approx(0.5 / math.sqrt(4))
    # adding the variances: stage 1/2 ± sqrt(1/4 · 4/3 / 4), base 3/4 ± sqrt(3/16 · 4/3 / 4): larger
    unpaired = math.hypot(math.sqrt(0.25 / 3), math.sqrt(0.0625))
    assert unpaired == pytest.approx(0.3819, abs=1e-4) and paired_stderr(STAGE, BASE) < unpaired


def test_the_base_paired_with_itself_is_zero_and_too_few_docs_are_unknown():
    assert paired_stderr(BASE, BASE) == 0.0
    assert paired_stderr({0: 1.0, 5: 0.0}, BASE) is None  # one doc shared
    assert paired_stderr(STAGE, None) is None and paired_stderr(None, BASE) is None


def test_rows_get_it_on_primary_scores_only():
    values, base = {"t": STAGE}, {"t": BASE}
    row = {"task": "t", "suite": "general", "metric": "acc", "score": 0.5, "n": 4, "primary": 1}
    assert _with_paired_stderr(row, values, base)["paired_stderr"] == pytest.approx(0.25)
    assert _with_paired_stderr({**row, "task": "other"}, values, base)["paired_stderr"] is None
    for other in ({**row, "primary": 0}, {**row, "metric": "format_leak"}):
        assert "paired_stderr" not in _with_paired_stderr(other, values, base)


def test_per_example_values_by_doc_id():
    samples = [{"doc_id": 1, "acc": True}, {"doc_id": 0, "acc": 0.0}]
    assert per_example(samples, "acc") == {1: 1.0, 0: 0.0}
    assert per_example([{"doc_id": 0, "acc": [True, False]}], "acc") is None  # IFEval's instruction-level lists
    assert per_example([], "acc") is None


def test_the_file_reads_back_with_int_doc_ids(tmp_path):
    from core.atomic import write_json

    assert read_per_example(tmp_path) is None  # an evaluation from before the file existed
    write_json(tmp_path / "per_example.json", {"t": STAGE})
    assert read_per_example(tmp_path) == {"t": STAGE}
