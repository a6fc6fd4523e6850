"""A run's DeepSpeed config: which file it is, and whether it will run on N processes, checked on one CPU.

The Trainer fills the config's "auto" values from TrainingArguments. The check builds those arguments from
each training stage exactly as a run on N processes would, lets transformers fill and compare, then hands
the result to DeepSpeed's own config class. Nothing is launched.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

from core.errors import UserError

REPO = Path(__file__).resolve().parents[2]
ACCELERATE_FILE = "ACCELERATE_DEEPSPEED_CONFIG_FILE"  # set by `accelerate launch` with a DeepSpeed config
MISMATCH = re.compile(r"- ds (\S+)=(.*) vs hf (.*)=(.*)")  # transformers' HfTrainerDeepSpeedConfig.mismatches


def deepspeed_path(recipe) -> str | None:
    """The run's DeepSpeed JSON: the recipe's `deepspeed`, else the one an accelerate config launched with."""
    name = recipe.deepspeed or os.environ.get(ACCELERATE_FILE)
    if not name:
        return None
    path = Path(name)
    if not path.exists() and (REPO / name).exists():  # shipped configs/deepspeed/*.json, from any folder
        path = REPO / name
    return str(path.resolve())


def check_world(recipe, world_size: int, only=()) -> list[str]:
    """One line per problem of running `recipe` (its recipes in `only`, if given) on `world_size` processes: batch
    split, then the DeepSpeed config."""
    from core.source_lines import locate
    from stages.training import per_device_batch

    problems = []
    for recipe_name, configs in _selected(recipe, only).items():
        for config in (c for c in configs if c.steps):  # a 0-step stage splits no batch
            try:
                per_device_batch(config, world_size)
            except UserError as err:
                problems.append(f"recipes.{recipe_name}.{err}")
            if config.bf16 and not bf16_available():
                problems.append(
                    f"recipes.{recipe_name}.{config.name}.bf16: this GPU has no bf16 ({gpu_name()}); set bf16: false"
                )
    return locate(problems, recipe) or check_deepspeed(recipe, world_size, only)


def _selected(recipe, only) -> dict:
    """The recipes a run trains: those named by --only, else all."""
    return {name: configs for name, configs in recipe.stages.items() if not only or name in only}


def bf16_available() -> bool:
    """bf16 autocast runs on any CPU, and on GPUs from Ampere on."""
    import torch

    return not torch.cuda.is_available() or torch.cuda.is_bf16_supported()


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0)


def check_launch(recipe) -> list[str]:
    """DeepSpeed joins the process group a launcher sets up; started bare it would look for MPI instead."""
    if deepspeed_path(recipe) and "LOCAL_RANK" not in os.environ:
        return [
            f"deepspeed: {recipe.deepspeed or os.environ.get(ACCELERATE_FILE)}: DeepSpeed needs a launcher, "
            f"even for one process: accelerate launch --num_processes 1 -m pipeline run ... (README: Scale out)"
        ]
    return []


def check_deepspeed(recipe, world_size: int, only=()) -> list[str]:
    """One line per problem of the run's DeepSpeed config on `world_size` processes (empty: it will run)."""
    path = deepspeed_path(recipe)
    launched = os.environ.get(ACCELERATE_FILE)
    if recipe.deepspeed and launched and Path(launched).resolve() != Path(path):
        return [
            f"deepspeed: {recipe.deepspeed} differs from the accelerate config's deepspeed_config_file {launched}; "
            f"name one file (or drop one of them)"
        ]
    if path is None:
        return []
    shown = recipe.deepspeed or launched
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return [f"deepspeed: {shown}: file not found"]
    except json.JSONDecodeError as err:
        return [f"{shown}:{err.lineno}: invalid JSON ({err.msg})"]
    if not isinstance(raw, dict):
        return [f"{shown}: expected a JSON object"]
    stages_with = {}  # problem -> the stages that have it: a problem of the file itself is one line, not one a stage
    stages = [
        (f"recipes.{name}.{config.name}", config)
        for name, configs in _selected(recipe, only).items()
        for config in configs
        if config.steps
    ]  # a 0-step stage never starts DeepSpeed
    for where, config in stages:
        for line in check_stage(raw, config, world_size):
            stages_with.setdefault(line, []).append(where)
    return [
        f"{shown}: {line} ({_stages_named(wheres, len(stages))}, {world_size} process{'es' if world_size > 1 else ''})"
        for line, wheres in stages_with.items()
    ]


