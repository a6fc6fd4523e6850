"""Checks as data: one declared check type for the report's `checks:` and the retraining gate.

After lm-evaluation-harness's task YAMLs (`metric_list`): what is measured is declared in the file, not written in
code, so no recipe name appears in the pipeline.

A check names a recipe (and a stage, default its final one), a measure, and a bound, optionally relative to
another recipe, to the recipe's own base stage or to the gate's accepted run:

    checks:
      - {name: "SFT forgets: general drop >= 0.20", recipe: sft, measure: general_drop, min: 0.20}
      - {name: "ProMoT keeps >= 80% of base general", recipe: promot, measure: general, against: base,
         relation: ratio, min: 0.8}
      - {name: "domain does not fall as k grows", recipe: dmt, measure: domain, along: k, min: -0.03}

`evaluate` measures one check on any `Scores` (the report's table over seeds, the gate's final scores) and
returns an Outcome, which the report shows as a yes / no / n/a row and the gate as a pass / FAIL row.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

from pipeline.sweep import recipe_name

EPS = 1e-9  # a score exactly on an inclusive bound passes despite float rounding
BASE, ACCEPTED = "base", "accepted"  # `against` values that are no recipe


class Measure(str, enum.Enum):
    """What a check measures on a recipe's stage (means over seeds)."""

    GENERAL = "general"
    TARGET = "target"
    DOMAIN = "domain"
    FORGETTING = "forgetting"  # general - base general (negative: forgotten)
    GENERAL_DROP = "general_drop"  # base general - general, the gate's max_general_drop
    FORMAT_LEAK = "format_leak"


GROUPED = (Measure.GENERAL, Measure.FORGETTING, Measure.GENERAL_DROP)  # the measures a `group` narrows


def measured(check) -> str:
    """The column a check reads: its measure, or with a group that group's (generation, generation_forgetting)."""
    if check.group is None:
        return check.measure.value
    return check.group if check.measure is Measure.GENERAL else f"{check.group}_{check.measure.value}"


class Relation(str, enum.Enum):
    """How a relative check compares the measure (a) with the same measure of `against` (b)."""

    DIFFERENCE = "difference"  # a - b
    DROP = "drop"  # b - a
    DISTANCE = "distance"  # |a - b|
    RATIO = "ratio"  # a / b
    LOSS = "loss"  # 1 - a / b: the share of b lost


class IfMissing(str, enum.Enum):
    """The verdict when a value cannot be measured."""

    NA = "n/a"
    PASS = "pass"
    FAIL = "fail"


