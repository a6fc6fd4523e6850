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

Here the checks are declared and checked as the recipe is loaded; pipeline/reports/checks.py measures them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

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

    name: str = field(
        metadata={"help": "the row's wording in the report or gate table; {recipe} is the recipe checked"}
    )
    recipe: str = field(metadata={"help": "a recipe of the file; a swept one picks its copy with `where`"})
    measure: Measure = field(metadata={"help": "general, target, domain, forgetting, general_drop or format_leak"})
    stage: str | None = field(default=None, metadata={"help": "the stage measured; default: the recipe's final stage"})
    where: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "swept values that pick one copy of a swept recipe, e.g. {k: 1/256}"}
    )
    against: str | None = field(
        default=None,
        metadata={
            "help": "compare with this recipe's final stage, with `base` (the recipe's base stage) or `accepted` (gate)"
        },
    )
    relation: Relation | None = field(
        default=None,
        metadata={
            "help": "difference (a - b, the default), drop (b - a), distance (|a - b|), ratio (a / b) or loss (1 - a / b)"
        },
    )
    along: str | None = field(
        default=None,
        metadata={"help": "a swept field: the bound holds for every step of the measure as that field grows"},
    )
    min: float | None = None
    max: float | None = None
    above: float | None = None
    below: float | None = None
    noise: bool = field(
        default=False,
        metadata={
            "help": "judge the bound against the noise (the value less 1.96 standard errors; a forgetting's or general "
            "drop's se is paired: base and stage are scored on the same examples): a max bound fails only beyond "
            "it by more than that, a min bound passes only beyond it by more than that"
        },
    )
    group: str | None = field(
        default=None,
        metadata={
            "help": "general, forgetting or general_drop over one group of the general suite's tasks (real_general: "
            "knowledge, generation) instead of all of them"
        },
    )
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
            found.append(
                (
                    "group",
                    f"groups the general suite's tasks: measure must be one of "
                    f"{', '.join(m.value for m in GROUPED)}, not {self.measure.value}",
                )
            )
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
    method: str | None = field(
        default=None,
        metadata={
            "help": "the recipe the frontier places (its swept copies too); default: the recipe named like the file"
        },
    )
    compare: dict[str, str] = field(
        default_factory=dict,
        metadata={"help": "the strategies table's delta columns, measure -> recipe, e.g. {domain: domain_only}"},
    )

    def __post_init__(self):
        unknown = [m for m in self.compare if m not in ("domain", "general")]
        if unknown:
            raise ValueError(f"compare: {unknown[0]!r} is no column of the strategies table; domain or general")


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
            builder.error(
                f"report.compare.{measure}",
                compare_lines.get(measure, lines.get("compare")),
                f"unknown recipe {name!r}; one of {known}",
            )


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
