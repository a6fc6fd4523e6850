"""Upstream behaviour the soft-prompt decoding (evaluation/generation.py) works around or stands on.

Marked `upstream`: these pin what transformers and PEFT do, not what the project does. Under the lock
they pass. `make test-latest` runs them against the newest releases, where a failure means upstream
changed, and each test says what that change means for the project.
"""

from __future__ import annotations

import pytest
import torch
from peft import PromptTuningConfig, get_peft_model

pytestmark = pytest.mark.upstream

VIRTUAL_TOKENS = 8
NEW_TOKENS = 4


@pytest.fixture(scope="module")
def prompted(tiny_llama):
    return get_peft_model(
        tiny_llama(), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=VIRTUAL_TOKENS)
    ).eval()


def _batch(tokenizer, prompts):
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        return tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side


@torch.no_grad()
def _base_model_calls(model, base, **generate_kwargs) -> list[dict]:
    """What the base model's forward receives at each decoding step of `model.generate`."""
    calls = []

    def record(module, args, kwargs):
        embeds, ids = kwargs.get("inputs_embeds"), kwargs.get("input_ids")
        positions = kwargs.get("position_ids")
        calls.append(
            {
                "embeds": None if embeds is None else embeds.shape[1],
                "ids": None if ids is None else ids.shape[1],
                "positions": None if positions is None else positions.clone(),
            }
        )

    handle = base.register_forward_pre_hook(record, with_kwargs=True)
    try:
        model.generate(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, **generate_kwargs)
    finally:
        handle.remove()
    return calls


def test_peft_generate_prepends_the_soft_prompt_again_at_every_step(prompted, tokenizer):
    """Known defect (transformers >= 5.24 with PEFT 0.21): every decoding step gets p + 1 new embeddings.

    transformers now passes the KV cache to the model as `cache=`, and PEFT's
    prepare_inputs_for_generation only looks for `past_key_values=`, so it never sees a cache.
    If this fails, upstream changed: PEFT reads the new keyword, or transformers reverted it. Check
    whether PeftModel.generate now decodes one prompt right (compare with the by-hand greedy in
    test_soft_prompt_scoring.py); the workaround in evaluation/generation.py stays correct either way.
    """
    ids = tokenizer(["what is the capital of france"], return_tensors="pt", add_special_tokens=False)
    calls = _base_model_calls(prompted, prompted.get_base_model(), **ids)
    prompt_length = ids["input_ids"].shape[1]
    assert calls[0]["embeds"] == VIRTUAL_TOKENS + prompt_length  # the first step is right...
    assert [c["embeds"] for c in calls[1:]] == [VIRTUAL_TOKENS + 1] * (NEW_TOKENS - 1)  # ...then p + 1 each


def test_peft_generate_drops_the_position_ids(prompted, tokenizer):
    """Known defect (every PEFT release so far): position ids are dropped, so left padding shifts the input.

    If this fails, PEFT now passes position ids to the base model: check whether left-padded batches
    decode like single prompts through PeftModel.generate.
    """
    batch = _batch(tokenizer, ["what is the capital of france", "add 2 3"])
    with pytest.warns(UserWarning, match="Position ids are not supported"):
        calls = _base_model_calls(prompted, prompted.get_base_model(), **batch)
    assert calls[0]["positions"] is None


def test_base_generate_from_embeddings_is_what_the_workaround_needs(prompted, tokenizer):
    """The footing of evaluation.generation: base `generate(inputs_embeds=..., attention_mask=...)`.

    It must return only the new tokens, feed one token per step after the first, and number positions
    from the attention mask so left padding is skipped. If this fails, SoftPromptHFLM and
    evaluation.generation.generate may decode wrongly: the by-hand tests in test_soft_prompt_scoring.py
    tell whether, and the workaround must follow the new behaviour before the lock moves.
    """
    batch = _batch(tokenizer, ["what is the capital of france", "add 2 3"])
    base = prompted.get_base_model()
    embeds = torch.cat([prompted.get_prompt(batch_size=2), prompted.word_embeddings(batch["input_ids"])], dim=1)
    mask = torch.cat([torch.ones(2, VIRTUAL_TOKENS, dtype=torch.long), batch["attention_mask"]], dim=1)
    with torch.no_grad():
        new = base.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
        )
    assert new.shape == (2, NEW_TOKENS)  # only the new tokens come back
    calls = _base_model_calls(base, base, inputs_embeds=embeds, attention_mask=mask)
    assert [c["ids"] for c in calls[1:]] == [1] * (NEW_TOKENS - 1)
    real = mask.bool()
    assert torch.equal(calls[0]["positions"][real], (mask.cumsum(-1) - 1)[real])  # padding takes no position
