"""Sweeps: one recipe per value of a stage field, e.g. `sweep: {dmt.k: [1/256, 1/64, 1/16]}`.

`--set dmt.k=1/256,1/64` on the command line means the same thing: the key names a recipe and a
field of its stages, and each comma-separated value becomes its own recipe, `dmt@k=1/256`, ...
"""

from __future__ import annotations

import copy
import re


def sweep_override(data: dict, key: str, raw_value: str) -> bool:
    """Turn `--set RECIPE.FIELD=v1,v2` into a sweep entry; False when the key is not RECIPE.FIELD."""
    recipes = data.get("recipes")
    parts = key.split(".")
    if len(parts) != 2 or not isinstance(recipes, dict) or parts[0] not in recipes:
        return False
    import yaml

    values = [yaml.safe_load(v) for v in raw_value.split(",")]
    data.setdefault("sweep", {})[key] = values
    return True


def expand_sweeps(data: dict, builder) -> None:
    """Replace each swept recipe by one copy per value, in place, keeping the recipes' order."""
    sweeps = data.pop("sweep", None) or {}
    recipes = data.get("recipes")
    if not isinstance(sweeps, dict) or not isinstance(recipes, dict):
        if sweeps:
            builder.error("sweep", None, "expected a mapping like {dmt.k: [1/256, 1/64]}")
        return
    for key, values in sweeps.items():
        recipe, _, field = str(key).partition(".")
        stages = recipes.get(recipe)
        values = values if isinstance(values, list) else [values]
        if not field or not isinstance(stages, list):
            builder.error(f"sweep.{key}", None, f"expected RECIPE.FIELD with a recipe of this file; recipes: {sorted(recipes)}")
            continue
        targets = [i for i, stage in enumerate(stages) if isinstance(stage, dict) and field in stage]
        if not targets or not values:
            builder.error(f"sweep.{key}", None, f"no stage of recipe {recipe!r} sets {field!r}" if not targets else "no values")
            continue
        expanded = {}
        for name, body in recipes.items():
            if name != recipe:
                expanded[name] = body
                continue
            for value in values:
                stages_copy = copy.deepcopy(stages)
                for i in targets:
                    stages_copy[i][field] = value
                expanded[f"{recipe}@{field}={value}"] = stages_copy
        recipes.clear()
        recipes.update(expanded)


def folder_name(recipe_name: str) -> str:
    """A recipe name made safe as one folder name (`dmt@k=1/256` -> `dmt@k=1-256`)."""
    return re.sub(r"[^\w.@=+-]", "-", recipe_name)
