"""Format converters on tiny rows, on the real GSM8K and ShareGPT samples, and through a chat template."""

from pathlib import Path

import datasets
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from data_recipes.formats import FORMATS, detect_format, to_examples
from data_recipes.sources import DataError, load_rows

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"

SAMPLES = {
    "prompt_completion": {"prompt": "2+2=", "completion": "4"},
    "gsm8k": {"question": "What is 2+2?", "answer": "2+2=<<2+2=4>>4\n#### 4"},
    "alpaca": {"instruction": "Write add(a, b).", "input": "", "output": "def add(a, b):\n    return a + b"},
    "sharegpt": {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello!"},
            {"from": "human", "value": "Bye"},
            {"from": "gpt", "value": "Goodbye!"},
        ]
    },
    "messages": {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
}


def chat_tokenizer():
    """A word-level tokenizer built in memory, with a minimal chat template."""
    model = models.WordLevel({"[UNK]": 0, "<eos>": 1}, unk_token="[UNK]")
    backend = Tokenizer(model)
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="<eos>")
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    return tokenizer


def shared_file(*parts):
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"real data sample not available: {path}")
    return str(path)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_registered_format_converts_and_is_detected(name):
    rows = datasets.Dataset.from_list([SAMPLES[name]])
    assert detect_format(rows.column_names) == name
    examples = to_examples(rows, name)
    assert examples.column_names == ["prompt", "completion"]
    assert examples[0]["completion"].strip()


def test_plain_layouts():
    gsm = to_examples(datasets.Dataset.from_list([SAMPLES["gsm8k"]]), "gsm8k")[0]
    assert gsm == {"prompt": "Question: What is 2+2?\nAnswer:", "completion": " 2+2=<<2+2=4>>4\n#### 4"}
    alpaca = to_examples(datasets.Dataset.from_list([SAMPLES["alpaca"]]), "alpaca")[0]
    assert alpaca["prompt"].endswith("### Instruction:\nWrite add(a, b).\n\n### Response:\n")
    assert "### Input" not in alpaca["prompt"] and alpaca["completion"].startswith("def add")
    chat = to_examples(datasets.Dataset.from_list([SAMPLES["sharegpt"]]), "sharegpt")[0]
    assert chat == {
        "prompt": "System: Be brief.\nUser: Hi\nAssistant: Hello!\nUser: Bye\nAssistant:",
        "completion": " Goodbye!",
    }


def test_alpaca_input_goes_into_prompt():
    row = dict(SAMPLES["alpaca"], input="a=1, b=2")
    example = to_examples(datasets.Dataset.from_list([row]), "alpaca")[0]
    assert "### Input:\na=1, b=2\n\n### Response:\n" in example["prompt"]


def test_chat_template_renders_prompt_up_to_last_assistant_turn():
    tokenizer = chat_tokenizer()
    chat = to_examples(datasets.Dataset.from_list([SAMPLES["sharegpt"]]), "sharegpt", tokenizer)[0]
    assert chat["prompt"] == ("<|system|>Be brief.\n<|user|>Hi\n<|assistant|>Hello!\n<|user|>Bye\n<|assistant|>")
    assert chat["completion"] == "Goodbye!"
    gsm = to_examples(datasets.Dataset.from_list([SAMPLES["gsm8k"]]), "gsm8k", tokenizer)[0]
    assert gsm["prompt"] == "<|user|>What is 2+2?\n<|assistant|>"


def test_trailing_user_turn_is_dropped():
    turns = SAMPLES["messages"]["messages"] + [{"role": "user", "content": "Unanswered?"}]
    example = to_examples(datasets.Dataset.from_list([{"messages": turns}]), "messages")[0]
    assert example == {"prompt": "User: Hi\nAssistant:", "completion": " Hello!"}


def test_code_columns_are_kept():
    row = {
        "prompt": "Write add.",
        "completion": "def add(a, b): return a + b",
        "test": "assert add(1, 2) == 3",
        "entry_point": "add",
        "source": "mine",
    }
    example = to_examples(datasets.Dataset.from_list([row]), "auto")
    assert sorted(example.column_names) == ["completion", "entry_point", "prompt", "test"]


