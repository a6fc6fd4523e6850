"""Measuring the recipe's checks (pipeline/recipe/checks.py) on any `Scores`: the report's table over seeds, the
gate's final scores.

`measure_check` returns a CheckOutcome, which the report shows as a yes / no / n/a row (`checks_table`) and the
gate as a pass / FAIL row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pipeline.recipe.checks import ACCEPTED, BASE, CheckConfig, IfMissing, Measure, Relation, measured
from pipeline.recipe.sweep import is_copy, same_value, sort_key

EPS = 1e-9  # a score exactly on an inclusive bound passes despite float rounding


class Scores(Protocol):
    """Where checks read their values: means over seeds per (recipe, stage)."""

    def recipes(self) -> list[str]:
        """Recipes with results, in order."""

    def swept(self, recipe: str) -> dict:
        """The recipe's swept values ({} when it is not a swept copy)."""

    def final_stage(self, recipe: str) -> str | None:
        """The recipe's last stage."""

    def value(self, recipe: str, stage: str, measure: str) -> float | None:
        """The measure's mean over seeds; None when not measured."""

    def se(self, recipe: str, stage: str, measure: str) -> float | None:
        """The measure's standard error over examples and seeds; None when unknown."""

    def reference(self, measure: str) -> float | None:
        """The accepted run's score (the gate's `against: accepted`); None when there is none."""


@dataclass
class CheckOutcome:
    """A measured check: its row's name, value, verdict (None: n/a), limit, and the report's and gate's texts."""

    name: str
    value: float | None
    passed: bool | None
    limit: str
    text: str  # the report's `measured` cell
    note: str = ""  # the gate table's note


def copies(scores: Scores, origin: str, where: dict) -> list[str]:
    """The recipes with results that are `origin` or its swept copies matching `where`, in results order."""
    found = []
    for name in scores.recipes():
        values = scores.swept(name)
        if values and is_copy(name, origin, values):
            if all(key in values and same_value(values[key], want) for key, want in where.items()):
                found.append(name)
    return found or ([origin] if origin in scores.recipes() else [])


def pick(scores: Scores, origin: str, where: dict) -> str | None:
    """The one recipe a check names: its only swept copy matching `where`, else `origin` itself run unswept."""
    found = copies(scores, origin, where)
    return found[0] if len(found) == 1 else None


def measure_check(check: CheckConfig, scores: Scores, reference_name: str = ACCEPTED) -> CheckOutcome:
    """Measure one check on `scores`."""
    if check.along is not None:
        return _along(check, scores)
    recipe = pick(scores, check.recipe, check.where)
    name = check.name.replace("{recipe}", recipe or check.recipe)
    limit = _limit(check)
    if recipe is None:
        return _missing(check, name, limit, f"no results for recipe {check.recipe!r}" + _where(check))
    stage = check.stage or scores.final_stage(recipe)
    a = scores.value(recipe, stage, measured(check))
    if a is None:
        return _missing(check, name, limit, _not_measured(check), _plain_note(check, scores, recipe, stage))
    if check.against is None:
        return _judge(
            check,
            name,
            limit,
            a,
            _plain_text(check.measure, a),
            _plain_note(check, scores, recipe, stage),
            scores.se(recipe, stage, measured(check)),
        )
    b, against, se_b = _reference(check, scores, recipe, reference_name)
    if b is None:
        return _missing(check, name, limit, f"no {against} to compare with")
    value = _relate(check.relation, a, b)
    note = f"{against} {b:.3f} -> {a:.3f}"
    if value is None:
        return _missing(check, name, limit, f"{a:.3f} vs {b:.3f}: no ratio to 0", note)
    text = _relative_text(check.relation, a, b, value)
    if check.relation is Relation.RATIO:
        text += _ratio_se_text(a, b, scores.se(recipe, stage, measured(check)), se_b)
    return _judge(check, name, limit, value, text, note)


def _reference(
    check: CheckConfig, scores: Scores, recipe: str, reference_name: str
) -> tuple[float | None, str, float | None]:
    """The value compared with, its name, and its standard error (None where unknown)."""
    measure = measured(check)
    if check.against == ACCEPTED:
        return scores.reference(measure), reference_name, None
    if check.against == BASE:
        return scores.value(recipe, "base", measure), "base", scores.se(recipe, "base", measure)
    other = pick(scores, check.against, {})
    if other is None:
        return None, f"results for recipe {check.against!r}", None
    stage = scores.final_stage(other)
    return scores.value(other, stage, measure), other, scores.se(other, stage, measure)


def ratio_se(a: float, b: float, se_a: float, se_b: float) -> float:
    """The standard error of a / b by the delta method, a and b taken as independent: where both are scored on
    the same examples their covariance is positive, so this errs large."""
    return abs(a / b) * ((se_a / a) ** 2 + (se_b / b) ** 2) ** 0.5 if a else abs(se_a / b)


def _ratio_se_text(a: float, b: float, se_a: float | None, se_b: float | None) -> str:
    if se_a is None or se_b is None or se_a != se_a or se_b != se_b:
        return ""
    if not a and not se_a:
        return " (no example right: no standard error)"
    return f" ± {ratio_se(a, b, se_a, se_b):.1%} (se, delta method)"


