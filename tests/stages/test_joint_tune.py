"""Joint tuning (the ProMoT paper's ablation): prompt and weights train together, each at its own learning rate."""

import shutil
from pathlib import Path

import pytest
import torch

from stages import joint_tune, prompt_tune
from stages.handoff import Adapter, Makes, Scope
from tests.stages.test_finetune import ctx, data, load_weights, tiny_model_dir  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]


def run_joint(stage_dir, model_dir, data, **settings):
    """A joint stage of 3 steps on the tiny model; returns (result, weights, prompt)."""
    config = joint_tune.Config(**{"steps": 3, "batch_size": 8, "num_virtual_tokens": 4, **settings})
    result = joint_tune.run(config, ctx(stage_dir, model_dir, data))
    return (
        result,
        load_weights(result.model_dir / "model.safetensors"),
        load_weights(result.adapter_dir / "adapter_model.safetensors")["prompt_embeddings"],
    )


@pytest.fixture(scope="module")
def start(tmp_path_factory, tiny_model_dir, data):
    """The base weights, and the prompt a joint stage starts from: prompt_tune's at 0 steps (same seed, same init)."""
    untrained = prompt_tune.run(
        prompt_tune.Config(steps=0, num_virtual_tokens=4),
        ctx(tmp_path_factory.mktemp("untrained"), tiny_model_dir, data),
    )
    prompt = load_weights(untrained.adapter_dir / "adapter_model.safetensors")["prompt_embeddings"]
    return load_weights(tiny_model_dir / "model.safetensors"), prompt


def largest_change(old: dict, new: dict) -> float:
    assert old.keys() == new.keys()
    return max((new[k] - old[k]).abs().max().item() for k in old)


def test_prompt_and_every_weight_change_and_hand_on_a_target_prompt(tmp_path, tiny_model_dir, data, start):
    from peft import AutoPeftModelForCausalLM

    base, prompt0 = start
    result, weights, prompt = run_joint(tmp_path / "joint", tiny_model_dir, data, lr=1e-2)
    assert [k for k in base if torch.equal(base[k], weights[k])] == []  # every weight moved
    assert not torch.equal(prompt, prompt0) and prompt.shape == prompt0.shape
    assert result.model_dir == tmp_path / "joint" / "model"
    assert result.adapters == {"joint_tune": Adapter(tmp_path / "joint" / "adapter", "prompt", Scope.TARGET)}
    assert joint_tune.Config().contract().produces == (Makes("joint_tune", "prompt", Scope.TARGET),)
    assert result.metrics["trainable_parameters"] == 4 * 32 + sum(w.numel() for w in base.values())
    assert not (result.model_dir / "training_args.bin").exists() and not (result.model_dir / "adapter").exists()
    # The adapter names the trained model as its base: plain PEFT puts the trained prompt on the trained weights.
    loaded = AutoPeftModelForCausalLM.from_pretrained(result.adapter_dir)
    assert torch.equal(loaded.prompt_encoder.default.embedding.weight, prompt)
    assert all(torch.equal(loaded.get_base_model().state_dict()[k], weights[k]) for k in weights)


def test_the_prompt_moves_at_prompt_lr_and_the_weights_at_lr(tmp_path, tiny_model_dir, data, start):
    base, prompt0 = start
    _, weights, prompt = run_joint(tmp_path / "tiny_lr", tiny_model_dir, data, lr=1e-8, prompt_lr=0.3)
    assert largest_change(base, weights) < 1e-6  # AdamW moves a weight by about lr a step: 3 steps of 1e-8
    assert (prompt - prompt0).abs().max().item() > 0.1  # 0.3 a step
    _, weights, prompt = run_joint(tmp_path / "tiny_prompt_lr", tiny_model_dir, data, lr=1e-2, prompt_lr=1e-8)
    assert (prompt - prompt0).abs().max().item() < 1e-6
    assert largest_change(base, weights) > 5e-3


def test_a_checkpoint_holds_weights_and_prompt_and_a_resume_restores_both(tmp_path, tiny_model_dir, data, start):
    config = joint_tune.Config(steps=6, batch_size=8, num_virtual_tokens=4, lr=1e-2, save_steps=3)
    joint_tune.run(config, ctx(tmp_path / "whole", tiny_model_dir, data))
    checkpoint = tmp_path / "whole" / "trainer" / "checkpoint-3"
    saved = load_weights(checkpoint / "adapter" / "adapter_model.safetensors")["prompt_embeddings"]
    assert (checkpoint / "model.safetensors").exists() and not torch.equal(saved, start[1])  # saved, not copied

    # Pretend the run died after step 3: only checkpoint-3 survives, then rerun the stage.
    (tmp_path / "resumed" / "trainer").mkdir(parents=True)
    shutil.copytree(checkpoint, tmp_path / "resumed" / "trainer" / "checkpoint-3")
    resumed = joint_tune.run(config, ctx(tmp_path / "resumed", tiny_model_dir, data))
    assert resumed.metrics["resumed_from"].endswith("checkpoint-3") and resumed.metrics["steps_run"] == 3
    for name in ("model/model.safetensors", "adapter/adapter_model.safetensors"):  # bit-identical on the CPU
        a, b = load_weights(tmp_path / "whole" / name), load_weights(tmp_path / "resumed" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.parametrize(
    "deepspeed, message",
    [
        (
            str(ROOT / "configs" / "deepspeed" / "zero3.json"),
            r"joint_tune: .*zero3.json: zero_optimization.stage: joint_tune does not run under ZeRO-3",
        ),
        (
            {"zero_optimization": {"stage": 2}, "optimizer": {"type": "AdamW"}},
            "joint_tune: the DeepSpeed config: optimizer: would replace",
        ),
    ],
)
def test_unsupported_deepspeed_is_refused_in_one_line_before_loading(tmp_path, data, deepspeed, message):
    from core.errors import UserError

    context = ctx(tmp_path / "joint", tmp_path / "no_model_here", data)
    context.deepspeed = deepspeed
    with pytest.raises(UserError, match=message):
        joint_tune.run(joint_tune.Config(steps=2, batch_size=8), context)


def test_defaults_and_bad_prompt_lr():
    config = joint_tune.Config()
    assert (config.lr, config.prompt_lr, config.kind, config.name) == (1e-3, 0.3, "joint_tune", "joint_tune")
    with pytest.raises(ValueError, match="joint_tune.prompt_lr: must be > 0"):
        joint_tune.Config(prompt_lr=0)
    with pytest.raises(ValueError, match="joint_tune.steps: must be >= 1"):
        joint_tune.Config(steps=0)
