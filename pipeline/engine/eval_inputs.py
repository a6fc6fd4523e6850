"""Inputs of a stage key that are files, not settings: the task files an evaluation reads, lm-eval's version, and a
DeepSpeed JSON's content (pipeline/engine/plan.py).

An evaluation's numbers follow the text of each task YAML of its suites, of every file it includes (`include:`),
of the Python files its `!function` tags name and of the data files it names next to it. They are hashed file by
file, with the suite's folder written as a placeholder, so the same suite written into another folder (the
target's, at planning time and in the run folder) keys the same.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path

INCLUDE = re.compile(r"^\s*include:\s*['\"]?([^'\"\s#]+)", re.MULTILINE)
FUNCTION = re.compile(r"!function\s+([\w.]+)\.\w+")
DATA_FILE = re.compile(r"[\w./-]+\.(?:jsonl|json|parquet|csv|tsv|txt)\b")


def lm_eval_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("lm_eval")
    except metadata.PackageNotFoundError:
        return "unknown"


def deepspeed_content(path: str) -> object:
    """The DeepSpeed JSON as data (so a change reads as `deepspeed.bf16.enabled: ...`), else its bytes' sha256."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return f"unreadable: {path}"
    try:
        return json.loads(data)
    except ValueError:
        return hashlib.sha256(data).hexdigest()


def suite_files(suite) -> dict | str:
    """{file: sha256} for every file the suite's tasks read, by name inside the suite's folder; a string when
    the tasks cannot be indexed (the run refuses that before anything runs: orchestrator._checked)."""
    manager = _manager(suite.include_path)
    if manager is None:
        return "tasks not indexed"
    root = Path(suite.include_path) if suite.include_path else _lm_eval_tasks_dir()
    found: dict[Path, None] = {}
    for task in suite.tasks:
        _task_files(task, manager, found, set())
    return {_name(path, root): _text_sha256(path, root) for path in found}


def _manager(include_path: str | None):
    """lm-eval's task index of the folder (built-in tasks: indexed once per process, it takes seconds)."""
    if include_path is None:
        from evaluation.task_index import builtin_task_manager

        return builtin_task_manager()
    if not Path(include_path).is_dir():
        return None
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path, include_defaults=False)


def _task_files(task: str, manager, found: dict, seen: set) -> None:
    if task in seen:
        return
    seen.add(task)
    entry = manager.task_index.get(task)
    if entry is None:
        return
    if getattr(entry, "yaml_path", None):
        _file_closure(Path(entry.yaml_path), found)
    members = (getattr(entry, "cfg", None) or {}).get("task")
    for member in members if isinstance(members, list) else []:  # a group: its tasks' files too
        name = member if isinstance(member, str) else (member.get("task") if isinstance(member, dict) else None)
        if isinstance(name, str):
            _task_files(name, manager, found, seen)


def _file_closure(path: Path, found: dict) -> None:
    """The file, and what its text includes or names next to it, once each."""
    path = path.resolve()
    if path in found or not path.is_file():
        return
    found[path] = None
    if path.suffix not in (".yaml", ".yml", "") and path.name != "_template_yaml":
        return
    text = path.read_text(errors="replace")
    folder = path.parent
    for name in INCLUDE.findall(text):
        _file_closure(folder / name, found)
    for module in FUNCTION.findall(text):
        _file_closure(folder / (module.replace(".", "/") + ".py"), found)
    for name in DATA_FILE.findall(text):
        candidate = folder / name
        if candidate.is_file() and candidate.suffix != ".yaml":
            found.setdefault(candidate.resolve(), None)


def _name(path: Path, root: Path) -> str:
    for base, label in ((root.resolve(), ""), (root.resolve().parent, "../")):
        try:
            return label + str(path.relative_to(base))
        except ValueError:
            continue
    return path.name


def _text_sha256(path: Path, root: Path) -> str:
    """sha256 of the file, with the suite's folder and its parent written as placeholders."""
    data = path.read_bytes()
    root = root.resolve()
    for folder, placeholder in ((root, b"<suite folder>"), (root.parent, b"<suite parent>")):
        data = data.replace(str(folder).encode(), placeholder)
    return hashlib.sha256(data).hexdigest()


@lru_cache(maxsize=1)
def _lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent
