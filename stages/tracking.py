"""Experiment trackers (the recipe's `report_to`): one tracker run per stage, named after the stage id.

Training logs through the Trainer's own callbacks (transformers' TensorBoardCallback, MLflowCallback,
WandbCallback); this module only points them at the run folder and gives each run its stage id as name, then
logs every evaluation stage's scores itself. Defaults that keep a run self-contained and offline:
TensorBoard event files under `<run>/tensorboard/<stage id>/` (`tensorboard --logdir <run>/tensorboard`), and,
where MLFLOW_TRACKING_URI is not set, MLflow's local file store in `<run>/mlruns` with the recipe file's name as
experiment. Only the main process logs.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, replace
from pathlib import Path

TRACKERS = ("none", "tensorboard", "mlflow", "wandb")
PACKAGES = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}  # what `pip install` needs


def unavailable(report_to: list[str]) -> list[str]:
    """The named trackers whose package is not installed (tensorboard: tensorboard or tensorboardX)."""

    def installed(name: str) -> bool:
        modules = ("tensorboard", "tensorboardX") if name == "tensorboard" else (PACKAGES[name],)
        return any(importlib.util.find_spec(module) is not None for module in modules)

    return [name for name in report_to if name != "none" and not installed(name)]


@dataclass(frozen=True)
class Tracking:
    """Where a run's stages log; `run_name` is set per stage (for_stage)."""

    report_to: tuple[str, ...]
    run_dir: Path
    experiment: str
    run_name: str = ""

    @property
    def active(self) -> bool:
        return bool(self.report_to)

    def for_stage(self, stage_id: str) -> "Tracking":
        return replace(self, run_name=stage_id)

    @property
    def tensorboard_dir(self) -> Path:
        return self.run_dir / "tensorboard" / self.run_name


def tracking_for(report_to: list[str], run_dir: Path, experiment: str) -> Tracking:
    """The run's tracking; MLflow's environment defaults are set here, once, where the user set none."""
    chosen = tuple(name for name in report_to if name != "none")
    if "mlflow" in chosen and "MLFLOW_TRACKING_URI" not in os.environ:
        os.environ["MLFLOW_TRACKING_URI"] = (Path(run_dir).resolve() / "mlruns").as_uri()
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this
    if "mlflow" in chosen:
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", experiment)
    return Tracking(chosen, Path(run_dir), experiment)


def trainer_settings(tracking: Tracking | None) -> dict:
    """TrainingArguments fields: which integrations the Trainer reports to, and the run's name."""
    if tracking is None or not tracking.active:
        return {"report_to": []}
    return {"report_to": list(tracking.report_to), "run_name": tracking.run_name}


def attach(trainer, tracking: Tracking | None) -> None:
    """Point the Trainer's TensorBoard callback at the run folder (its default is inside the checkpoint folder,
    which a finished stage removes)."""
    if tracking is None or "tensorboard" not in tracking.report_to:
        return
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(tracking.tensorboard_dir)


def log_scores(tracking: Tracking | None, rows: list[dict]) -> None:
    """An evaluation stage's scores, one metric per task, suite and metric (`general/embedded_copy/exact_match`)."""
    if tracking is None or not tracking.active or not rows:
        return
    scores = {f"{row['suite']}/{row['task']}/{row['metric']}": float(row["score"]) for row in rows}
    if "tensorboard" in tracking.report_to:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            from tensorboardX import SummaryWriter
        with SummaryWriter(log_dir=str(tracking.tensorboard_dir)) as writer:
            for name, value in scores.items():
                writer.add_scalar(f"eval/{name}", value, 0)
    if "mlflow" in tracking.report_to:
        import mlflow

        with mlflow.start_run(run_name=tracking.run_name):
            mlflow.log_metrics({name.replace("@", "_at_"): value for name, value in scores.items()})
    if "wandb" in tracking.report_to:
        import wandb

        run = wandb.init(project=tracking.experiment, name=tracking.run_name, reinit="finish_previous")
        run.log({f"eval/{name}": value for name, value in scores.items()})
        run.finish()
