"""Structured sweeps: the grid of several keys, the swept values as data (config.yaml, results.csv's columns)."""

import pandas as pd
import pytest
import yaml

from core.typed_yaml import ConfigError
from pipeline.engine.results_csv import stage_rows, write_csv
from pipeline.recipe.config import load_recipe, resolved_dict
from pipeline.reports.results import read_results, swept_values

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
    assert list(recipe.stages) == [
        "sft@lr=0.001@steps=2",
        "sft@lr=0.001@steps=4",
        "sft@lr=0.01@steps=2",
        "sft@lr=0.01@steps=4",
        "dmt@k=1/64",
    ]
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
        "sweep.nope.k: expected RECIPE.FIELD or RECIPE.STAGE.FIELD with a recipe of this file; recipes: ['dmt', 'sft']",
    ]


PROMOT = (
    RECIPE
    + """  promot:
    - {kind: prompt_tune, steps: 2, lr: 0.3, num_virtual_tokens: 4}
    - {kind: finetune, steps: 2, lr: 0.001, prompt_from: prompt_tune}
"""
)


def lrs(recipe, name):
    return [(c.kind, c.lr, c.steps) for c in recipe.stages[name]]


def test_a_stage_key_sets_that_stage_only_and_names_the_copy_by_its_field(tmp_path):
    recipe = load(tmp_path, PROMOT + "sweep: {promot.finetune.lr: [0.0003, 0.003], promot.finetune.steps: [3]}\n")
    assert list(recipe.stages) == ["sft", "dmt", "promot@lr=0.0003@steps=3", "promot@lr=0.003@steps=3"]
    assert lrs(recipe, "promot@lr=0.003@steps=3") == [("prompt_tune", 0.3, 2), ("finetune", 0.003, 3)]
    assert recipe.swept == {
        "promot@lr=0.0003@steps=3": {"lr": 0.0003, "steps": 3},
        "promot@lr=0.003@steps=3": {"lr": 0.003, "steps": 3},
    }
    whole = load(tmp_path, PROMOT + "sweep: {promot.lr: [0.003]}\n")  # RECIPE.FIELD: every stage that sets it
    assert lrs(whole, "promot@lr=0.003") == [("prompt_tune", 0.003, 2), ("finetune", 0.003, 2)]


def test_a_stage_is_named_by_its_name_else_its_kind(tmp_path):
    recipe = load(tmp_path, PROMOT + "sweep: {dmt.general.steps: [5], promot.prompt_tune.lr: [0.1]}\n")
    assert [(c.name, c.steps) for c in recipe.stages["dmt@steps=5"]] == [("domain", 2), ("general", 5)]
    assert lrs(recipe, "promot@lr=0.1") == [("prompt_tune", 0.1, 2), ("finetune", 0.001, 2)]
    dotted = PROMOT.replace(
        "{kind: finetune, steps: 2, lr: 0.001, prompt_from",
        "{kind: finetune, name: stage.2, steps: 2, lr: 0.001, prompt_from",
    )
    assert lrs(load(tmp_path, dotted + "sweep: {promot.stage.2.lr: [0.01]}\n"), "promot@lr=0.01")[1] == (
        "finetune",
        0.01,
        2,
    )  # a stage name may hold dots: FIELD is the key's last part


def test_set_with_a_stage_key_is_the_files_sweep(tmp_path):
    by_file = load(tmp_path, PROMOT + "sweep: {promot.finetune.lr: [0.001, 0.003], sft.lr: [0.003]}\n")
    by_set = load(tmp_path, PROMOT, ["promot.finetune.lr=0.001,0.003", "sft.lr=0.003"])
    assert by_set.swept == by_file.swept and list(by_set.stages) == list(by_file.stages)
    assert resolved_dict(by_set)["recipes"] == resolved_dict(by_file)["recipes"]
    assert lrs(by_set, "promot@lr=0.001") == [("prompt_tune", 0.3, 2), ("finetune", 0.001, 2)]


def test_a_dotted_set_that_names_no_recipe_is_still_a_plain_override(tmp_path):
    recipe = load(tmp_path, PROMOT, ["evaluation.limit=50", "recipes.promot.1.lr=0.01", "promot.finetune.steps=4"])
    assert recipe.evaluation.limit == 50 and recipe.swept == {"promot@steps=4": {"steps": 4}}
    assert lrs(recipe, "promot@steps=4") == [("prompt_tune", 0.3, 2), ("finetune", 0.01, 4)]


def test_sft_and_a_promot_stage_share_one_results_column(tmp_path):
    recipe = load(tmp_path, PROMOT + "sweep: {sft.lr: [0.003], promot.finetune.lr: [0.003]}\n")
    assert recipe.swept == {"sft@lr=0.003": {"lr": 0.003}, "promot@lr=0.003": {"lr": 0.003}}
    row = dict(task="copy", suite="general", metric="exact_match", score=0.5, n=4)
    rows = [r for name in recipe.stages for stage in ("base", "finetune") for r in stage_rows(name, 0, stage, [row])]
    path = write_csv(tmp_path / "results.csv", rows, recipe.swept)
    from pipeline.reports.results import COLUMNS, OPTIONAL

    header = path.read_text().splitlines()[0].split(",")
    assert [c for c in header if c not in COLUMNS and c not in OPTIONAL] == ["lr"]
    assert swept_values(read_results(path)) == {"sft@lr=0.003": {"lr": "0.003"}, "promot@lr=0.003": {"lr": "0.003"}}