@pytest.mark.parametrize(
    ("name", "row", "message"),
    [
        ("gsm8k", {"question": "Q?", "answer": ""}, "row 1: field 'answer' is missing or empty"),
        ("prompt_completion", {"prompt": "2+2=", "completion": None}, "row 1: field 'completion' is missing or empty"),
        ("messages", {"messages": None}, "row 1: field 'messages' is missing or empty"),
        ("alpaca", {"instruction": "  ", "input": "", "output": "x"}, "row 1: field 'instruction' is missing or empty"),
        (
            "sharegpt",
            {"conversations": [{"from": "human", "value": "Hi"}]},
            "row 1: field 'conversations' has no assistant turn",
        ),
        (
            "sharegpt",
            {"conversations": [{"from": "robot", "value": "Hi"}]},
            "row 1: field 'conversations[0].from' has unknown speaker 'robot'",
        ),
        (
            "messages",
            {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]},
            "row 1: field 'messages[1]' has missing or empty text",
        ),
    ],
)
def test_bad_rows_name_field_and_row(name, row, message):
    rows = datasets.Dataset.from_list([SAMPLES[name], row])
    with pytest.raises(DataError) as raised:
        to_examples(rows, name, source="data.jsonl")
    assert str(raised.value) == f"data.jsonl: {message}; on_bad_rows: skip drops bad rows"


def test_every_bad_row_is_counted_and_skip_drops_them():
    good = [{"prompt": f"q{i}", "completion": "a"} for i in range(5)]
    rows = datasets.Dataset.from_list(
        good[:2] + [{"prompt": "q", "completion": ""}] + good[2:] + [{"prompt": "q", "completion": " "}]
    )
    with pytest.raises(DataError) as raised:
        to_examples(rows, "prompt_completion", source="data.jsonl")
    assert str(raised.value) == (
        "data.jsonl: row 2: field 'completion' is missing or empty "
        "(2 bad rows in all: rows 2, 6); on_bad_rows: skip drops bad rows"
    )
    kept = to_examples(rows, "prompt_completion", source="data.jsonl", on_bad_rows="skip")
    assert kept["prompt"] == [r["prompt"] for r in good]


def test_non_text_field_is_rejected():
    rows = datasets.Dataset.from_list([{"question": "What is 6*7?", "answer": 42}])
    with pytest.raises(DataError, match="row 0: field 'answer' must be str, not int"):
        to_examples(rows, "gsm8k")


def test_unknown_and_undetectable_formats():
    rows = datasets.Dataset.from_list([{"text": "hello"}])
    with pytest.raises(DataError, match="unknown data format 'csv'"):
        to_examples(rows, "csv")
    with pytest.raises(DataError, match=r"cannot detect the data format from columns \['text'\]"):
        to_examples(rows, "auto")


def test_real_gsm8k_sample():
    rows = load_rows(shared_file("gsm8k", "train.jsonl"))
    assert len(rows) == 7473 and detect_format(rows.column_names) == "gsm8k"
    examples = to_examples(rows, "auto")
    assert len(examples) == 7473
    assert all("\n#### " in completion for completion in examples["completion"])
    assert examples[0]["prompt"].startswith("Question: Natalia sold clips")


def test_real_sharegpt_sample_with_and_without_chat_template():
    rows = load_rows(shared_file("sharegpt", "dummy_conversation.json"))
    assert len(rows) == 500 and detect_format(rows.column_names) == "sharegpt"
    plain = to_examples(rows, "sharegpt")
    templated = to_examples(rows, "sharegpt", chat_tokenizer())
    assert len(plain) == len(templated) == 500
    assert plain["completion"][0] == " You too!"
    assert templated["completion"][0] == "You too!"
    assert templated["prompt"][0].endswith("<|user|>Have a nice day!\n<|assistant|>")
