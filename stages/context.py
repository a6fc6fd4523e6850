"""What every stage receives (its run layout, the hand-off, seed) and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.handoff import Adapter, Handoff, Scope


@dataclass
class StageContext:
    """Everything a stage needs from the orchestrator; stages never look anywhere else."""

    stage_dir: Path  # the stage writes only here
    handoff: Handoff  # the input model folder, the base model's, and the adapters trained so far
    seed: int
    max_length: int
    train_data: Any = None  # datasets.Dataset with prompt/completion columns
    data_rows: dict = field(default_factory=dict)  # rows drawn per source, for the manifest
    data_notes: list = field(default_factory=list)  # e.g. "k x N rounds to 0; keeping 1 example"
    trust_remote_code: bool = False
    deepspeed: str | None = None  # DeepSpeed JSON handed to the Trainer (TrainingArguments.deepspeed)
    extra: dict = field(default_factory=dict)  # evaluation settings, labels, suites, the base model's rows
    tracking: Any = None  # stages.tracking.Tracking: where this stage's run logs (None: no trackers)

    @property
    def model_dir(self) -> Path:
        """The input checkpoint: a save_pretrained folder (or a hub id)."""
        return self.handoff.model_dir

    def target_tasks(self) -> tuple[str, ...]:
        """The target tasks this stage trains on, in a recipe with several targets ('target' is all of them); ()
        in a recipe with one: a target-scoped adapter made here is then the one for every target."""
        names = self.extra.get("target_names") or []
        if "target" in self.data_rows:
            return tuple(names)
        return tuple(name for name in names if name in self.data_rows)


@dataclass
class StageResult:
    """What a stage hands to the next one and to the results table."""

    model_dir: Path
    adapters: dict[str, Adapter] = field(default_factory=dict)  # adapters made or re-homed here, by name
    metrics: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)  # results rows (task, suite, metric, score, n)

    @property
    def adapter_dir(self) -> Path | None:
        """The adapter a user attaches to this stage's model for the target (the registry promotes it), if any."""
        attached = [a for a in self.adapters.values() if a.scope != Scope.MERGED]
        return attached[-1].path if attached else None
