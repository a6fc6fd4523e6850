"""Reading a run folder's records: config.yaml (the resolved recipe the run was made with)."""

from __future__ import annotations

from pathlib import Path


def run_config(run_dir: Path) -> dict:
    """A run folder's resolved config.yaml as data ({} when it has none); a broken one is a one-line error."""
    from core.typed_yaml import load_yaml

    config = Path(run_dir) / "config.yaml"
    return load_yaml(config) if config.exists() else {}
