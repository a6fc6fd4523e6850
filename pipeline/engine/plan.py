"""The run plan: every stage of a recipe file with the inputs that make its output what it is, before any runs.

A stage's key hashes its inputs: kind, settings, seed, the keys of the stages it starts from (so a change anywhere
upstream changes every stage after it), and what it actually uses: the base by the content of its files
(bases/identity.py); for a training stage the token ids of the rows it draws from (after format, chat template and
tokenizer) and the DeepSpeed JSON's content; for an evaluation the text of every task file its suites read, the
target's scorer and answer budget, and lm-eval's version (pipeline/engine/eval_inputs.py). What is keyed, and what is
left out because it cannot change a number, is listed field by field in tests/pipeline/test_key_coverage.py.

A finished stage is reused only under the same key. Before anything is trained or written, the plan is checked
against the run folder: a finished stage whose inputs differ is refused in one line that says what changed, unless
`--rerun-changed` asks for it to be trained again."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from core.errors import UserError
from pipeline.engine.keys import MAX_CHANGES_SHOWN, describe_change, key_of
from pipeline.engine.markers import DONE
from pipeline.engine.migrate import read_marker
from pipeline.recipe.sweep import folder_name


@dataclasses.dataclass
class Planned:
    """One stage of the plan: where it goes, what it is, and its inputs (and their key)."""

    stage_id: str
    kind: str
    config: object
    inputs: dict
    recipe: str | None = None  # None for the base evaluation
    seed: int = 0
    mix: object = None  # the training stage's data (data_recipes.mixes.MixedData)
    reports: str | None = None  # an evaluation: the stage name its results rows go under ("base", "finetune")

    @property
    def key(self) -> str:
        return key_of(self.inputs)


def base_identity(base) -> str:
    """What the base model is: a local folder by the content of the files it is loaded from (bases/identity.py),
    a hub id that is no folder here by its name ("revision: unresolved": resolve_base_model fetches a hub id as a
    snapshot folder, so a planned run never keys one by name alone)."""
    from bases.identity import folder_identity

    folder = Path(str(base))
    if not (folder / "config.json").is_file():
        return f"hub:{base} revision: unresolved"
    return folder_identity(folder)


def plan_run(
    recipe,
    base,
    fingerprints: dict,
    sources: dict,
    eval_config,
    suites: list,
    labels: list[str],
    tokenizer=None,
    scoring=None,
    deepspeed: str | None = None,
) -> list[Planned]:
    """Every stage in run order: the base evaluation, then each recipe x seed's stages and their evaluations.

    A training stage keys the token ids of the rows it draws from (after format, chat template and tokenizer); an
    evaluation keys its settings, the text of every task file its suites read, the target's scoring and lm-eval's
    version; every stage keys the base by content, and a training stage the DeepSpeed JSON's content.
    """
    from pipeline.engine.eval_inputs import deepspeed_content, lm_eval_version, suite_files
    from pipeline.recipe.config import stage_dict

    settings = dataclasses.asdict(eval_config)
    if not settings.get("chat_template", True):  # off: left out, so run folders from before the switch still match
        del settings["chat_template"]
    evaluation = {
        "settings": settings,
        "max_length": recipe.max_length,
        "suites": [[suite.name, list(suite.tasks), attach] for suite, attach in suites],
        "target_data": fingerprints.get("target_test"),
        "labels": list(labels),
        "scoring": scoring or {},
        "task_files": {suite.name: suite_files(suite) for suite, _ in suites},
        "lm_eval": lm_eval_version(),
    }
    base_key = base_identity(base)
    base_eval = Planned(
        "base/evaluate",
        "evaluate",
        eval_config,
        {"kind": "evaluate", "upstream": [base_key], **evaluation},
        reports="base",
    )
    plan = [base_eval]
    tokens = _TokenKeys(sources, tokenizer, recipe.max_length)
    training_extra = {"deepspeed": deepspeed_content(deepspeed)} if deepspeed else {}
    for seed in recipe.seeds:
        for name, configs in recipe.stages.items():
            upstream, makers = base_key, {}  # the key of the stage that made each adapter, by name
            keys = {}  # each earlier stage's key, by name: a stage that reads its model (a merge) depends on it
            for config in configs:
                stage_id = f"seed{seed}/{folder_name(name)}/{config.name}"
                # data_recipes.mixes: the rows, their counts and notes; a kind that trains on nothing has no data
                mix = config.data.build(sources, seed) if getattr(config, "data", None) is not None else None
                counts = mix.counts if mix is not None else {}
                settings = stage_dict(config)
                settings.pop("name", None)
                contract = config.contract()  # the adapters it needs are part of its inputs, by their makers' keys
                inputs = {
                    "kind": config.kind,
                    "settings": settings,
                    "seed": seed,
                    "max_length": recipe.max_length,
                    "upstream": [upstream]
                    + [makers[need.name] for need in contract.consumes]
                    + [keys[read.name] for read in contract.reads if read.name in keys],
                    "data_rows": counts,
                    "data_sha256": {s: fingerprints.get(s) for s in sorted(counts)},
                    "data_token_ids": {s: tokens.of(s) for s in sorted(counts)},
                    **training_extra,
                    # e.g. sdft: TRL's version, and whether its rows are chat rows (the teacher's prompt follows)
                    **(
                        config.key_inputs(mix.dataset if mix is not None else None, tokenizer)
                        if hasattr(config, "key_inputs")
                        else {}
                    ),
                }
                if getattr(config, "selection", None) is not None:  # it scores a validation split while it trains
                    inputs["validation_evaluation"] = evaluation
                stage = Planned(stage_id, config.kind, config, inputs, name, seed, mix)
                plan.append(stage)
                upstream = keys[config.name] = stage.key
                makers.update({makes.name: stage.key for makes in contract.produces})
                plan.append(
                    Planned(
                        f"{stage_id}-eval",
                        "evaluate",
                        eval_config,
                        {"kind": "evaluate", "upstream": [stage.key], **evaluation},
                        name,
                        seed,
                        reports=config.name,
                    )
                )
    return plan


class _TokenKeys:
    """Each source's token ids hashed once per plan (data_recipes.catalog.tokens_fingerprint)."""

    def __init__(self, sources: dict, tokenizer, max_length: int):
        self.sources, self.tokenizer, self.max_length, self.done = sources, tokenizer, max_length, {}

    def of(self, name: str) -> str | None:
        from data_recipes.catalog import tokens_fingerprint

        if self.tokenizer is None or name not in self.sources:
            return None
        if name not in self.done:
            self.done[name] = tokens_fingerprint(self.sources[name], self.tokenizer, self.max_length)
        return self.done[name]


def check_plan(plan: list[Planned], run_dir: Path, manifest_stages: dict, rerun_changed: bool) -> list[str]:
    """Refuse (or with rerun_changed, clear) finished stages whose inputs differ; returns the stage ids cleared."""
    changed = []
    for stage in plan:
        marker = run_dir / stage.stage_id / DONE
        if not marker.is_file():
            continue
        done = read_marker(marker, entry=manifest_stages.get(stage.stage_id))
        stored = done.get("key")
        if stored != stage.key:
            changed.append((stage, describe_change(done.get("inputs"), stage.inputs)))
    if changed and not rerun_changed:
        shown = "; ".join(f"{stage.stage_id} ({what})" for stage, what in changed[:MAX_CHANGES_SHOWN])
        more = f" and {len(changed) - MAX_CHANGES_SHOWN} more" if len(changed) > MAX_CHANGES_SHOWN else ""
        raise UserError(
            f"{run_dir}: {len(changed)} finished stage(s) ran with other inputs than this config: "
            f"{shown}{more}. Use a new --run-dir, or --rerun-changed to train them again"
        )
    for stage, _ in changed:
        shutil.rmtree(run_dir / stage.stage_id)
    return [stage.stage_id for stage, _ in changed]
