"""Checks that need more than the recipe's types: suites, model path, data sources. Nothing is trained."""

from __future__ import annotations

import re
from pathlib import Path

from core.typed_yaml import shown
from pipeline.recipe.config import RecipeFile, all_targets

DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def check_recipe(recipe: RecipeFile, content: bool = True) -> list[str]:
    """Return one line per problem found, located as file:line: field: message (empty when the recipe can run)."""
    from core.source_lines import locate
    from pipeline.recipe.validate_content import check_content

    problems = [
        *check_seeds(recipe),
        *check_names(recipe),
        *check_model(recipe),
        *check_suites(recipe),
        *check_target(recipe),
        *check_data(recipe),
        *check_stages(recipe),
        *check_gate(recipe),
        *check_trackers(recipe),
    ]
    if content and not problems:  # only read data and model files once their names check out
        problems = check_content(recipe)
    return locate(problems, recipe)


MAX_SEED = 2**32 - 1  # numpy's (transformers' set_seed seeds it too)


def check_seeds(recipe: RecipeFile) -> list[str]:
    """Each seed once (a repeated seed trains the same run twice and counts its rows twice), each one numpy takes."""
    problems = []
    repeated = sorted({seed for seed in recipe.seeds if recipe.seeds.count(seed) > 1})
    if repeated:
        problems.append(f"seeds: {', '.join(map(str, repeated))} listed more than once; list each seed once")
    outside = [seed for seed in recipe.seeds if not 0 <= seed <= MAX_SEED]
    if outside:
        problems.append(f"seeds: {shown(outside[0])} is outside 0..{MAX_SEED}")
    return problems


def check_names(recipe: RecipeFile) -> list[str]:
    """Names that become folder or file names fit a file system's limit (stage names: their own check)."""
    from pipeline.recipe.sweep import folder_name
    from stages.train_config import MAX_NAME_BYTES

    def too_long(name: str) -> bool:
        return len(name.encode()) > MAX_NAME_BYTES

    problems = []
    if too_long(recipe.name):
        problems.append(
            f"name: {shown(recipe.name)} is {len(recipe.name.encode())} bytes long; at most "
            f"{MAX_NAME_BYTES} (it names the run folder)"
        )
    for name in recipe.stages:
        if too_long(folder_name(name)):
            problems.append(
                f"recipes: recipe name {shown(name)} is {len(folder_name(name).encode())} bytes long; "
                f"at most {MAX_NAME_BYTES} (it names a folder)"
            )
    if recipe.target is not None and too_long(recipe.target.name):
        problems.append(
            f"target.name: {shown(recipe.target.name)} is {len(recipe.target.name.encode())} bytes "
            f"long; at most {MAX_NAME_BYTES} (it names files)"
        )
    return problems


def check_model(recipe: RecipeFile) -> list[str]:
    """The base model is the embedded one, a folder with a config, or something shaped like a hub id."""
    import bases

    path = recipe.model.path
    if bases.is_named(path):
        problem = bases.missing_requirement(path)
        return [f"model.path: {path}: {problem}"] if problem else []
    folder = Path(path)
    if folder.is_file():
        return [f"model.path: {path}: is a file; name the model's folder (config.json, model.safetensors, tokenizer)"]
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
    if ev.task_dir is not None and not Path(ev.task_dir).is_dir():
        problems.append(f"evaluation.task_dir: {shown(ev.task_dir)}: no such folder")
    elif ev.task_dir is not None and not ev.general_tasks:
        problems.append("evaluation.task_dir: set general_tasks too: the names of the tasks in that folder to run")
    if not ev.general_tasks and ev.general_suite not in SUITES:
        problems.append(f"evaluation.general_suite: unknown suite {shown(ev.general_suite)}; one of {sorted(SUITES)}")
    for name in ev.domain_suites:
        if name not in SUITES:
            problems.append(f"evaluation.domain_suites: unknown suite {shown(name)}; one of {sorted(SUITES)}")
    if not problems:  # the tasks' own configs, once the suites' names check out (pipeline/recipe/validate_metrics.py)
        from pipeline.recipe.validate_metrics import check_metrics

        problems = check_metrics(recipe)
    return problems + check_code_sandbox(recipe)


def check_trackers(recipe: RecipeFile) -> list[str]:
    """Every tracker report_to names is installed (README: Trackers)."""
    from stages.tracking import PACKAGES, unavailable

    return [
        f"report_to: {name} is not installed here (pip install {PACKAGES[name]})"
        for name in unavailable(recipe.report_to)
    ]


