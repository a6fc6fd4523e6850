"""Two CPU processes (DDP over gloo) stopping together: a signal to one rank, a retrain job, a user error.

Each run is `accelerate launch --config_file configs/accelerate/cpu_two_processes.yaml -m pipeline ...` on the
tiny test model. accelerate's launcher (torch elastic) exits 1 whenever a rank exits non-zero, whatever that
rank's code: the ranks' own exit codes are in its failure table ("exitcode  : 143").
"""

import json
import os
import signal

import pytest

from tests.pipeline.test_retrain import RECIPE, write_jsonl
from tests.processes import finish, start, wait_for
from tests.test_distributed import ACCELERATE, free_port

pytestmark = [pytest.mark.dist, pytest.mark.slow]
LAUNCH = [*ACCELERATE, "--config_file", "configs/accelerate/cpu_two_processes.yaml"]
PAUSE_STEP = 5  # where tests/preemption_probe.py holds one rank of the finetune stage (12 steps, saved every 3)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    return ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))


def pipeline(*args, module=("-m", "pipeline")) -> list[str]:
    """The launch command for `pipeline ARGS` on 2 processes, on a port of its own."""
    return [*LAUNCH, "--main_process_port", str(free_port()), *module, *args]


def run_args(base, run_dir) -> list[str]:
    sets = [
        f"model.path={base}",
        "seeds=[0]",
        "evaluation.limit=4",
        "target.train_rows=64",
        "target.test_rows=4",
        "recipes.promot.0.steps=4",
        "recipes.promot.1.steps=12",
    ]
    for stage in ("0", "1"):  # batch_size is global: 4 per process
        sets += [f"recipes.promot.{stage}.{key}" for key in ("batch_size=8", "save_steps=3")]
    args = ["run", "recipes/promot.yaml", "--only", "promot", "--run-dir", str(run_dir)]
    return args + [a for item in sets for a in ("--set", item)]


@pytest.fixture(scope="module")
def reference(tiny_base, tmp_path_factory):
    """results.csv of the same 2-process run, never interrupted."""
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    proc = start(pipeline(*run_args(tiny_base, run_dir)))
    out = finish(proc)
    assert proc.returncode == 0, out
    return (run_dir / "results.csv").read_text()


def test_sigterm_to_one_rank_stops_both_at_one_step_then_resumes(tiny_base, reference, tmp_path):
    run_dir, paused = tmp_path / "run", tmp_path / "paused.pid"
    proc = start(
        pipeline(*run_args(tiny_base, run_dir), module=["tests/preemption_probe.py"]),
        FORGETLESS_PAUSE_STAGE="finetune",
        FORGETLESS_PAUSE_STEP=str(PAUSE_STEP),
        FORGETLESS_PAUSE_RANK="1",
        FORGETLESS_PAUSED=str(paused),
    )
    wait_for(paused, proc)
    os.kill(int(paused.read_text()), signal.SIGTERM)  # rank 1 alone: rank 0 never gets a signal
    out = finish(proc, timeout=120)

    assert proc.returncode == 1, out  # the launcher's code for any failed rank
    assert "exitcode  : 143" in out and "exitcode  : 2 " not in out  # 128 + SIGTERM, not a crash
    assert out.count(f"stopped by SIGTERM at step {PAUSE_STEP};") == 1, out  # said once, by rank 0
    trainer = run_dir / "seed0" / "promot" / "finetune" / "trainer"
    assert sorted(p.name for p in trainer.glob("checkpoint-*")) == ["checkpoint-3", f"checkpoint-{PAUSE_STEP}"]
    # Both ranks saved at the agreed step (rank 1 its RNG state), complete: rank 0 wrote the trainer state last.
    saved = {p.name for p in (trainer / f"checkpoint-{PAUSE_STEP}").iterdir()}
    assert {"model.safetensors", "optimizer.pt", "rng_state_0.pth", "rng_state_1.pth", "trainer_state.json"} <= saved
    assert not (run_dir / "run.lock").exists()
    assert not (run_dir / "seed0" / "promot" / "finetune" / "DONE.json").exists()

    rerun = start(pipeline(*run_args(tiny_base, run_dir)))  # the same command, without the probe
    out = finish(rerun)
    assert rerun.returncode == 0, out
    assert (run_dir / "results.csv").read_text() == reference


def test_retrain_on_two_ranks_gates_and_promotes_once(tiny_base, tmp_path):
    from embedded.tasks import make_examples

    rows = make_examples("letter_rule", "train", 64)
    write_jsonl(tmp_path / "train.jsonl", rows[:32])
    write_jsonl(tmp_path / "test.jsonl", make_examples("letter_rule", "test", 8))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(base=tiny_base, train=tmp_path / "train.jsonl", test=tmp_path / "test.jsonl"))
    registry = tmp_path / "registry"

    def retrain(*overrides):
        args = ["retrain", str(recipe), "--registry", str(registry), *[a for o in overrides for a in ("--set", o)]]
        proc = start(pipeline(*args))
        return proc, finish(proc)

    proc, out = retrain()
    assert proc.returncode == 0, out
    assert out.count("## Retrain: accepted") == 1 and out.count("retrain: fingerprint") == 1, out
    runs = sorted((registry / "runs").iterdir())
    assert len(runs) == 1  # one run folder, not one per rank
    accepted = json.loads((registry / "accepted.json").read_text())
    assert accepted["run_id"] == runs[0].name
    assert len((registry / "registry.jsonl").read_text().splitlines()) == 1

    proc, out = retrain()  # same data: no training, on either rank
    assert proc.returncode == 0, out
    assert out.count("## Retrain: nothing to do") == 1, out
    assert len(list((registry / "runs").iterdir())) == 1

    before = [(registry / name).read_bytes() for name in ("accepted.json", "registry.jsonl")]
    write_jsonl(tmp_path / "train.jsonl", rows[32:])
    proc, out = retrain("gate.min_target=1.0")  # new data, a gate the tiny model cannot pass
    assert proc.returncode == 1, out
    assert out.count("## Retrain: refused") == 1, out
    assert "exitcode  : 1 " in out  # the ranks' own code, under the launcher's
    assert [(registry / name).read_bytes() for name in ("accepted.json", "registry.jsonl")] == before
    assert len(list((registry / "runs").iterdir())) == 2


def test_user_error_is_printed_once(tmp_path):
    proc = start(pipeline("run", "recipes/promot.yaml", "--set", "seeds=oops", "--run-dir", str(tmp_path / "run")))
    out = finish(proc, timeout=120)
    assert proc.returncode == 1, out
    assert out.count("seeds: expected a list") == 1, out  # rank 0's line; rank 1 exits silently
    assert "exitcode  : 2 " in out
    assert not (tmp_path / "run").exists()
