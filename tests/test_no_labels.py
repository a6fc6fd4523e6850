"""A user's target without `target.labels` (optional in the docs): the run finishes and the report says
what it could not measure, instead of crashing after every stage has trained."""

import json

import pandas as pd

from pipeline.cli import main

RECIPE = """name: mine
model: {{path: {base}}}
seeds: [0]
target: {{name: mine, train: train.jsonl, test_rows: 4}}
evaluation: {{limit: 2}}
recipes:
  sft:
    - {{kind: finetune, steps: 1, batch_size: 4}}
  promot:
    - {{kind: prompt_tune, steps: 1, batch_size: 4, num_virtual_tokens: 4}}
    - {{kind: finetune, steps: 1, batch_size: 4, prompt_from: prompt_tune}}
checks:
  - {{name: "ProMoT format leak < 10%", missing_name: "ProMoT format leak", recipe: promot, measure: format_leak,
     below: 0.10}}
"""


def test_a_run_without_labels_reports_without_the_leak(tmp_path):
    from embedded.model import TEST_SPEC, ensure_base_model

    base = ensure_base_model(TEST_SPEC, cache_root=tmp_path / "cache")
    rows = [{"prompt": f"size of item {i} ?", "completion": " small"} for i in range(24)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "recipe.yaml").write_text(RECIPE.format(base=base))
    assert main(["run", str(tmp_path / "recipe.yaml"), "--run-dir", str(tmp_path / "run")]) == 0
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| ProMoT format leak | not measured: set target.labels | n/a |" in report
    assert (tmp_path / "run" / "report.png").stat().st_size > 0
    assert "format_leak" not in set(pd.read_csv(tmp_path / "run" / "results.csv").metric)