def _relate(relation: Relation, a: float, b: float) -> float | None:
    if relation is Relation.DIFFERENCE:
        return a - b
    if relation is Relation.DROP:
        return b - a
    if relation is Relation.DISTANCE:
        return abs(a - b)
    if not b:
        return None
    return a / b if relation is Relation.RATIO else 1 - a / b


def _along(check: CheckConfig, scores: Scores) -> CheckOutcome:
    """The bound on every step of the measure as the swept field grows (sorted by value)."""
    name, limit = check.name.replace("{recipe}", check.recipe), _limit(check)
    points = []
    for recipe in copies(scores, check.recipe, check.where):
        values = scores.swept(recipe)
        if check.along in values:
            value = scores.value(recipe, check.stage or scores.final_stage(recipe), measured(check))
            if value is not None:
                points.append((sort_key(values[check.along]), str(values[check.along]), value))
    points.sort(key=lambda p: p[0])
    if len(points) < 2:
        return _missing(check, name, limit, f"fewer than two values of {check.along} measured")
    steps = [b[2] - a[2] for a, b in zip(points, points[1:])]
    worst = min(steps) if check.bound is None or check.bound[0] in (">=", ">") else max(steps)
    passed = all(_within(check, step) for step in steps)
    text = ", ".join(f"{check.along}={value}: {measured:.3f}" for _, value, measured in points)
    return CheckOutcome(name, worst, passed, limit, text)


def _judge(check, name, limit, value, text, note, se=None) -> CheckOutcome:
    if check.bound is None:  # the check is off: it passes, and a relative one measures nothing
        return CheckOutcome(name, None if check.against else value, True, limit, text, "" if check.against else note)
    if not check.noise:
        return CheckOutcome(name, value, _within(check, value), limit, text, note)
    from pipeline.reports.uncertainty import Z

    known = se is not None and se == se
    if not known and check.bound[0] in (">=", ">"):  # beyond a min bound by more than the noise: unknowable
        return CheckOutcome(
            name, value, False, limit, f"{text} (noise unknown)", note + "; noise unknown: not beyond it"
        )
    margin = Z * se if known else 0.0
    note += f"; noise: ±{margin:.3f} ({Z:g} se)" if known else "; noise unknown: judged as none"
    text += f" (noise ±{margin:.3f})" if known else ""
    return CheckOutcome(name, value, _within(check, value - margin), limit, text, note)


def _within(check: CheckConfig, value: float) -> bool:
    op, limit = check.bound
    return {">=": value >= limit - EPS, "<=": value <= limit + EPS, ">": value > limit, "<": value < limit}[op]


def _missing(check: CheckConfig, name: str, limit: str, why: str, note: str = "") -> CheckOutcome:
    passed = {IfMissing.NA: None, IfMissing.PASS: True, IfMissing.FAIL: False}[check.if_missing]
    if check.bound is None:
        passed = True
    text = check.missing_note or why
    return CheckOutcome(check.missing_name or name, None, passed, limit, text, check.missing_note or note)


def _limit(check: CheckConfig) -> str:
    if check.bound is None:
        return "not set"
    op, limit = check.bound
    return f"{op} {limit:.3f}" + (" + noise" if check.noise else "")


def _where(check: CheckConfig) -> str:
    return "" if not check.where else " with " + ", ".join(f"{k}={v}" for k, v in check.where.items())


def _not_measured(check: CheckConfig) -> str:
    if check.measure is Measure.FORMAT_LEAK:
        return "not measured: set target.labels"
    if check.group is not None:
        return f"{check.measure.value} of group {check.group!r} not measured (the general suite has no such group)"
    return f"{check.measure.value} not measured"


def _plain_text(measure: Measure, value: float) -> str:
    if measure is Measure.GENERAL_DROP:
        return f"drop {value:.3f}"
    if measure is Measure.FORMAT_LEAK:
        return f"{value:.1%}"
    return f"{value:.3f}"


def _plain_note(check: CheckConfig, scores: Scores, recipe: str, stage: str) -> str:
    """The gate's note on a general drop: the base's general score and the stage's."""
    if check.measure is not Measure.GENERAL_DROP:
        return ""
    column = check.group or "general"
    base, general = scores.value(recipe, "base", column), scores.value(recipe, stage, column)
    nan = float("nan")
    return f"base {nan if base is None else base:.3f} -> {nan if general is None else general:.3f}"


def _relative_text(relation: Relation, a: float, b: float, value: float) -> str:
    if relation is Relation.RATIO:
        return f"{a:.3f} / {b:.3f} = {value:.1%}"
    if relation is Relation.LOSS:
        return f"{a:.3f} vs {b:.3f}: loses {value:.0%}"
    if relation is Relation.DISTANCE:
        return f"{a:.3f} vs {b:.3f}"
    if relation is Relation.DROP:
        return f"{b:.3f} -> {a:.3f}: drop {value:.3f}"
    return f"{value:+.3f}"


def checks_table(outcomes: list[CheckOutcome]) -> str:
    """The report's checks as markdown: check, measured, pass (yes, **no**, n/a)."""
    verdict = {True: "yes", False: "**no**", None: "n/a"}
    lines = ["| check | measured | pass |", "|---|---|---|"]
    return "\n".join(lines + [f"| {o.name} | {o.text} | {verdict[o.passed]} |" for o in outcomes])
