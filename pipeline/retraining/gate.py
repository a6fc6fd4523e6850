"""The promotion gate: thresholds from the recipe's `gate:` section, checked on a run's final-stage scores.

Scores are means over seeds of the gated recipe's final stage, one per suite kind (general, target,
domain), plus the base model's general mean from the same run. The gate compares them with the base
(forgetting) and with the last accepted run (regression). The thresholds become checks of the report's own type
(pipeline/recipe/checks.py, `gate_checks`) and are measured by the same code; the table keeps its gate rows.
Import-light: pandas is loaded on use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from pipeline.engine.records import run_config
from pipeline.recipe.gate_config import GateConfig

SUITES = ("general", "target", "domain")


@dataclass
class Check:
    """One row of the gate table."""

    gate: str
    measured: float | None
    limit: str
    passed: bool
    note: str = ""


def final_stage(run_dir: Path, recipe: str, frame) -> str:
    """The recipe's final stage: its last stage in the run's resolved config (else in results order)."""
    recipes = run_config(run_dir).get("recipes")
    stages = (recipes.get(recipe) if isinstance(recipes, dict) else None) or []
    if stages:
        last = stages[-1] if isinstance(stages, list) else None
        if not isinstance(last, dict) or not isinstance(last.get("name"), str):
            raise UserError(
                f"{Path(run_dir) / 'config.yaml'}: recipes.{recipe}: expected a list of stages, "
                "each with a name (the file the run wrote has them)"
            )
        return last["name"]
    ordered = [s for s in dict.fromkeys(frame[frame.recipe == recipe].stage) if s != "base"]
    if not ordered:
        raise UserError(f"{run_dir}/results.csv: no trained stage of recipe {recipe!r}")
    return ordered[-1]


def final_scores(frame, recipe: str, stage: str) -> dict:
    """Mean over seeds of `stage` per suite kind, plus the base general mean and the general drop."""
    from pipeline.reports.results import summarise

    table = summarise(frame[frame.recipe == recipe])  # per seed; forgetting = general - base general
    final, base = table[table.stage == stage], table[table.stage == "base"]
    if final.empty or base.empty or "general" not in table.columns:
        raise UserError(f"results.csv: recipe {recipe!r} has no general scores for stage {stage!r} and base")
    from pipeline.reports.uncertainty import standard_error

    scores = {suite: final[suite].mean() for suite in SUITES if suite in table.columns}
    scores.update(base_general=base.general.mean(), general_drop=-final.forgetting.mean())
    if "forgetting_se" in final.columns:
        scores["general_drop_se"] = standard_error(final.forgetting_se.mean(), final.forgetting.std(ddof=1), len(final))
    return {k: round(float(v), 6) + 0.0 for k, v in scores.items() if v == v}  # drop NaN; -0.0 -> 0.0


def run_scores(run_dir: Path, recipe: str) -> tuple[str, dict]:
    """(final stage, scores) of `recipe` in a finished run folder."""
    from pipeline.reports.results import read_results

    path = Path(run_dir) / "results.csv"
    if not path.is_file():
        raise UserError(f"{path}: not found (is {run_dir} a finished run folder?)")
    frame = read_results(path)
    if recipe not in set(frame.recipe):
        raise UserError(f"{path}: no results for recipe {recipe!r} (gate.recipe); has {sorted(set(frame.recipe))}")
    stage = final_stage(run_dir, recipe, frame)
    return stage, final_scores(frame, recipe, stage)


def check_gate(
    gate: GateConfig, scores: dict, reference: dict | None, reference_name: str = "accepted", unlike: str | None = None
) -> list[Check]:
    """Every gate check of a candidate's scores against the base (in `scores`) and a reference run. `unlike` says
    why the reference's scores were taken on other examples or otherwise (registry.unlike): then the regression
    check is skipped, with that note, instead of comparing unlike scores."""
    from pipeline.reports.checks import measure_check

    reference = None if unlike else reference
    source = GateScores(gate.recipe, scores, reference)
    return [
        Check(o.name, o.value, o.limit, bool(o.passed), o.note)
        for o in (
            measure_check(check, source, reference_name) for check in gate_checks(gate, scores, reference, unlike)
        )
    ]


def gate_checks(gate: GateConfig, scores: dict, reference: dict | None, unlike: str | None = None) -> list:
    """The gate's thresholds as checks of the report's type, one per suite the scores (and reference) have."""
    from pipeline.recipe.checks import CheckConfig

    recipe, limit = gate.recipe, gate.min_target
    suites = [s for s in ("target", "domain") if s in scores]
    if limit is None or not suites:
        found = [
            CheckConfig(
                "min_target",
                recipe,
                "target",
                min=limit,
                if_missing="fail",
                missing_note=None if limit is None else "no target or domain score",
            )
        ]
    else:
        found = [CheckConfig(f"min_target ({s})", recipe, s, min=limit) for s in suites]
    found.append(
        CheckConfig(
            "max_general_drop",
            recipe,
            "general_drop",
            max=gate.max_general_drop,
            noise=gate.general_drop_noise and gate.max_general_drop is not None,
            if_missing="fail",
        )
    )
    limit = gate.max_regression
    if limit is None or reference is None:
        return found + [
            CheckConfig(
                "max_regression",
                recipe,
                "general",
                against="accepted",
                relation="drop",
                max=limit,
                if_missing="pass",
                missing_note=None
                if limit is None
                else f"{unlike}: skipped"
                if unlike
                else "no accepted run yet: skipped",
            )
        ]
    shared = [s for s in SUITES if s in scores and s in reference]
    return found + [
        CheckConfig(f"max_regression ({s})", recipe, s, against="accepted", relation="drop", max=limit) for s in shared
    ]


class GateScores:
    """The gated recipe's final scores (and its base's general) as the checks' Scores; the reference run's too."""

    def __init__(self, recipe: str, scores: dict, reference: dict | None):
        self.recipe, self.scores, self.ref = recipe, scores, reference

    def recipes(self) -> list[str]:
        """Only the gated recipe."""
        return [self.recipe]

    def swept(self, recipe: str) -> dict:
        """The gate judges one recipe by its name: no sweep to pick from."""
        return {}

    def final_stage(self, recipe: str) -> str:
        """The scores are its final stage's."""
        return "final"

    def value(self, recipe: str, stage: str, measure: str) -> float | None:
        """A final score, or the base's general."""
        key = f"base_{measure}" if stage == "base" else measure
        return self.scores.get(key)

    def se(self, recipe: str, stage: str, measure: str) -> float | None:
        """The general drop's standard error (paired over the examples: summarise's forgetting_se), where known."""
        return self.scores.get(f"{measure}_se", float("nan"))

    def reference(self, measure: str) -> float | None:
        """The accepted run's score."""
        return None if self.ref is None else self.ref.get(measure)


