"""Every input of a run is either in some stage key or on the list of what cannot change a number (issue 31).

DECISIONS below names every field of every config dataclass a recipe file reaches, and every option of
`pipeline run`, with one of two decisions:

- KEYED(how, change): part of a stage key. `change` is a `--set` (or a few) that changes the field on a tiny
  recipe; planning both (orchestrator.make_plan, nothing trained) must give another key. None where the tiny recipe
  cannot show it offline; the comment says what shows it instead.
- FREE(why): cannot change a number; why not.

A field added to a config dataclass (or an option to `pipeline run`) without a decision here fails
test_every_field_has_a_decision: decide it, then key it (pipeline/engine/plan.py) or say here why it changes no number.
Stage kinds' settings are keyed whole (stage_dict), checked by test_every_stage_setting_is_in_its_key.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import typing
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "own_targets"


class KEYED(NamedTuple):
    how: str
    change: tuple[str, ...] | None = None


class FREE(NamedTuple):
    why: str


def sets(*items: str) -> tuple[str, ...]:
    return items


DECISIONS = {
    "RecipeFile": {
        "name": FREE("names the default run folder; a stage's inputs do not include where it is written"),
        "recipes": KEYED("each stage's settings (stage_dict)", sets("recipes.sft.0.lr=0.5")),
        "seeds": KEYED("each stage's seed", sets("seeds=[1]")),
        "model": KEYED("the base, by content (ModelConfig below)"),
        "target": KEYED("TargetConfig below"),
        "targets": KEYED(
            "each target as TargetConfig below, and its name in the suites",
            sets(
                "target=null",
                f"targets=[{{name: a, train: {DATA}/colour_fr_train.jsonl, "
                f"test: {DATA}/colour_fr_test.jsonl, train_rows: 32, test_rows: 3}}]",
                "recipes.sft.0.data=[a]",
            ),
        ),
        "data": KEYED("SourceConfig below: the token ids and row counts of each source drawn from"),
        "evaluation": KEYED("EvaluationConfig below"),
        "max_length": KEYED("every stage's max_length, and the token ids (truncation)", sets("max_length=40")),
        "runs_root": FREE("where run folders go"),
        "gate": FREE("thresholds `pipeline retrain` / `gate` judge a finished run by; they change no score"),
        "checks": FREE("the report's checks, measured from results.csv after the run"),
        "report": FREE("what the report compares and how it titles it"),
        "deepspeed": KEYED(
            "the JSON's content, in every training stage's key", sets("deepspeed=configs/deepspeed/zero2.json")
        ),
        "report_to": FREE("experiment trackers: a copy of the logs"),
        # Like the CPU and the number of processes (manifest.launch), recorded, not keyed: torch's CPU kernels may
        # round differently with another thread count, and `--set threads=1` on a busy machine must not retrain.
        "threads": FREE("speed; recorded in manifest.json launch.threads"),
        "stages": KEYED("built from `recipes` (each stage's settings)"),
        "swept": FREE("the names of a sweep's copies; their values are in their stages' settings"),
    },
    "ModelConfig": {
        "path": KEYED(
            "the content of the folder's loaded files (bases/identity.py), not its name",
            sets("model.path={changed_base}"),
        ),
        # A hub id is fetched as a snapshot at the revision, then keyed by content like a folder; tests cannot reach
        # the hub: tests/test_run_folder_truth.py serves a hub id from a local cache.
        "revision": KEYED("the hub snapshot's content (bases/identity.py)"),
        "trust_remote_code": FREE(
            "without it a model with remote code does not load at all; its .py files are keyed with the base's content"
        ),
    },
    "TargetConfig": {
        "name": KEYED("the target suite's name and task files", sets("target.name=colour")),
        "train": KEYED(
            "the training rows' token ids", sets(f"target.train={DATA}/country_of_train.csv", "target.format=auto")
        ),
        "test": KEYED(
            "the test rows (target_data, task files)",
            sets(f"target.test={DATA}/country_of_test.csv", "target.format=auto"),
        ),
        # colour_fr's rows read the same in every format that accepts them; tests/test_keys_end_to_end.py::test_b
        # renders other token ids (messages through a chat template).
        "format": KEYED("the rendered rows' token ids"),
        "train_rows": KEYED("row counts and token ids", sets("target.train_rows=16")),
        "test_rows": KEYED("the test rows", sets("target.test_rows=3")),
        "labels": KEYED("the evaluation's labels (format leak)", sets("target.labels=[rouge,bleu]")),
        "scorer": KEYED("the evaluation's scoring and task files", sets("target.scorer=exact")),
        "max_answer_tokens": KEYED("the evaluation's scoring and task files", sets("target.max_answer_tokens=3")),
        "on_bad_rows": KEYED("the rows kept: row counts and token ids (clean test data drops none)"),
        "revision": KEYED("a hub dataset's rows: their token ids (offline tests have no hub dataset)"),
    },
    "EvaluationConfig": {
        "general_suite": KEYED("the suites and their task files", sets("evaluation.general_suite=embedded_domain")),
        "domain_suites": KEYED("the suites and their task files", sets("evaluation.domain_suites=[embedded_math]")),
        "general_tasks": KEYED(
            "the suites and their task files",
            sets("evaluation.task_dir={task_dir}", "evaluation.general_tasks=[my_add]"),
        ),
        "task_dir": KEYED("the task files' text (test_an_edited_task_file_changes_the_evaluation_keys)"),
        "limit": KEYED("evaluation settings", sets("evaluation.limit=3")),
        "target_limit": KEYED("evaluation settings", sets("evaluation.target_limit=2")),
        "batch_size": KEYED("evaluation settings (padding can move a logit)", sets("evaluation.batch_size=4")),
        # The tiny base has no chat template (true is refused, false is what auto gives);
        # tests/test_keys_end_to_end.py::test_b switches it on a base that has one.
        "chat_template": KEYED("evaluation settings, and the rendered rows' token ids"),
        "unit_metrics": FREE(
            "declares metrics whose scores lie in [0, 1], checked before the run "
            "(pipeline/recipe/validate_metrics.py); a wrong one is refused, it changes no score"
        ),
        "unsafe_code_execution": FREE(
            "whether model code may run unisolated; the isolation used is recorded in manifest.json code_isolation"
        ),
    },
    "SourceConfig": {
        "source": KEYED("the source's content and token ids", sets(f"data.extra.source={DATA}/colour_fr_test.jsonl")),
        "rows": KEYED("row counts and token ids", sets("data.extra.rows=10")),
        "format": KEYED("the rendered rows' token ids (as target.format)"),
        "split": KEYED("a hub dataset's rows, by their token ids (a local file has one split)"),
        "on_bad_rows": KEYED("the rows kept (as target.on_bad_rows)"),
        "revision": KEYED("a hub dataset's rows, by their token ids"),
    },
}

# The options of `pipeline run`, by argparse dest.
CLI_RUN = {
    "recipe": KEYED("the file's fields, decided one by one above"),
    "set": KEYED("a field of the file, decided above"),
    "run_dir": FREE("where the run is written"),
    "only": FREE("which recipes run now; each stage keeps its key"),
    "rerun_changed": FREE("what to do with a finished stage whose key changed"),
}

# Dataclasses reached from RecipeFile that are decided whole by the field that holds them (FREE or a stage's
# settings), so their own fields need no line here.
DECIDED_WHOLE = {"GateConfig", "CheckConfig", "ReportConfig", "Mix", "Portion"}


def reachable(cls, found: dict) -> dict:
    """Every dataclass reachable from cls through its fields' type hints (inside lists, dicts, unions)."""
    if cls.__name__ in found:
        return found
    found[cls.__name__] = cls
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        for inner in _classes(hints[f.name]):
            if dataclasses.is_dataclass(inner) and inner.__name__ not in DECIDED_WHOLE:
                reachable(inner, found)
    return found


