"""Median / min / max of repeated measurements."""

from __future__ import annotations

import statistics


def summary(values: list[float], digits: int = 3) -> dict:
    """The median, min and max of `values`, plus the raw values."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "values": [round(v, digits) for v in values],
    }
