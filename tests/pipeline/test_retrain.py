"""`pipeline retrain` end to end on the tiny model: accept, nothing to do, new data, refusal, kill -9.

The tests share one registry and run in file order, as a scheduled job would over several days.
Scores of the tiny base are near 0, so the gate is loose here except where a test makes it refuse:
this file tests the registry and the gate's wiring, not model quality (see test_gate.py for the logic).
"""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embedded.tasks import make_examples
from pipeline.cli import main
from pipeline.retraining.registry import ModelRegistry

ROOT = Path(__file__).resolve().parents[2]
RECIPE = """\
name: retrain
seeds: [0]
model: {{path: {base}}}
target: {{name: letter_rule, train: {train}, test: {test}, labels: ["True", "False"], test_rows: 8}}
evaluation: {{limit: 4, batch_size: 8}}

recipes:
  promot:
    - {{kind: prompt_tune, steps: 4, batch_size: 8, lr: 0.3, num_virtual_tokens: 4}}
    - {{kind: finetune, steps: 4, batch_size: 8, lr: 1.0e-3, prompt_from: prompt_tune}}
gate: {{recipe: promot, min_target: 0.0, max_general_drop: 1.0, max_regression: 1.0}}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A recipe file on a local training file, and a registry folder; `write(part)` swaps the data in."""
    from embedded.model import TEST_SPEC, ensure_base_model

    root = tmp_path_factory.mktemp("retrain")
    base = ensure_base_model(TEST_SPEC, cache_root=root / "cache")
    rows = make_examples("letter_rule", "train", 5 * 32)
    write_jsonl(root / "test.jsonl", make_examples("letter_rule", "test", 8))

    def write(part: int):  # "new data": the next 32 rows of the task
        write_jsonl(root / "train.jsonl", rows[32 * part : 32 * (part + 1)])

    write(0)
    recipe = root / "recipe.yaml"
    recipe.write_text(RECIPE.format(base=base, train=root / "train.jsonl", test=root / "test.jsonl"))
    return {"recipe": recipe, "registry": root / "registry", "write": write}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def retrain(setup, *overrides):
    args = ["retrain", str(setup["recipe"]), "--registry", str(setup["registry"])]
    return main(args + [a for item in overrides for a in ("--set", item)])


def registry_files(setup):
    """The pointer and history as bytes, after checking both parse."""
    registry = ModelRegistry(setup["registry"])
    registry.accepted(), registry.history()
    return [(setup["registry"] / name).read_bytes() for name in ("accepted.json", "registry.jsonl")]


def runs(setup):
    return sorted(p.name for p in (setup["registry"] / "runs").iterdir())


def test_first_retrain_is_accepted(setup, capsys):
    assert retrain(setup) == 0
    assert "Retrain: accepted" in capsys.readouterr().out
    registry = ModelRegistry(setup["registry"])
    accepted = registry.accepted()
    assert [e["run_id"] for e in registry.history()] == [accepted["run_id"]] == runs(setup)
    assert Path(accepted["model"], "config.json").is_file()  # the promoted model and its soft prompt
    assert Path(accepted["adapter"], "adapter_config.json").is_file()
    assert set(accepted["scores"]) >= {"general", "target", "base_general", "general_drop"}
    assert accepted["data"]["sha256"] and accepted["code_version"] and accepted["fingerprint"]


def test_unchanged_data_trains_nothing(setup, capsys, monkeypatch):
    import pipeline.engine.orchestrator

    before = runs(setup)
    monkeypatch.setattr(pipeline.engine.orchestrator, "run_recipe", lambda *a, **k: pytest.fail("trained again"))
    assert retrain(setup) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert runs(setup) == before


def test_new_data_is_trained_and_accepted(setup):
    old = ModelRegistry(setup["registry"]).accepted()["run_id"]
    setup["write"](1)
    assert retrain(setup) == 0
    registry = ModelRegistry(setup["registry"])
    assert registry.accepted()["run_id"] not in (old, None)
    assert [e["run_id"] for e in registry.history()] == runs(setup)


def test_failing_gate_is_refused_and_pointer_stays(setup, capsys):
    before = registry_files(setup)
    setup["write"](2)
    assert retrain(setup, "gate.min_target=1.0") == 1  # a target score the tiny model cannot reach
    out = capsys.readouterr().out
    assert "Retrain: refused" in out and "| min_target (target) |" in out and "**FAIL**" in out
    assert registry_files(setup) == before
    refused = setup["registry"] / "runs" / runs(setup)[-1]
    assert json.loads((refused / "gate.json").read_text())["result"] == "fail"
    # The same run, judged by `pipeline gate` against the registry, fails the same way.
    assert main(["gate", str(refused), "--against", str(setup["registry"]), "--set", "min_target=1.0"]) == 1


def test_lock_file_naming_a_live_unrelated_process_does_not_block(setup, capsys, monkeypatch):
    # After a container restart PIDs start low again: a killed job's run.lock can name pid 1, alive and unrelated.
    import stages

    for module in stages.STAGES.values():
        monkeypatch.setattr(module, "run", lambda config, ctx: pytest.fail(f"trained again: {ctx.stage_dir}"))
    refused = setup["registry"] / "runs" / runs(setup)[-1]
    (refused / "run.lock").write_text("1")
    before = registry_files(setup)
    assert retrain(setup, "gate.min_target=1.0") == 1  # the same data: its run folder is judged again, not locked
    assert "Retrain: refused" in capsys.readouterr().out
    assert not (refused / "run.lock").exists() and registry_files(setup) == before


