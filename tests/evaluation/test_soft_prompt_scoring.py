"""The trap: a soft prompt shifts every position by p, so lm-eval's scores must match a by-hand run.

PEFT prompt tuning prepends p virtual tokens inside the model. Anything that slices logits or
generated tokens by input length, or numbers positions across left padding, can be off by p.
Each lm-eval result here is checked against the same quantity computed by hand: embeddings
`cat(soft_prompt, word_embeddings(ids))` through the base model, one unpadded example at a time.
"""

from __future__ import annotations

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from peft import PeftModel, PromptTuningConfig, get_peft_model

from embedded.tasks import make_examples
from evaluation.generation import generate
from evaluation.harness import make_lm

VIRTUAL_TOKENS = 8
MAX_GEN_TOKS = 8
# Prompts of different lengths (4 to 16 tokens), so one batch mixes heavy and no left padding.
TASKS = ["fact", "reverse", "add", "letter_rule", "translate"]


@pytest.fixture(scope="module")
def examples():
    return [make_examples(task, "test", 1)[0] for task in TASKS]


@pytest.fixture(scope="module")
def base(tiny_llama):
    return tiny_llama()


@pytest.fixture(scope="module")
def prompted(tiny_llama):
    """The same base weights with a prompt-tuning adapter whose soft prompt is random, not zero-ish."""
    model = get_peft_model(
        tiny_llama(),
        PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=VIRTUAL_TOKENS, prompt_tuning_init="RANDOM"),
    )
    with torch.no_grad():
        weight = model.prompt_encoder["default"].embedding.weight
        weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(1)))
    return model.eval()


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def _logits_by_hand(model, ids: list[int]) -> tuple[torch.Tensor, int]:
    """Logits of one unpadded sequence with the soft prompt (if any) in front, and its length p."""
    if not isinstance(model, PeftModel):
        return model(inputs_embeds=model.get_input_embeddings()(torch.tensor([ids]))).logits[0].float(), 0
    base = model.get_base_model()
    soft_prompt = model.prompt_encoder["default"].embedding.weight  # [p, hidden]
    embeds = torch.cat([soft_prompt[None], base.get_input_embeddings()(torch.tensor([ids]))], dim=1)
    return base(inputs_embeds=embeds).logits[0].float(), soft_prompt.shape[0]


def _loglikelihood_by_hand(model, tokenizer, context: str, continuation: str) -> tuple[float, bool]:
    context_ids, continuation_ids = _ids(tokenizer, context), _ids(tokenizer, continuation)
    logits, p = _logits_by_hand(model, context_ids + continuation_ids)
    logprobs = torch.log_softmax(logits, dim=-1)
    # The logit at position t predicts token t+1; the soft prompt pushes every token p to the right.
    positions = [p + len(context_ids) + i - 1 for i in range(len(continuation_ids))]
    total = sum(float(logprobs[pos, tok]) for pos, tok in zip(positions, continuation_ids))
    greedy = all(int(logprobs[pos].argmax()) == tok for pos, tok in zip(positions, continuation_ids))
    return total, greedy


def _greedy_by_hand(model, tokenizer, prompt: str) -> str:
    ids, new = _ids(tokenizer, prompt), []
    for _ in range(MAX_GEN_TOKS):
        logits, _ = _logits_by_hand(model, ids + new)
        token = int(logits[-1].argmax())
        if token == tokenizer.eos_token_id:
            break
        new.append(token)
    return tokenizer.decode(new, skip_special_tokens=True)  # as lm-eval decodes generations


def _generate(lm: HFLM, tokenizer, prompts: list[str]) -> list[str]:
    """lm-eval's batched generate_until: all prompts in one left-padded batch."""
    kwargs = {"until": [tokenizer.eos_token], "do_sample": False, "max_gen_toks": MAX_GEN_TOKS}
    requests = [Instance("generate_until", {}, (p, dict(kwargs)), i) for i, p in enumerate(prompts)]
    return lm.generate_until(requests, disable_tqdm=True)


def _loglikelihoods(lm: HFLM, examples: list[dict]) -> list[tuple[float, bool]]:
    requests = [Instance("loglikelihood", {}, (e["prompt"], " " + e["completion"]), i) for i, e in enumerate(examples)]
    return lm.loglikelihood(requests, disable_tqdm=True)


