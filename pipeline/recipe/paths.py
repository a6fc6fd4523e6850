"""Relative paths in a recipe file name files next to the recipe, as in any config file.

A value given with `--set` on the command line stays relative to the working folder, as command-line
paths do. Hub ids ("org/name") pass through: a value counts as a path when it starts with "." or
names something that exists beside the recipe or ends like a data or DeepSpeed file.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


def resolve_recipe_paths(data: dict, recipe_dir: Path) -> None:
    """Rewrite, in place, the path fields of raw recipe data read from a file in `recipe_dir`."""
    if not isinstance(data, dict):
        return
    sections = [
        (data.get("model"), "path"),
        (data.get("target"), "train"),
        (data.get("target"), "test"),
        (data, "deepspeed"),
        (data.get("evaluation"), "task_dir"),
    ]
    for target in data.get("targets") if isinstance(data.get("targets"), list) else []:
        sections += [(target, "train"), (target, "test")]
    if isinstance(data.get("data"), dict):
        sections += [(source, "source") for source in data["data"].values()]
    for section, key in sections:
        if isinstance(section, dict) and isinstance(section.get(key), str):
            section[key] = _resolved(section[key], recipe_dir)


def _resolved(value: str, recipe_dir: Path) -> str:
    import bases

    if bases.is_named(value) or value.startswith("embedded:") or Path(value).is_absolute():
        return value
    beside = recipe_dir / value
    if not (value.startswith(".") or value.endswith(FILE_SUFFIXES) or beside.exists()):
        return value  # a hub id
    shown = os.path.relpath(beside)
    if shown.startswith(".."):
        return str(beside.resolve())
    # Keep a leading "./": it is what tells a missing local folder from a hub id.
    return shown if not value.startswith(".") or shown.startswith(".") else f"./{shown}"
