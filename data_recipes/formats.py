"""Convert the data formats users bring (GSM8K, Alpaca, ShareGPT, OpenAI messages) to prompt/completion.

Layouts without a chat template follow each format's own convention: GSM8K as lm-evaluation-harness
prompts it ("Question: ...\\nAnswer:" + " answer"), Alpaca with the Stanford Alpaca template, chats as
"User: ...\\nAssistant:" turns. With a tokenizer that has a chat template, every format is rendered
through that template instead, so a DMT mix of math, code and chat data shares one format.
"""

from __future__ import annotations

from typing import Callable

import datasets

from core.registry import Registry
from data_recipes.sources import DataError

# Columns that evaluation needs (code tests) and that survive the conversion.
KEPT_COLUMNS = ("test", "entry_point")

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)

# ShareGPT speaker names seen in the wild -> OpenAI roles.
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "assistant": "assistant",
    "system": "system",
}
PLAIN_ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}


def prompt_completion(row: dict, index: int, tokenizer=None) -> dict:
    """Pass through rows that already have `prompt` and `completion`."""
    prompt = _required(row, "prompt", index, allow_empty=True)
    return {"prompt": prompt, "completion": _required(row, "completion", index)}


def gsm8k(row: dict, index: int, tokenizer=None) -> dict:
    """GSM8K `question`/`answer`; the answer keeps its reasoning and final `#### N` line."""
    question, answer = _required(row, "question", index), _required(row, "answer", index)
    if _has_chat_template(tokenizer):
        return _chat_example([{"role": "user", "content": question}], answer, tokenizer, index)
    return {"prompt": f"Question: {question}\nAnswer:", "completion": f" {answer}"}


def alpaca(row: dict, index: int, tokenizer=None) -> dict:
    """Alpaca / Code Alpaca `instruction`, optional `input`, `output`."""
    instruction, output = _required(row, "instruction", index), _required(row, "output", index)
    extra = (row.get("input") or "").strip()
    if _has_chat_template(tokenizer):
        content = f"{instruction}\n\n{extra}" if extra else instruction
        return _chat_example([{"role": "user", "content": content}], output, tokenizer, index)
    template = ALPACA_WITH_INPUT if extra else ALPACA_NO_INPUT
    return {"prompt": template.format(instruction=instruction, input=extra), "completion": output}


def sharegpt(row: dict, index: int, tokenizer=None) -> dict:
    """ShareGPT `conversations` of {from, value}; the last assistant turn is the completion."""
    turns = _required(row, "conversations", index, list)
    messages = []
    for number, turn in enumerate(turns):
        role = SHAREGPT_ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            speaker = turn.get("from")
            raise DataError(f"row {index}: field 'conversations[{number}].from' has unknown speaker {speaker!r}")
        messages.append({"role": role, "content": turn.get("value")})
    return _split_last_assistant(messages, index, "conversations", tokenizer)


def messages(row: dict, index: int, tokenizer=None) -> dict:
    """OpenAI-style `messages` of {role, content}; the last assistant turn is the completion."""
    turns = _required(row, "messages", index, list)
    return _split_last_assistant(
        [{"role": t.get("role"), "content": t.get("content")} for t in turns], index, "messages", tokenizer
    )


Converter = Callable[..., dict]
FORMATS = Registry(
    "data format",
    {  # row converters a source's `format:` names (pipeline ls)
        "prompt_completion": prompt_completion,
        "gsm8k": gsm8k,
        "alpaca": alpaca,
        "sharegpt": sharegpt,
        "messages": messages,
    },
)

# Columns that identify each format, checked in this order by detect_format.
FORMAT_COLUMNS = {
    "prompt_completion": {"prompt", "completion"},
    "gsm8k": {"question", "answer"},
    "alpaca": {"instruction", "output"},
    "sharegpt": {"conversations"},
    "messages": {"messages"},
}


def detect_format(column_names) -> str:
    """Name the format whose required columns are all present, or raise DataError."""
    columns = set(column_names)
    for name, required in FORMAT_COLUMNS.items():
        if required <= columns:
            return name
    expected = "; ".join(f"{name}: {', '.join(sorted(cols))}" for name, cols in FORMAT_COLUMNS.items())
    raise DataError(f"cannot detect the data format from columns {sorted(columns)} (expected {expected})")


