"""The word-level tokenizer covers every task and decodes back to the exact text."""

from transformers import AutoTokenizer

from embedded.tasks import ALL_TASKS, SPLITS, make_examples
from embedded.tokenizer import build_tokenizer


def test_every_example_round_trips_without_unk():
    tokenizer = build_tokenizer()
    for task in ALL_TASKS:
        for split in SPLITS:
            for ex in make_examples(task, split, 300):
                for text in (ex["prompt"], ex["completion"]):
                    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
                    assert tokenizer.unk_token_id not in ids, (task, text)
                    assert tokenizer.decode(ids) == text


def test_ids_are_stable_and_specials_are_set():
    a, b = build_tokenizer(), build_tokenizer()
    assert a.get_vocab() == b.get_vocab()
    assert [a.pad_token_id, a.bos_token_id, a.eos_token_id, a.unk_token_id] == [0, 1, 2, 3]
    assert a("copy : a b =")["input_ids"] == a("copy : a b =", add_special_tokens=False)["input_ids"]  # no BOS
    assert a.model_max_length == 256 and not a.chat_template
    assert "True" in a.get_vocab() and "False" in a.get_vocab() and "####" in a.get_vocab()


def test_saved_tokenizer_reloads_identically(tmp_path):
    build_tokenizer().save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "solve : 12 - 3 = #### 9"
    assert loaded.decode(loaded(text)["input_ids"]) == text
    assert loaded.eos_token == "</s>" and loaded.pad_token == "<pad>"