def test_new_thresholds_rejudge_the_refused_run_without_training(setup, monkeypatch):
    import stages

    refused = runs(setup)[-1]
    for module in stages.STAGES.values():
        monkeypatch.setattr(module, "run", lambda config, ctx: pytest.fail(f"trained again: {ctx.stage_dir}"))
    assert retrain(setup) == 0  # the recipe's own, looser gate: same data, so the same run folder
    assert ModelRegistry(setup["registry"]).accepted()["run_id"] == refused and runs(setup)[-1] == refused


def test_kill_during_retrain_leaves_registry_valid(setup):
    before, n_runs = registry_files(setup), len(runs(setup))
    setup["write"](3)
    command = [sys.executable, "-m", "pipeline", "retrain", str(setup["recipe"]), "--registry", str(setup["registry"])]
    job = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = wait_for_stage(setup, n_runs, job)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert not (started / "gate.json").exists()  # killed mid-training, before any gate or promotion
    assert registry_files(setup) == before
    # The next scheduled job resumes the killed run folder and promotes it.
    assert retrain(setup) == 0
    assert ModelRegistry(setup["registry"]).accepted()["run_id"] == started.name
    assert len(runs(setup)) == n_runs + 1


def wait_for_stage(setup, n_runs, job, timeout=120):
    """The new run folder, once its first training stage is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and job.poll() is None:
        folders = runs(setup)
        if len(folders) > n_runs:
            folder = setup["registry"] / "runs" / folders[-1]
            try:
                stages = json.loads((folder / "manifest.json").read_text())["stages"]
            except (OSError, ValueError, KeyError):
                stages = {}
            if stages.get("seed0/promot/prompt_tune", {}).get("status") == "running":
                return folder
        time.sleep(0.05)
    pytest.fail(f"retrain job never reached training (exit code {job.poll()})")


def _promote_many(root, worker, count):
    registry = ModelRegistry(root)
    for i in range(count):
        with registry.locked():
            registry.promote({"run_id": f"w{worker}-{i}", "scores": {}})


def test_concurrent_promotions_lose_nothing(tmp_path):
    # Without the lock, two jobs rewriting registry.jsonl at once would drop each other's lines.
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_promote_many, args=(tmp_path, w, 15)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert all(w.exitcode == 0 for w in workers)
    history = ModelRegistry(tmp_path).history()
    assert len(history) == 60 and len({e["run_id"] for e in history}) == 60


@pytest.mark.skipif(os.name != "posix", reason="fcntl locks")
def test_lock_is_released_by_a_killed_process(tmp_path):
    code = (
        "import time, sys; from pipeline.retraining.registry import ModelRegistry\n"
        "with ModelRegistry(sys.argv[1]).locked():\n    print('locked', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    with ModelRegistry(tmp_path).locked():  # would hang if a dead job's lock outlived it
        pass


def test_fingerprint_follows_data_and_recipe_not_thresholds(tmp_path):
    from pipeline.recipe.config import load_recipe
    from pipeline.retraining.fingerprint import fingerprint

    rows = make_examples("letter_rule", "train", 8)
    write_jsonl(tmp_path / "train.jsonl", rows[:4])
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.format(base="embedded", train=tmp_path / "train.jsonl", test="null"))

    def digest(*overrides):
        return fingerprint(load_recipe(path, list(overrides)), "promot")["fingerprint"]

    first = digest()
    assert digest("gate.max_regression=0.5", "runs_root=elsewhere") == first
    # the report's checks re-judge the same model: editing them trains nothing again
    check = "[{name: t, recipe: promot, measure: target, min: 0.5}]"
    assert digest(f"checks={check}", "report.checks_title=bar") == first
    assert digest("recipes.promot.1.steps=5") != first
    assert digest("target.train=embedded:letter_rule", "target.train_rows=8") != digest(
        "target.train=embedded:letter_rule", "target.train_rows=9"
    )
    write_jsonl(tmp_path / "train.jsonl", rows[4:])
    assert digest() != first


def test_atomic_writes_follow_the_umask(tmp_path):
    import os
    import stat

    from core.atomic import write_json

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640


def test_export_copies_the_artifacts_whole_and_atomically(tmp_path, monkeypatch):
    """--export writes each artifact through the atomic writer (temp file, fsync, rename), never a plain copy."""
    import core.atomic
    from pipeline.retraining.retrain import EXPORTED, RetrainOutcome, export

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for i, name in enumerate(EXPORTED):
        (run_dir / name).write_bytes(bytes(range(256)) * (i + 1))
    written, atomic = [], core.atomic.write_bytes
    monkeypatch.setattr(core.atomic, "write_bytes", lambda path, data: written.append(path.name) or atomic(path, data))
    out = tmp_path / "out"
    export(RetrainOutcome("nothing to do", run_dir, [], "r1"), out)
    assert set(EXPORTED) <= set(written)
    assert all((out / name).read_bytes() == (run_dir / name).read_bytes() for name in EXPORTED)
    assert sorted(p.name for p in out.iterdir()) == sorted([*EXPORTED, "summary.md"])  # no temp file left