@pytest.mark.parametrize("which", ["base", "prompted"])
def test_loglikelihood_matches_by_hand(which, request, tokenizer, examples):
    model = request.getfixturevalue(which)
    # The true answers, plus the model's own greedy answers, whose is-greedy flag must come out True.
    pairs = [dict(e) for e in examples] + [
        {"prompt": e["prompt"], "completion": _greedy_by_hand(model, tokenizer, e["prompt"])} for e in examples
    ]
    pairs = [p for p in pairs if p["completion"]]
    lm = make_lm(model, tokenizer, batch_size=len(pairs))  # one right-padded batch
    got = _loglikelihoods(lm, pairs)
    want = [_loglikelihood_by_hand(model, tokenizer, p["prompt"], p["completion"]) for p in pairs]
    assert [score for score, _ in got] == pytest.approx([score for score, _ in want], abs=1e-4)
    assert [greedy for _, greedy in got] == [greedy for _, greedy in want]
    assert any(greedy for _, greedy in want)  # the flag is exercised both ways


@pytest.mark.parametrize("which", ["base", "prompted"])
def test_batched_generation_matches_greedy_by_hand(which, request, tokenizer, examples):
    model = request.getfixturevalue(which)
    prompts = [e["prompt"] for e in examples]
    got = _generate(make_lm(model, tokenizer, batch_size=len(prompts)), tokenizer, prompts)
    want = [_greedy_by_hand(model, tokenizer, p) for p in prompts]
    assert got == want


def test_generate_helper_matches_greedy_by_hand(base, prompted, tokenizer, examples):
    """evaluation.generation.generate, what docs/run-folder.md tells users to load with: one left-padded batch.

    PeftModel.generate gets this wrong (tests/evaluation/test_upstream_generation.py pins how).
    """
    prompts = [e["prompt"] for e in examples]
    assert generate(prompted, tokenizer, prompts, max_new_tokens=MAX_GEN_TOKS) == [
        _greedy_by_hand(prompted, tokenizer, p) for p in prompts
    ]
    with prompted.disable_adapter():  # any other task: the raw model
        assert generate(prompted, tokenizer, prompts, max_new_tokens=MAX_GEN_TOKS) == [
            _greedy_by_hand(base, tokenizer, p) for p in prompts
        ]


def test_adapter_changes_outputs(base, prompted, tokenizer, examples):
    """The soft prompt matters, so the tests above would notice it being dropped or misplaced."""
    prompts = [e["prompt"] for e in examples]
    assert [_greedy_by_hand(base, tokenizer, p) for p in prompts] != [
        _greedy_by_hand(prompted, tokenizer, p) for p in prompts
    ]
    for example in examples:
        with_prompt = _loglikelihood_by_hand(prompted, tokenizer, example["prompt"], example["completion"])
        without = _loglikelihood_by_hand(base, tokenizer, example["prompt"], example["completion"])
        assert abs(with_prompt[0] - without[0]) > 1e-2


def test_disabled_adapter_scores_like_the_base_model(base, prompted, tokenizer, examples):
    """ProMoT inference on non-target tasks: the prompt is removed and the raw input goes in."""
    prompts = [e["prompt"] for e in examples]
    with prompted.disable_adapter():
        lm = make_lm(prompted, tokenizer, batch_size=len(prompts))
        assert lm.max_length == base.config.max_position_embeddings
        got = _generate(lm, tokenizer, prompts)
        scores = [s for s, _ in _loglikelihoods(lm, examples)]
    assert got == [_greedy_by_hand(base, tokenizer, p) for p in prompts]
    want = [_loglikelihood_by_hand(base, tokenizer, e["prompt"], e["completion"])[0] for e in examples]
    assert scores == pytest.approx(want, abs=1e-4)


def test_context_window_leaves_room_for_virtual_tokens(base, prompted, tokenizer):
    window = base.config.max_position_embeddings
    assert make_lm(base, tokenizer).max_length == window
    assert make_lm(prompted, tokenizer).max_length == window - VIRTUAL_TOKENS
    assert make_lm(prompted, tokenizer, max_length=64).max_length == 64 - VIRTUAL_TOKENS
