"""Relative paths in a recipe file resolve against the recipe's folder; --set paths against the working folder."""

import json

import pytest

from pipeline.cli import main
from pipeline.recipe.config import load_recipe

RECIPE = """name: mine
target:
  name: mine
  train: data/train.jsonl
recipes:
  sft:
    - {kind: finetune, steps: 2, batch_size: 4}
"""


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "rel"
    (folder / "data").mkdir(parents=True)
    rows = [{"prompt": f"size of item {i}?", "completion": " small"} for i in range(20)]
    (folder / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "recipe.yaml").write_text(RECIPE)
    return tmp_path


def test_validate_from_the_parent_folder_finds_the_data_beside_the_recipe(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    assert main(["validate", "rel/recipe.yaml"]) == 0, capsys.readouterr().err
    assert load_recipe("rel/recipe.yaml").target.train == "rel/data/train.jsonl"


def test_a_set_path_is_relative_to_the_working_folder(project, monkeypatch):
    monkeypatch.chdir(project / "rel")
    recipe = load_recipe("recipe.yaml", ["target.train=data/train.jsonl"])
    assert recipe.target.train == "data/train.jsonl"
    monkeypatch.chdir(project)
    assert load_recipe("rel/recipe.yaml", ["target.train=rel/data/train.jsonl"]).target.train == "rel/data/train.jsonl"


def test_a_hub_id_is_left_alone(project, monkeypatch):
    monkeypatch.chdir(project)
    (project / "rel" / "recipe.yaml").write_text(
        RECIPE.replace("data/train.jsonl", "org/dataset") + "model: {path: HuggingFaceTB/SmolLM2-135M}\n"
    )
    recipe = load_recipe("rel/recipe.yaml")
    assert recipe.target.train == "org/dataset" and recipe.model.path == "HuggingFaceTB/SmolLM2-135M"


def test_a_missing_file_is_named_where_it_was_looked_for(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    (project / "rel" / "recipe.yaml").write_text(RECIPE.replace("data/train.jsonl", "data/nope.jsonl"))
    assert main(["validate", "rel/recipe.yaml"]) == 2
    assert "target.train: rel/data/nope.jsonl: file not found" in capsys.readouterr().err
