"""A checkpoint counts only when every file a resume reads is whole; a cut one is removed, and the fallback said."""

import json
import logging

import pytest
import torch
from safetensors.torch import save_file

from stages.saved_files import adapter_problem, file_problem, model_problem
from stages.training import last_complete_checkpoint


def checkpoint(folder, step: int):
    """A checkpoint as the Trainer writes one: weights, optimizer, scheduler, RNG, then its state."""
    folder.mkdir(parents=True)
    save_file({"w": torch.zeros(4, 4)}, folder / "model.safetensors")
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        torch.save({"step": step, "state": torch.ones(8)}, folder / name)
    (folder / "config.json").write_text("{}")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return folder


def cut(path):
    """Keep the first half of a file, as a writer killed halfway through it leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "name", ["trainer_state.json", "model.safetensors", "optimizer.pt", "rng_state.pth", "config.json"]
)
def test_a_cut_file_sends_the_resume_to_the_checkpoint_before_and_says_so(tmp_path, caplog, name):
    checkpoint(tmp_path / "checkpoint-2", 2)
    checkpoint(tmp_path / "checkpoint-4", 4)
    cut(tmp_path / "checkpoint-4" / name)
    with caplog.at_level(logging.WARNING):
        assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert len(caplog.records) == 1
    line = caplog.records[0].getMessage()
    assert f"incomplete checkpoint checkpoint-4 ({name}: " in line
    assert line.endswith("resuming from checkpoint-2 instead")
    assert not (tmp_path / "checkpoint-4").exists()  # the Trainer saves it again when it gets there


def test_missing_state_or_weights_or_a_wrong_step_is_incomplete(tmp_path):
    checkpoint(tmp_path / "checkpoint-1", 1)
    (checkpoint(tmp_path / "checkpoint-2", 2) / "trainer_state.json").unlink()  # killed before the state
    (checkpoint(tmp_path / "checkpoint-3", 3) / "model.safetensors").unlink()
    (checkpoint(tmp_path / "checkpoint-4", 4) / "trainer_state.json").write_text('{"global_step": 3}')
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1"]


def test_no_complete_checkpoint_means_from_the_start(tmp_path, caplog):
    cut(checkpoint(tmp_path / "checkpoint-1", 1) / "trainer_state.json")
    with caplog.at_level(logging.WARNING):
        assert last_complete_checkpoint(tmp_path) is None
    assert caplog.records[0].getMessage().endswith("resuming from the start instead")
    assert last_complete_checkpoint(tmp_path / "nothing") is None


def test_a_whole_checkpoint_is_taken_silently(tmp_path, caplog):
    checkpoint(tmp_path / "checkpoint-1", 1)
    checkpoint(tmp_path / "checkpoint-10", 10)  # by step, not by name
    with caplog.at_level(logging.WARNING):
        assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert caplog.records == []


def test_saved_folders_are_checked_by_their_headers(tmp_path):
    model = checkpoint(tmp_path / "model", 0)
    assert model_problem(model) is None and file_problem(model / "README.md") is None
    (model / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes() + b"x")
    assert "header describes" in model_problem(model)
    assert model_problem(tmp_path / "missing").endswith("not found")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    assert adapter_problem(adapter) == "adapter_model.safetensors: missing"
