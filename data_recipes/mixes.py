"""Data mixes as declared objects: portions of named sources, each with a fraction, drawn with a seed.

After nanochat's `TaskMixture([...])`: the mix is one object the data layer owns, parses and builds, read top
to bottom; the orchestrator only calls `build`.

A stage's `data:` is one Mix, read from what the recipe file says (`Mix.from_yaml`):

    data: [math, code]                                   every row of each source
    data: {general: 1, math: 1/256, code: 1/256}         DMT's stage 2: all of general, a seeded 1/256 of the rest
    data: {general: 1, math: 2.5}                        a weight above 1 upsamples: math twice, plus a seeded half
    data: {sources: {general: 1, math: 1/256}, seed: 7}  a seed of the mix's own (default: the stage's seed)
    data: {sources: {target: 1}, one_shot: true}         ProMoT + 1-shot: each prompt preceded by another example

The shorthands `replay: [math, code]` + `k: 1/256` and a stage's `one_shot: true` are folded into the same object
(data_recipes/stage_data.py). One-shot changes the training rows only: the target is still evaluated zero-shot.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from fractions import Fraction

from core.typed_yaml import shown

log = logging.getLogger(__name__)

MIX_KEYS = ("sources", "seed", "one_shot")  # the keys of a mix's long form
# A row's columns: its text, and for the rows of a recipe with several targets, the target task it belongs to
# (multi-task ProMoT: stage 2 attaches that task's prompt to it); other sources' rows get task "" there.
ROW_COLUMNS = ("prompt", "completion", "task")
SHOT_GAP = "\n\n"  # between the shot's answer and the example's prompt: a blank line, as few-shot prompts have
ONE_SHOT_NOTE = "one_shot: each example preceded by one other example of its source"
DEFAULT_SOURCES = ("target",)  # a stage that names no data trains on the target task
MAX_WEIGHT = 100  # a weight repeats a whole source that many times; more is a typo for a fraction (256 for 1/256)


@dataclass(frozen=True)
class Portion:
    """Some sources, each drawn at the same fraction of its rows: (0, 1] a seeded share, above 1 a weight."""

    sources: tuple[str, ...]
    fraction: Fraction = Fraction(1)


@dataclass(frozen=True)
class Mix:
    """An ordered list of portions, shuffled together with one seed (None: the seed the stage runs with).

    With one_shot, every prompt is preceded by one other example of its source (ProMoT + 1-shot); only the
    training rows change: the target is evaluated zero-shot all the same.
    """

    portions: tuple[Portion, ...]
    seed: int | None = None
    one_shot: bool = False

    @classmethod
    def of(cls, sources) -> Mix:
        """Every row of each named source, in order."""
        return cls(tuple(Portion((name,)) for name in sources))

    @classmethod
    def from_yaml(cls, value) -> Mix:
        """A stage's `data:` as written: a list of sources, a mapping source: fraction, or
        {sources: ..., seed: N, one_shot: true}.

        Raises ValueError with a one-line message on anything else (the typed YAML builder adds file, line, field).
        """
        seed, one_shot = None, False
        if isinstance(value, dict) and isinstance(value.get("sources"), dict):
            extra = [key for key in value if key not in MIX_KEYS]
            if extra:
                raise ValueError(
                    f"unknown key {shown(extra[0])} next to sources; "
                    f"a mix takes {', '.join(MIX_KEYS[:-1])} and {MIX_KEYS[-1]}"
                )
            seed, one_shot = parse_seed(value.get("seed")), parse_one_shot(value.get("one_shot", False))
            value = value["sources"]
        if isinstance(value, list):
            shares = [(name, Fraction(1)) for name in value]
        elif isinstance(value, dict):
            shares = [(name, parse_share(name, share)) for name, share in value.items()]
        else:
            raise ValueError(
                f"expected a list of sources or a mapping of source: fraction, "
                f"got {type(value).__name__} {shown(value)}"
            )
        if not shares:
            raise ValueError("must name at least one source")
        names = [name for name, _ in shares]
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"expected a source name, got {shown(name)}")
        twice = first_repeated(names)
        if twice is not None:
            raise ValueError(f"source {twice!r} named twice; name each source once")
        return cls(tuple(Portion((name,), share) for name, share in shares), seed, one_shot)

    def shares(self) -> list[tuple[str, Fraction]]:
        """(source, fraction) in the order the rows are drawn."""
        return [(name, portion.fraction) for portion in self.portions for name in portion.sources]

    def stage_fields(self) -> dict:
        """The stage's keys that write this mix back as plain YAML (config.yaml, the stage key's settings).

        Every stage key hashes these (pipeline/engine/plan.py), so a mix the older `data` + `replay` + `k` fields could
        say (full sources, then replay sources at one k < 1, no seed of its own) is written as those three, exactly
        as before the mapping form: finished stages of older run folders keep their keys. Anything else is a mapping;
        a one-shot mix is always the long form {sources: ..., one_shot: true}, so its key is never a 0-shot one's.
        """
        shares = self.shares()
        split = next((i for i, (_, share) in enumerate(shares) if share != 1), len(shares))
        head, tail = [name for name, _ in shares[:split]], shares[split:]
        ks = {share for _, share in tail} or {Fraction(1)}
        k = ks.pop() if len(ks) == 1 else None
        if self.seed is None and not self.one_shot and head and k is not None and (k < 1 or not tail):
            return {"data": head, "replay": [name for name, _ in tail], "k": str(k)}
        mapping = {name: int(share) if share.denominator == 1 else str(share) for name, share in shares}
        if self.seed is None and not self.one_shot:
            return {"data": mapping}
        seed = {"seed": self.seed} if self.seed is not None else {}
        return {"data": {"sources": mapping, **seed, **({"one_shot": True} if self.one_shot else {})}}

    def build(self, sources: dict, seed: int) -> MixedData:
        """The mix's rows from `sources` (name -> datasets.Dataset), drawn with its own seed, else with `seed`."""
        return build_mix(self, sources, seed)


