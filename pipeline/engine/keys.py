"""A stage's key and how two stages' inputs differ, in words: the plan's (pipeline/engine/plan.py) and the registry's
(pipeline/retraining/registry.py: the evaluation keys a gate compares), with no imports of either."""

from __future__ import annotations

import hashlib
import json

MAX_CHANGES_SHOWN = 3


def key_of(inputs: dict) -> str:
    """The sha256 of a stage's inputs as canonical JSON."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


# Inputs keyed since issue 31: a stage finished before them was keyed on less than a rerun now checks.
NEWER_INPUTS = ("data_token_ids", "task_files", "scoring", "lm_eval")
READABLE = {  # an input's path in the key -> how a change of it reads
    "data_token_ids": "the token ids of {}'s rows (its data, format, chat template or tokenizer)",
    "data_sha256": "the content of {}",
    "target_data": "the target's test rows",
    "lm_eval": "lm-eval's version",
}


def describe_change(old: dict | None, new: dict) -> str:
    """The first few differences between two stages' inputs, in words: `settings.lr: 0.001 -> 0.05`, `the token
    ids of target's rows (...)`, `task file colour_fr.yaml of suite colour_fr`."""
    if old is None:
        return "finished by an older forgetless that did not record its inputs"
    newer = [name for name in NEWER_INPUTS if name in new and name not in old]
    if newer:
        return f"finished by an older forgetless that did not key {', '.join(newer)}"
    differences = []
    _diff(old, new, "", differences)
    return ", ".join(differences[:MAX_CHANGES_SHOWN]) or "inputs differ"


def _diff(old, new, path: str, out: list[str]) -> None:
    if path == "task_files" and isinstance(old, dict) and isinstance(new, dict):
        for suite in sorted(set(old) | set(new)):
            before, after = old.get(suite) or {}, new.get(suite) or {}
            if isinstance(before, dict) and isinstance(after, dict):
                out += [
                    f"task file {name} of suite {suite}"
                    + ("" if name in before and name in after else " (added)" if name in after else " (gone)")
                    for name in sorted(set(before) | set(after))
                    if before.get(name) != after.get(name)
                ]
            elif before != after:
                out.append(f"the task files of suite {suite}")
    elif isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            _diff(old.get(key), new.get(key), f"{path}.{key}" if path else str(key), out)
    elif old != new:
        head, _, rest = path.partition(".")
        if path == "upstream":
            out.append("an earlier stage or the base model changed")
        elif path == "settings.chat_template":  # false is left out of the key (plan_run)
            out.append(f"chat_template: {str(bool(old)).lower()} -> {str(bool(new)).lower()}")
        elif head in READABLE:
            out.append(READABLE[head].format(rest))
        else:
            out.append(f"{path}: {_short(old)} -> {_short(new)}")


def _short(value) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."
