"""Recipe config: typed loading, one-line errors naming field/file/line, overrides, resolved output."""

from pathlib import Path

import pytest

from core.typed_yaml import ConfigError
from pipeline.recipe.config import load_recipe, resolved_dict, stage_dict

ROOT = Path(__file__).resolve().parents[2]
PROMOT = ROOT / "recipes" / "promot.yaml"

MINIMAL = """\
name: demo
target: {}
recipes:
  sft:
    - kind: finetune
      steps: 5
"""


def write(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path, overrides=()):
    with pytest.raises(ConfigError) as err:
        load_recipe(path, list(overrides))
    return err.value.problems


def test_shipped_promot_recipe_loads_typed():
    recipe = load_recipe(PROMOT)
    assert set(recipe.stages) == {"sft", "prompt_tuning", "promot", "promot_merge"}
    assert [s.kind for s in recipe.stages["promot_merge"]] == ["prompt_tune", "finetune", "merge"]
    assert not any(s.data.one_shot for s in recipe.stages["promot"])
    prompt, finetune = recipe.stages["promot"]
    assert (prompt.kind, finetune.kind, finetune.prompt_from) == ("prompt_tune", "finetune", "prompt_tune")
    assert prompt.lr == 0.3 and finetune.lr == 1e-3


def test_shipped_variants_recipe_loads_typed_with_promot_s_stages():
    recipe, promot = load_recipe(PROMOT.with_name("promot_variants.yaml")), load_recipe(PROMOT)
    assert set(recipe.stages) == {
        "sft",
        "promot",
        "frozen_prompt",
        "joint",
        "lora_promot",
        "promot_1shot",
        "promot_best",
    }
    assert [s.kind for s in recipe.stages["lora_promot"]] == ["lora_tune", "finetune"]
    assert recipe.stages["lora_promot"][1].contract().consumes[0].name == "lora_tune"
    assert [s.kind for s in recipe.stages["joint"]] == ["joint_tune"]
    assert all(s.data.one_shot for s in recipe.stages["promot_1shot"])
    assert recipe.stages["frozen_prompt"][0].steps == 0
    assert recipe.stages["promot_best"][1].selection.criterion.value == "target_with_retention"
    # The reference rows are the same stages as make promot's, so their numbers can be read side by side.
    for name in ("sft", "promot"):
        assert [stage_dict(s) for s in recipe.stages[name]] == [stage_dict(s) for s in promot.stages[name]]
    assert (recipe.target, recipe.evaluation, recipe.seeds) == (promot.target, promot.evaluation, promot.seeds)


def test_minimal_recipe_gets_defaults_and_resolves(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL))
    data = resolved_dict(recipe)
    assert data["model"]["path"] == "embedded"
    assert data["recipes"]["sft"][0] == {
        **data["recipes"]["sft"][0],
        "kind": "finetune",
        "steps": 5,
        "name": "finetune",
    }
    assert data["recipes"]["sft"][0]["scheduler"] == "linear"


def test_unknown_key_names_line_and_suggests(tmp_path):
    found = problems(write(tmp_path, MINIMAL + "      lrr: 0.1\n"))
    assert found == ["%s:7: recipes.sft[0].lrr: unknown key; did you mean 'lr'?" % (tmp_path / "recipe.yaml")]


def test_every_problem_is_reported(tmp_path):
    text = MINIMAL.replace("steps: 5", "steps: many") + "seedz: [1]\nevaluation:\n  limit: 0\n"
    found = problems(write(tmp_path, text))
    assert len(found) == 3
    assert any("recipes.sft[0].steps: expected an integer, got str 'many'" in p for p in found)
    assert any(":7: seedz: unknown key; did you mean 'seeds'?" in p for p in found)
    assert any(":9: evaluation.limit: must be >= 1, got 0" in p for p in found)


