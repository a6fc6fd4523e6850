"""Data mixes as declared objects: portions of named sources, each with a fraction, drawn with a seed.

DMT's stage 2 reads as `Mix([Portion(["general"]), Portion(["math", "code"], fraction=1/256)], seed)`:
all of the general data plus a seeded 1/256 of each domain source, in proportion to its size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Portion:
    """Some sources, each drawn at the same fraction of its rows (1 = all rows)."""

    sources: tuple[str, ...]
    fraction: Fraction = Fraction(1)


@dataclass(frozen=True)
class Mix:
    """An ordered list of portions, shuffled together with one seed."""

    portions: tuple[Portion, ...]
    seed: int = 0


@dataclass
class MixedData:
    """A built mix: the rows, how many came from each source, and any notes for the user."""

    dataset: object
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def draw_count(n_rows: int, fraction: Fraction, source: str, notes: list[str]) -> int:
    """Rows to draw from a source: round(fraction x n), but never zero, and say so when it rounds to zero."""
    if fraction == 1:
        return n_rows
    count = round(fraction * n_rows)
    if count == 0:
        notes.append(f"{source}: {fraction} x {n_rows} rows rounds to 0; keeping 1 example so the source is not dropped")
        count = 1
    return min(count, n_rows)


def build_mix(mix: Mix, sources: dict) -> MixedData:
    """Draw every portion from `sources` (name -> datasets.Dataset) and shuffle them together."""
    from datasets import concatenate_datasets

    parts, counts, notes = [], {}, []
    for portion in mix.portions:
        for name in portion.sources:
            data = sources[name]
            count = draw_count(len(data), portion.fraction, name, notes)
            # A seeded sample without replacement: shuffle with the mix seed, keep the first `count`.
            drawn = data if count == len(data) else data.shuffle(seed=mix.seed).select(range(count))
            parts.append(drawn.select_columns(["prompt", "completion"]))
            counts[name] = counts.get(name, 0) + count
    for note in notes:
        log.warning(note)
    return MixedData(concatenate_datasets(parts).shuffle(seed=mix.seed), counts, notes)
