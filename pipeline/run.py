"""A run and its report: the run engine (pipeline/engine/) writes results.csv, then the report (pipeline/reports/)
is written from it, under the run lock and before the manifest records the run finished.

The one place the two layers meet: the engine never imports the reports; `pipeline run` and `pipeline retrain`
call this."""

from __future__ import annotations

from pathlib import Path

from pipeline.engine import orchestrator
from pipeline.recipe.config import RecipeFile
from pipeline.reports.report import write_report


def run_and_report(
    recipe: RecipeFile, run_dir: Path, recipe_path: Path, only: list[str] = (), rerun_changed: bool = False
) -> Path:
    """Run every recipe x seed of the file into `run_dir`; write results.csv, report.md and report.png."""
    return orchestrator.run_recipe(
        recipe, run_dir, recipe_path, only=only, rerun_changed=rerun_changed, report=write_report
    )
