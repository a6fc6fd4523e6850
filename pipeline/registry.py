"""The model registry: a folder of retraining runs, one of them accepted.

    <registry>/
      registry.lock     fcntl lock, held while checking the fingerprint and while promoting
      accepted.json     the pointer: the accepted run's entry (run id, fingerprint, scores, model paths)
      registry.jsonl    every promotion, oldest first
      runs/<id>/        one run folder per retraining (retrain.json inside names its data fingerprint)

The pointer is the single commit point: registry.jsonl is rewritten first, accepted.json last, both
atomically, and readers ignore history lines after the pointer's run. A job killed at any moment leaves
the previous pointer and a consistent history; its run folder is just one that was never accepted.
"""

from __future__ import annotations

import fcntl
import json
import time
from contextlib import contextmanager
from pathlib import Path

from pipeline.atomic import write_json, write_text
from pipeline.errors import UserError

POINTER, HISTORY, LOCK, RUNS, RUN_INFO = "accepted.json", "registry.jsonl", "registry.lock", "runs", "retrain.json"


class Registry:
    """Read and promote runs of one registry folder."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @staticmethod
    def is_registry(path: Path) -> bool:
        """True when `path` looks like a registry folder (rather than a run folder)."""
        return any((Path(path) / name).exists() for name in (POINTER, HISTORY, LOCK, RUNS))

    @contextmanager
    def locked(self):
        """Hold the registry's exclusive lock; the kernel drops it if the process dies."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # waits for a concurrent job's check or promotion
            try:
                yield self
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def accepted(self) -> dict | None:
        """The accepted run's entry, or None before the first promotion."""
        path = self.root / POINTER
        return _read_json(path) if path.exists() else None

    def history(self) -> list[dict]:
        """Every promotion up to the accepted one (lines of a promotion killed half-way are ignored)."""
        path = self.root / HISTORY
        entries = []
        for number, line in enumerate(path.read_text().splitlines() if path.exists() else [], 1):
            try:
                entries.append(json.loads(line))
            except ValueError as err:
                raise UserError(f"{path}:{number}: not JSON ({err})") from None
        accepted = self.accepted()
        ids = [e.get("run_id") for e in entries]
        if accepted is None or accepted["run_id"] not in ids:
            return []
        return entries[: len(ids) - ids[::-1].index(accepted["run_id"])]

    def promote(self, entry: dict) -> None:
        """Append `entry` to the history, then move the pointer to it (call with the lock held)."""
        lines = [json.dumps(e, sort_keys=True) for e in [*self.history(), entry]]
        write_text(self.root / HISTORY, "\n".join(lines) + "\n")
        write_json(self.root / POINTER, entry)

    def run_dir(self, run_id: str) -> Path:
        """The folder of a run of this registry."""
        return self.root / RUNS / run_id

    def start_run(self, fingerprint: dict) -> Path:
        """A run folder for this data: the newest unaccepted one with the same fingerprint, else a new one.

        Resuming means a job killed mid-training continues from its last finished stage (the
        orchestrator skips stages with a DONE marker) instead of training everything again.
        """
        digest = fingerprint["fingerprint"]
        for folder in sorted((self.root / RUNS).glob(f"*-{digest[:8]}"), reverse=True):
            info = folder / RUN_INFO
            if info.exists() and _read_json(info).get("fingerprint") == digest:
                return folder
        folder = self.run_dir(f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{digest[:8]}")
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / RUN_INFO, {**fingerprint, "created": _now()})
        return folder


def entry_for(run_dir: Path, recipe: str, stage: str, scores: dict, fingerprint: dict, checks: list) -> dict:
    """The registry entry of a run that passed the gate: what it was trained on, how it scored, where it is."""
    manifest = _read_json(run_dir / "manifest.json")
    seeds = sorted({int(key.split("/")[0].removeprefix("seed")) for key in manifest["stages"]
                    if key.startswith("seed") and key.split("/")[1:] == [recipe, stage]})
    models = {str(seed): _model_paths(run_dir, manifest["stages"][f"seed{seed}/{recipe}/{stage}"]) for seed in seeds}
    first = models[str(seeds[0])] if seeds else {"model": None, "adapter": None}
    return {
        "run_id": run_dir.name, "run_dir": str(run_dir.resolve()), "time": _now(),
        "fingerprint": fingerprint["fingerprint"], "data": manifest.get("data"),
        "code_version": manifest.get("code_version"), "recipe": recipe, "stage": stage,
        "scores": scores, "gate": [c.__dict__ for c in checks],
        "model": first["model"], "adapter": first["adapter"], "models": models,
    }


def _model_paths(run_dir: Path, stage: dict) -> dict:
    # The manifest may hold paths relative to the run folder (movable runs) or absolute ones.
    def absolute(path):
        return None if path is None else str((run_dir / path).resolve())

    return {"model": absolute(stage.get("output_model")), "adapter": absolute(stage.get("output_adapter"))}


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read ({err})") from None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