def test_stage_key_problems_are_one_line_each_naming_the_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(
            tmp_path,
            PROMOT + "sweep: {promot.nope.lr: [1], promot.prompt_tune.prompt_from: [x], "
            "promot.finetune.lr: [0.01], promot.prompt_tune.lr: [0.1], promot.steps: [3], "
            "promot.finetune.steps: [4], dmt..k: [1/2]}\n",
        )
    assert [p.split(": ", 1)[1] for p in err.value.problems] == [
        "sweep.promot.nope.lr: no stage named 'nope' in recipe 'promot'; stages: ['prompt_tune', 'finetune']",
        "sweep.promot.prompt_tune.prompt_from: stage 'prompt_tune' of recipe 'promot' does not set 'prompt_from'",
        "sweep.promot.prompt_tune.lr: 'promot.finetune.lr' also sweeps 'lr' of recipe 'promot', and both would be "
        "results.csv's column 'lr'; sweep one",
        "sweep.promot.finetune.steps: 'promot.steps' also sweeps 'steps' of recipe 'promot', and both would be "
        "results.csv's column 'steps'; sweep one",
        "sweep.dmt..k: no stage named '' in recipe 'dmt'; stages: ['domain', 'general']",
    ]
    assert all("\n" not in p for p in err.value.problems)


def results_rows():
    row = dict(task="copy", suite="general", metric="exact_match", score=0.5, n=4)
    return [
        r
        for recipe in ("sft", "dmt@k=1/256", "dmt@k=1/16")
        for stage in ("base", "finetune")
        for r in stage_rows(recipe, 0, stage, [row])
    ]


def test_results_get_one_column_per_swept_field_as_written(tmp_path):
    swept = {"dmt@k=1/256": {"k": "1/256"}, "dmt@k=1/16": {"k": "1/16", "lr": 0.0010}}
    path = write_csv(tmp_path / "results.csv", results_rows(), swept)
    header = path.read_text().splitlines()[0]
    assert header == "recipe,seed,stage,task,suite,metric,score,n,stderr,primary,paired_stderr,k,lr"
    frame = read_results(path)
    assert frame.k.fillna("").tolist() == ["", "", "1/256", "1/256", "1/16", "1/16"]
    assert swept_values(frame) == {"dmt@k=1/256": {"k": "1/256"}, "dmt@k=1/16": {"k": "1/16", "lr": "0.001"}}


def test_a_results_file_without_sweep_columns_still_reads(tmp_path):
    path = write_csv(tmp_path / "results.csv", results_rows())
    header = "recipe,seed,stage,task,suite,metric,score,n,stderr,primary,paired_stderr"
    assert path.read_text().splitlines()[0] == header
    frame = read_results(path)
    assert swept_values(frame) == {}
    old = pd.read_csv(path).drop(columns=["stderr", "primary", "paired_stderr"])  # as before those columns existed
    old.to_csv(tmp_path / "old.csv", index=False)
    assert swept_values(read_results(tmp_path / "old.csv")) == {}


@pytest.mark.parametrize("shipped", ["dmt", "promot", "promot_sweep"])
def test_a_runs_resolved_config_loads_as_the_recipe_file_it_resolves(tmp_path, shipped):
    """config.yaml (sweeps expanded, their values under swept:, checks naming the swept recipe) reloads to the same
    stages, swept values and checks, so `pipeline run <run>/config.yaml` trains what the run trained."""
    from pathlib import Path

    from pipeline.recipe.config import stage_dict

    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / f"{shipped}.yaml")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(resolved_dict(recipe), sort_keys=False))
    again = load_recipe(tmp_path / "config.yaml")
    assert again.swept == recipe.swept and list(again.stages) == list(recipe.stages)
    assert {n: [stage_dict(c) for c in s] for n, s in again.stages.items()} == {
        n: [stage_dict(c) for c in s] for n, s in recipe.stages.items()
    }
    assert again.checks == recipe.checks


def test_a_swept_section_that_is_not_what_a_run_writes_is_one_line(tmp_path):
    (tmp_path / "r.yaml").write_text(
        "name: demo\ntarget: {}\nrecipes:\n  sft:\n    - {kind: finetune}\nswept: [1, 2]\n"
    )
    with pytest.raises(ConfigError, match=r"r.yaml:6: swept: expected \{recipe: \{field: value\}\}"):
        load_recipe(tmp_path / "r.yaml")


def test_a_stage_keyed_sweeps_config_yaml_reloads_to_the_same_recipe(tmp_path):
    from pipeline.recipe.config import stage_dict

    recipe = load(tmp_path, PROMOT + "sweep: {promot.finetune.lr: [0.001, 0.003], sft.lr: [0.003]}\n")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(resolved_dict(recipe), sort_keys=False))
    again = load_recipe(tmp_path / "config.yaml")
    assert again.swept == recipe.swept and list(again.stages) == list(recipe.stages)
    assert {n: [stage_dict(c) for c in s] for n, s in again.stages.items()} == {
        n: [stage_dict(c) for c in s] for n, s in recipe.stages.items()
    }
    assert [c.lr for c in again.stages["promot@lr=0.003"]] == [0.3, 0.003]
