"""Promotion gate thresholds (filled in by the retraining work)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GateConfig:
    """Thresholds a retrained model must pass before it is promoted."""

    recipe: str = "promot"