@dataclass
class MixedData:
    """A built mix: the rows, how many came from each source, and any notes for the user."""

    dataset: object
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def parse_share(source, value) -> Fraction:
    """A source's fraction: 1/256, 0.25 or 1 (a share), or above 1 up to MAX_WEIGHT (a weight); ValueError otherwise."""
    wrong = ValueError(f"{source}: expected a fraction like 1/256 or 0.25, or a weight like 2, got {shown(value)}")
    if isinstance(value, bool):  # YAML's yes/no
        raise wrong
    try:
        share = Fraction(str(value).strip()).limit_denominator(1 << 20)
    except (ValueError, ZeroDivisionError):
        raise wrong from None
    if not 0 < share <= MAX_WEIGHT:
        raise ValueError(f"{source}: must be in (0, {MAX_WEIGHT}] (above 1 upsamples the source), got {value}")
    return share


def parse_seed(value) -> int | None:
    """A mix's own seed: a non-negative integer, or None (the stage's seed)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"seed: expected a non-negative integer, got {shown(value)}")
    return value


def parse_one_shot(value) -> bool:
    """A mix's one_shot switch: true or false."""
    if not isinstance(value, bool):
        raise ValueError(f"one_shot: expected true or false, got {shown(value)}")
    return value


def first_repeated(names: list) -> object | None:
    """The first name that appears a second time, or None."""
    seen = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def draw_count(n_rows: int, fraction: Fraction, source: str, notes: list[str]) -> int:
    """Rows to draw from a source: round(fraction x n), but never zero, and say so when it rounds to zero."""
    if fraction == 1:
        return n_rows
    count = round(fraction * n_rows)
    if count == 0:
        notes.append(
            f"{source}: {fraction} x {n_rows} rows rounds to 0; keeping 1 example so the source is not dropped"
        )
        count = 1
    return min(count, n_rows)


