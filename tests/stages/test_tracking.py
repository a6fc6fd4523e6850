"""Trackers through `pipeline run`, offline: TensorBoard event files and MLflow's local file store, one run per
stage named after its stage id, training losses from the Trainer and evaluation scores from us."""

import struct

import pytest

from pipeline.cli import main

RECIPE = """name: demo
target: {{}}
model: {{path: {model}}}
evaluation: {{limit: 2, target_limit: 4}}
report_to: {report_to}
recipes:
  promot:
    - {{kind: prompt_tune, steps: 2, batch_size: 4, logging_steps: 1}}
    - {{kind: finetune, steps: 2, batch_size: 4, logging_steps: 1}}
"""
STAGES = {
    "base/evaluate",
    "seed0/promot/prompt_tune",
    "seed0/promot/prompt_tune-eval",
    "seed0/promot/finetune",
    "seed0/promot/finetune-eval",
}


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    return ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))


def recipe(folder, model, report_to):
    path = folder / "recipe.yaml"
    path.write_text(RECIPE.format(model=model, report_to=report_to))
    return path


def scalars(folder) -> dict[str, list[float]]:
    """Every scalar in a folder's TensorBoard event files (TFRecord framing, Event protos)."""
    from tensorboardX.proto.event_pb2 import Event

    found: dict[str, list[float]] = {}
    for path in folder.rglob("events.out.tfevents.*"):
        data = path.read_bytes()
        while data:
            (length,) = struct.unpack("<Q", data[:8])
            event = Event.FromString(data[12 : 12 + length])
            data = data[12 + length + 4 :]
            for value in event.summary.value:
                found.setdefault(value.tag, []).append(value.simple_value)
    return found


@pytest.fixture(scope="module")
def tracked_run(base_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tracked")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
            patch.delenv(name, raising=False)
        run_dir = folder / "run"
        assert main(["run", str(recipe(folder, base_model, "[tensorboard, mlflow]")), "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_tensorboard_has_one_run_per_stage_with_losses_and_scores(tracked_run):
    root = tracked_run / "tensorboard"
    runs = {str(path.parent.relative_to(root)) for path in root.rglob("events.out.tfevents.*")}
    assert runs == STAGES
    train = scalars(tracked_run / "tensorboard" / "seed0/promot/finetune")
    assert len(train["train/loss"]) == 2  # logging_steps 1, 2 steps
    scores = scalars(tracked_run / "tensorboard" / "seed0/promot/finetune-eval")
    assert any(tag.startswith("eval/general/embedded_") for tag in scores)
    assert "eval/target/embedded_letter_rule/exact_match" in scores


def test_mlflow_file_store_has_the_same_runs(tracked_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient((tracked_run / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("demo")
    runs = {run.info.run_name: run.data.metrics for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == STAGES
    assert "train_loss" in runs["seed0/promot/finetune"] or "loss" in runs["seed0/promot/finetune"]
    assert "target/embedded_letter_rule/exact_match" in runs["seed0/promot/finetune-eval"]


def test_no_trackers_by_default_and_bad_names_are_one_line(base_model, tmp_path, capsys):
    path = recipe(tmp_path, base_model, "[none]")
    assert main(["run", str(path), "--run-dir", str(tmp_path / "run")]) == 0
    assert not (tmp_path / "run" / "tensorboard").exists() and not (tmp_path / "run" / "mlruns").exists()
    for value, message in (
        ("[tensorbored]", "report_to: unknown tracker 'tensorbored'"),
        ("[none, mlflow]", "report_to: 'none' with other trackers"),
        ("[wandb]", "report_to: wandb is not installed here (pip install wandb)"),
    ):
        assert main(["validate", str(recipe(tmp_path, base_model, value))]) == 2
        err = capsys.readouterr().err
        assert message in err and len([line for line in err.splitlines() if line.startswith("error: ")]) == 1
