"""A bad row: an error naming it unless the row cap excludes it; on_bad_rows: skip drops it, counted in the manifest."""

import json

import pytest

from pipeline.cli import main

RECIPE = """name: mine
model: {{path: {base}}}
seeds: [0]
target:
  name: mine
  train: train.jsonl
  test_rows: 4
{extra}
evaluation: {{limit: 2}}
recipes:
  sft:
    - {{kind: finetune, steps: 1, batch_size: 4}}
"""


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    return ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))


def _project(tmp_path, base, extra: str):
    rows = [{"prompt": f"size of item {i} ?", "completion": " small"} for i in range(40)]
    rows[30]["completion"] = ""  # as the real Code Alpaca file has at its row 237
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "recipe.yaml").write_text(RECIPE.format(base=base, extra=extra))
    return str(tmp_path / "recipe.yaml")


def test_a_bad_row_is_named(tmp_path, tiny_base, capsys):
    assert main(["validate", _project(tmp_path, tiny_base, "")]) == 2
    assert "row 30: field 'completion' is missing or empty; on_bad_rows: skip drops bad rows" in capsys.readouterr().err


def test_a_bad_row_past_the_row_cap_is_no_error(tmp_path, tiny_base, capsys):
    assert main(["validate", _project(tmp_path, tiny_base, "  train_rows: 30")]) == 0, capsys.readouterr().err


def test_skip_drops_it_and_the_manifest_counts_it(tmp_path, tiny_base):
    recipe = _project(tmp_path, tiny_base, "  on_bad_rows: skip")
    assert main(["run", recipe, "--run-dir", str(tmp_path / "run")]) == 0
    data = json.loads((tmp_path / "run" / "manifest.json").read_text())["data"]
    [(source, dropped)] = data["dropped_bad_rows"].items()
    assert source.endswith("train.jsonl") and dropped == 1
    assert data["rows"]["train"] + data["rows"]["test"] == 39
    assert data["target_scoring"] == {"scorer": "exact", "max_answer_tokens": 64}  # chosen, and recorded
