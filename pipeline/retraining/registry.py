"""The model registry: a folder of retraining runs, one of them accepted.

    <registry>/
      registry.lock     fcntl lock, held while checking the fingerprint and while promoting
      accepted.json     the pointer: the accepted run's entry (run id, fingerprint, scores, model paths)
      registry.jsonl    every promotion, oldest first
      runs/<id>/        one run folder per retraining (retrain.json inside names its data fingerprint)

The pointer is the single commit point: registry.jsonl is rewritten first, accepted.json last, both
atomically, and readers ignore history lines after the pointer's run. A job killed at any moment leaves
the previous pointer and a consistent history; its run folder is just one that was never accepted. The
entry's model paths come from the stages' completion markers, and the pointer moves only once their files
are checked whole (`loadable_problem`: the gate's "loadable" row).

Only a missing accepted.json means "no model yet". A pointer that is not an entry (`[]`, `{}`, `null`, no
run_id) is refused by every reader, and `check()` (run by retrain before it trains) also refuses history
lines that do not parse or lack a field promotion writes, and a pointer whose run is not in the history.
"""

from __future__ import annotations

import fcntl
import json
import time
from contextlib import contextmanager
from pathlib import Path

from core.atomic import remove_leftovers, write_json, write_text
from core.errors import UserError

POINTER, HISTORY, LOCK, RUNS, RUN_INFO = "accepted.json", "registry.jsonl", "registry.lock", "runs", "retrain.json"

# Every field entry_for writes, with the JSON types it writes (None: any value, null included).
_TEXT, _NUMBER = (str,), (int, float)
FIELDS = {
    "run_id": _TEXT,
    "run_dir": _TEXT,
    "time": _TEXT,
    "fingerprint": _TEXT,
    "data": None,
    "code_version": None,
    "recipe": _TEXT,
    "stage": _TEXT,
    "scores": (dict,),
    "gate": (list,),
    "model": (str, type(None)),
    "adapter": (str, type(None)),
    "models": (dict,),
}
_JSON_NAMES = {
    str: "a string",
    dict: "an object",
    list: "a list",
    int: "a number",
    float: "a number",
    bool: "true/false",
    type(None): "null",
}


class ModelRegistry:
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
        """The accepted run's entry, or None before the first promotion (no accepted.json); a corrupt one is an error."""
        path = self.root / POINTER
        if not path.exists():
            return None
        entry = _read_json(path)
        problem = _entry_problem(entry, ("run_id", "scores"))
        if problem:
            raise UserError(
                f"{path}: {problem}; not a registry entry (restore it: it is the accepted run's line of {HISTORY})"
            )
        return entry

    def history(self) -> list[dict]:
        """Every promotion up to the accepted one (lines of a promotion killed half-way are ignored)."""
        entries = self._history_lines(("run_id",))
        accepted = self.accepted()
        ids = [e.get("run_id") for e in entries]
        if accepted is None or accepted["run_id"] not in ids:
            return []
        return entries[: len(ids) - ids[::-1].index(accepted["run_id"])]

    def check(self) -> None:
        """Refuse a corrupt registry before any work: the pointer and every history line must be whole entries
        as promotion writes them, and the accepted run must be in the history (promotion rewrites the history
        up to it, so a pointer that is not there would drop every earlier line). Reads only; creates nothing."""
        pointer, path = self.accepted(), self.root / POINTER
        if pointer is not None:
            problem = _entry_problem(pointer, FIELDS)
            if problem:
                raise UserError(
                    f"{path}: {problem}; not a registry entry (restore it: it is the accepted run's line of {HISTORY})"
                )
        entries = self._history_lines(FIELDS)
        if pointer is None and len(entries) > 1:  # a first promotion killed before its pointer leaves one line
            raise UserError(
                f"{path}: missing, but {self.root / HISTORY} holds {len(entries)} promotions "
                f"(restore it: it is the accepted run's line, normally the last)"
            )
        if pointer is not None and pointer["run_id"] not in {e["run_id"] for e in entries}:
            raise UserError(
                f"{path}: accepted run {pointer['run_id']!r} is not in {self.root / HISTORY} "
                f"(the history is written before the pointer; restore the file that lost it)"
            )

    def _history_lines(self, fields) -> list[dict]:
        path = self.root / HISTORY
        try:
            lines = path.read_text().splitlines() if path.exists() else []
        except (OSError, ValueError) as err:
            raise UserError(f"{path}: cannot read ({err})") from None
        entries = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                raise UserError(f"{path}:{number}: empty line; every line is one promotion's entry")
            try:
                entry = json.loads(line)
            except ValueError as err:
                raise UserError(f"{path}:{number}: not JSON ({err})") from None
            problem = _entry_problem(entry, fields)
            if problem:
                raise UserError(f"{path}:{number}: {problem}; not a registry entry")
            entries.append(entry)
        return entries

    def promote(self, entry: dict) -> None:
        """Append `entry` to the history, then move the pointer to it (call with the lock held)."""
        lines = [json.dumps(e, sort_keys=True) for e in [*self.history(), entry]]
        write_text(self.root / HISTORY, "\n".join(lines) + "\n")
        write_json(self.root / POINTER, entry)

    def run_dir(self, run_id: str) -> Path:
        """The folder of a run of this registry."""
        return self.root / RUNS / run_id

    def start_run(self, fingerprint: dict) -> Path:
        """A run folder for this data: the newest unaccepted one with the same fingerprint (or the empty one a job
        killed right after making it left), else a new one.

        Resuming means a job killed mid-training continues from its last finished stage (the
        orchestrator skips stages with a DONE marker) instead of training everything again.
        """
        digest = fingerprint["fingerprint"]
        for folder in sorted((self.root / RUNS).glob(f"*-{digest[:8]}"), reverse=True):
            info = folder / RUN_INFO
            if info.exists() and _read_json(info).get("fingerprint") == digest:
                return folder
            if not info.exists():
                remove_leftovers(folder, recursive=False)  # under the registry lock: its writer is dead
                if not any(folder.iterdir()):
                    break  # made by a job killed before it wrote RUN_INFO: taken over
        else:
            folder = self.run_dir(f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{digest[:8]}")
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / RUN_INFO, {**fingerprint, "created": _now()})
        return folder


