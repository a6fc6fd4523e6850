"""Shared fixtures for evaluation tests: the embedded tokenizer and a tiny random Llama."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from embedded.tokenizer import build_tokenizer

CONTEXT_WINDOW = 128


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded word-level tokenizer."""
    return build_tokenizer()


def _tiny_llama(tokenizer, seed: int = 0, hidden: int = 32, layers: int = 2, init_std: float = 0.5) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=CONTEXT_WINDOW,
        initializer_range=init_std,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_llama(tokenizer):
    """Factory for a random Llama; a large init spread gives peaked greedy outputs (no near-ties)."""
    return lambda **kwargs: _tiny_llama(tokenizer, **kwargs)
