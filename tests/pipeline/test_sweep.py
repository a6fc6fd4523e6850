"""Structured sweeps: the grid of several keys, the swept values as data (config.yaml, results.csv's columns)."""

import pandas as pd
import pytest
import yaml

from pipeline.config import load_recipe, resolved_dict
from pipeline.results import read_results, stage_rows, swept_values, write_csv
from core.typed_yaml import ConfigError

RECIPE = """name: demo
target: {name: letter_rule}
data:
  math: {source: embedded:math, rows: 8}
  general: {source: embedded:general, rows: 8}
recipes:
  sft:
    - {kind: finetune, steps: 2, lr: 0.001}
  dmt:
    - {kind: finetune, name: domain, data: [math], steps: 2}
    - {kind: finetune, name: general, data: [general], replay: [math], steps: 2, k: 1/256}
"""


def load(tmp_path, text, overrides=()):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return load_recipe(path, list(overrides))


def test_one_key_keeps_todays_names_and_records_the_values(tmp_path):
    recipe = load(tmp_path, RECIPE + "sweep: {dmt.k: [1/256, 1/16]}\n")
    assert list(recipe.stages) == ["sft", "dmt@k=1/256", "dmt@k=1/16"]
    assert recipe.swept == {"dmt@k=1/256": {"k": "1/256"}, "dmt@k=1/16": {"k": "1/16"}}
    config = yaml.safe_load(yaml.safe_dump(resolved_dict(recipe)))
    assert "1/16" in str(config["recipes"]["dmt@k=1/16"][1]) and "1/16" not in str(config["recipes"]["dmt@k=1/256"])
    assert config["swept"] == {"dmt@k=1/256": {"k": "1/256"}, "dmt@k=1/16": {"k": "1/16"}}


def test_two_keys_on_one_recipe_make_the_grid_in_a_stable_order(tmp_path):
    recipe = load(tmp_path, RECIPE + "sweep: {sft.lr: [0.001, 0.01], sft.steps: [2, 4], dmt.k: [1/64]}\n")
    assert list(recipe.stages) == ["sft@lr=0.001@steps=2", "sft@lr=0.001@steps=4", "sft@lr=0.01@steps=2",
                                   "sft@lr=0.01@steps=4", "dmt@k=1/64"]
    assert recipe.swept["sft@lr=0.01@steps=4"] == {"lr": 0.01, "steps": 4}
    assert [(c.lr, c.steps) for c in recipe.stages["sft@lr=0.01@steps=2"]] == [(0.01, 2)]


def test_set_makes_the_same_grid(tmp_path):
    recipe = load(tmp_path, RECIPE, ["sft.lr=0.001,0.01", "sft.steps=2,4"])
    assert list(recipe.stages)[:2] == ["sft@lr=0.001@steps=2", "sft@lr=0.001@steps=4"]
    assert load(tmp_path, RECIPE).swept == {}


def test_a_sweep_of_no_field_of_the_recipe_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, RECIPE + "sweep: {sft.k: [1/2], nope.k: [1]}\n")
    assert [p.split(": ", 1)[1] for p in err.value.problems] == [
        "sweep.sft.k: no stage of recipe 'sft' sets 'k'",
        "sweep.nope.k: expected RECIPE.FIELD with a recipe of this file; recipes: ['dmt', 'sft']"]


def results_rows():
    row = dict(task="copy", suite="general", metric="exact_match", score=0.5, n=4)
    return [r for recipe in ("sft", "dmt@k=1/256", "dmt@k=1/16") for stage in ("base", "finetune")
            for r in stage_rows(recipe, 0, stage, [row])]


def test_results_get_one_column_per_swept_field_as_written(tmp_path):
    swept = {"dmt@k=1/256": {"k": "1/256"}, "dmt@k=1/16": {"k": "1/16", "lr": 0.0010}}
    path = write_csv(tmp_path / "results.csv", results_rows(), swept)
    header = path.read_text().splitlines()[0]
    assert header == "recipe,seed,stage,task,suite,metric,score,n,stderr,primary,k,lr"
    frame = read_results(path)
    assert frame.k.fillna("").tolist() == ["", "", "1/256", "1/256", "1/16", "1/16"]
    assert swept_values(frame) == {"dmt@k=1/256": {"k": "1/256"}, "dmt@k=1/16": {"k": "1/16", "lr": "0.001"}}


def test_a_results_file_without_sweep_columns_still_reads(tmp_path):
    path = write_csv(tmp_path / "results.csv", results_rows())
    assert path.read_text().splitlines()[0] == "recipe,seed,stage,task,suite,metric,score,n,stderr,primary"
    frame = read_results(path)
    assert swept_values(frame) == {}
    old = pd.read_csv(path).drop(columns=["stderr", "primary"])  # as written before those columns existed
    old.to_csv(tmp_path / "old.csv", index=False)
    assert swept_values(read_results(tmp_path / "old.csv")) == {}


@pytest.mark.parametrize("shipped", ["dmt", "promot"])
def test_a_runs_resolved_config_loads_as_the_recipe_file_it_resolves(tmp_path, shipped):
    """config.yaml (sweeps expanded, their values under swept:, checks naming the swept recipe) reloads to the same
    stages, swept values and checks, so `pipeline run <run>/config.yaml` trains what the run trained."""
    from pathlib import Path

    from pipeline.config import stage_dict

    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / f"{shipped}.yaml")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(resolved_dict(recipe), sort_keys=False))
    again = load_recipe(tmp_path / "config.yaml")
    assert again.swept == recipe.swept and list(again.stages) == list(recipe.stages)
    assert {n: [stage_dict(c) for c in s] for n, s in again.stages.items()} == \
        {n: [stage_dict(c) for c in s] for n, s in recipe.stages.items()}
    assert again.checks == recipe.checks


def test_a_swept_section_that_is_not_what_a_run_writes_is_one_line(tmp_path):
    (tmp_path / "r.yaml").write_text("name: demo\ntarget: {}\nrecipes:\n  sft:\n    - {kind: finetune}\nswept: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"r.yaml:6: swept: expected \{recipe: \{field: value\}\}"):
        load_recipe(tmp_path / "r.yaml")
