"""What every stage receives (its run layout, input checkpoint, seed) and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StageContext:
    """Everything a stage needs from the orchestrator; stages never look anywhere else."""

    stage_dir: Path  # the stage writes only here
    model_dir: Path  # input checkpoint: a save_pretrained folder
    seed: int
    max_length: int
    train_data: Any = None  # datasets.Dataset with prompt/completion columns
    data_rows: dict = field(default_factory=dict)  # rows drawn per source, for the manifest
    data_notes: list = field(default_factory=list)  # e.g. "k x N rounds to 0; keeping 1 example"
    adapters: dict[str, Path] = field(default_factory=dict)  # soft prompts from earlier stages, by stage name
    adapter_dir: Path | None = None  # soft prompt attached for the target task, if any
    trust_remote_code: bool = False
    deepspeed: str | None = None  # DeepSpeed JSON handed to the Trainer (TrainingArguments.deepspeed)
    extra: dict = field(default_factory=dict)  # evaluation settings, labels, suites
    tracking: Any = None  # stages.tracking.Tracking: where this stage's run logs (None: no trackers)


@dataclass
class StageResult:
    """What a stage hands to the next one and to the results table."""

    model_dir: Path
    adapter_dir: Path | None = None
    metrics: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)  # results rows (task, suite, metric, score, n)
