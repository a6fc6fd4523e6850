"""End to end: the losses of stages/losses.py (dft, eaft, asft, a KL term) through `pipeline validate` and `run`."""

import json

import pytest
import torch
from safetensors.torch import load_file

from pipeline.cli import main

RECIPE = """name: losses
seeds: [0]
model: {path: BASE}
target: {name: letter_rule, train: embedded:letter_rule, train_rows: 32, test_rows: 4}
evaluation: {general_suite: embedded_general, limit: 2, batch_size: 8}
max_length: 48
x-finetune: &finetune {kind: finetune, steps: 4, batch_size: 8, lr: 3.0e-3}
recipes:
  sft:
    - *finetune
  dft:
    - {<<: *finetune, loss: dft}
  eaft:
    - {<<: *finetune, loss: eaft, loss_alpha: 0.5}
  asft:
    - {<<: *finetune, loss: asft, loss_alpha: 1000.0}
  kl_base:
    - {<<: *finetune, kl_to: base, kl_weight: 1000.0}
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    return ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, base):
    folder = tmp_path_factory.mktemp("losses")
    (folder / "recipe.yaml").write_text(RECIPE.replace("BASE", str(base)))
    run_dir = folder / "run"
    assert main(["validate", str(folder / "recipe.yaml")]) == 0
    assert main(["run", str(folder / "recipe.yaml"), "--run-dir", str(run_dir)]) == 0
    return run_dir


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def distance(a, b):
    return sum(float((a[k].float() - b[k].float()).norm() ** 2) for k in a) ** 0.5


def test_every_loss_trains_and_is_recorded_in_its_stage_key(finished_run):
    done = {
        name: json.loads((finished_run / f"seed0/{name}/finetune/DONE.json").read_text())
        for name in ("sft", "dft", "eaft", "asft", "kl_base")
    }
    assert "loss" not in done["sft"]["inputs"]["settings"]  # at its default: left out, so old keys stay
    assert done["dft"]["inputs"]["settings"]["loss"] == "dft"
    assert done["eaft"]["inputs"]["settings"]["loss_alpha"] == 0.5
    assert done["kl_base"]["inputs"]["settings"]["kl_to"] == "base"
    assert len({d["key"] for d in done.values()}) == 5
    for d in done.values():
        assert all(torch.isfinite(torch.tensor(x)) for x in d["metrics"]["loss_history"])


def test_the_losses_train_different_weights(finished_run):
    trained = {name: weights(finished_run / f"seed0/{name}/finetune/model") for name in ("sft", "dft", "eaft")}
    # Adam divides out a constant scale, so only the tokens' relative weights move the weights: small, but never 0
    # (a loss that fell back to cross-entropy would train bit-identical weights: the runs are deterministic)
    assert distance(trained["sft"], trained["dft"]) > 1e-5
    assert distance(trained["sft"], trained["eaft"]) > 1e-5


def test_a_heavy_kl_anchor_keeps_the_model_near_its_reference(finished_run, base):
    """At a KL weight of 1000 the anchor pulls the weights back toward its reference. Adam moves every weight by about
    lr a step whatever the loss's scale, and the first step's KL gradient is 0 (the model is its reference), so over
    4 steps the anchored stages move clearly less than plain SFT (measured 0.57 and 0.74 of its distance), not 0."""
    start = weights(base)
    moved = {
        name: distance(weights(finished_run / f"seed0/{name}/finetune/model"), start)
        for name in ("sft", "asft", "kl_base")
    }
    assert moved["asft"] < 0.85 * moved["sft"], moved
    assert moved["kl_base"] < 0.85 * moved["sft"], moved


@pytest.mark.parametrize(
    "stage, message",
    [
        ("{kind: finetune, steps: 2, loss: dft, loss_alpha: 0.5}", "finetune.loss_alpha: only eaft and asft take it"),
        ("{kind: finetune, steps: 2, kl_weight: 0.5}", "finetune.kl_weight: set kl_to"),
        ("{kind: finetune, steps: 2, kl_to: input}", "finetune.kl_weight: must be > 0 with kl_to"),
        ("{kind: finetune, steps: 2, loss: asft, kl_weight: 0.5}", "finetune.kl_weight: asft weighs its own KL term"),
        ("{kind: finetune, steps: 2, loss: focal}", "loss"),
        (
            "{kind: prompt_tune, steps: 2, loss: asft}",
            "prompt_tune.kl_to: a KL term needs the reference model's logits",
        ),
    ],
)
def test_validate_refuses_what_cannot_work_in_one_line(tmp_path, base, capsys, stage, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.split("recipes:")[0].replace("BASE", str(base)) + f"recipes:\n  sft:\n    - {stage}\n")
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_a_kl_term_under_zero3_is_refused(tmp_path, base, capsys):
    deepspeed = tmp_path / "ds.json"
    deepspeed.write_text(
        json.dumps(
            {
                "zero_optimization": {"stage": 3},
                "train_micro_batch_size_per_gpu": "auto",
                "gradient_accumulation_steps": "auto",
            }
        )
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        RECIPE.split("recipes:")[0].replace("BASE", str(base))
        + f"deepspeed: {deepspeed}\n"
        + "recipes:\n  sft:\n    - {kind: finetune, steps: 2, loss: asft}\n"
    )
    assert main(["validate", str(recipe), "--world-size", "2"]) == 2
    err = capsys.readouterr().err
    assert "ZeRO-3 does not give" in err, err