def passed(checks: list[Check]) -> bool:
    """True when every check passed."""
    return all(c.passed for c in checks)


def gate_table(checks: list[Check]) -> str:
    """The gate table as markdown, failing rows in bold."""
    lines = ["| gate | measured | limit | result | note |", "|---|---|---|---|---|"]
    for c in checks:
        measured = "–" if c.measured is None else f"{c.measured:.3f}"
        lines.append(f"| {c.gate} | {measured} | {c.limit} | {'pass' if c.passed else '**FAIL**'} | {c.note} |")
    return "\n".join(lines)


def load_reference(path: Path, recipe: str) -> tuple[str, dict | None]:
    """(name, scores) to compare against: a registry folder's accepted run, or a run folder itself."""
    path = Path(path)
    from pipeline.retraining.registry import ModelRegistry

    if ModelRegistry.is_registry(path):
        accepted = ModelRegistry(path).accepted()
        return ("accepted", None) if accepted is None else (accepted["run_id"], accepted["scores"])
    if (path / "results.csv").exists():
        return path.name, run_scores(path, recipe)[1]
    raise UserError(
        f"--against {path}: neither a registry folder (accepted.json, runs/) nor a run folder (results.csv)"
    )


def unlike_reference(against: Path, run_dir: Path, recipe: str, stage: str) -> str | None:
    """Why the reference (a registry's accepted run, or a run folder) was scored otherwise than run_dir's final stage
    (registry.unlike), or None: then `check_gate` compares them."""
    from pipeline.retraining.registry import ModelRegistry, evaluation_key, evaluations_of, unlike

    against = Path(against)
    if ModelRegistry.is_registry(against):
        return unlike(ModelRegistry(against).accepted(), run_dir, recipe, stage)
    if not (against / "manifest.json").is_file():
        return None  # results.csv alone: nothing says how it was evaluated
    theirs = run_scores(against, recipe)[0]
    keys = sorted({evaluation_key(e) for e in evaluations_of(against, recipe, theirs)})
    reference = {"run_dir": str(against), "recipe": recipe, "stage": theirs, "evaluation_keys": keys}
    return unlike(reference, run_dir, recipe, stage, who=f"run {against.name}") if keys else None


def gate_from_run(run_dir: Path, overrides: list[str] = ()) -> GateConfig:
    """The gate of a run's resolved config (defaults when it has none), with `--set field=value` overrides."""
    from core.typed_yaml import Builder, ConfigError, shown
    from pipeline.recipe.overrides import parse_set

    data = run_config(run_dir).get("gate") or {}
    if not isinstance(data, dict):
        raise ConfigError(
            [
                f"{Path(run_dir) / 'config.yaml'}: gate: expected a mapping of thresholds, "
                f"got {type(data).__name__} {shown(data)}"
            ]
        )
    data = dict(data)
    builder = Builder("--set")
    for item in overrides:
        parsed = parse_set(item, builder, shown)
        if parsed is not None:
            data[parsed[0].removeprefix("gate.")] = parsed[1]
    gate = builder.build(GateConfig, data, "gate") if not builder.problems else None
    if builder.problems:
        raise ConfigError(builder.problems)
    return gate


def write_result(run_dir: Path, gate: GateConfig, scores: dict, checks: list[Check], reference: str) -> None:
    """Record the gate's verdict in the run folder (gate.json, gate.md); never in the registry."""
    from dataclasses import asdict

    from core.atomic import write_json, write_text

    verdict = "pass" if passed(checks) else "fail"
    write_json(
        Path(run_dir) / "gate.json",
        {
            "gate": asdict(gate),
            "scores": scores,
            "against": reference,
            "result": verdict,
            "checks": [asdict(c) for c in checks],
        },
    )
    write_text(Path(run_dir) / "gate.md", f"## Gate: {verdict} (against {reference})\n\n{gate_table(checks)}\n")
