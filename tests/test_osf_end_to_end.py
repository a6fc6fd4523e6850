"""End to end: orthogonal subspace fine-tuning (stages/osf_tune.py, PEFT's OSFConfig) through `pipeline run`."""

import json

import pytest
import torch
from safetensors.torch import load_file

from pipeline.cli import main

RECIPE = """name: osf
seeds: [0]
model: {path: BASE}
target: {name: letter_rule, train: embedded:letter_rule, train_rows: 32, test_rows: 4}
evaluation: {general_suite: embedded_general, limit: 2, batch_size: 8}
max_length: 48
recipes:
  sft:
    - {kind: finetune, steps: 4, batch_size: 8, lr: 3.0e-3}
  osf:
    - {kind: osf_tune, steps: 4, batch_size: 8, lr: 3.0e-3, rank_ratio: 0.75}
"""
WEIGHT = "model.layers.0.mlp.down_proj.weight"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    return ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, base):
    folder = tmp_path_factory.mktemp("osf")
    (folder / "recipe.yaml").write_text(RECIPE.replace("BASE", str(base)))
    assert main(["validate", str(folder / "recipe.yaml")]) == 0
    assert main(["run", str(folder / "recipe.yaml"), "--run-dir", str(folder / "run")]) == 0
    return folder / "run"


def share_in_top_subspace(before, after, ratio):
    """How much of the update lies in the top `ratio` of the original weight's singular directions (both sides)."""
    u, _, vh = torch.linalg.svd(before.float(), full_matrices=False)
    k = int(min(before.shape) * ratio)
    delta = after.float() - before.float()
    return float((u[:, :k].T @ delta @ vh[:k].T).norm() / delta.norm())


def test_the_osf_model_loads_in_plain_transformers_and_trained(finished_run, base):
    from transformers import AutoModelForCausalLM

    folder = finished_run / "seed0/osf/osf_tune/model"
    model = AutoModelForCausalLM.from_pretrained(str(folder))  # no PEFT: the subspaces are merged back
    assert not any("osf" in name for name, _ in model.named_parameters())
    done = json.loads((finished_run / "seed0/osf/osf_tune/DONE.json").read_text())
    total = sum(p.numel() for p in model.parameters())
    assert 0 < done["metrics"]["trainable_parameters"] < total
    assert done["inputs"]["settings"]["rank_ratio"] == 0.75
    rows = json.loads((finished_run / "seed0/osf/osf_tune-eval/DONE.json").read_text())["rows"]
    assert {row["suite"] for row in rows} == {"general", "target"}


def test_osf_leaves_the_top_singular_subspace_almost_untouched(finished_run, base):
    """Plain fine-tuning moves the top singular directions as much as the rest; OSF keeps its update out of them."""
    start = load_file(str(base / "model.safetensors"))[WEIGHT]
    osf = load_file(str(finished_run / "seed0/osf/osf_tune/model/model.safetensors"))[WEIGHT]
    sft = load_file(str(finished_run / "seed0/sft/finetune/model/model.safetensors"))[WEIGHT]
    osf_share, sft_share = share_in_top_subspace(start, osf, 0.75), share_in_top_subspace(start, sft, 0.75)
    assert osf_share < 0.5 * sft_share, (osf_share, sft_share)


def test_validate_refuses_a_rank_ratio_outside_0_1(tmp_path, base, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.replace("BASE", str(base)).replace("rank_ratio: 0.75", "rank_ratio: 1.5"))
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert "osf_tune.rank_ratio: must be in (0, 1), got 1.5" in err and len(err.splitlines()) == 1
