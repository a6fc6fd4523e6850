"""Scheduled retraining: new data in, gated model out.

    check the registry (a corrupt pointer or history line is an error, never "no model yet")
    -> fingerprint the inputs -> nothing new since the accepted run? stop ("nothing to do")
    -> train the gated recipe into <registry>/runs/<id> -> gate it against the base and the accepted run (the
       regression check only where both were evaluated alike: the same evaluation key, registry.unlike)
    -> promote only if every check passes (exit 0), else print the failing checks (exit 1)

Training happens outside the registry lock, so a long run never blocks another job's check; the lock
is held only to read the pointer and, at the end, to gate and promote against the pointer as it is then.
Launched as several processes, every rank trains; rank 0 alone reads and writes the registry and hands
its decisions (the run folder, then the outcome) to the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core import ranks
from core.atomic import remove_leftovers
from core.errors import UserError, every_rank
from pipeline.recipe.config import RecipeFile
from pipeline.retraining import gate as gates
from pipeline.retraining.registry import ModelRegistry, entry_for, loadable_problem, unlike

EXPORTED = ("report.md", "report.png", "results.csv", "gate.md", "gate.json")


@dataclass
class RetrainOutcome:
    """What a retrain did: status is 'nothing to do', 'accepted' or 'refused'."""

    status: str
    run_dir: Path | None
    checks: list
    accepted_run: str | None  # the registry's accepted run after this job

    @property
    def exit_code(self) -> int:
        """0 unless the gate refused the new model."""
        return 1 if self.status == "refused" else 0


def gate_of(recipe: RecipeFile) -> gates.GateConfig:
    """The recipe file's gate (defaults when it has none); its recipe must exist in the file."""
    gate = recipe.gate or gates.GateConfig()
    if gate.recipe not in recipe.stages:
        raise every_rank(
            UserError(f"gate.recipe: {gate.recipe!r} is not a recipe of this file; one of {sorted(recipe.stages)}")
        )
    return gate


def retrain(recipe: RecipeFile, recipe_path: Path, registry_root: Path) -> RetrainOutcome:
    """Run one scheduled retraining against a registry folder; every rank returns rank 0's outcome."""
    from pipeline.run import run_and_report

    gate = gate_of(recipe)
    registry = ModelRegistry(registry_root)
    started = ranks.from_main(lambda: start(recipe, gate, registry))
    if isinstance(started, RetrainOutcome):
        return started
    run_dir, prints = started
    run_and_report(recipe, run_dir, recipe_path, only=[gate.recipe])
    return ranks.from_main(lambda: judge(run_dir, gate, registry, prints))


def start(recipe: RecipeFile, gate: gates.GateConfig, registry: ModelRegistry):
    """Rank 0: 'nothing to do' if the accepted run had these inputs, else (the run folder to train in, fingerprint)."""
    from pipeline.retraining.fingerprint import fingerprint

    registry.check()  # before anything is trained or created: a broken registry would fail only at promotion
    prints = fingerprint(recipe, gate.recipe)
    with registry.locked():
        remove_leftovers(registry.root, recursive=False)  # a pointer or history write that was killed
        accepted = registry.accepted()
        if accepted and accepted.get("fingerprint") == prints["fingerprint"]:
            return RetrainOutcome("nothing to do", None, [], accepted["run_id"])
        run_dir = registry.start_run(prints)
    resumed = (run_dir / "manifest.json").exists()  # a killed or refused job's folder for the same data
    print(
        f"retrain: fingerprint {prints['fingerprint'][:12]} differs from the accepted run's; "
        f"{'resuming' if resumed else 'training'} {gate.recipe!r} in {run_dir}",
        flush=True,
    )
    return run_dir, prints


def judge(run_dir: Path, gate: gates.GateConfig, registry: ModelRegistry, prints: dict) -> RetrainOutcome:
    """Rank 0, after training: gate the run against the pointer as it is now; promote it if it passes."""
    with registry.locked():
        registry.check()  # as it is now, before anything is written
        accepted = registry.accepted()  # re-read: another job may have promoted while we trained
        if accepted and accepted.get("fingerprint") == prints["fingerprint"]:
            return RetrainOutcome("nothing to do", run_dir, [], accepted["run_id"])
        stage, scores = gates.run_scores(run_dir, gate.recipe)
        reference = accepted["run_id"] if accepted else "none"
        differs = unlike(accepted, run_dir, gate.recipe, stage)  # other examples or settings: no regression check
        checks = gates.check_gate(gate, scores, accepted["scores"] if accepted else None, reference, differs)
        entry = entry_for(run_dir, gate.recipe, stage, scores, prints, checks)
        problem = loadable_problem(entry)  # the pointer never moves to a model that would not load
        checks.append(gates.Check("loadable", None, "model and prompt load", problem is None, problem or ""))
        entry["gate"] = [c.__dict__ for c in checks]
        gates.write_result(run_dir, gate, scores, checks, reference)
        if not gates.passed(checks):
            return RetrainOutcome("refused", run_dir, checks, accepted["run_id"] if accepted else None)
        registry.promote(entry)
        return RetrainOutcome("accepted", run_dir, checks, run_dir.name)


def summary(outcome: RetrainOutcome) -> str:
    """Markdown for people and CI: the verdict, the gate table and the run's stage table."""
    lines = [f"## Retrain: {outcome.status}"]
    if outcome.status == "nothing to do":
        lines.append(
            f"The data and recipe are those of the accepted run `{outcome.accepted_run}`; nothing was trained."
        )
        return "\n\n".join(lines) + "\n"
    if outcome.status == "accepted":
        lines.append(f"Run `{outcome.run_dir.name}` passed every gate and is now the accepted model.")
    else:
        kept = f"`{outcome.accepted_run}` stays accepted" if outcome.accepted_run else "no model is accepted yet"
        failed = ", ".join(c.gate for c in outcome.checks if not c.passed)
        lines.append(f"Run `{outcome.run_dir.name}` failed the gate ({failed}); {kept}.")
    lines += ["### Gate", gates.gate_table(outcome.checks)]
    lines += ["### Base → each stage", stage_table(outcome.run_dir)]
    return "\n\n".join(lines) + "\n"


def stage_table(run_dir: Path) -> str:
    """The report's per-stage table (mean over seeds) of a finished run."""
    from pipeline.reports.report import stage_table as markdown
    from pipeline.reports.results import over_seeds, read_csv, summarise

    return markdown(*over_seeds(summarise(read_csv(Path(run_dir) / "results.csv"))))


def export(outcome: RetrainOutcome, folder: Path) -> None:
    """Copy the run's report, results and gate verdict, plus summary.md, into `folder` (for CI artifacts)."""
    from core.atomic import write_bytes, write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "summary.md", summary(outcome))
    for name in EXPORTED if outcome.run_dir else ():
        if (outcome.run_dir / name).exists():  # atomically: a kill never leaves an artifact cut short
            write_bytes(folder / name, (outcome.run_dir / name).read_bytes())
