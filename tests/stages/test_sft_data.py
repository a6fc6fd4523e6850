"""Batched tokenization gives every example the tokens, truncation and labels of encoding it on its own."""

import copy

from datasets import Dataset

from embedded.tasks import make_examples
from embedded.tokenizer import build_tokenizer
from stages.sft_data import IGNORE_INDEX, tokenize_for_sft


def reference(prompt, completion, tokenizer, max_length, bos=()):
    """One example at a time, straight from the tokenizer: the rows training must see."""
    prompt_ids = list(bos) + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt_ids + answer_ids)[:max_length]
    return {
        "input_ids": ids,
        "attention_mask": [1] * len(ids),
        "labels": ([IGNORE_INDEX] * len(prompt_ids) + answer_ids)[:max_length],
    }


def test_rows_match_one_at_a_time_encoding_across_map_batches():
    tokenizer = build_tokenizer()
    examples = make_examples("math", "train", 1300) + make_examples("copy", "train", 1200)  # > 2 map batches
    rows = tokenize_for_sft(Dataset.from_list(examples), tokenizer, 12).to_list()
    expected = [reference(e["prompt"], e["completion"], tokenizer, 12) for e in examples]
    assert rows == expected
    assert any(len(r["input_ids"]) == 12 for r in rows) and any(len(r["input_ids"]) < 12 for r in rows)


def test_a_tokenizer_that_adds_bos_gets_it_before_the_prompt_and_masked():
    tokenizer = copy.copy(build_tokenizer())
    tokenizer.add_bos_token = True
    example = make_examples("copy", "train", 1)[0]
    row = tokenize_for_sft(Dataset.from_list([example]), tokenizer, 48)[0]
    assert row == reference(example["prompt"], example["completion"], tokenizer, 48, bos=[tokenizer.bos_token_id])
    assert row["input_ids"][0] == tokenizer.bos_token_id and row["labels"][0] == IGNORE_INDEX
