"""Checks that need more than the recipe's types: suites, model path, data sources. Nothing is trained."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.config import EMBEDDED, RecipeFile

DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def check_recipe(recipe: RecipeFile, content: bool = True) -> list[str]:
    """Return one line per problem found, located as file:line: field: message (empty when the recipe can run)."""
    from pipeline.validate_content import check_content, locate

    problems = [*check_model(recipe), *check_suites(recipe), *check_target(recipe), *check_data(recipe),
                *check_stages(recipe), *check_gate(recipe)]
    if content and not problems:  # only read data and model files once their names check out
        problems = check_content(recipe)
    return locate(problems, recipe)


def check_model(recipe: RecipeFile) -> list[str]:
    """The base model is the embedded one, a folder with a config, or something shaped like a hub id."""
    path = recipe.model.path
    if path == EMBEDDED:
        return []
    folder = Path(path)
    if folder.exists():
        return [] if (folder / "config.json").exists() else [f"model.path: {path}: folder has no config.json"]
    if folder.is_absolute() or path.startswith(".") or not HUB_ID.match(path):
        return [f"model.path: {path}: no such folder"]
    return []  # a hub id: checked when it is loaded


def check_suites(recipe: RecipeFile) -> list[str]:
    """The general suite is registered (or explicit lm-eval task names are given)."""
    from evaluation.suites import SUITES

    ev = recipe.evaluation
    problems = []
    if not ev.general_tasks and ev.general_suite not in SUITES:
        problems.append(f"evaluation.general_suite: unknown suite {ev.general_suite!r}; one of {sorted(SUITES)}")
    for name in ev.domain_suites:
        if name not in SUITES:
            problems.append(f"evaluation.domain_suites: unknown suite {name!r}; one of {sorted(SUITES)}")
    return problems


def check_target(recipe: RecipeFile) -> list[str]:
    """The target data exists: an embedded task, a local file, or a hub id."""
    from data_recipes.catalog import EMBEDDED_PREFIX

    problems = []
    if recipe.target is None:
        return problems
    for field in ("train", "test"):
        source = getattr(recipe.target, field)
        if source is None:
            continue
        if source.startswith(EMBEDDED_PREFIX):
            from embedded.tasks import TARGET_TASKS

            task = source[len(EMBEDDED_PREFIX):]
            if task not in TARGET_TASKS:
                problems.append(f"target.{field}: unknown embedded task {task!r}; one of {sorted(TARGET_TASKS)}")
        elif source.endswith(DATA_SUFFIXES) and not Path(source).exists():
            problems.append(f"target.{field}: {source}: file not found")
    return problems


def check_data(recipe: RecipeFile) -> list[str]:
    """Every named source is a known embedded source, an existing file, or a hub id."""
    from data_recipes.catalog import EMBEDDED_PREFIX, known_sources

    problems = []
    for name, config in recipe.data.items():
        if config.source.startswith(EMBEDDED_PREFIX) and config.source not in known_sources():
            problems.append(f"data.{name}.source: unknown embedded source {config.source!r}; one of {known_sources()}")
        elif config.source.endswith(DATA_SUFFIXES) and not Path(config.source).exists():
            problems.append(f"data.{name}.source: {config.source}: file not found")
    return problems


def check_stages(recipe: RecipeFile) -> list[str]:
    """Stage settings that depend on other sections."""
    problems = []
    for name, configs in recipe.stages.items():
        for config in configs:
            init = getattr(getattr(config, "init", None), "value", None)
            target = recipe.target
            if init == "class_labels" and (target is None or (not target.labels and not target.train.startswith("embedded:"))):
                problems.append(f"recipes.{name}.{config.name}.init: class_labels needs target.labels")
    return problems


def check_gate(recipe: RecipeFile) -> list[str]:
    """The gate (when the file has one) promotes a recipe of this file."""
    if recipe.gate is None or recipe.gate.recipe in recipe.recipes:
        return []
    return [f"gate.recipe: {recipe.gate.recipe!r} is not a recipe of this file; one of {sorted(recipe.recipes)}"]
