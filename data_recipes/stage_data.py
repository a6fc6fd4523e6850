"""A stage's data as the recipe file writes it: the `replay:` + `k:` and `one_shot:` shorthands folded into its mix,
every source declared.

`data: [general], replay: [math, code], k: 1/256` is `data: {general: 1, math: 1/256, code: 1/256}`: the same
sources in the same order, so the same seeded rows (data_recipes/mixes.py). A stage's `one_shot: true` is
`data: {sources: {...}, one_shot: true}` (ProMoT + 1-shot; the target is still evaluated zero-shot). All read raw
stage mappings, after sweeps are expanded (`sweep: {dmt.k: [...]}` sets `k` on the copies) and before the stage
is built.
"""

from __future__ import annotations

from fractions import Fraction

from core.typed_yaml import LineDict, parse_fraction, shown
from data_recipes.mixes import DEFAULT_SOURCES, first_repeated

SHORTHAND = ("replay", "k")


def fold_replay(stage: dict) -> tuple[dict, list[tuple[str, str]]]:
    """The stage mapping with `replay` and `k`, then `one_shot`, folded into `data`, and a (field, problem) pair for
    each mistake.

    A stage without any comes back as it is. With problems, the shorthand keys are dropped all the same, so the
    rest of the stage is still checked (and the caller does not keep the stage).
    """
    folded, problems = _fold_replay_and_k(stage)
    return fold_one_shot(folded, problems)


def _fold_replay_and_k(stage: dict) -> tuple[dict, list[tuple[str, str]]]:
    """The stage mapping with `replay` and `k` folded into `data`, and the problems found."""
    if not any(key in stage for key in SHORTHAND):
        return stage, []
    folded = LineDict({key: value for key, value in stage.items() if key not in SHORTHAND})
    folded.lines = dict(getattr(stage, "lines", {}))
    problems = []
    replay = stage.get("replay") or []
    if not isinstance(replay, list) or not all(isinstance(name, str) and name for name in replay):
        problems.append(("replay", f"expected a list of source names, got {shown(replay)}"))
        replay = []
    k = _k(stage, problems)
    if k != 1 and not replay and not problems:
        problems.append(("k", "set only together with replay sources"))
    data = stage.get("data", list(DEFAULT_SOURCES))
    if problems or not replay:  # `replay: []` with `k: 1` is how config.yaml writes a stage without replay
        return folded, problems
    if not isinstance(data, list) or not all(isinstance(name, str) for name in data):
        return folded, [("replay", "needs data as a list of sources; with a mapping, give each source its fraction")]
    twice = first_repeated(data + replay)
    if twice is not None:
        field = "data" if data.count(twice) > 1 else "replay"
        return folded, [(field, f"source {twice!r} named twice; name each source once")]
    folded["data"] = {**{name: 1 for name in data}, **{name: k for name in replay}}
    folded.lines.setdefault("data", folded.lines.get("replay"))
    return folded, []


def fold_one_shot(stage: dict, problems: list) -> tuple[dict, list[tuple[str, str]]]:
    """The stage mapping with `one_shot: true` moved into its data mix's long form; `one_shot: false` is dropped.

    Earlier problems (of `replay` or `k`) leave the data as it is. A list or mapping that is itself malformed is
    left for the mix to report.
    """
    if "one_shot" not in stage:
        return stage, problems
    folded = LineDict({key: value for key, value in stage.items() if key != "one_shot"})
    folded.lines = dict(getattr(stage, "lines", {}))
    value, data = stage["one_shot"], folded.get("data", list(DEFAULT_SOURCES))
    long_form = isinstance(data, dict) and isinstance(data.get("sources"), dict)
    if not isinstance(value, bool):
        return folded, problems + [("one_shot", f"expected true or false, got {shown(value)}")]
    if long_form and "one_shot" in data:
        return folded, problems + [("one_shot", "also set in data; set it in one place")]
    if not value or problems:
        return folded, problems
    if isinstance(data, list) and all(isinstance(name, str) for name in data):
        twice = first_repeated(data)
        if twice is not None:
            return folded, problems + [("data", f"source {twice!r} named twice; name each source once")]
        data = {"sources": {name: 1 for name in data}}
    elif isinstance(data, dict) and not long_form:
        data = {"sources": dict(data)}
    if isinstance(data, dict) and isinstance(data.get("sources"), dict):
        folded["data"] = {**data, "one_shot": True}
        folded.lines.setdefault("data", folded.lines.get("one_shot"))
    return folded, problems


def _k(stage: dict, problems: list) -> Fraction:
    """The stage's k, a fraction in (0, 1] (1 when not set); a problem is recorded when it is not one."""
    if "k" not in stage:
        return Fraction(1)
    try:
        return parse_fraction(stage["k"])
    except ValueError as err:
        problems.append(("k", str(err)))
        return Fraction(1)


def unknown_sources(stage: dict, known: set[str]) -> list[tuple[str, str]]:
    """A (field, problem) pair for each source a raw stage mapping names in `data` or `replay` that is not declared."""
    written = {"data": stage.get("data", list(DEFAULT_SOURCES)), "replay": stage.get("replay") or []}
    hint = f"; declared: {sorted(known)}" if known else "; declare it under data: (or add a target: section)"
    return [
        (field, f"unknown source {name!r}{hint}")
        for field, value in written.items()
        for name in source_names(value)
        if name not in known
    ]


def source_names(value) -> list[str]:
    """The source names a `data:` or `replay:` value holds, in any of its forms (malformed parts left out)."""
    if isinstance(value, dict) and isinstance(value.get("sources"), dict):
        value = value["sources"]
    names = list(value) if isinstance(value, (list, dict)) else []
    return [name for name in names if isinstance(name, str)]
