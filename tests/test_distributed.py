"""Scale out on the CPU: ProMoT on 2 processes (DDP over gloo, DeepSpeed ZeRO-2, ZeRO-3) trains like 1 process.

Each run is docs/scale-out.md's command (`accelerate launch --config_file configs/accelerate/... -m pipeline run`) on
the tiny test model, with the same global batch; the per-step losses, saved weights and scores must agree.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.dist, pytest.mark.slow]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]
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
    # Same command, through a probe that logs which rank writes which file.
    "zero3": [
        *ACCELERATE,
        "--config_file",
        "configs/accelerate/deepspeed_zero3.yaml",
        "--num_processes",
        "2",
        "tests/dist_probe.py",
    ],
}
TOLERANCE = dict(rel=1e-4, abs=1e-4)  # float sums in another order, nothing more


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    return ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def runs(tiny_base, tmp_path_factory):
    """Run folders of the same ProMoT run under each launcher (each run takes seconds)."""
    root = tmp_path_factory.mktemp("dist")
    return {name: launch(name, tiny_base, root) for name in LAUNCHERS}


def launch(name: str, base: Path, root: Path) -> Path:
    run_dir = root / name
    sets = [f"model.path={base}", "seeds=[0]", "evaluation.limit=4", "target.train_rows=64", "target.test_rows=4"]
    for stage in ("0", "1"):  # batch_size is global: 8 per step on 1 process and on 2
        sets += [
            f"recipes.promot.{stage}.{key}" for key in ("steps=4", "batch_size=8", "logging_steps=1", "save_steps=2")
        ]
    command = [*LAUNCHERS[name], "run", "recipes/promot.yaml", "--only", "promot", "--run-dir", str(run_dir)]
    if name != "one":
        command[len(ACCELERATE) : len(ACCELERATE)] = ["--main_process_port", str(free_port())]
    for item in sets:
        command += ["--set", item]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TORCH_EXTENSIONS_DIR": str(root / f"{name}-extensions"),
        "FORGETLESS_WRITE_LOG": str(root / f"{name}-writes.jsonl"),
    }
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert done.stdout.count("done: ") == 1, done.stdout  # printed by rank 0 alone
    return run_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def losses(run_dir: Path, stage: str) -> list[float]:
    return json.loads((run_dir / "seed0" / "promot" / stage / "DONE.json").read_text())["metrics"]["loss_history"]


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.parametrize("stage", ["prompt_tune", "finetune"])
def test_two_ddp_processes_train_like_one(runs, stage):
    one, ddp = losses(runs["one"], stage), losses(runs["ddp"], stage)
    assert len(one) == 4 and ddp == pytest.approx(one, **TOLERANCE)


@pytest.mark.parametrize("zero", ["zero2", "zero3"])
@pytest.mark.parametrize("stage", ["prompt_tune", "finetune"])
def test_deepspeed_trains_like_ddp(runs, zero, stage):
    assert losses(runs[zero], stage) == pytest.approx(losses(runs["ddp"], stage), **TOLERANCE)


@pytest.mark.parametrize("name", ["ddp", "zero2", "zero3"])
def test_same_models_and_scores_as_one_process(runs, tiny_base, name):
    final = Path("seed0") / "promot" / "finetune"
    for file in (final / "model" / "model.safetensors", final / "adapter" / "adapter_model.safetensors"):
        mine, reference = weights(runs[name] / file), weights(runs["one"] / file)
        assert mine.keys() == reference.keys()
        assert all(mine[k].shape == reference[k].shape for k in mine)  # gathered, not ZeRO-3 shards
        assert all((mine[k] - reference[k]).abs().max() < 1e-3 for k in mine)
    assert (
        weights(runs[name] / final / "model" / "model.safetensors").keys()
        == weights(tiny_base / "model.safetensors").keys()
    )  # a plain save_pretrained folder of the base model
    assert (runs[name] / "results.csv").read_text() == (runs["one"] / "results.csv").read_text()


def test_zero3_model_and_prompt_load_in_plain_transformers(runs):
    """No DeepSpeed at load time: the ZeRO-3 run's folder and adapter answer like the 1-process run's."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def logits(run_dir):
        final = run_dir / "seed0" / "promot" / "finetune"
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(final / "model"), final / "adapter")
        batch = AutoTokenizer.from_pretrained(final / "model")(["a b c ->"], return_tensors="pt")
        with torch.no_grad():
            return model(**batch).logits

    assert torch.allclose(logits(runs["zero3"]), logits(runs["one"]), atol=1e-3)


def test_rank_0_alone_writes_each_artifact_once(runs):
    run_dir = runs["zero3"]
    writes = [json.loads(line) for line in (run_dir.parent / "zero3-writes.jsonl").read_text().splitlines()]
    ours = [w for w in writes if "/trainer/" not in w["path"]]  # DeepSpeed checkpoints: one shard per rank
    assert ours and {w["rank"] for w in ours} == {0}
    paths = pd.Series([Path(w["path"]).relative_to(run_dir).as_posix() for w in ours])
    once = paths[~paths.isin(["manifest.json"])]  # the manifest is rewritten after every change
    assert once.is_unique, once[once.duplicated()].tolist()
    for name in [
        "results.csv",
        "report.md",
        "seed0/promot/finetune/DONE.json",
        "seed0/promot/finetune/model/model.safetensors",
        "seed0/promot/prompt_tune/adapter/adapter_model.safetensors",
    ]:
        assert name in set(once), name
    assert {w["rank"] for w in writes if "/trainer/" in w["path"]} <= {0, 1}


@pytest.mark.parametrize("name", ["ddp", "zero2", "zero3"])
def test_no_partial_files_no_lock_no_compiled_ops(runs, name):
    run_dir = runs[name]
    leftovers = [p for p in run_dir.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []
    assert not (run_dir / "run.lock").exists() and not list(run_dir.rglob("trainer"))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "done" and {s["status"] for s in manifest["stages"].values()} == {"done"}
    assert not (run_dir.parent / f"{name}-extensions").exists()  # DeepSpeed compiled nothing
