"""Every shipped recipe file validates as a user runs it (`pipeline validate recipes/X.yaml`): a recipe that only a
long run would exercise (the real-model files, hours on a CPU) still cannot ship with a field validate refuses."""

from pathlib import Path

import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("recipe", sorted(p.name for p in (ROOT / "recipes").glob("*.yaml")))
def test_shipped_recipe_validates(recipe, capsys):
    assert main(["validate", str(ROOT / "recipes" / recipe)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith(f"ok: {ROOT / 'recipes' / recipe}")