def entry_for(run_dir: Path, recipe: str, stage: str, scores: dict, fingerprint: dict, checks: list) -> dict:
    """The registry entry of a run that passed the gate: what it was trained on, how it scored, where it is.

    The model paths come from each seed's completion marker, not from the manifest's record of it."""
    manifest = _read_manifest(run_dir)
    seeds = sorted(
        {
            int(key.split("/")[0].removeprefix("seed"))
            for key in manifest["stages"]
            if key.startswith("seed") and key.split("/")[1:] == [recipe, stage]
        }
    )
    models = {str(seed): _model_paths(run_dir, manifest["stages"], f"seed{seed}/{recipe}/{stage}") for seed in seeds}
    first = models[str(seeds[0])] if seeds else {"model": None, "adapter": None}
    evaluations = [_evaluation(run_dir, manifest["stages"], f"seed{seed}/{recipe}/{stage}-eval") for seed in seeds]
    return {
        "run_id": run_dir.name,
        "run_dir": str(run_dir.resolve()),
        "time": _now(),
        "fingerprint": fingerprint["fingerprint"],
        "data": manifest.get("data"),
        "code_version": manifest.get("code_version"),
        "recipe": recipe,
        "stage": stage,
        "scores": scores,
        "gate": [c.__dict__ for c in checks],
        "model": first["model"],
        "adapter": first["adapter"],
        "models": models,
        "evaluation_keys": sorted({evaluation_key(e) for e in evaluations if e is not None}),
    }


# --- the gate compares like with like: scores taken by the same evaluation ---------------------------------------


def _evaluation(run_dir: Path, stages: dict, stage_id: str) -> dict | None:
    """The inputs of an evaluation stage (its DONE.json's), or None when it has no marker or recorded none."""
    from pipeline.engine.markers import marker_of, read

    marker = marker_of(run_dir, stage_id, stages)
    return None if marker is None else read(marker).get("inputs")


def evaluation_key(inputs: dict) -> str:
    """The key of how an evaluation scored (settings such as `limit`, suites and their task files, target data and
    scoring, lm-eval's version: pipeline/engine/plan.py), less the model it scored (`upstream`)."""
    from pipeline.engine.keys import key_of

    return key_of({name: value for name, value in inputs.items() if name != "upstream"})


