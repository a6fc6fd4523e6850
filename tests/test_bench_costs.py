"""bench/costs.py's tiny run: the overrides it sets are read from the recipe file, so `pipeline validate` accepts
them; a stale one (a recipe moved to another file, as frozen_prompt moved to promot_variants.yaml) is refused.
`make bench-quick` (.ci/run) then runs the tiny run itself, with every other benchmark."""

import os
import subprocess
import sys
from pathlib import Path

from bench import costs

ROOT = Path(__file__).resolve().parents[1]


def validate(*sets: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "pipeline", "validate", "recipes/promot.yaml"]
    for item in sets:
        args += ["--set", item]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_tiny_overrides_cover_every_trained_stage_and_validate():
    sets = costs.tiny_overrides()
    steps = sorted(s.removesuffix(".steps=4") for s in sets if s.endswith(".steps=4"))
    # recipes/promot.yaml: sft 1 stage, prompt_tuning 1, promot 2, promot_merge 2 trained + a merge (no steps)
    assert steps == sorted(
        [
            "recipes.sft.0",
            "recipes.prompt_tuning.0",
            "recipes.promot.0",
            "recipes.promot.1",
            "recipes.promot_merge.0",
            "recipes.promot_merge.1",
        ]
    )
    done = validate(*sets)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_stale_override_is_refused():
    done = validate(*costs.tiny_overrides(), "recipes.frozen_prompt.1.steps=4")
    assert done.returncode == 2
    assert "recipes.frozen_prompt" in done.stderr