@dataclass
class CheckConfig:
    """One check: a measure of a recipe's stage against a bound (min, max: inclusive; above, below: strict)."""

    name: str = field(metadata={"help": "the row's wording in the report or gate table; {recipe} is the recipe checked"})
    recipe: str = field(metadata={"help": "a recipe of the file; a swept one picks its copy with `where`"})
    measure: Measure = field(metadata={"help": "general, target, domain, forgetting, general_drop or format_leak"})
    stage: str | None = field(default=None, metadata={"help": "the stage measured; default: the recipe's final stage"})
    where: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "swept values that pick one copy of a swept recipe, e.g. {k: 1/256}"})
    against: str | None = field(default=None, metadata={
        "help": "compare with this recipe's final stage, with `base` (the recipe's base stage) or `accepted` (gate)"})
    relation: Relation | None = field(default=None, metadata={
        "help": "difference (a - b, the default), drop (b - a), distance (|a - b|), ratio (a / b) or loss (1 - a / b)"})
    along: str | None = field(default=None, metadata={
        "help": "a swept field: the bound holds for every step of the measure as that field grows"})
    min: float | None = None
    max: float | None = None
    above: float | None = None
    below: float | None = None
    noise: bool = field(default=False, metadata={
        "help": "judge the bound against the noise (the value less 1.96 standard errors; a forgetting's or general "
                "drop's se is paired: base and stage are scored on the same examples): a max bound fails only beyond "
                "it by more than that, a min bound passes only beyond it by more than that"})
    group: str | None = field(default=None, metadata={
        "help": "general, forgetting or general_drop over one group of the general suite's tasks (real_general: "
                "knowledge, generation) instead of all of them"})
    if_missing: IfMissing = field(default=IfMissing.NA, metadata={"help": "the verdict when nothing can be measured"})
    missing_name: str | None = field(default=None, metadata={"help": "the row's wording when nothing is measured"})
    missing_note: str | None = field(default=None, metadata={"help": "what the row says when nothing is measured"})

    def __post_init__(self):
        for name in ("measure", "relation", "if_missing"):  # built in code, not by the YAML loader
            kind = {"measure": Measure, "relation": Relation, "if_missing": IfMissing}[name]
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                setattr(self, name, kind(value))
        if self.against is not None and self.relation is None:
            self.relation = Relation.DIFFERENCE

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) for each field that does not fit the others."""
        found = []
        if self.relation is not None and self.against is None:
            found.append(("relation", "needs `against` (the recipe, base or accepted it compares with)"))
        if self.along is not None and self.against is not None:
            found.append(("along", "a check measures steps along a sweep or against a reference, not both"))
        bounds = [b for b in ("min", "max", "above", "below") if getattr(self, b) is not None]
        if not bounds:
            found.append(("min", "a check needs a bound: one of min, max, above, below"))
        if len(bounds) > 1:
            found.append((bounds[1], f"one bound per check (also set: {bounds[0]}); write two checks"))
        if self.noise and self.max is None and self.min is None:
            found.append(("noise", "judges a max or min bound only"))
        if self.group is not None and self.measure not in GROUPED:
            found.append(("group", f"groups the general suite's tasks: measure must be one of "
                                   f"{', '.join(m.value for m in GROUPED)}, not {self.measure.value}"))
        return found

    @property
    def bound(self) -> tuple[str, float] | None:
        """(operator, limit) of the check's bound; None when the check is off (the gate's unset thresholds)."""
        for name, op in (("min", ">="), ("max", "<="), ("above", ">"), ("below", "<")):
            if getattr(self, name) is not None:
                return op, getattr(self, name)
        return None


@dataclass
class ReportConfig:
    """What the report compares with, by recipe name: the checks' heading, the method, the strategies' deltas."""

    checks_title: str = field(default="Checks", metadata={"help": "the heading of the report's checks table"})
    method: str | None = field(default=None, metadata={
        "help": "the recipe the frontier places (its swept copies too); default: the recipe named like the file"})
    compare: dict[str, str] = field(default_factory=dict, metadata={
        "help": "the strategies table's delta columns, measure -> recipe, e.g. {domain: domain_only}"})

    def __post_init__(self):
        unknown = [m for m in self.compare if m not in ("domain", "general")]
        if unknown:
            raise ValueError(f"compare: {unknown[0]!r} is no column of the strategies table; domain or general")


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
class Outcome:
    """A measured check: its row's name, value, verdict (None: n/a), limit, and the report's and gate's texts."""

    name: str
    value: float | None
    passed: bool | None
    limit: str
    text: str  # the report's `measured` cell
    note: str = ""  # the gate table's note


def same_value(a, b) -> bool:
    """Two swept values as the same number (1/4 and 0.25) or the same text."""
    if str(a) == str(b):
        return True
    try:
        return Fraction(str(a)) == Fraction(str(b))
    except (ValueError, ZeroDivisionError):
        return False


def sort_key(value):
    """Swept values in numeric order where they are numbers (1/256 < 1/64), else as text."""
    try:
        return (0, Fraction(str(value)), "")
    except (ValueError, ZeroDivisionError):
        return (1, 0, str(value))


def is_copy(name: str, origin: str, values: dict) -> bool:
    """`name` is the sweep's copy of `origin` with these values (in whichever order its fields were swept)."""
    from itertools import permutations

    return any(recipe_name(origin, {k: values[k] for k in order}) == name for order in permutations(values))


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


def evaluate(check: CheckConfig, scores: Scores, reference_name: str = ACCEPTED) -> Outcome:
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
        return _judge(check, name, limit, a, _plain_text(check.measure, a), _plain_note(check, scores, recipe, stage),
                      scores.se(recipe, stage, measured(check)))
    b, against = _reference(check, scores, recipe, reference_name)
    if b is None:
        return _missing(check, name, limit, f"no {against} to compare with")
    value = _relate(check.relation, a, b)
    note = f"{against} {b:.3f} -> {a:.3f}"
    if value is None:
        return _missing(check, name, limit, f"{a:.3f} vs {b:.3f}: no ratio to 0", note)
    return _judge(check, name, limit, value, _relative_text(check.relation, a, b, value), note)


def _reference(check: CheckConfig, scores: Scores, recipe: str, reference_name: str) -> tuple[float | None, str]:
    measure = measured(check)
    if check.against == ACCEPTED:
        return scores.reference(measure), reference_name
    if check.against == BASE:
        return scores.value(recipe, "base", measure), "base"
    other = pick(scores, check.against, {})
    if other is None:
        return None, f"results for recipe {check.against!r}"
    return scores.value(other, scores.final_stage(other), measure), other


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


