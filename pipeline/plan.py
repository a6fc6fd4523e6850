"""The run plan: every stage of a recipe file with the inputs that make its output what it is, before any runs.

A stage's key hashes its inputs: kind, settings, seed, the rows and content of its data, and the keys of
the stages it starts from (so a change anywhere upstream changes every stage after it). A finished stage
is reused only under the same key. Before anything is trained or written, the plan is checked against the
run folder: a finished stage whose inputs differ is refused in one line that says what changed, unless
`--rerun-changed` asks for it to be trained again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

from core.errors import UserError
from pipeline.markers import DONE
from pipeline.sweep import folder_name

MAX_CHANGES_SHOWN = 3


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


def key_of(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def base_identity(base) -> str:
    """What the base model is: a local folder by its config and weight files, a hub id by its name."""
    folder = Path(str(base))
    if not (folder / "config.json").is_file():
        return f"hub:{base}"
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for weights in sorted(folder.glob("*.safetensors")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return f"folder:{digest.hexdigest()}"


def plan_run(recipe, base, fingerprints: dict, sources: dict, eval_config, suites: list,
             labels: list[str]) -> list[Planned]:
    """Every stage in run order: the base evaluation, then each recipe x seed's stages and their evaluations."""
    from pipeline.config import stage_dict

    settings = dataclasses.asdict(eval_config)
    if not settings.get("chat_template", True):  # off: left out, so run folders from before the switch still match
        del settings["chat_template"]
    evaluation = {"settings": settings, "max_length": recipe.max_length,
                  "suites": [[suite.name, list(suite.tasks), attach] for suite, attach in suites],
                  "target_data": fingerprints.get("target_test"), "labels": list(labels)}
    base_eval = Planned("base/evaluate", "evaluate", eval_config,
                        {"kind": "evaluate", "upstream": [base_identity(base)], **evaluation}, reports="base")
    plan = [base_eval]
    for seed in recipe.seeds:
        for name, configs in recipe.stages.items():
            upstream, makers = base_identity(base), {}  # the key of the stage that made each adapter, by name
            keys = {}  # each earlier stage's key, by name: a stage that reads its model (a merge) depends on it
            for config in configs:
                stage_id = f"seed{seed}/{folder_name(name)}/{config.name}"
                # data_recipes.mixes: the rows, their counts and notes; a kind that trains on nothing has no data
                mix = config.data.build(sources, seed) if getattr(config, "data", None) is not None else None
                counts = mix.counts if mix is not None else {}
                settings = stage_dict(config)
                settings.pop("name", None)
                contract = config.contract()  # the adapters it needs are part of its inputs, by their makers' keys
                inputs = {"kind": config.kind, "settings": settings, "seed": seed, "max_length": recipe.max_length,
                          "upstream": [upstream] + [makers[need.name] for need in contract.consumes]
                          + [keys[read.name] for read in contract.reads if read.name in keys],
                          "data_rows": counts, "data_sha256": {s: fingerprints.get(s) for s in sorted(counts)}}
                if getattr(config, "selection", None) is not None:  # it scores a validation split while it trains
                    inputs["validation_evaluation"] = evaluation
                stage = Planned(stage_id, config.kind, config, inputs, name, seed, mix)
                plan.append(stage)
                upstream = keys[config.name] = stage.key
                makers.update({makes.name: stage.key for makes in contract.produces})
                plan.append(Planned(f"{stage_id}-eval", "evaluate", eval_config,
                                    {"kind": "evaluate", "upstream": [stage.key], **evaluation}, name, seed,
                                    reports=config.name))
    return plan


def check_plan(plan: list[Planned], run_dir: Path, manifest_stages: dict, rerun_changed: bool) -> list[str]:
    """Refuse (or with rerun_changed, clear) finished stages whose inputs differ; returns the stage ids cleared."""
    changed = []
    for stage in plan:
        marker = run_dir / stage.stage_id / DONE
        if not marker.is_file():
            continue
        done = json.loads(marker.read_text())
        stored = done.get("key") or (manifest_stages.get(stage.stage_id) or {}).get("key")
        if stored != stage.key:
            changed.append((stage, describe_change(done.get("inputs"), stage.inputs)))
    if changed and not rerun_changed:
        shown = "; ".join(f"{stage.stage_id} ({what})" for stage, what in changed[:MAX_CHANGES_SHOWN])
        more = f" and {len(changed) - MAX_CHANGES_SHOWN} more" if len(changed) > MAX_CHANGES_SHOWN else ""
        raise UserError(f"{run_dir}: {len(changed)} finished stage(s) ran with other inputs than this config: "
                        f"{shown}{more}. Use a new --run-dir, or --rerun-changed to train them again")
    for stage, _ in changed:
        shutil.rmtree(run_dir / stage.stage_id)
    return [stage.stage_id for stage, _ in changed]


def describe_change(old: dict | None, new: dict) -> str:
    """The first few differences between two stages' inputs, as `settings.lr: 0.001 -> 0.05`."""
    if old is None:
        return "finished by an older forgetless that did not record its inputs"
    differences = []
    _diff(old, new, "", differences)
    return ", ".join(differences[:MAX_CHANGES_SHOWN]) or "inputs differ"


def _diff(old, new, path: str, out: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            _diff(old.get(key), new.get(key), f"{path}.{key}" if path else str(key), out)
    elif old != new:
        if path == "upstream":
            out.append("an earlier stage or the base model changed")
        else:
            out.append(f"{path}: {_short(old)} -> {_short(new)}")


def _short(value) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."

