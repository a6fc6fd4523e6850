"""A stage's completion marker (DONE.json): the record its result and output paths are read from.

The commit protocol of a stage, on rank 0, in this order:
  1. the stage saves its artifacts into its folder (model/, adapter/); they get the umask's mode and are fsynced
  2. DONE.json, atomically: result paths (relative inside the run folder), metrics, rows, key and inputs, and the
     versions of the code and libraries that made it (`versions`)
  3. the manifest's entry for the stage, then the stage's resume checkpoints (trainer/) are removed
A kill between any two steps leaves a folder that `repair` sets right on the next start: the manifest's stage
entries are made to agree with the markers (done where a marker is, never done where none is), and leftover
checkpoints of finished stages are removed. Readers take paths from the marker, never from the manifest.
"""

from __future__ import annotations

import functools
import shutil
import time
from pathlib import Path

from core.atomic import seal_tree, write_json
from pipeline.engine import migrate
from stages.context import StageResult
from stages.handoff import Adapter, Scope

DONE = "DONE.json"  # the completion marker: written last and atomically, so no marker means not finished
CHECKPOINTS = "trainer"  # a training stage's resume checkpoints, inside its folder


def commit(manifest, run_dir: Path, stage, result: StageResult, seconds: float) -> None:
    """Finish a stage: its artifacts on disk, then its marker, then its manifest entry, then the cleanup."""
    stage_dir = run_dir / stage.stage_id
    seal_tree(stage_dir, skip=(CHECKPOINTS,))
    write_json(
        stage_dir / DONE,
        migrate.stamped(
            {**_result_json(result, seconds, run_dir), "key": stage.key, "inputs": stage.inputs, "versions": versions()}
        ),
    )
    manifest.stage_finished(stage.stage_id, result, seconds, stage.key)
    shutil.rmtree(stage_dir / CHECKPOINTS, ignore_errors=True)


LIBRARIES = ("torch", "transformers", "peft", "lm_eval", "accelerate", "deepspeed")


@functools.lru_cache(maxsize=1)
def versions() -> dict:
    """What made a stage: the forgetless code (git commit of the checkout, '+dirty' when modified, else the package
    version) and each library's installed version (None: not installed). Read once per process."""
    from importlib.metadata import PackageNotFoundError, version

    from pipeline.engine.manifest import code_version

    found = {"forgetless": code_version()}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def read(marker: Path, stage=None, entry: dict | None = None) -> dict:
    """A marker's content in the current format (an older one upgraded: pipeline/engine/migrate.py)."""
    return migrate.read_marker(Path(marker), stage, entry)


def result_of(marker: Path, run_dir: Path, stage=None) -> StageResult:
    """The StageResult a marker records, its paths resolved against where the run folder is now (`stage` names
    the one adapter of a marker from before adapters were named: pipeline/engine/migrate.py)."""
    data = read(marker, stage)
    # An identical stage of another recipe (reused) may have another name, which a stage's key leaves out: an
    # adapter named after the stage that made it is named after this one.
    own = {Path(marker).parent.name: stage.stage_id.rsplit("/", 1)[-1]} if stage is not None else {}
    adapters = {
        own.get(name, name): Adapter(
            loaded_path(a["path"], run_dir), a["kind"], Scope(a["scope"]), tuple(a.get("tasks", ()))
        )
        for name, a in data["adapters"].items()
    }
    return StageResult(
        model_dir=loaded_path(data["model_dir"], run_dir), adapters=adapters, metrics=data["metrics"], rows=data["rows"]
    )


def marker_of(run_dir: Path, stage_id: str, stages: dict) -> Path | None:
    """The marker holding a stage's result: its own, or the identical stage's it reused (same key); else None."""
    own = Path(run_dir) / stage_id / DONE
    if own.is_file():
        return own
    entry = stages.get(stage_id) or {}
    if entry.get("status") == "reused":
        twin = Path(run_dir) / entry["reused_from"] / DONE
        if twin.is_file() and read(twin).get("key") == entry.get("key"):
            return twin
    return None


def repair(manifest, run_dir: Path, stage_ids) -> None:
    """Make the manifest's stage entries agree with the markers (in memory: the caller commits the manifest)."""
    stages = manifest.data["stages"]
    for stage_id in dict.fromkeys([*stages, *stage_ids]):
        entry, marker = stages.get(stage_id), Path(run_dir) / stage_id / DONE
        if marker.is_file():
            stages[stage_id] = _done_entry(entry or {}, marker, run_dir)
            shutil.rmtree(marker.parent / CHECKPOINTS, ignore_errors=True)  # killed before the cleanup
        elif entry is None:
            continue
        elif entry.get("status") in ("done", "reused") and marker_of(run_dir, stage_id, stages) is None:
            del stages[stage_id]  # its marker is gone (cleared by --rerun-changed): not done any more
        elif entry.get("status") == "running":
            entry["status"] = "interrupted"  # killed: nothing recorded the end


def _done_entry(entry: dict, marker: Path, run_dir: Path) -> dict:
    """A manifest entry as stage_finished writes it, from the marker (an entry killed before it was written)."""
    done = read(marker, entry=entry)
    key = done.get("key")
    if entry.get("status") == "done" and entry.get("key") == key:
        return entry
    model, adapter = loaded_path(done["model_dir"], run_dir), loaded_path(done["adapter_dir"], run_dir)
    inputs = done.get("inputs") or {}
    entry = {"kind": inputs.get("kind"), "seed": inputs.get("seed", 0), **entry}
    entry.pop("reused_from", None)
    finished = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(marker.stat().st_mtime))
    entry.update(
        status="done",
        finished=finished,
        key=key,
        seconds=done.get("seconds"),
        output_model=str(model),
        output_adapter=str(adapter) if adapter else None,
        repaired="from DONE.json",
    )
    return entry


def _result_json(result: StageResult, seconds: float, run_dir: Path) -> dict:
    adapters = {
        name: {
            "path": stored_path(a.path, run_dir),
            "kind": a.kind,
            "scope": a.scope.value,
            **({"tasks": list(a.tasks)} if a.tasks else {}),
        }
        for name, a in result.adapters.items()
    }
    return {
        "model_dir": stored_path(result.model_dir, run_dir),
        "adapter_dir": stored_path(result.adapter_dir, run_dir),
        "adapters": adapters,
        "metrics": result.metrics,
        "rows": result.rows,
        "seconds": seconds,
    }


def stored_path(path, run_dir: Path):
    """A folder inside the run folder as {"run": relative path}, so the run folder can be moved or copied;
    anything else (the base model's folder, a hub id) as {"path": ...}, as given."""
    if path is None:
        return None
    path = Path(path)
    return {"run": str(path.relative_to(run_dir))} if path.is_relative_to(run_dir) else {"path": str(path)}


def loaded_path(stored, run_dir: Path):
    """The path a marker stored, resolved against the run folder where it is now."""
    if stored is None:
        return None
    return run_dir / stored["run"] if "run" in stored else Path(stored["path"])
