"""DeepSpeed configs checked for N processes on one CPU, launching nothing: each mistake is one line naming file and field."""

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.engine.deepspeed_config import check_launch, check_world
from pipeline.recipe.config import load_recipe

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "configs" / "deepspeed").glob("*.json"))
ZERO2 = json.loads((ROOT / "configs" / "deepspeed" / "zero2.json").read_text())
RECIPE = """\
name: demo
target: {}
recipes:
  sft:
    - {kind: finetune, steps: 5, batch_size: 16}
  promot:
    - {kind: prompt_tune, steps: 5, batch_size: 16, grad_accum: 2}
    - {kind: finetune, steps: 5, batch_size: 16, prompt_from: prompt_tune}
"""


def recipe_with(tmp_path, deepspeed: dict | Path | None):
    path = deepspeed
    if isinstance(deepspeed, dict):
        path = tmp_path / "ds.json"
        path.write_text(json.dumps(deepspeed))
    (tmp_path / "recipe.yaml").write_text(RECIPE + (f"deepspeed: {path}\n" if path else ""))
    return load_recipe(tmp_path / "recipe.yaml")


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: p.stem)
@pytest.mark.parametrize("world_size", [1, 2, 8])
def test_shipped_configs_pass_for_any_world_size_that_divides_the_batch(tmp_path, config, world_size):
    assert check_world(recipe_with(tmp_path, config), world_size) == []


@pytest.mark.parametrize(
    "change, field",
    [
        (
            {"zero_optimisation": {"stage": 2}},
            "zero_optimisation: not a DeepSpeed setting (did you mean zero_optimization?)",
        ),
        ({"zero_optimization": {**ZERO2["zero_optimization"], "stgae": 2}}, "zero_optimization.stgae: Extra inputs"),
        ({"zero_optimization": {**ZERO2["zero_optimization"], "stage": 4}}, "zero_optimization.stage: Input should be"),
        ({"train_batch_size": 64}, "train_batch_size: 64 here, but the stage gives 16"),
        (
            {"bf16": {"enabled": True}, "fp16": {"enabled": True}},
            "fp16: bfloat16 and fp16 modes cannot be simultaneously",
        ),
        (
            {"zero_optimization": {"stage": 3}},
            "zero_optimization.stage3_gather_16bit_weights_on_model_save: must be true",
        ),
    ],
)
def test_each_mistake_is_one_line_naming_file_and_field(tmp_path, change, field):
    problems = check_world(recipe_with(tmp_path, {**ZERO2, **change}), 2)
    # identical for every stage, so reported once per stage; each is one line starting with the file
    assert problems and all("\n" not in p and p.startswith(f"{tmp_path / 'ds.json'}: {field}") for p in problems)
    assert {p.split(" (recipes.")[0] for p in problems} == {problems[0].split(" (recipes.")[0]}


def test_batch_that_does_not_split_over_the_processes_names_the_stage(tmp_path):
    problems = check_world(recipe_with(tmp_path, None), 3)  # located at the recipe's line
    assert problems == [
        f"{tmp_path / 'recipe.yaml'}:4: recipes.sft.finetune.batch_size: 16 is not divisible by grad_accum 1 x 3 processes",
        f"{tmp_path / 'recipe.yaml'}:6: recipes.promot.prompt_tune.batch_size: 16 is not divisible by grad_accum 2 x 3 processes",
        f"{tmp_path / 'recipe.yaml'}:6: recipes.promot.finetune.batch_size: 16 is not divisible by grad_accum 1 x 3 processes",
    ]
    assert check_world(recipe_with(tmp_path, None), 16) == [
        f"{tmp_path / 'recipe.yaml'}:6: recipes.promot.prompt_tune.batch_size: 16 is not divisible by grad_accum 2 x 16 processes"
    ]


def test_missing_or_broken_file(tmp_path):
    assert check_world(recipe_with(tmp_path, tmp_path / "nope.json"), 1) == [
        f"deepspeed: {tmp_path / 'nope.json'}: file not found"
    ]
    (tmp_path / "bad.json").write_text('{"train_batch_size": "auto",\n oops}')
    assert check_world(recipe_with(tmp_path, tmp_path / "bad.json"), 1) == [
        f"{tmp_path / 'bad.json'}:2: invalid JSON (Expecting property name enclosed in double quotes)"
    ]


def test_deepspeed_without_a_launcher_says_how_to_launch(tmp_path, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    (problem,) = check_launch(recipe_with(tmp_path, ZERO2))
    assert "DeepSpeed needs a launcher" in problem and "accelerate launch" in problem


def test_validate_world_size_on_the_command_line(tmp_path, capsys):
    recipe_with(tmp_path, {**ZERO2, "zero_optimisation": {}})
    assert main(["validate", str(tmp_path / "recipe.yaml"), "--world-size", "4"]) == 2
    assert "error: " in capsys.readouterr().err
    recipe_with(tmp_path, ZERO2)
    assert main(["validate", str(tmp_path / "recipe.yaml"), "--world-size", "4"]) == 0
    assert "4 process(es)" in capsys.readouterr().out


def test_a_bf16_stage_with_an_fp16_deepspeed_config_is_one_line_per_stage(tmp_path):
    text = RECIPE.replace(
        "{kind: finetune, steps: 5, batch_size: 16}", "{kind: finetune, steps: 5, batch_size: 16, bf16: true}"
    )
    (tmp_path / "ds.json").write_text(json.dumps({**ZERO2, "fp16": {"enabled": True}}))
    (tmp_path / "recipe.yaml").write_text(text + f"deepspeed: {tmp_path / 'ds.json'}\n")
    assert check_world(load_recipe(tmp_path / "recipe.yaml"), 2) == [
        f"{tmp_path / 'ds.json'}: fp16.enabled: true here, but the stage sets bf16: true; use one precision "
        "(recipes.sft.finetune, 2 processes)"
    ]


def test_bf16_on_a_gpu_without_it_names_the_stage(tmp_path, monkeypatch):
    import torch

    text = RECIPE.replace(
        "{kind: finetune, steps: 5, batch_size: 16}", "{kind: finetune, steps: 5, batch_size: 16, bf16: true}"
    )
    (tmp_path / "recipe.yaml").write_text(text)
    recipe = load_recipe(tmp_path / "recipe.yaml")
    assert check_world(recipe, 1) == []  # a CPU autocasts to bf16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100-SXM2-16GB")
    assert check_world(recipe, 1) == [
        f"{tmp_path / 'recipe.yaml'}:4: recipes.sft.finetune.bf16: this GPU has no "
        "bf16 (Tesla V100-SXM2-16GB); set bf16: false"
    ]


def test_a_stage_kind_that_cannot_run_under_zero3_is_refused_only_where_it_is_trained(tmp_path):
    zero3 = ROOT / "configs" / "deepspeed" / "zero3.json"
    (tmp_path / "recipe.yaml").write_text(
        RECIPE + f"  joint:\n    - {{kind: joint_tune, steps: 5, batch_size: 16}}\ndeepspeed: {zero3}\n"
    )
    recipe = load_recipe(tmp_path / "recipe.yaml")
    (problem,) = check_world(recipe, 2)
    assert "joint_tune does not run under ZeRO-3" in problem and "recipes.joint.joint_tune" in problem
    assert check_world(recipe, 2, only=["promot"]) == []  # `pipeline run --only promot` trains no joint stage
