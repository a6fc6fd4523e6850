"""The GitHub Actions workflows: linted when a linter is installed, and the retrain workflow's contract."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint not installed")
def test_actionlint():
    result = subprocess.run(["actionlint", *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(importlib.util.find_spec("check_jsonschema") is None, reason="check-jsonschema not installed")
def test_workflows_match_the_github_schema():
    # The schema ships inside check-jsonschema, so this runs offline.
    command = [
        sys.executable,
        "-m",
        "check_jsonschema",
        "--builtin-schema",
        "vendor.github-workflows",
        *map(str, WORKFLOWS),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_retrain_workflow_contract():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "retrain.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert {"schedule", "workflow_dispatch"} <= set(triggers)
    job = workflow["jobs"]["retrain"]
    assert "vars.RETRAIN_RUNS_ON" in job["runs-on"]  # the runner is a setting, not hard-coded
    steps = {step.get("uses", step.get("run", "")).split("@")[0]: step for step in job["steps"]}
    assert "make retrain" in "".join(s.get("run", "") for s in job["steps"])
    assert "~/.cache/forgetless" in steps["actions/cache"]["with"]["path"]
    assert steps["actions/upload-artifact"]["if"] == "always()"  # a refused model still leaves its report
    assert any("GITHUB_STEP_SUMMARY" in s.get("run", "") and s.get("if") == "always()" for s in job["steps"])


def test_test_latest_workflow_is_scheduled_and_never_blocks_main():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "test-latest.yml").read_text())
    triggers = set(workflow.get("on", workflow.get(True)))
    assert triggers == {"schedule", "workflow_dispatch"}  # not push / pull_request: it gates nothing
    runs = "".join(step.get("run", "") for step in workflow["jobs"]["test-latest"]["steps"])
    assert "make test-latest" in runs


def test_makefile_installs_through_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCK    := requirements.lock.txt" in makefile
    assert "pip install -q -r $(LOCK)" in makefile and "--no-deps --no-build-isolation -e ." in makefile