def _along(check: CheckConfig, scores: Scores) -> Outcome:
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
    return Outcome(name, worst, passed, limit, text)


def _judge(check, name, limit, value, text, note, se=None) -> Outcome:
    if check.bound is None:  # the check is off: it passes, and a relative one measures nothing
        return Outcome(name, None if check.against else value, True, limit, text,
                       "" if check.against else note)
    if not check.noise:
        return Outcome(name, value, _within(check, value), limit, text, note)
    from pipeline.uncertainty import Z

    known = se is not None and se == se
    if not known and check.bound[0] in (">=", ">"):  # beyond a min bound by more than the noise: unknowable
        return Outcome(name, value, False, limit, f"{text} (noise unknown)", note + "; noise unknown: not beyond it")
    margin = Z * se if known else 0.0
    note += f"; noise: ±{margin:.3f} ({Z:g} se)" if known else "; noise unknown: judged as none"
    text += f" (noise ±{margin:.3f})" if known else ""
    return Outcome(name, value, _within(check, value - margin), limit, text, note)


def _within(check: CheckConfig, value: float) -> bool:
    op, limit = check.bound
    return {">=": value >= limit - EPS, "<=": value <= limit + EPS, ">": value > limit, "<": value < limit}[op]


def _missing(check: CheckConfig, name: str, limit: str, why: str, note: str = "") -> Outcome:
    passed = {IfMissing.NA: None, IfMissing.PASS: True, IfMissing.FAIL: False}[check.if_missing]
    if check.bound is None:
        passed = True
    text = check.missing_note or why
    return Outcome(check.missing_name or name, None, passed, limit, text, check.missing_note or note)


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


def table(outcomes: list[Outcome]) -> str:
    """The report's checks as markdown: check, measured, pass (yes, **no**, n/a)."""
    verdict = {True: "yes", False: "**no**", None: "n/a"}
    lines = ["| check | measured | pass |", "|---|---|---|"]
    return "\n".join(lines + [f"| {o.name} | {o.text} | {verdict[o.passed]} |" for o in outcomes])


def validate(checks: list[CheckConfig], raw, report: ReportConfig, raw_report, recipes: set[str], builder) -> None:
    """Every recipe a check or the report section names is a recipe of the file (before or after its sweep)."""
    known = sorted(recipes)
    items = raw if isinstance(raw, list) else []
    for i, check in enumerate(checks):
        lines = getattr(items[i] if i < len(items) else None, "lines", {})
        for key, message in check.problems():
            builder.error(f"checks[{i}].{key}", lines.get(key) or min(lines.values(), default=None), message)
        for key in ("recipe", "against"):
            name = getattr(check, key)
            allowed = recipes | ({BASE, ACCEPTED} if key == "against" else set())
            if name is not None and name not in allowed:
                extra = " (or base, accepted)" if key == "against" else ""
                builder.error(f"checks[{i}].{key}", lines.get(key), f"unknown recipe {name!r}; one of {known}{extra}")
    lines = getattr(raw_report, "lines", {})
    if report.method is not None and report.method not in recipes:
        builder.error("report.method", lines.get("method"), f"unknown recipe {report.method!r}; one of {known}")
    compare_lines = getattr((raw_report or {}).get("compare") if isinstance(raw_report, dict) else None, "lines", {})
    for measure, name in report.compare.items():
        if name not in recipes:
            builder.error(f"report.compare.{measure}", compare_lines.get(measure, lines.get("compare")),
                          f"unknown recipe {name!r}; one of {known}")


def from_config(data: dict, source: str) -> tuple[list[CheckConfig], ReportConfig]:
    """The checks and report section of a run's resolved config.yaml; a broken one is a one-line ConfigError."""
    from core.typed_yaml import Builder, ConfigError

    builder = Builder(source)
    raw_checks, raw_report = data.get("checks") or [], data.get("report") or {}
    checks = builder.convert(list[CheckConfig], raw_checks, "checks", None)
    report = builder.build(ReportConfig, raw_report, "report")
    for i, check in enumerate(checks if isinstance(checks, list) else []):
        for key, message in check.problems():
            builder.error(f"checks[{i}].{key}", None, message)
    if builder.problems:
        raise ConfigError(builder.problems)
    return checks, report


def plain(check: CheckConfig) -> dict:
    """A check as the plain YAML data a user writes: enums as their values, fields at their defaults left out."""
    from dataclasses import MISSING, fields

    out = {}
    for f in fields(CheckConfig):
        value = getattr(check, f.name)
        if value is None or value == {} or (f.default is not MISSING and value == f.default):
            continue
        out[f.name] = value.value if isinstance(value, enum.Enum) else value
    return out
