"""Crash safety: kill -9 mid-stage, SIGTERM, then rerun the same command -> the same results as no crash."""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.processes import ROOT, start, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    return ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))


def command(base, run_dir):
    # Stage 2 runs well past the checkpoints the tests wait for, so a fast machine cannot finish the
    # stage (and clear its checkpoints) between two polls.
    sets = [
        f"model.path={base}",
        "seeds=[0]",
        "evaluation.limit=4",
        "target.train_rows=64",
        "target.test_rows=4",
        "recipes.promot.0.steps=12",
        "recipes.promot.1.steps=48",
        "recipes.promot.0.save_steps=3",
        "recipes.promot.1.save_steps=3",
        "recipes.promot.0.batch_size=8",
        "recipes.promot.1.batch_size=8",
    ]
    args = [
        sys.executable,
        "-m",
        "pipeline",
        "run",
        str(ROOT / "recipes" / "promot.yaml"),
        "--only",
        "promot",
        "--run-dir",
        str(run_dir),
    ]
    for item in sets:
        args += ["--set", item]
    return args


@pytest.fixture(scope="module")
def reference(tiny_base, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    proc = start(command(tiny_base, run_dir))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return (run_dir / "results.csv").read_text()


@pytest.mark.parametrize("stage, checkpoint", [("prompt_tune", "checkpoint-6"), ("finetune", "checkpoint-9")])
def test_kill_9_mid_stage_then_rerun_gives_identical_results(tiny_base, reference, tmp_path, stage, checkpoint):
    run_dir = tmp_path / "run"
    args = command(tiny_base, run_dir)
    proc = start(args)
    wait_for(run_dir / "seed0" / "promot" / stage / "trainer" / checkpoint / "trainer_state.json", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "seed0" / "promot" / stage / "DONE.json").exists()
    rerun = start(args)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    assert (run_dir / "results.csv").read_text() == reference
    metrics = json.loads((run_dir / "seed0" / "promot" / stage / "DONE.json").read_text())["metrics"]
    resumed_at = int(metrics["resumed_from"].rsplit("-", 1)[1])  # tokens/s counts only the steps rerun
    # The kill comes once trainer_state.json exists, which transformers writes in place: a kill while it is being
    # written leaves that checkpoint cut short, and the resume falls back to the one before (save_steps 3 earlier).
    assert resumed_at >= int(checkpoint.rsplit("-", 1)[1]) - 3
    assert metrics["steps_run"] == {"prompt_tune": 12, "finetune": 48}[stage] - resumed_at


def test_sigterm_saves_and_says_how_to_resume(tiny_base, reference, tmp_path):
    run_dir = tmp_path / "run"
    args = command(tiny_base, run_dir)
    proc = start(args)
    wait_for(run_dir / "seed0" / "promot" / "finetune" / "trainer" / "checkpoint-3" / "trainer_state.json", proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "stopped by SIGTERM" in out and "rerun the same command to resume" in out
    assert not (run_dir / "run.lock").exists()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert (manifest["status"], manifest["signal"]) == ("stopped", "SIGTERM")  # not "running" for ever
    stage = manifest["stages"]["seed0/promot/finetune"]
    assert (stage["status"], stage["signal"]) == ("stopped", "SIGTERM")
    rerun = start(args)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    assert (run_dir / "results.csv").read_text() == reference
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "done" and "signal" not in manifest
    assert manifest["stages"]["seed0/promot/finetune"]["status"] == "done"


def test_second_run_on_the_same_folder_is_refused(tiny_base, tmp_path):
    # The first owner holds the folder's lock until told to stop, as a run does while it trains: waiting for
    # a real run's lock file raced with a fast machine finishing that run before the second one started.
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from pipeline.engine.run_lock import RunLock\n"
            "with RunLock(Path(sys.argv[1])):\n    print('held', flush=True)\n    sys.stdin.read()",
            str(run_dir),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        second = subprocess.run(
            command(tiny_base, run_dir),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 2
    assert f"run folder is in use by process {holder.pid}" in second.stderr
    assert not (run_dir / "results.csv").exists()


def test_same_recipe_same_seed_gives_identical_results(tiny_base, reference, tmp_path):
    """Determinism: a second, uninterrupted run of the same command in a fresh folder."""
    run = start(command(tiny_base, tmp_path / "again"))
    out, _ = run.communicate(timeout=600)
    assert run.returncode == 0, out
    assert (tmp_path / "again" / "results.csv").read_text() == reference