def _classes(hint) -> list:
    args = typing.get_args(hint)
    return [c for a in args for c in _classes(a)] if args else [hint]


def test_every_field_has_a_decision():
    from pipeline.recipe.config import RecipeFile

    for name, cls in reachable(RecipeFile, {}).items():
        fields = {f.name for f in dataclasses.fields(cls)}
        decided = set(DECISIONS.get(name, {}))
        assert fields - decided == set(), f"{name}: fields with no key decision (add them to DECISIONS)"
        assert decided - fields == set(), f"{name}: DECISIONS names fields it no longer has"


def test_every_run_option_has_a_decision():
    from pipeline.cli import build_parser

    [sub] = [a for a in build_parser()._actions if a.dest == "command"]
    options = {a.dest for a in sub.choices["run"]._actions if a.dest != "help"}
    assert options == set(CLI_RUN), "an option of `pipeline run` with no key decision (add it to CLI_RUN)"


def shipped_stage_configs() -> dict:
    """One typed config of every stage kind the shipped recipe files use, by kind."""
    from pipeline.recipe.config import load_recipe

    configs = {}
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        for stages in load_recipe(path).stages.values():
            for config in stages:
                configs.setdefault(config.kind, config)
    return configs


def test_every_stage_setting_is_in_its_key():
    """A stage kind's every field but its name (keyed by its place in the chain) is in its key's settings."""
    from pipeline.recipe.config import stage_dict
    from stages import STAGES

    configs = shipped_stage_configs()
    written = {kind for kind in STAGES if getattr(STAGES[kind], "IN_RECIPES", True)}
    assert set(configs) == written, "a stage kind no shipped recipe uses: add one to recipes/ or build it here"
    for kind, config in configs.items():
        settings = stage_dict(config)
        for f in dataclasses.fields(config):
            omitted = f.metadata.get("omit_default") and getattr(config, f.name) == (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            )
            if f.name != "name" and not omitted:  # omit_default: left out at its default, in the key otherwise
                assert f.name in settings, f"{kind}.{f.name} is not in the stage key's settings"
    from stages.evaluate import Config

    assert {f.name for f in dataclasses.fields(Config)} == {
        "name",
        "limit",
        "target_limit",
        "batch_size",
        "chat_template",
    }, "stages/evaluate.Config changed: its fields are keyed whole (plan_run's settings); check that still holds"


