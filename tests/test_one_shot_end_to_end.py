"""End to end: ProMoT and ProMoT + 1-shot (both stages on one-shot data) through `pipeline run` on a tiny model."""

import json

import pytest
import yaml

from data_recipes.mixes import ONE_SHOT_NOTE
from pipeline.cli import main
from pipeline.engine.markers import DONE
from pipeline.recipe.config import load_recipe

RECIPE = """name: promot_1shot_demo
seeds: [0]
model:
  path: BASE
target:
  name: letter_rule
  train: embedded:letter_rule
  train_rows: 32
  test_rows: 6
evaluation:
  general_suite: embedded_general
  limit: 2
  batch_size: 8
max_length: 48

x-finetune: &finetune {kind: finetune, steps: 2, batch_size: 8, lr: 1.0e-3}
x-prompt: &prompt {kind: prompt_tune, steps: 2, batch_size: 8, lr: 0.3, num_virtual_tokens: 4, init: sampled_vocab}

recipes:
  promot:
    - *prompt
    - {<<: *finetune, prompt_from: prompt_tune}
  promot_1shot:
    - {<<: *prompt, one_shot: true}
    - {<<: *finetune, prompt_from: prompt_tune, one_shot: true}
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    base = ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))
    folder = tmp_path_factory.mktemp("runs")
    recipe = folder / "promot_1shot.yaml"
    recipe.write_text(RECIPE.replace("BASE", str(base)))
    run_dir = folder / "run"
    assert main(["run", str(recipe), "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_both_stages_of_promot_1shot_train_on_one_shot_data_and_say_so(finished_run):
    stages = json.loads((finished_run / "manifest.json").read_text())["stages"]
    for name in ("prompt_tune", "finetune"):
        one, zero = stages[f"seed0/promot_1shot/{name}"], stages[f"seed0/promot/{name}"]
        assert one["status"] == "done" and "reused_from" not in one  # never the 0-shot stage, whose key differs
        assert one["data_notes"] == [ONE_SHOT_NOTE] and zero["data_notes"] == []
        assert one["data_rows"] == zero["data_rows"] == {"target": 32}
    assert stages["seed0/promot_1shot/finetune"]["input_adapters"]["prompt_tune"]["path"] == str(
        finished_run / "seed0/promot_1shot/prompt_tune/adapter"
    )


def test_config_yaml_says_one_shot_and_reads_back_to_the_same_mixes(finished_run, tmp_path):
    resolved = yaml.safe_load((finished_run / "config.yaml").read_text())
    written = resolved["recipes"]
    assert [stage["data"] for stage in written["promot_1shot"]] == [{"sources": {"target": 1}, "one_shot": True}] * 2
    assert [stage["data"] for stage in written["promot"]] == [["target"]] * 2  # 0-shot: written as before
    copy = tmp_path / "config.yaml"  # the recipe part of it (its run record, `swept`, is no recipe field)
    copy.write_text(yaml.safe_dump({key: resolved[key] for key in ("name", "target", "recipes")}, sort_keys=False))
    again = load_recipe(copy).stages
    assert [config.data.one_shot for config in again["promot_1shot"]] == [True, True]


def test_the_target_is_still_evaluated_zero_shot(finished_run):
    """One-shot is training data only: both recipes' evaluations have the same inputs but for the model scored."""

    def evaluation(stage_id):
        inputs = json.loads((finished_run / stage_id / DONE).read_text())["inputs"]
        return {key: value for key, value in inputs.items() if key != "upstream"}

    assert evaluation("seed0/promot_1shot/finetune-eval") == evaluation("seed0/promot/finetune-eval")