BAD_ROWS = ("error", "skip")


def to_examples(
    dataset: datasets.Dataset, format: str, tokenizer=None, source: str | None = None, on_bad_rows: str = "error"
) -> datasets.Dataset:
    """Convert a dataset to `prompt`/`completion` rows (keeping `test`/`entry_point`); format may be "auto".

    A row that does not convert (a missing or empty field, an unknown role) raises a DataError naming
    the first one and counting them all; with on_bad_rows="skip" the bad rows are dropped instead.
    """
    if format == "auto":
        format = detect_format(dataset.column_names)
    if format not in FORMATS:
        raise DataError(f"unknown data format '{format}' (choose from {', '.join(FORMATS)}, auto)")
    if on_bad_rows not in BAD_ROWS:
        raise DataError(f"on_bad_rows: must be one of {list(BAD_ROWS)}, got {on_bad_rows!r}")
    convert = FORMATS[format]

    def convert_row(row, index):
        try:
            return {**convert(row, index, tokenizer), "_bad": ""}
        except DataError as error:
            return {"prompt": "", "completion": "", "_bad": str(error)}

    removed = [name for name in dataset.column_names if name not in KEPT_COLUMNS]
    examples = dataset.map(convert_row, with_indices=True, remove_columns=removed, desc=f"format {format}")
    problems = [(i, text) for i, text in enumerate(examples["_bad"]) if text]
    if problems and on_bad_rows == "error":
        where = f"{source}: " if source else ""
        more = ""
        if len(problems) > 1:
            shown = ", ".join(str(i) for i, _ in problems[:10]) + (", ..." if len(problems) > 10 else "")
            more = f" ({len(problems)} bad rows in all: rows {shown})"
        raise DataError(f"{where}{problems[0][1]}{more}; on_bad_rows: skip drops bad rows")
    if problems:
        examples = examples.filter(lambda row: not row["_bad"], desc="drop bad rows")
    return examples.remove_columns("_bad")


def _required(row: dict, field: str, index: int, kind: type = str, allow_empty: bool = False):
    value = row.get(field)
    if value is not None and not isinstance(value, kind):
        raise DataError(f"row {index}: field '{field}' must be {kind.__name__}, not {type(value).__name__}")
    empty = not value.strip() if isinstance(value, str) else not value
    if value is None or (empty and not allow_empty):
        raise DataError(f"row {index}: field '{field}' is missing or empty")
    return value


def _split_last_assistant(turns: list[dict], index: int, field: str, tokenizer) -> dict:
    """Prompt = every turn before the last assistant turn; completion = that turn's text."""
    last = max((n for n, turn in enumerate(turns) if turn["role"] == "assistant"), default=None)
    if last is None:
        raise DataError(f"row {index}: field '{field}' has no assistant turn")
    for number, turn in enumerate(turns[: last + 1]):
        if turn["role"] not in PLAIN_ROLE_NAMES:
            raise DataError(f"row {index}: field '{field}[{number}]' has unknown role {turn['role']!r}")
        if not isinstance(turn["content"], str) or (number == last and not turn["content"].strip()):
            raise DataError(f"row {index}: field '{field}[{number}]' has missing or empty text")
    if _has_chat_template(tokenizer):
        return _chat_example(turns[:last], turns[last]["content"], tokenizer, index)
    lines = [f"{PLAIN_ROLE_NAMES[turn['role']]}: {turn['content']}" for turn in turns[:last]]
    return {"prompt": "\n".join(lines + ["Assistant:"]), "completion": " " + turns[last]["content"]}


def _chat_example(prompt_turns: list[dict], answer: str, tokenizer, index: int) -> dict:
    try:
        prompt = tokenizer.apply_chat_template(prompt_turns, tokenize=False, add_generation_prompt=True)
    except Exception as error:  # templates reject e.g. a leading assistant turn with raise_exception()
        raise DataError(f"row {index}: the tokenizer's chat template rejected this row ({error})") from None
    return {"prompt": prompt, "completion": answer}


def _has_chat_template(tokenizer) -> bool:
    return tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))