@pytest.mark.parametrize(
    "snippet, expected",
    [
        ("name: demo\n", "recipes: missing required field"),
        ("name: demo\nrecipes:\n  sft: []\n", "recipes.sft: empty stage list"),
        ("name: demo\nrecipes:\n  sft:\n    - kind: train_hard\n", "unknown stage kind 'train_hard'"),
        (
            "name: demo\nrecipes:\n  p:\n    - kind: finetune\n      prompt_from: prompt_tune\n",
            "recipes.p.finetune.prompt_from: needs an earlier stage named 'prompt_tune' that makes a soft prompt or LoRA adapter",
        ),
        (
            "name: demo\nrecipes:\n  p:\n    - kind: prompt_tune\n      init: sampled\n",
            "must be one of ['text', 'sampled_vocab', 'class_labels', 'random'], got 'sampled'; did you mean 'sampled_vocab'?",
        ),
        ("name: demo\nrecipes:\n  p:\n    - kind: prompt_tune\n      init: text\n", "prompt_tune.init_text: required"),
        ("name: demo\nrecipes:\n  p:\n    - kind: finetune\n      steps: 0\n", "finetune.steps: must be >= 1, got 0"),
        (
            "name: demo\nrecipes:\n  p:\n    - kind: finetune\n    - kind: finetune\n",
            "stage name 'finetune' used twice",
        ),
        ("name: ../escape\nrecipes:\n  p:\n    - kind: finetune\n", "name: must be a plain folder name"),
        ("name: demo\nseeds: []\nrecipes:\n  p:\n    - kind: finetune\n", "seeds: must list at least one seed"),
        ("name: demo\nrecipes: [1, 2\n", "invalid YAML"),
    ],
)
def test_bad_recipes_are_one_line_errors(tmp_path, snippet, expected):
    found = problems(write(tmp_path, snippet))
    assert any(expected in p for p in found), found
    assert all("\n" not in p for p in found)


def test_set_overrides_apply_and_are_validated(tmp_path):
    path = write(tmp_path, MINIMAL)
    recipe = load_recipe(path, ["seeds=[3, 4]", "recipes.sft.0.lr=3e-4", "evaluation.limit=7"])
    assert recipe.seeds == [3, 4] and recipe.stages["sft"][0].lr == 3e-4 and recipe.evaluation.limit == 7
    assert any("expected key=value" in p for p in problems(path, ["seeds"]))
    assert any("evaluation.batch_size: must be >= 1" in p for p in problems(path, ["evaluation.batch_size=0"]))


def test_set_with_a_value_that_is_not_yaml_is_one_line(tmp_path):
    path = write(tmp_path, MINIMAL)
    assert problems(path, ["seeds=[0"]) == [
        f"{path}: --set seeds: value '[0' is not valid YAML (expected ',' or ']', but got '<stream end>')"
    ]
    assert problems(path, ["sft.lr=1e-3,[2"]) == [
        f"{path}: --set sft.lr: value '1e-3,[2' is not valid YAML (expected ',' or ']', but got '<stream end>')"
    ]


def test_set_can_replace_the_whole_recipes_mapping(tmp_path):
    path = write(tmp_path, MINIMAL)
    recipe = load_recipe(path, ["recipes={mine: [{kind: finetune, steps: 2, lr: 0.01}]}"])
    assert list(recipe.stages) == ["mine"] and recipe.stages["mine"][0].lr == 0.01
    assert any("lr: must be > 0" in p for p in problems(path, ["recipes={mine: [{kind: finetune, lr: -1}]}"]))


