"""How sure a mean over seeds is: the one rule the report, the frontier and the gate share.

A score's uncertainty has two parts. The examples: every seed is scored on the same examples, so their
noise does not average out over seeds; it is the tasks' standard error (lm-eval's, or a share's binomial one),
combined as summarise() does. A forgetting's is paired: the base and the stage are scored on the same examples, so
it is the standard error of the per-example differences (results.csv's paired_stderr), far smaller than the two
scores' own added where the stage still answers mostly as the base does; summarise() adds the two variances only
where a task has no paired one. The seeds: training randomness, the sd over seeds, which does average out
(sd / sqrt(seeds)). Their root sum of squares is the standard error of the mean over seeds; a difference
counts as significant when it is larger than Z of them (95%, two-sided, normal approximation).
"""

from __future__ import annotations

import math

Z = 1.96


def standard_error(example_se: float, seed_sd: float, seeds: int) -> float:
    """The standard error of a mean over `seeds` seeds; NaN where the examples' part is unknown."""
    if example_se != example_se:
        return float("nan")
    seed_part = seed_sd**2 / seeds if seeds > 1 and seed_sd == seed_sd else 0.0
    return math.sqrt(example_se**2 + seed_part)


def significant(delta: float, se: float) -> bool | None:
    """True when |delta| is beyond Z standard errors; None where the uncertainty is unknown."""
    if se != se or delta != delta:
        return None
    return abs(delta) > Z * se


def marker(delta: float, se: float) -> str:
    """A table cell: "yes", "no", or "?" (uncertainty unknown)."""
    return {True: "yes", False: "no", None: "?"}[significant(delta, se)]
