"""Older run folders, read as the current format: each record is upgraded, in memory, as it is read.

A run folder's records carry `format_version` (pipeline/formats.py: FORMAT_VERSION): manifest.json and every
stage's DONE.json (results.csv is described by its folder's manifest). A record without one is version 1, the
format of every folder made before the version was recorded. The readers here upgrade a record one version at a
time to the current one, so the key code (markers, manifest, plan, registry, reports) reads one format only; a
record of a newer version than this code knows is refused in one line.

Version 1 -> 2, what older folders hold that the current code no longer reads:
- DONE.json: a path stored as a plain string (written before paths were tagged) means one inside the run folder:
  {"run": path}. A marker from before adapters were named holds one `adapter_dir`: it is the soft prompt of the
  adapter name the stage's contract uses (its own name for a prompt_tune stage, prompt_from for a fine-tune), so
  it is named when read with its stage. A marker older than its key field takes the key its manifest entry kept.
- manifest.json: nothing changes but the version.
- results.csv (read through its folder): the columns added later (stderr, primary, paired_stderr) read as unknown,
  unknown and 1 (formats.OPTIONAL).
"""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import UserError
from pipeline.formats import FORMAT_VERSION, OPTIONAL

FORMAT_KEY = "format_version"
FIRST = 1  # the version of a record that names none


class FormatTooNew(UserError):
    """A record written by a newer forgetless, in a format this code does not know."""


def version_of(record: dict, path: Path) -> int:
    """The record's format version (1 when it names none); newer than FORMAT_VERSION is one line, refused."""
    found = record.get(FORMAT_KEY, FIRST) if isinstance(record, dict) else FIRST
    if isinstance(found, bool) or not isinstance(found, int) or found < FIRST:
        raise UserError(f"{path}: {FORMAT_KEY} {found!r} is no format version (a whole number from {FIRST})")
    if found > FORMAT_VERSION:
        raise FormatTooNew(
            f"{path}: {FORMAT_KEY} {found} is newer than this forgetless reads ({FORMAT_VERSION}): "
            "read this run folder with the forgetless that wrote it, or a newer one"
        )
    return found


def stamped(record: dict) -> dict:
    """The record as written now: with the current format version."""
    return {**record, FORMAT_KEY: FORMAT_VERSION}


# --- manifest.json --------------------------------------------------------------------------------------------


def read_manifest(path: Path) -> dict:
    """A manifest.json in the current format (json.JSONDecodeError / OSError as json and open raise them)."""
    return upgrade_manifest(json.loads(Path(path).read_text()), path)


def upgrade_manifest(data: dict, path: Path) -> dict:
    if not isinstance(data, dict):
        return data  # not a manifest: its reader says so
    version_of(data, path)  # 1 -> 2: nothing but the version
    return stamped(data)


# --- DONE.json ------------------------------------------------------------------------------------------------


def read_marker(path: Path, stage=None, entry: dict | None = None) -> dict:
    """A stage's DONE.json in the current format. `stage` (its plan entry) names an unnamed adapter after the
    stage's contract; `entry` (its manifest entry) gives a marker older than its key field the key it kept."""
    return upgrade_marker(json.loads(Path(path).read_text()), path, stage, entry)


def upgrade_marker(data: dict, path: Path, stage=None, entry: dict | None = None) -> dict:
    if version_of(data, path) < 2:
        data = _marker_1_to_2(dict(data), stage, entry or {})
    return data


def _marker_1_to_2(data: dict, stage, entry: dict) -> dict:
    for name in ("model_dir", "adapter_dir"):
        data[name] = _tagged(data.get(name))
    if "adapters" in data:
        data["adapters"] = {name: {**a, "path": _tagged(a.get("path"))} for name, a in data["adapters"].items()}
    else:
        data["adapters"] = _named_adapter(data.get("adapter_dir"), stage)
    if not data.get("key") and entry.get("key"):
        data["key"] = entry["key"]
    return stamped(data)


def _tagged(stored):
    """A stored path as tagged now: a plain string meant a folder inside the run."""
    return {"run": stored} if isinstance(stored, str) else stored


def _named_adapter(adapter_dir, stage) -> dict:
    """An unnamed marker's one adapter (a soft prompt), named as the stage's contract names it; {} without one."""
    from stages.handoff import Scope

    contract = getattr(getattr(stage, "config", None), "contract", None)  # None: an evaluation, which makes none
    if adapter_dir is None or contract is None:
        return {}
    names = [*(m.name for m in contract().produces), *(n.name for n in contract().consumes)] or [stage.stage_id]
    return {names[0]: {"path": adapter_dir, "kind": "prompt", "scope": Scope.TARGET.value}}


# --- results.csv ----------------------------------------------------------------------------------------------


def upgrade_results(frame):
    """results.csv as read (a DataFrame) with the columns added later at their defaults where it lacks them."""
    missing = {column: default for column, default in OPTIONAL.items() if column not in frame.columns}
    return frame.assign(**missing) if missing else frame
