"""LoRA in stage 1 (the paper's other ablation): only the adapter trains; stage 2 trains every weight with it frozen."""

import shutil

import pytest
import torch

from stages import finetune, lora_tune
from stages.context import StageContext
from stages.handoff import Adapter, Handoff, Scope
from tests.stages.test_finetune import data, load_weights, tiny_model_dir  # noqa: F401 (fixtures)


def ctx(stage_dir, model_dir, data, adapters=None):
    """A context handing over `model_dir` (the base too) and adapters by name ({name: Adapter})."""
    return StageContext(
        stage_dir=stage_dir,
        handoff=Handoff(model_dir, model_dir, adapters or {}),
        seed=0,
        max_length=48,
        train_data=data,
    )


def lora_weights(adapter_dir):
    return load_weights(adapter_dir / "adapter_model.safetensors")


@pytest.mark.parametrize("scope", ["target", "every_suite"])
def test_lora_tune_trains_the_adapter_only(tmp_path, tiny_model_dir, data, scope):
    config = lora_tune.Config(steps=4, batch_size=8, r=4, scope=scope, lr=1e-2)
    assert config.contract().produces[0].scope == Scope(scope)
    result = lora_tune.run(config, ctx(tmp_path / "lora", tiny_model_dir, data))
    assert result.model_dir == tiny_model_dir  # weights untouched: hand the same checkpoint on
    assert result.adapters == {"lora_tune": Adapter(tmp_path / "lora" / "adapter", "lora", Scope(scope))}
    weights = lora_weights(result.adapter_dir)
    # q_proj and v_proj of 2 layers, an A (4 x 32) and a B (32 x 4) each; B starts at 0 and has moved
    assert len(weights) == 8 and all("lora_" in name for name in weights)
    assert all(w.abs().sum() > 0 for name, w in weights.items() if "lora_B" in name)
    assert result.metrics["trainable_parameters"] == 8 * 4 * 32


def test_merged_lora_is_a_plain_model_that_differs_from_the_base(tmp_path, tiny_model_dir, data):
    from transformers import AutoModelForCausalLM

    config = lora_tune.Config(steps=4, batch_size=8, r=4, scope="merged", lr=1e-2)
    result = lora_tune.run(config, ctx(tmp_path / "lora", tiny_model_dir, data))
    assert result.model_dir == tmp_path / "lora" / "model"
    assert result.adapters["lora_tune"].scope == Scope.MERGED and result.adapter_dir is None  # recorded, not attached
    merged = AutoModelForCausalLM.from_pretrained(result.model_dir, use_safetensors=True)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, use_safetensors=True)
    assert merged.state_dict().keys() == base.state_dict().keys()  # the base architecture, no LoRA layers
    changed = {n for n, w in merged.state_dict().items() if not torch.equal(w, base.state_dict()[n])}
    assert changed and all(n.endswith(("q_proj.weight", "v_proj.weight")) for n in changed)


def test_bad_lora_settings_name_the_field():
    with pytest.raises(ValueError, match=r"lora_tune\.r: must be >= 1"):
        lora_tune.Config(r=0)
    with pytest.raises(ValueError, match=r"lora_tune\.dropout"):
        lora_tune.Config(dropout=1.0)
    with pytest.raises(ValueError, match=r"lora_tune\.target_modules"):
        lora_tune.Config(target_modules=[])


def test_unknown_target_module_is_one_line_naming_the_field(tmp_path, tiny_model_dir, data):
    from core.errors import UserError

    config = lora_tune.Config(steps=1, batch_size=8, target_modules=["no_such_proj"])
    with pytest.raises(UserError, match=r"lora_tune\.target_modules: .*no_such_proj"):
        lora_tune.run(config, ctx(tmp_path / "lora", tiny_model_dir, data))


@pytest.fixture(scope="module")
def trained_lora(tiny_model_dir, data, tmp_path_factory):
    config = lora_tune.Config(steps=3, batch_size=8, r=4, lr=1e-2)
    return lora_tune.run(config, ctx(tmp_path_factory.mktemp("lora"), tiny_model_dir, data)).adapters["lora_tune"]


