"""The recipe's `gate:` section: the thresholds a retrained model must pass before it is promoted.

pipeline/retraining/gate.py checks a finished run against them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GateConfig:
    """Thresholds a retrained model must pass before it is promoted (None: that check is off)."""

    recipe: str = field(default="promot", metadata={"help": "the recipe whose final model is promoted"})
    min_target: float | None = field(
        default=None, metadata={"help": "lowest allowed target (and domain) score of the final stage, mean over seeds"}
    )
    max_general_drop: float | None = field(
        default=0.05, metadata={"help": "largest allowed drop of the general mean below the base model's (forgetting)"}
    )
    max_regression: float | None = field(
        default=0.02, metadata={"help": "largest allowed drop of any suite's score below the last accepted run's"}
    )
    general_drop_noise: bool = field(
        default=False,
        metadata={
            "help": "judge max_general_drop against the noise: fail only a drop beyond the limit by more than 1.96 "
            "standard errors (examples and seeds, pipeline/reports/uncertainty.py; the examples' part paired, the base "
            "and the final stage being scored on the same examples); unknown noise counts as none"
        },
    )

    def __post_init__(self):
        if not self.recipe:
            raise ValueError("gate.recipe: must name a recipe of this file")
        for name in ("min_target", "max_general_drop", "max_regression"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"gate.{name}: must be between 0 and 1 (scores are in [0, 1]), got {value}")
