"""manifest.json: code version, data hashes, row counts, stage status and the hand-offs between stages."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

from core.atomic import write_json
from pipeline.engine import migrate


def code_version() -> str:
    """The git commit of this checkout (with '+dirty' when modified), else the package version."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import version

        return f"forgetless {version('forgetless')}"


class Manifest:
    """The run's self-description, rewritten atomically after every change."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data
        self.held = False  # True from open() until commit(): changes stay in memory

    @classmethod
    def open(cls, run_dir: Path, recipe_path: Path) -> "Manifest":
        """Load the run's manifest, or start one; nothing is written before commit()."""
        path = run_dir / "manifest.json"
        data = migrate.read_manifest(path) if path.exists() else migrate.stamped({"created": _now(), "stages": {}})
        data["code_version"] = code_version()
        data["recipe_file"] = {"path": str(recipe_path), "sha256": _sha256(recipe_path)}
        data["status"] = "running"
        for key in ("signal", "stopped"):  # a stop recorded by the last run, which this one resumes
            data.pop(key, None)
        manifest = cls(path, data)
        manifest.held = True
        return manifest

    def commit(self) -> None:
        """Write the manifest from now on: the run has passed every check and starts changing the folder."""
        self.held = False
        self.save()

    def save(self) -> None:
        """Atomically write the manifest (not while held)."""
        if not self.held:
            write_json(self.path, self.data)

    def record_base(self, base_dir: Path, name: str | None = None) -> None:
        """Record a named base model, its cached folder and how it was built (SmolLM2: from which GGUF)."""
        build = Path(base_dir) / "build.json"
        self.data["base_model"] = {
            "name": name,
            "path": str(base_dir),
            "build": json.loads(build.read_text()) if build.exists() else None,
        }
        self.save()

    def record_data(
        self, counts: dict, fingerprints: dict, dropped: dict | None = None, target_scoring: dict | None = None
    ) -> None:
        """Record row counts, content hashes, dropped bad rows (on_bad_rows: skip) and how the target is scored."""
        self.data["data"] = {"rows": counts, "sha256": fingerprints, "dropped_bad_rows": dropped or {}}
        if target_scoring:
            self.data["data"]["target_scoring"] = target_scoring
        self.save()

    def stage_started(self, stage_id: str, kind: str, ctx) -> None:
        """Mark a stage running and record its inputs (the hand-off from the previous stage)."""
        self.data["stages"][stage_id] = {
            "kind": kind,
            "status": "running",
            "started": _now(),
            "seed": ctx.seed,
            "input_model": str(ctx.handoff.model_dir),
            "input_adapters": _adapters(ctx.handoff.adapters),  # evaluation attaches them by scope
            "data_rows": ctx.data_rows,
            "data_notes": ctx.data_notes,
        }
        self.save()

    def done_stage_with_key(self, key: str) -> str | None:
        """The id of a finished stage whose inputs hash to `key`, if any."""
        return next(
            (sid for sid, e in self.data["stages"].items() if e.get("key") == key and e["status"] == "done"), None
        )

    def stage_reused(self, stage_id: str, twin: str, key: str) -> None:
        """Record that a stage was not run because an identical one already was."""
        self.data["stages"][stage_id] = {"status": "reused", "reused_from": twin, "key": key, "finished": _now()}
        self.save()

    def stage_finished(self, stage_id: str, result, seconds: float, key: str) -> None:
        """Mark a stage done and record its outputs."""
        entry = self.data["stages"][stage_id]
        entry.update(
            status="done",
            finished=_now(),
            seconds=seconds,
            key=key,
            output_model=str(result.model_dir),
            output_adapter=str(result.adapter_dir) if result.adapter_dir else None,
            output_adapters=_adapters(result.adapters),
        )
        self.save()

    def stage_stopped(self, stage_id: str, signal_name: str) -> None:
        """Mark a stage and the run stopped by a signal (its checkpoint saved; the same command resumes it)."""
        stopped = {"status": "stopped", "signal": signal_name, "stopped": _now()}
        self.data["stages"].setdefault(stage_id, {}).update(stopped)
        self.data.update(stopped)
        self.save()

    def finish(self) -> None:
        """Mark the whole run complete."""
        self.data["status"] = "done"
        self.data["finished"] = _now()
        self.save()


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _adapters(adapters: dict) -> dict:
    """Named adapters as the manifest records them: path, PEFT method and scope (stages/handoff.py)."""
    return {
        name: {
            "path": str(a.path),
            "kind": a.kind,
            "scope": a.scope.value,
            **({"tasks": list(a.tasks)} if a.tasks else {}),
        }
        for name, a in adapters.items()
    }