def test_frozen_lora_stays_bit_identical_while_every_base_weight_trains(tmp_path, tiny_model_dir, data, trained_lora):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    before = lora_weights(trained_lora.path)

    # No gradient reaches the adapter in a forward/backward of the stage-2 setup; every base weight gets one.
    from stages.model_io import attach_adapter, load_model
    from stages.sft_data import encode_example

    model, tokenizer = load_model(tiny_model_dir)
    wrapped = attach_adapter(model, trained_lora.path)
    finetune.FREEZE["lora"](wrapped)
    row = encode_example(data[0]["prompt"], data[0]["completion"], tokenizer, 48)
    wrapped(**{k: torch.tensor([v]) for k, v in row.items()}).loss.backward()
    lora_params = [p for n, p in wrapped.named_parameters() if "lora_" in n]
    base_params = [p for n, p in wrapped.named_parameters() if "lora_" not in n]
    assert len(lora_params) == 8 and all(p.grad is None and not p.requires_grad for p in lora_params)
    assert all(p.requires_grad for p in base_params) and all(p.grad is not None for p in base_params)

    # A real stage 2: the adapter it hands on is the one it got, bit for bit.
    config = finetune.Config(steps=3, batch_size=8, lr=1e-2, prompt_from="lora_tune")
    result = finetune.run(config, ctx(tmp_path / "ft", tiny_model_dir, data, {"lora_tune": trained_lora}))
    assert result.adapters == {"lora_tune": Adapter(tmp_path / "ft" / "adapter", "lora", Scope.TARGET)}
    after = lora_weights(result.adapter_dir)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    # The saved model is the plain base architecture (no LoRA layers), every weight of it trained.
    old = load_weights(tiny_model_dir / "model.safetensors")
    new = load_weights(result.model_dir / "model.safetensors")
    assert old.keys() == new.keys()
    assert all(not torch.equal(old[k], new[k]) for k in old)
    # and the re-homed adapter goes onto it with plain PEFT
    model = AutoModelForCausalLM.from_pretrained(result.model_dir, use_safetensors=True)
    assert isinstance(PeftModel.from_pretrained(model, result.adapter_dir), PeftModel)


def test_frozen_lora_checkpoint_is_plain_and_resumes(tmp_path, tiny_model_dir, data, trained_lora):
    """Stage-2 checkpoints hold the plain base weights and the adapter; resuming from one reaches the same model."""
    adapters = {"lora_tune": trained_lora}
    config = finetune.Config(steps=6, batch_size=8, lr=1e-2, prompt_from="lora_tune", save_steps=3)
    whole = finetune.run(config, ctx(tmp_path / "whole", tiny_model_dir, data, adapters))
    checkpoint = tmp_path / "whole" / "trainer" / "checkpoint-3"
    saved = load_weights(checkpoint / "model.safetensors")
    assert saved.keys() == load_weights(tiny_model_dir / "model.safetensors").keys()
    assert lora_weights(checkpoint / "adapter").keys() == lora_weights(trained_lora.path).keys()

    resumed_dir = tmp_path / "resumed"  # as if the run died after step 3: only checkpoint-3 survives
    (resumed_dir / "trainer").mkdir(parents=True)
    shutil.copytree(checkpoint, resumed_dir / "trainer" / "checkpoint-3")
    resumed = finetune.run(config, ctx(resumed_dir, tiny_model_dir, data, adapters))
    assert resumed.metrics["resumed_from"].endswith("checkpoint-3")
    a, b = load_weights(whole.model_dir / "model.safetensors"), load_weights(resumed.model_dir / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit-identical on the CPU


def test_a_merged_lora_cannot_be_attached_again(tmp_path, tiny_model_dir, data, trained_lora):
    from core.errors import UserError

    merged = {"lora_tune": Adapter(trained_lora.path, "lora", Scope.MERGED)}
    config = finetune.Config(steps=1, batch_size=8, prompt_from="lora_tune")
    with pytest.raises(UserError, match=r"finetune\.prompt_from: 'lora_tune' is merged"):
        finetune.run(config, ctx(tmp_path / "ft", tiny_model_dir, data, merged))