# --- The keyed decisions, shown: a change of each gives another plan --------------------------------------------

RECIPE = f"""
name: keys
seeds: [0]
model: {{path: embedded}}
target:
  name: colour_fr
  train: {DATA}/colour_fr_train.jsonl
  test: {DATA}/colour_fr_test.jsonl
  format: prompt_completion
  labels: [rouge, bleu, vert]
  train_rows: 32
  test_rows: 4
data:
  extra: {{source: {DATA}/colour_fr_train.jsonl, rows: 20}}
evaluation: {{limit: 2, batch_size: 8}}
max_length: 48
recipes:
  sft:
    - {{kind: finetune, steps: 2, batch_size: 4, data: [target, extra]}}
"""


@pytest.fixture(scope="module")
def planner(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    folder = tmp_path_factory.mktemp("keys")
    base = ensure_base_model(TEST_SPEC, cache_root=folder / "cache")
    changed = folder / "changed-base"
    shutil.copytree(base, changed)
    _nudge_a_weight(changed / "model.safetensors")
    task_dir = folder / "tasks"
    task_dir.mkdir()
    (task_dir / "my_add.yaml").write_text(
        (ROOT / "evaluation/tasks/embedded/embedded_add.yaml")
        .read_text()
        .replace("task: embedded_add", "task: my_add")
        .replace("include: _template_yaml", f"include: {ROOT}/evaluation/tasks/embedded/_template_yaml")
    )
    recipe = folder / "keys.yaml"
    recipe.write_text(RECIPE.replace("path: embedded", f"path: {base}"))
    values = {"changed_base": changed, "task_dir": task_dir}

    def plan(*changes: str) -> dict:
        for name, value in values.items():
            changes = [c.replace("{" + name + "}", str(value)) for c in changes]
        return plan_keys(recipe, changes, folder)

    return plan, values, plan()


def _nudge_a_weight(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(str(path))
    name = sorted(weights)[0]
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] += 1e-3
    save_file(weights, str(path), metadata={"format": "pt"})


def plan_keys(recipe: Path, changes: list[str], folder: Path) -> dict:
    """{stage id: key} of the recipe's plan under the --set changes; nothing is trained or written."""
    import tempfile

    from pipeline.engine.orchestrator import ReadOnlyManifest, make_plan
    from pipeline.recipe.config import load_recipe

    loaded = load_recipe(recipe, changes)
    manifest = ReadOnlyManifest.open(folder / "no-run", recipe)
    with tempfile.TemporaryDirectory() as scratch:
        plan, *_ = make_plan(loaded, manifest, Path(scratch))
    return {stage.stage_id: stage.key for stage in plan}


KEYED_CHANGES = [
    (f"{cls}.{name}", d.change)
    for cls, fields in DECISIONS.items()
    for name, d in fields.items()
    if isinstance(d, KEYED) and d.change
]


def test_an_unchanged_recipe_plans_the_same_keys(planner):
    plan, _, before = planner
    assert plan() == before


@pytest.mark.parametrize("field,change", KEYED_CHANGES, ids=[f for f, _ in KEYED_CHANGES])
def test_a_keyed_field_changes_a_key(planner, field, change):
    plan, _, before = planner
    after = plan(*change)
    assert set(before.items()) != set(after.items()), f"{field}: {change} left every stage key as it was"


def test_an_edited_task_file_changes_the_evaluation_keys_only(planner):
    plan, values, _ = planner
    use = ("evaluation.task_dir={task_dir}", "evaluation.general_tasks=[my_add]")
    before = plan(*use)
    task = values["task_dir"] / "my_add.yaml"
    text = task.read_text()
    try:
        task.write_text(text + "num_fewshot: 0\n")
        after = plan(*use)
    finally:
        task.write_text(text)
    changed = {stage for stage in before if before[stage] != after[stage]}
    assert changed == {stage for stage in before if stage.endswith("evaluate") or stage.endswith("-eval")}


def test_a_copied_base_keys_as_the_original(planner, tmp_path):
    """The base is keyed by content: the same files in another folder are the same base."""
    plan, values, _ = planner
    copy = tmp_path / "copy"
    shutil.copytree(values["changed_base"], copy)
    assert plan(f"model.path={copy}") == plan("model.path={changed_base}")


def test_a_deepspeed_json_is_keyed_by_content(planner, tmp_path):
    plan, _, _ = planner
    config = json.loads((ROOT / "configs/deepspeed/zero2.json").read_text())
    same, other = tmp_path / "same.json", tmp_path / "other.json"
    same.write_text(json.dumps(config))
    other.write_text(json.dumps({**config, "bf16": {"enabled": True}}))
    shipped = plan("deepspeed=configs/deepspeed/zero2.json")
    assert plan(f"deepspeed={same}") == shipped
    changed = plan(f"deepspeed={other}")
    assert changed["seed0/sft/finetune"] != shipped["seed0/sft/finetune"]
    assert changed["base/evaluate"] == shipped["base/evaluate"]
