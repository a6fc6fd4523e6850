"""Sweeps: one recipe per value of a stage field, e.g. `sweep: {dmt.k: [1/256, 1/64, 1/16]}`.

`--set dmt.k=1/256,1/64` on the command line means the same thing: the key names a recipe and a
field of its stages, and each comma-separated value becomes its own recipe, `dmt@k=1/256`, ... Two keys on
one recipe make a grid, `dmt@k=1/256@lr=0.001`, ..., every combination, the first key's values outermost.

`RECIPE.FIELD` sets FIELD on every stage of the recipe that sets it; `RECIPE.STAGE.FIELD` on that one stage only,
STAGE being the stage's name (its `name:`, else its kind), e.g. `promot.finetune.lr` sets ProMoT's stage-2 lr and
leaves stage 1's prompt lr alone. Either way the swept field is named by FIELD alone: the copy is `promot@lr=0.001`
and results.csv's column is `lr`, shared with `sft.lr`'s copies, so two keys of one recipe naming one FIELD (on
two stages, or with and without a stage) are refused.

Each copy's swept values travel as data (RecipeFile.swept, config.yaml's `swept`, a results.csv column per
field), so nothing reads them back out of the names.
"""

from __future__ import annotations

import copy
import itertools
import re
from fractions import Fraction

from pipeline.formats import COLUMNS, OPTIONAL


def recipe_name(origin: str, values: dict) -> str:
    """The name a sweep gives `origin`'s copy with these swept values (`dmt@k=1/256`, `dmt@k=1/256@lr=0.001`)."""
    return origin + "".join(f"@{key}={value}" for key, value in values.items())


def stage_name(stage) -> str | None:
    """The name a stage mapping gets as a stage config: its `name:`, else its kind (None for no mapping)."""
    if not isinstance(stage, dict):
        return None
    return str(stage.get("name") or stage.get("kind"))


def split_key(key: str) -> tuple[str, str | None, str]:
    """(recipe, stage or None, field) of `RECIPE.FIELD` or `RECIPE.STAGE.FIELD` (a stage name may hold dots)."""
    recipe, _, rest = str(key).partition(".")
    stage, dot, field = rest.rpartition(".")
    return recipe, stage if dot else None, field


def sweep_override(data: dict, key: str, raw_value: str) -> bool:
    """Turn `--set RECIPE.FIELD=v1,v2` or `--set RECIPE.STAGE.FIELD=v1,v2` into a sweep entry; False when the key
    does not start with a recipe of the file (then it is a plain override, `evaluation.limit=50`)."""
    recipes = data.get("recipes")
    parts = key.split(".")
    if len(parts) < 2 or not isinstance(recipes, dict) or parts[0] not in recipes:
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
    keys: dict[tuple[str, str], str] = {}  # (recipe, field) -> the key that sweeps it
    for key, values in sweeps.items():
        recipe, stage, field = split_key(key)
        stages = recipes.get(recipe)
        values = values if isinstance(values, list) else [values]
        if not field or not isinstance(stages, list):
            builder.error(
                f"sweep.{key}",
                None,
                f"expected RECIPE.FIELD or RECIPE.STAGE.FIELD with a recipe of this file; recipes: {sorted(recipes)}",
            )
            continue
        names = [stage_name(s) for s in stages]
        if stage is not None and stage not in names:
            builder.error(
                f"sweep.{key}",
                None,
                f"no stage named {stage!r} in recipe {recipe!r}; stages: {[n for n in names if n is not None]}",
            )
            continue
        targets = [
            i
            for i, s in enumerate(stages)
            if isinstance(s, dict) and field in s and (stage is None or names[i] == stage)
        ]
        if not targets or not values:
            where = (
                f"stage {stage!r} of recipe {recipe!r} does not set"
                if stage is not None
                else f"no stage of recipe {recipe!r} sets"
            )
            builder.error(f"sweep.{key}", None, f"{where} {field!r}" if not targets else "no values")
            continue
        if field in COLUMNS or field in OPTIONAL:
            builder.error(
                f"sweep.{key}",
                None,
                f"{field!r} is also a column of results.csv, which gets one column per swept field; it cannot be swept",
            )
            continue
        if (recipe, field) in keys:
            builder.error(
                f"sweep.{key}",
                None,
                f"{keys[recipe, field]!r} also sweeps {field!r} of recipe {recipe!r}, "
                f"and both would be results.csv's column {field!r}; sweep one",
            )
            continue
        keys[recipe, field] = str(key)
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


def same_value(a, b) -> bool:
    """Two swept values as the same number (1/4 and 0.25) or the same text."""
    if str(a) == str(b):
        return True
    try:
        return Fraction(str(a)) == Fraction(str(b))
    except (ValueError, ZeroDivisionError):
        return False


def sort_key(value):
    """Swept values in numeric order where they are numbers (1/256 < 1/64), else as text."""
    try:
        return (0, Fraction(str(value)), "")
    except (ValueError, ZeroDivisionError):
        return (1, 0, str(value))


def is_copy(name: str, origin: str, values: dict) -> bool:
    """`name` is the sweep's copy of `origin` with these values (in whichever order its fields were swept)."""
    return any(recipe_name(origin, {k: values[k] for k in order}) == name for order in itertools.permutations(values))
