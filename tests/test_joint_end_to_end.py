"""End to end: joint tuning (the ProMoT paper's ablation) next to SFT and ProMoT, through `pipeline run`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main
from tests.test_distributed import ACCELERATE, TOLERANCE, free_port

ROOT = Path(__file__).resolve().parents[1]

RECIPE = """
name: joint
seeds: [0]
model: {path: BASE}
target: {name: letter_rule, train: "embedded:letter_rule", train_rows: 64, test_rows: 6}
evaluation: {general_suite: embedded_general, limit: 4, batch_size: 100}
max_length: 48
x-finetune: &finetune {kind: finetune, steps: 4, batch_size: 8, lr: 1.0e-3}
x-prompt: &prompt {kind: prompt_tune, steps: 4, batch_size: 8, lr: 0.3, num_virtual_tokens: 16, init: sampled_vocab}
x-joint: &joint {kind: joint_tune, steps: 4, batch_size: 8, lr: 1.0e-3, prompt_lr: 0.3, num_virtual_tokens: 16}
recipes:
  sft:
    - *finetune
  promot:
    - *prompt
    - {<<: *finetune, prompt_from: prompt_tune}
  joint:
    - *joint
"""


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    base = ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))
    path = tmp_path_factory.mktemp("recipe") / "joint.yaml"
    path.write_text(RECIPE.replace("BASE", str(base)))
    return path


@pytest.fixture(scope="module")
def finished_run(recipe, tmp_path_factory):
    root = tmp_path_factory.mktemp("joint")
    assert main(["validate", str(recipe)]) == 0
    assert main(["run", str(recipe), "--run-dir", str(root / "run")]) == 0
    return root / "run"


def test_joint_evaluation_attaches_its_prompt_for_the_target_only(finished_run):
    stages = json.loads((finished_run / "manifest.json").read_text())["stages"]
    joint = stages["seed0/joint/joint_tune"]
    prompt = {"path": str(finished_run / "seed0/joint/joint_tune/adapter"), "kind": "prompt", "scope": "target"}
    assert joint["status"] == "done" and joint["output_adapters"] == {"joint_tune": prompt}
    assert joint["output_model"] == str(finished_run / "seed0/joint/joint_tune/model")
    evaluation = stages["seed0/joint/joint_tune-eval"]
    assert evaluation["input_adapters"] == {"joint_tune": prompt}
    assert evaluation["input_model"] == joint["output_model"]


def test_results_have_the_joint_rows_next_to_sft_and_promot(finished_run):
    frame = pd.read_csv(finished_run / "results.csv")
    assert set(frame.recipe) == {"sft", "promot", "joint"}
    joint, promot = frame[frame.recipe == "joint"], frame[frame.recipe == "promot"]
    assert list(dict.fromkeys(joint.stage)) == ["base", "joint_tune"]
    assert set(joint.suite) == {"general", "target"} and (joint[joint.suite == "target"].n == 6).all()
    columns = ["task", "suite", "metric"]  # the same rows as ProMoT's final stage, scored on the joint model
    final = promot[promot.stage == "finetune"]
    assert sorted(map(tuple, joint[joint.stage == "joint_tune"][columns].to_numpy())) == sorted(
        map(tuple, final[columns].to_numpy())
    )


def test_the_joint_model_and_prompt_load_with_plain_peft(finished_run):
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(finished_run / "seed0/joint/joint_tune/adapter")
    assert model.active_peft_config.num_virtual_tokens == 16


LAUNCHERS = {
    "one": [sys.executable, "-m", "pipeline"],
    "ddp": [*ACCELERATE, "--config_file", "configs/accelerate/cpu_two_processes.yaml", "-m", "pipeline"],
    "zero2": [
        *ACCELERATE,
        "--config_file",
        "configs/accelerate/deepspeed_zero2.yaml",
        "--num_processes",
        "2",
        "-m",
        "pipeline",
    ],
    "zero3": [
        *ACCELERATE,
        "--config_file",
        "configs/accelerate/deepspeed_zero3.yaml",
        "--num_processes",
        "2",
        "-m",
        "pipeline",
    ],
}


def launch(name: str, recipe: Path, run_dir: Path) -> subprocess.CompletedProcess:
    """The joint recipe alone under one launcher, a checkpoint every 2 of its 4 steps, the same global batch."""
    command = [*LAUNCHERS[name], "run", str(recipe), "--only", "joint", "--run-dir", str(run_dir)]
    if name != "one":
        command[len(ACCELERATE) : len(ACCELERATE)] = ["--main_process_port", str(free_port())]
    for item in ("logging_steps=1", "save_steps=2"):
        command += ["--set", f"recipes.joint.0.{item}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TORCH_EXTENSIONS_DIR": str(run_dir.parent / f"{name}-extensions")}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


# `make test` launches DDP and the ZeRO-3 refusal; `make test-dist` (FORGETLESS_DIST_FULL=1) adds ZeRO-2, which
# costs a DeepSpeed start of two processes more.
FULL = os.environ.get("FORGETLESS_DIST_FULL") == "1"


@pytest.fixture(scope="module")
def launched(recipe, tmp_path_factory):
    root = tmp_path_factory.mktemp("launched")
    names = [name for name in LAUNCHERS if FULL or name != "zero2"]
    return {name: (root / name, launch(name, recipe, root / name)) for name in names}


def stage_file(run_dir: Path, name: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "seed0" / "joint" / "joint_tune" / name))


@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "ddp",
        pytest.param("zero2", marks=pytest.mark.skipif(not FULL, reason="make test-dist (FORGETLESS_DIST_FULL=1)")),
    ],
)
def test_two_processes_train_the_joint_stage_like_one(launched, name):
    (reference, one), (run_dir, done) = launched["one"], launched[name]
    assert one.returncode == 0 and done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    losses = [
        json.loads((d / "seed0/joint/joint_tune/DONE.json").read_text())["metrics"]["loss_history"]
        for d in (reference, run_dir)
    ]
    assert len(losses[0]) == 4 and losses[1] == pytest.approx(losses[0], **TOLERANCE)
    for file in ("model/model.safetensors", "adapter/adapter_model.safetensors"):
        mine, theirs = stage_file(run_dir, file), stage_file(reference, file)
        assert mine.keys() == theirs.keys() and all((mine[k] - theirs[k]).abs().max() < 1e-3 for k in mine), file
    assert (run_dir / "results.csv").read_text() == (reference / "results.csv").read_text()


@pytest.mark.dist
@pytest.mark.slow
def test_zero3_is_refused_in_one_line(launched):
    run_dir, done = launched["zero3"]
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "zero_optimization.stage: joint_tune does not run under ZeRO-3" in out
    assert "raise UserError" not in out  # one line from each rank; the only traceback is the launcher's
    assert not (run_dir / "seed0" / "joint" / "joint_tune" / "model").exists()