def test_missing_and_non_utf8_files(tmp_path):
    assert problems(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: file not found"]
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: \xff\xfe\n")
    assert "not UTF-8" in problems(bad)[0]


@pytest.mark.parametrize(
    "line, expected",
    [
        ("      lr: .inf", ":7: recipes.sft[0].lr: expected a finite number, got inf"),
        ("      lr: -.inf", ":7: recipes.sft[0].lr: expected a finite number, got -inf"),
        ("      lr: .nan", ":7: recipes.sft[0].lr: expected a finite number, got nan"),
        ("      lr: 'inf'", ":7: recipes.sft[0].lr: expected a finite number, got 'inf'"),
        ("      lr: 1e999", ":7: recipes.sft[0].lr: expected a finite number, got '1e999'"),
        ("      lr: " + "9" * 400, ":7: recipes.sft[0].lr: expected a finite number, got 999999999"),
        ("      warmup_ratio: .nan", ":7: recipes.sft[0].warmup_ratio: expected a finite number, got nan"),
        ("      weight_decay: -0.1", ":7: finetune.weight_decay: must be >= 0 and finite, got -0.1"),
        ("      weight_decay: .inf", ":7: recipes.sft[0].weight_decay: expected a finite number, got inf"),
        ("gate: {recipe: sft, min_target: .nan}", ":7: gate.min_target: expected a finite number, got nan"),
    ],
)
def test_float_fields_are_finite(tmp_path, line, expected):
    found = problems(write(tmp_path, MINIMAL + line + "\n"))
    assert len(found) == 1 and expected in found[0], found


def test_finite_checks_hold_without_yaml():
    from stages.finetune import Config

    for field, value in [
        ("lr", float("inf")),
        ("lr", float("nan")),
        ("weight_decay", float("nan")),
        ("warmup_ratio", float("nan")),
    ]:
        with pytest.raises(ValueError, match=f"finetune.{field}: must be"):
            Config(**{field: value})


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            MINIMAL.replace("name: demo\n", "name: demo\nname: other\n"),
            ":2: duplicate key 'name' (first on line 1); YAML would keep only the last one: remove one",
        ),
        (MINIMAL + "      steps: 6\n", ":7: duplicate key 'steps' (first on line 6)"),
        (MINIMAL + "  sft:\n    - kind: finetune\n", ":7: duplicate key 'sft' (first on line 4)"),
    ],
)
def test_a_key_written_twice_is_refused_with_its_line(tmp_path, text, expected):
    found = problems(write(tmp_path, text))
    assert len(found) == 1 and found[0].startswith(str(tmp_path / "recipe.yaml")) and expected in found[0], found


def test_keys_merged_from_anchors_may_be_overridden(tmp_path):
    text = (
        "name: demo\ntarget: {}\nx-ft: &ft {kind: finetune, steps: 5, lr: 0.1}\n"
        "recipes:\n  sft:\n    - {<<: *ft, steps: 2}\n    - {<<: *ft, name: second, lr: 0.2}\n"
    )
    first, second = load_recipe(write(tmp_path, text)).stages["sft"]
    assert (first.steps, first.lr, second.steps, second.lr) == (2, 0.1, 5, 0.2)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("- name: demo\n", "expected a YAML mapping of settings (key: value lines), got a list of 1 item(s)"),
        ("just words\n", "expected a YAML mapping of settings (key: value lines), got str 'just words'"),
        ("42\n", "expected a YAML mapping of settings (key: value lines), got int 42"),
    ],
)
def test_a_recipe_file_that_is_not_a_mapping_is_one_line(tmp_path, text, expected):
    path = write(tmp_path, text)
    assert problems(path) == [f"{path}: {expected}"]


def test_a_directory_is_no_recipe_file(tmp_path):
    assert problems(tmp_path) == [f"{tmp_path}: is a directory, not a YAML file"]


def test_a_stage_name_that_no_file_system_takes_is_refused(tmp_path):
    found = problems(write(tmp_path, MINIMAL + "      name: a" + "é" * 100 + "\n"))  # 101 characters, 201 bytes
    assert len(found) == 1 and "is 201 bytes long; at most 200 (it names a folder)" in found[0], found
    assert load_recipe(write(tmp_path, MINIMAL + "      name: " + "s" * 200 + "\n"))