def evaluations_of(run_dir: Path, recipe: str, stage: str) -> list[dict]:
    """The evaluation inputs of a run's final stage, one per seed that has them (in seed order)."""
    stages = _read_manifest(Path(run_dir))["stages"]
    ids = sorted(s for s in stages if s.startswith("seed") and s.split("/")[1:] == [recipe, f"{stage}-eval"])
    found = [_evaluation(Path(run_dir), stages, stage_id) for stage_id in ids]
    return [e for e in found if e is not None]


def unlike(accepted: dict | None, run_dir: Path, recipe: str, stage: str, who: str = "the accepted run") -> str | None:
    """Why the accepted run's scores were not taken as the candidate's are (its evaluation keys differ), or None.
    An entry from before evaluation keys were recorded is compared as before."""
    from pipeline.engine.keys import describe_change

    if not accepted or "evaluation_keys" not in accepted:
        return None
    mine = evaluations_of(run_dir, recipe, stage)
    if not mine or {evaluation_key(e) for e in mine} == set(accepted["evaluation_keys"]):
        return None
    theirs = []
    if accepted.get("run_dir") and accepted.get("stage"):
        try:
            theirs = evaluations_of(Path(accepted["run_dir"]), accepted.get("recipe", recipe), accepted["stage"])
        except UserError:
            theirs = []  # the accepted run's folder is gone: the keys alone say the evaluations differ
    what = "its evaluation key differs"
    if theirs:
        what = describe_change(*({k: v for k, v in e.items() if k != "upstream"} for e in (theirs[0], mine[0])))
    return f"{who} was evaluated otherwise ({what})"


def _model_paths(run_dir: Path, stages: dict, stage_id: str) -> dict:
    from pipeline.engine.markers import loaded_path, marker_of, read

    marker = marker_of(run_dir, stage_id, stages)
    if marker is None:
        return {"model": None, "adapter": None}
    done = read(marker)

    def absolute(stored):
        path = loaded_path(stored, run_dir)
        if path is None:
            return None
        return str(path.resolve()) if path.is_absolute() or path.exists() else str(path)  # a hub id stays as it is

    return {"model": absolute(done["model_dir"]), "adapter": absolute(done["adapter_dir"])}


def loadable_problem(entry: dict) -> str | None:
    """Why an entry's models would not load (a folder missing or cut short), or None; a hub id is not checked."""
    from stages.saved_files import adapter_problem, model_problem

    models = entry["models"] or {"0": {"model": entry["model"], "adapter": entry["adapter"]}}
    for seed, paths in models.items():
        if paths["model"] is None:
            return f"seed {seed}: no finished model (no completion marker)"
        if Path(paths["model"]).is_absolute():
            problem = model_problem(paths["model"])
            if problem:
                return f"seed {seed}: {paths['model']}: {problem}"
        if paths["adapter"] is not None:
            problem = adapter_problem(paths["adapter"])
            if problem:
                return f"seed {seed}: {paths['adapter']}: {problem}"
    return None


def _entry_problem(entry, fields) -> str | None:
    """What keeps `entry` from being a registry entry with `fields` (names, or FIELDS' name -> types), or None."""
    if not isinstance(entry, dict):
        return f"{_json_name(entry)} instead of an object"
    missing = [name for name in fields if name not in entry]
    if missing:
        return f"missing {', '.join(missing)}"
    for name in fields:
        types = FIELDS[name]
        if types is not None and (isinstance(entry[name], bool) or not isinstance(entry[name], types)):
            return (
                f"{name} is {_json_name(entry[name])}, not {' or '.join(dict.fromkeys(_JSON_NAMES[t] for t in types))}"
            )
    if not entry["run_id"]:
        return "run_id is empty"
    if "scores" in fields and any(isinstance(v, bool) or not isinstance(v, _NUMBER) for v in entry["scores"].values()):
        return "scores holds a value that is not a number"
    return None


def _json_name(value) -> str:
    return "a list" if isinstance(value, list) else _JSON_NAMES.get(type(value), type(value).__name__)


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read ({err})") from None


def _read_manifest(run_dir: Path) -> dict:
    """A run's manifest.json in the current format (pipeline/engine/migrate.py); unreadable: one line."""
    from pipeline.engine.migrate import upgrade_manifest

    path = Path(run_dir) / "manifest.json"
    return upgrade_manifest(_read_json(path), path)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