def check_code_sandbox(recipe: RecipeFile) -> list[str]:
    """A registered suite that runs model-written code needs a sandbox here, unless the recipe waives it."""
    from evaluation import sandbox
    from evaluation.suites import SUITES, runs_generated_code

    ev = recipe.evaluation
    if ev.unsafe_code_execution or not any(runs_generated_code(SUITES[n]) for n in ev.domain_suites if n in SUITES):
        return []
    try:
        unisolated = sandbox.best_available().mode is sandbox.Mode.NONE
    except sandbox.SandboxUnavailable as err:  # a bad FORGETLESS_SANDBOX
        return [str(err)]
    return [f"evaluation.unsafe_code_execution: {sandbox.isolation.MISSING}"] if unisolated else []


def check_target(recipe: RecipeFile) -> list[str]:
    """The target data exists: an embedded task, a local file, or a hub id."""
    from data_recipes.catalog import EMBEDDED_PREFIX

    problems = []
    for i, target in enumerate(all_targets(recipe)):
        section = f"targets[{i}]" if recipe.targets else "target"
        for field in ("train", "test"):
            source = getattr(target, field)
            if source is None:
                continue
            if source.startswith(EMBEDDED_PREFIX):
                from embedded.tasks import TARGET_TASKS

                task = source[len(EMBEDDED_PREFIX) :]
                if task not in TARGET_TASKS:
                    problems.append(
                        f"{section}.{field}: unknown embedded task {shown(task)}; one of {sorted(TARGET_TASKS)}"
                    )
            else:
                problems += _file_problems(f"{section}.{field}", source)
    return problems


def _file_problems(field: str, source: str) -> list[str]:
    """A local data source is an existing file: a folder is not read (its files are not a data set here)."""
    if Path(source).is_dir():
        return [f"{field}: {source}: is a directory, not a data file; name a {'/'.join(DATA_SUFFIXES)} file in it"]
    if source.endswith(DATA_SUFFIXES) and not Path(source).exists():
        return [f"{field}: {source}: file not found"]
    return []


def check_data(recipe: RecipeFile) -> list[str]:
    """Every named source is a known embedded source, an existing file, or a hub id."""
    from data_recipes.catalog import EMBEDDED_PREFIX, known_sources

    problems = []
    for name, config in recipe.data.items():
        if config.source.startswith(EMBEDDED_PREFIX) and config.source not in known_sources():
            problems.append(
                f"data.{name}.source: unknown embedded source {shown(config.source)}; one of {known_sources()}"
            )
        elif not config.source.startswith(EMBEDDED_PREFIX):
            problems += _file_problems(f"data.{name}.source", config.source)
    return problems


def check_stages(recipe: RecipeFile) -> list[str]:
    """Stage settings that depend on other sections."""
    problems = []
    for name, configs in recipe.stages.items():
        for config in configs:
            if isinstance(getattr(config, "prompt_from", None), list) and not recipe.targets:
                problems.append(
                    f"recipes.{name}.{config.name}.prompt_from: a list of prompts (multi-task ProMoT) "
                    f"needs several target tasks (targets:); with one target, name one prompt"
                )
            init = getattr(getattr(config, "init", None), "value", None)
            target = recipe.target
            if init == "class_labels" and (
                target is None or (not target.labels and not target.train.startswith("embedded:"))
            ):
                problems.append(f"recipes.{name}.{config.name}.init: class_labels needs target.labels")
        problems += check_merge_after_lora(name, configs)
    return problems


def check_merge_after_lora(name: str, configs: list) -> list[str]:
    """A merge never follows a LoRA of scope every_suite: the LoRA is not in the weights the merge interpolates (so
    both ends can be the same weights) and is attached again at full strength after it, so alpha would not scale it."""
    unmerged = None  # the latest LoRA stage that stays attached for every suite
    for config in configs:
        if config.kind == "lora_tune" and getattr(getattr(config, "scope", None), "value", None) == "every_suite":
            unmerged = config.name
        elif config.kind == "merge" and unmerged is not None:
            return [
                f"recipes.{name}.{config.name}: follows LoRA stage {unmerged!r} of scope every_suite, which is "
                f"not in the weights it merges and stays attached at full strength after it (alpha would not "
                f"scale it); set scope: merged on {unmerged!r} to fold it into the weights first"
            ]
    return []


def check_gate(recipe: RecipeFile) -> list[str]:
    """The gate (when the file has one) promotes a recipe of this file."""
    if recipe.gate is None or recipe.gate.recipe in recipe.recipes:
        return []
    return [f"gate.recipe: {shown(recipe.gate.recipe)} is not a recipe of this file; one of {sorted(recipe.recipes)}"]
