"""Checkpoint selection on 2 processes: DDP and ZeRO-2 keep the step one process keeps, with its scores and weights;
ZeRO-3 is refused in one line. make test-dist only (FORGETLESS_DIST_FULL=1): three launches of two processes."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.test_distributed import TOLERANCE, free_port
from tests.test_joint_end_to_end import ACCELERATE, LAUNCHERS

ROOT = Path(__file__).resolve().parents[1]
FULL = os.environ.get("FORGETLESS_DIST_FULL") == "1"
pytestmark = [
    pytest.mark.dist,
    pytest.mark.slow,
    pytest.mark.skipif(not FULL, reason="make test-dist (FORGETLESS_DIST_FULL=1)"),
]

RECIPE = """
name: select
seeds: [0]
model: {path: BASE}
target: {name: letter_rule, train: "embedded:letter_rule", train_rows: 64, test_rows: 6}
evaluation: {general_suite: embedded_general, limit: 4, batch_size: 100}
max_length: 48
recipes:
  best:
    - {kind: prompt_tune, steps: 4, batch_size: 8, lr: 0.3, num_virtual_tokens: 16, init: sampled_vocab}
    - {kind: finetune, steps: 6, batch_size: 8, lr: 3.0e-3, scheduler: constant, warmup_ratio: 0, save_steps: 2,
       logging_steps: 1, prompt_from: prompt_tune, selection: {every: 2, criterion: target, validation_rows: 8}}
"""


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    base = ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))
    root = tmp_path_factory.mktemp("launched")
    recipe = root / "select.yaml"
    recipe.write_text(RECIPE.replace("BASE", str(base)))
    done = {}
    for name in ("one", "ddp", "zero2", "zero3"):
        command = [*LAUNCHERS[name], "run", str(recipe), "--run-dir", str(root / name)]
        if name != "one":
            command[len(ACCELERATE) : len(ACCELERATE)] = ["--main_process_port", str(free_port())]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TORCH_EXTENSIONS_DIR": str(root / f"{name}-extensions")}
        done[name] = (
            root / name,
            subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600),
        )
    return done


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "seed0/best/finetune/DONE.json").read_text())["metrics"]


@pytest.mark.parametrize("name", ["ddp", "zero2"])
def test_two_processes_keep_the_step_one_process_keeps(launched, name):
    from safetensors.torch import load_file

    (reference, one), (run_dir, done) = launched["one"], launched[name]
    assert one.returncode == 0 and done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    mine, theirs = metrics(run_dir), metrics(reference)
    assert [c["step"] for c in mine["selection_history"]] == [2, 4, 6]
    assert mine["selected_step"] == theirs["selected_step"]
    for check, other in zip(mine["selection_history"], theirs["selection_history"]):
        assert check["target"] == pytest.approx(other["target"], **TOLERANCE)
        assert check["general"] == pytest.approx(other["general"], **TOLERANCE)
    weights = [load_file(str(d / "seed0/best/finetune/model/model.safetensors")) for d in (run_dir, reference)]
    assert all((weights[0][k] - weights[1][k]).abs().max() < 1e-3 for k in weights[1])
    assert (run_dir / "results.csv").read_text() == (reference / "results.csv").read_text()


def test_zero3_is_refused_in_one_line(launched):
    run_dir, done = launched["zero3"]
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "finetune.selection: not available under ZeRO-3" in out
    assert "raise UserError" not in out
    assert not (run_dir / "seed0/best/finetune/model").exists()
