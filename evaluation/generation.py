"""Generate with a soft prompt as it was trained: the one decoding path for the evaluation and for users.

PEFT's own `PeftModel.generate` gets a prompt-tuning adapter wrong in two ways (pinned by
tests/upstream/test_generation.py, which `make test-latest` runs against the newest releases):

- it drops `position_ids`, so the base model numbers positions over [soft prompt, left padding, input]
  and a left-padded row sees its input shifted away from the prompt (every PEFT release so far);
- from transformers 5.24, generation hands the KV cache to the model as `cache=` instead of
  `past_key_values=`. PEFT 0.21 looks only for the old name, takes every decoding step for the first
  one and prepends the soft prompt again: the cache grows by p + 1 positions per new token, and even
  an unpadded single prompt decodes wrongly.

Here the prompt is prepended once, by hand, and the base model generates from embeddings, deriving
positions from the attention mask (which skips the padding) and passing its cache however its
version names it.
"""

from __future__ import annotations

import torch


def soft_prompt_length(model) -> int:
    """Virtual tokens an active PEFT prompt-learning adapter adds in front of every input (0 if none)."""
    from peft import PeftModel

    # `disable_adapter()` on a prompt-learning model swaps forward/generate back to the base
    # model and only records that in this flag; no public accessor exists.
    if not isinstance(model, PeftModel) or getattr(model, "_adapters_disabled", False):
        return 0
    config = model.active_peft_config
    return config.num_virtual_tokens if config.is_prompt_learning else 0


def prepends_embeddings(model) -> bool:
    """True for adapters (prompt tuning, P-tuning) that concatenate learned embeddings to the input."""
    from peft import PeftType

    return soft_prompt_length(model) > 0 and model.active_peft_config.peft_type in (
        PeftType.PROMPT_TUNING,
        PeftType.P_TUNING,
    )


def generate_tokens(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, **generation_kwargs) -> torch.Tensor:
    """The new tokens only, [batch, new], for left-padded `input_ids`; a plain model or a PeftModel."""
    if not prepends_embeddings(model):
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, **generation_kwargs)
        return output[:, input_ids.shape[1] :]
    batch = input_ids.shape[0]
    token_embeds = model.word_embeddings(input_ids)
    soft_prompt = model.get_prompt(batch_size=batch).to(token_embeds.dtype)
    prompt_mask = attention_mask.new_ones(batch, soft_prompt.shape[1])
    # Fed only embeddings, generate returns only the new tokens.
    return model.get_base_model().generate(
        inputs_embeds=torch.cat([soft_prompt, token_embeds], dim=1),
        attention_mask=torch.cat([prompt_mask, attention_mask], dim=1),
        **generation_kwargs,
    )


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], *, max_new_tokens: int = 64, **generation_kwargs) -> list[str]:
    """Greedy answers to `prompts` (one left-padded batch), decoded without special tokens.

    Encodes like training and the evaluation (data_recipes/encoding.py: what the tokenizer puts in front,
    BOS included, then the prompt) and decodes greedily unless `generation_kwargs` say otherwise, so a saved ProMoT model answers here
    as it was scored. Pass the PeftModel for the target task and `disable_adapter()` for any other.
    """
    batch = _left_padded(tokenizer, prompts)
    device = next(model.parameters()).device
    generation_kwargs.setdefault("do_sample", False)
    generation_kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
    was_training = model.training
    model.eval()
    try:
        new = generate_tokens(
            model,
            batch["input_ids"].to(device),
            batch["attention_mask"].to(device),
            max_new_tokens=max_new_tokens,
            **generation_kwargs,
        )
    finally:
        model.train(was_training)
    return tokenizer.batch_decode(new, skip_special_tokens=True)


def _left_padded(tokenizer, prompts: list[str]) -> dict:
    """input_ids and attention_mask, left-padded, each prompt encoded by the one rule."""
    from data_recipes.encoding import prompt_prefixes

    encoded = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    rows = [prefix + ids for prefix, ids in zip(prompt_prefixes(tokenizer, prompts), encoded)]
    width = max(len(row) for row in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(row)) + row for row in rows])
    mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows])
    return {"input_ids": input_ids, "attention_mask": mask}
