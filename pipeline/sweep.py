"""Sweeps: one recipe per value of a stage field, e.g. `sweep: {dmt.k: [1/256, 1/64, 1/16]}`.

`--set dmt.k=1/256,1/64` on the command line means the same thing: the key names a recipe and a
field of its stages, and each comma-separated value becomes its own recipe, `dmt@k=1/256`, ... Two keys on
one recipe make a grid, `dmt@k=1/256@lr=0.001`, ..., every combination, the first key's values outermost.
Each copy's swept values travel as data (RecipeFile.swept, config.yaml's `swept`, a results.csv column per
field), so nothing reads them back out of the names.
"""

from __future__ import annotations

import copy
import itertools
import re

from pipeline.results import COLUMNS, OPTIONAL


def recipe_name(origin: str, values: dict) -> str:
    """The name a sweep gives `origin`'s copy with these swept values (`dmt@k=1/256`, `dmt@k=1/256@lr=0.001`)."""
    return origin + "".join(f"@{key}={value}" for key, value in values.items())


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


def expand_sweeps(data: dict, builder) -> dict[str, dict]:
    """Replace each swept recipe by one copy per value (per combination, for several keys on one recipe), in
    place, keeping the recipes' order; returns each copy's swept values, {copy name: {field: value}}."""
    sweeps = data.pop("sweep", None) or {}
    recipes = data.get("recipes")
    if not isinstance(sweeps, dict) or not isinstance(recipes, dict):
        if sweeps:
            builder.error("sweep", None, "expected a mapping like {dmt.k: [1/256, 1/64]}")
        return {}
    axes: dict[str, list[tuple[str, list, list[int]]]] = {}  # recipe -> (field, values, stages that set it)
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
        if field in COLUMNS or field in OPTIONAL:
            builder.error(f"sweep.{key}", None, f"{field!r} is also a column of results.csv, which gets one column "
                                                "per swept field; it cannot be swept")
            continue
        axes.setdefault(recipe, []).append((field, values, targets))
    expanded, swept = {}, {}
    for name, stages in recipes.items():
        if name not in axes:
            expanded[name] = stages
            continue
        for combination in itertools.product(*(values for _, values, _ in axes[name])):  # first key outermost
            copy_ = copy.deepcopy(stages)
            point = {}
            for (field, _, targets), value in zip(axes[name], combination):
                for i in targets:
                    copy_[i][field] = value
                point[field] = value
            expanded[recipe_name(name, point)] = copy_
            swept[recipe_name(name, point)] = point
    recipes.clear()
    recipes.update(expanded)
    return swept


def folder_name(recipe_name: str) -> str:
    """A recipe name made safe as one folder name (`dmt@k=1/256` -> `dmt@k=1-256`)."""
    return re.sub(r"[^\w.@=+-]", "-", recipe_name)