def _stages_named(wheres: list[str], n_stages: int) -> str:
    """The stages a problem was found in: all of them, or the first few by name."""
    if len(wheres) == n_stages and n_stages > 1:
        return f"all {n_stages} training stages"
    more = f" and {len(wheres) - 2} more" if len(wheres) > 2 else ""
    return ", ".join(wheres[:2]) + more


def check_stage(raw: dict, config, world_size: int) -> list[str]:
    """Problems of one DeepSpeed config for one training stage, as `field: message` lines."""
    from stages.training import deepspeed_precision, training_arguments

    args = training_arguments(config, Path("unused"), seed=0, world_size=world_size)
    precision = {"bf16": config.bf16, "fp16": False, **deepspeed_precision(raw)}  # as a run sets them
    if precision["fp16"] and config.bf16:
        return ["fp16.enabled: true here, but the stage sets bf16: true; use one precision"]
    view = SimpleNamespace(
        **{**vars(args), "world_size": world_size, **precision}, get_warmup_steps=args.get_warmup_steps
    )
    filled, problems = _fill_auto(raw, view, config.steps)
    if problems:  # DeepSpeed would only restate them (e.g. its batch arithmetic)
        return problems
    problems = _deepspeed_verdict(filled, raw, world_size)
    problems += getattr(config, "deepspeed_problems", lambda _: [])(raw)  # what a stage kind itself cannot run under
    zero = filled.get("zero_optimization") or {}
    if zero.get("stage") == 3 and not zero.get("stage3_gather_16bit_weights_on_model_save"):
        problems.append(
            "zero_optimization.stage3_gather_16bit_weights_on_model_save: must be true under ZeRO-3, "
            "so the final model is saved as one plain save_pretrained folder"
        )
    return problems


def _fill_auto(raw: dict, args, steps: int) -> tuple[dict, list[str]]:
    """transformers' own filling of "auto" values; explicit values that disagree with the stage become lines."""
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig, unset_hf_deepspeed_config

    hf = HfTrainerDeepSpeedConfig(copy.deepcopy(raw))
    # The hidden size only sizes ZeRO's communication buckets; no value of it makes a config invalid.
    stand_in = SimpleNamespace(config=SimpleNamespace(hidden_size=1024))
    try:
        hf.trainer_config_process(args)
        hf.trainer_config_finalize(args, stand_in, steps)
    except ValueError:
        pass  # the mismatches, listed below
    finally:
        unset_hf_deepspeed_config()  # HfDeepSpeedConfig registers itself globally
    problems = []
    for line in hf.mismatches:
        match = MISMATCH.match(line)
        key, ds_value, hf_key, hf_value = match.groups() if match else (line, "?", "?", "?")
        problems.append(f'{key}: {ds_value} here, but the stage gives {hf_value} ({hf_key}); set it to "auto"')
    return hf.config, problems


def _deepspeed_verdict(filled: dict, raw: dict, world_size: int) -> list[str]:
    """DeepSpeed's own checks (types, ZeRO stage, batch arithmetic, bf16+fp16), and keys it never read."""
    import logging

    import pydantic

    # Importing DeepSpeed on a machine without a GPU logs an accelerator warning: noise for a check.
    logging.getLogger("DeepSpeed").setLevel(logging.ERROR)
    from deepspeed.runtime.config import DeepSpeedConfig

    class ForWorldSize(DeepSpeedConfig):
        # DeepSpeedConfig asks torch.distributed for the world size, which a check on one CPU does not have.
        world_size = property(lambda self: world_size, lambda self, value: None)

    seen = ReadKeys(filled)
    problems = []
    try:
        ForWorldSize(seen)
    except pydantic.ValidationError as err:
        for error in err.errors():
            loc = [str(part) for part in error["loc"]]
            section = next((k for k, v in raw.items() if isinstance(v, dict) and loc and loc[0] in v), err.title)
            problems.append(f"{'.'.join([section, *loc])}: {error['msg']} (got {error['input']!r})")
    except (AssertionError, ValueError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        field = next((key for key in raw if key in message), "config")
        problems.append(f"{field}: {message}")
    if problems:  # DeepSpeed stopped reading at the first error: unread keys say nothing yet
        return problems
    for key in raw:
        if key not in seen.read:
            known = [k for k in seen.read if isinstance(k, str)]
            hint = _did_you_mean(key, known)
            problems.append(f"{key}: not a DeepSpeed setting{hint}")
    return problems


class ReadKeys(dict):
    """A dict that remembers which keys were looked up: a key DeepSpeed never reads is one it does not know."""

    def __init__(self, data):
        super().__init__(data)
        self.read = set()

    def get(self, key, default=None):
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.read.add(key)
        return super().__contains__(key)


def _did_you_mean(key: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]}?)" if close else ""
