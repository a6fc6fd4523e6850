"""One rule for what starts an encoded prompt, in training, evaluation and generation.

A prompt starts with whatever the tokenizer itself puts in front of a text: its BOS when it adds one,
whether through `add_bos_token` or through its post-processor (Llama 3 style tokenizers under
transformers 5 report add_bos_token=False and still add BOS). That is what lm-eval's default encoding
does, so training feeds the model the layout the evaluation scores. A prompt that already starts with
the BOS text (a chat template that writes it) gets nothing more, as lm-eval does too.
"""

from __future__ import annotations


def special_prefix(tokenizer) -> list[int]:
    """The token ids the tokenizer adds in front of a text with its default special-token handling."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start]
    return []


def prompt_prefixes(tokenizer, prompts: list[str]) -> list[list[int]]:
    """special_prefix for each prompt, empty for one that already starts with the BOS text."""
    prefix = special_prefix(tokenizer)
    bos = tokenizer.bos_token
    return [[] if bos and prompt.startswith(bos) else prefix for prompt in prompts]
