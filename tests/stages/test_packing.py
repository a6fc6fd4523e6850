"""Padding-free batches: same examples, same loss and gradients as padded batches, fewer rows; leaky models refused."""

from types import SimpleNamespace

import pytest
import torch

from core.errors import UserError
from embedded.tasks import make_examples
from stages import finetune, prompt_tune
from stages.packing import check_packing, packed_collator
from stages.sft_data import IGNORE_INDEX, sft_collator, tokenize_for_sft
from tests.stages.test_finetune import ctx, tiny_model_dir  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def mixed():
    """Short and long examples together, as in the DMT mix (math, code and general tasks)."""
    from datasets import Dataset

    rows = (
        make_examples("add", "train", 24) + make_examples("reverse", "train", 24) + make_examples("fact", "train", 16)
    )
    return Dataset.from_list(rows).shuffle(seed=0)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):  # noqa: F811
    from stages.model_io import load_tokenizer

    return load_tokenizer(tiny_model_dir)


def model(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path)


def test_rows_hold_every_example_once_within_the_row_length(mixed, tokenizer):
    features = list(tokenize_for_sft(mixed, tokenizer, 48))[:32]
    batch = packed_collator(tokenizer, 24)(features)
    lengths = sorted(len(f["input_ids"]) for f in features)
    starts = (batch["position_ids"] == 0) & (batch["input_ids"] != tokenizer.pad_token_id)
    assert starts.sum() == len(features)  # each example starts once, at position 0
    assert batch["input_ids"].shape[0] < len(features)  # fewer rows than examples
    real = batch["input_ids"] != tokenizer.pad_token_id
    assert int(real.sum()) == sum(lengths)
    assert (real.sum(dim=1) <= max(24, lengths[-1])).all()
    ids = sorted(t for f in features for t in f["input_ids"])
    assert ids == sorted(batch["input_ids"][real].tolist())
    assert (batch["labels"][starts] == IGNORE_INDEX).all()  # nothing predicts across a boundary


def test_loss_and_gradients_match_padded_batches(mixed, tokenizer, tiny_model_dir):  # noqa: F811
    features = list(tokenize_for_sft(mixed, tokenizer, 48))[:16]
    padded, packed = sft_collator(tokenizer)(features), packed_collator(tokenizer, 48)(features)
    assert packed["input_ids"].numel() < padded["input_ids"].numel()
    results = []
    for batch in (padded, packed):
        net = model(tiny_model_dir)
        loss = net(**batch).loss
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in net.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert loss_a == pytest.approx(loss_b, abs=1e-5)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_packed_stage_trains_like_the_padded_one(tmp_path, tiny_model_dir, mixed):  # noqa: F811
    histories = {}
    for packing in (False, True):
        config = finetune.Config(steps=6, batch_size=8, logging_steps=1, lr=1e-3, packing=packing)
        result = finetune.run(config, ctx(tmp_path / str(packing), tiny_model_dir, mixed))
        histories[packing] = result.metrics["loss_history"]
    assert len(histories[True]) == 6
    assert histories[True] == pytest.approx(histories[False], abs=1e-4)


def test_gradient_checkpointing_trains_like_without(tmp_path, tiny_model_dir, mixed):  # noqa: F811
    histories = {}
    for checkpointing in (False, True):
        config = finetune.Config(steps=4, batch_size=8, logging_steps=1, gradient_checkpointing=checkpointing)
        result = finetune.run(config, ctx(tmp_path / str(checkpointing), tiny_model_dir, mixed))
        histories[checkpointing] = result.metrics["loss_history"]
    assert histories[True] == pytest.approx(histories[False], abs=1e-5)


class LeakyModel(torch.nn.Module):
    """Each position sees the running sum of every earlier token, whatever the position ids say."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(300, 8)

    def forward(self, input_ids, position_ids=None, use_cache=None):
        return SimpleNamespace(logits=self.embed(input_ids).cumsum(dim=1))

    def get_input_embeddings(self):
        return self.embed


class PositionBlindModel(LeakyModel):
    """Each position sees only its own token, plus a position embedding counted from the row's start."""

    def __init__(self):
        super().__init__()
        self.position = torch.nn.Embedding(300, 8)

    def forward(self, input_ids, position_ids=None, use_cache=None):
        return SimpleNamespace(logits=self.embed(input_ids) + self.position(torch.arange(input_ids.shape[1])))


def test_a_model_that_attends_across_examples_is_refused(mixed, tokenizer):
    rows = tokenize_for_sft(mixed, tokenizer, 48)
    with pytest.raises(UserError, match="packing: LeakyModel attends across packed examples"):
        check_packing(LeakyModel(), rows)


def test_a_model_that_ignores_position_ids_is_refused(mixed, tokenizer):
    rows = tokenize_for_sft(mixed, tokenizer, 48)
    with pytest.raises(UserError, match="packing: PositionBlindModel gives packed examples other logits than alone"):
        check_packing(PositionBlindModel(), rows)


def test_llama_in_bf16_passes_despite_half_precision_rounding():
    """bf16 rounds a packed row and a lone example differently (0.002 here): no reason to refuse the model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    net = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=256,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=128,
        )
    )
    generator = torch.Generator().manual_seed(0)
    rows = [
        {"input_ids": torch.randint(4, 256, (n,), generator=generator).tolist(), "labels": [1] * n} for n in (120, 60)
    ]
    check_packing(net.to(torch.bfloat16), rows)


def test_llama_keeps_attention_within_each_example(mixed, tokenizer, tiny_model_dir):  # noqa: F811
    net = model(tiny_model_dir)
    assert net.config.use_cache  # as most hub models: a cache built in the forward would hide the packing
    check_packing(net, tokenize_for_sft(mixed, tokenizer, 48))


@pytest.mark.parametrize(
    "make", [lambda: prompt_tune.Config(packing=True), lambda: finetune.Config(packing=True, prompt_from="prompt_tune")]
)
def test_packing_with_a_soft_prompt_is_a_config_error(make):
    with pytest.raises(ValueError, match="packing: not available"):
        make()


def test_bf16_switches_on_the_trainers_mixed_precision(tmp_path, tiny_model_dir, mixed):  # noqa: F811
    from stages.training import training_arguments

    assert training_arguments(finetune.Config(bf16=True), tmp_path, seed=0, world_size=1).bf16
    assert not training_arguments(finetune.Config(), tmp_path, seed=0, world_size=1).bf16
    losses = {}
    for bf16 in (False, True):
        config = finetune.Config(steps=2, batch_size=8, logging_steps=1, bf16=bf16)
        losses[bf16] = finetune.run(config, ctx(tmp_path / str(bf16), tiny_model_dir, mixed)).metrics["loss_history"]
    # autocast rounds the forward to bf16 (about 3 significant digits): close, and not bit-identical
    assert losses[True] == pytest.approx(losses[False], rel=0.05) and losses[True] != losses[False]