def build_mix(mix: Mix, sources: dict, seed: int = 0) -> MixedData:
    """Draw every portion from `sources` (name -> datasets.Dataset) and shuffle them together.

    The seed is the mix's own, else `seed`. A fraction in (0, 1] draws that share without replacement; a
    weight w above 1 takes the whole source floor(w) times plus a seeded (w - floor(w)) share of it.
    With one_shot, every row of a source gets its shot first (same seed), so the rows drawn, and their order,
    are those of the same mix without it: only their prompts are longer.
    """
    from datasets import concatenate_datasets

    seed = mix.seed if mix.seed is not None else seed
    parts, counts, notes = [], {}, []
    for portion in mix.portions:
        for name in portion.sources:
            data = with_one_shot(sources[name], seed, name) if mix.one_shot else sources[name]
            if portion.fraction <= 1:
                drawn = [_drawn(data, draw_count(len(data), portion.fraction, name, notes), seed)]
            else:
                whole, share = divmod(portion.fraction, 1)
                extra = round(share * len(data))  # zero extra rows is fine: the whole copies keep the source
                drawn = [data] * int(whole) + ([_drawn(data, extra, seed)] if extra else [])
            parts += [rows.select_columns([c for c in ROW_COLUMNS if c in rows.column_names]) for rows in drawn]
            counts[name] = counts.get(name, 0) + sum(len(rows) for rows in drawn)
    if any("task" in part.column_names for part in parts):  # a multi-task mix: every row says its target task
        parts = [part if "task" in part.column_names else part.add_column("task", [""] * len(part)) for part in parts]
    for note in notes:
        log.warning(note)
    if mix.one_shot:
        notes.append(ONE_SHOT_NOTE)  # recorded in the manifest's data_notes; not a warning
    return MixedData(concatenate_datasets(parts).shuffle(seed=seed), counts, notes)


def _drawn(data, count: int, seed: int):
    """A seeded sample without replacement: shuffle with the mix seed, keep the first `count` (all: as it is)."""
    return data if count == len(data) else data.shuffle(seed=seed).select(range(count))


def with_one_shot(data, seed: int, source: str = "source"):
    """The rows of one source, each prompt preceded by one other row of it, drawn with `seed`, never the row itself.

    A row reads "{shot prompt} {shot completion}\\n\\n{prompt}" (no space added where the shot's prompt ends or
    its completion starts with whitespace, as chat-rendered and GSM8K rows do). Raises UserError for a source of
    one row, which has no other example to show.
    """
    import numpy as np
    from datasets import Dataset

    from core.errors import UserError

    n = len(data)
    if n < 2:
        raise UserError(f"{source}: one_shot needs at least 2 rows (a shot is another example of the source), got {n}")
    # One draw per row from the n - 1 others: r in [0, n-1), shifted past the row itself. The source's name is
    # part of the seed, so two sources of one mix do not get the same shot pattern.
    drawn = np.random.default_rng([seed, zlib.crc32(source.encode())]).integers(0, n - 1, size=n)
    others = drawn + (drawn >= np.arange(n))
    prompts, completions = list(data["prompt"]), list(data["completion"])
    shots = [shot_text(prompts[j], completions[j]) for j in others.tolist()]
    tasks = {"task": list(data["task"])} if "task" in data.column_names else {}
    return Dataset.from_dict(
        {
            "prompt": [shot + SHOT_GAP + prompt for shot, prompt in zip(shots, prompts)],
            "completion": completions,
            **tasks,
        }
    )


def shot_text(prompt: str, completion: str) -> str:
    """One solved example as plain text: its prompt and answer, a space between unless one side already has one."""
    joined = prompt and completion and not prompt[-1].isspace() and not completion[0].isspace()
    return prompt + (" " if joined else "") + completion
