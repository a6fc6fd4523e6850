"""sdft on chat rows (stages/sdft.py): TRL gets the conversation, so the student's prompt is the one the evaluation
scores and the teacher reads the reference inside the user's turn, the chat template applied once.

Tokenizer level: TRL's own code (SDFTTrainer._tokenize_prompts, its DemonstrationTeacherContextBuilder) turns our
dataset into token ids, compared with lm-eval's encoding of the rendered prompt (evaluation.harness.make_lm)."""

import json
import os
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from data_recipes.formats import to_examples
from stages.sdft import CHAT_TEACHER, RENDERED_TEACHER, TRL_DEFAULT_TEMPLATE, ChatLayout, Config, sdft_data

ROOT = Path(__file__).resolve().parents[2]
SVAMP = ROOT / "recipes" / "data" / "svamp_op_train.jsonl"


def trl_ids(tokenizer, data, max_length: int = 512):
    """What TRL's SDFTTrainer makes of the dataset: the student's and the teacher's prompt ids, by its own code."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # as the stage does
    from trl.experimental.sdft.sdft_trainer import DemonstrationTeacherContextBuilder, SDFTTrainer

    trainer = SimpleNamespace(
        processing_class=tokenizer,
        chat_template_kwargs={},
        max_prompt_length=max_length,
        args=SimpleNamespace(teacher_prompt_template=data.teacher_template),
    )
    prompts, contexts = list(data.rows["prompt"]), list(data.rows["privileged_context"])  # as TRL's loader yields them
    teachers = DemonstrationTeacherContextBuilder(trainer).select_generation_prompts(prompts, contexts)
    return SDFTTrainer._tokenize_prompts(trainer, prompts), SDFTTrainer._tokenize_prompts(trainer, teachers)


def evaluation_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    """lm-eval's encoding of the prompts, as the evaluation scores the target (a tiny model: only its encoding)."""
    from evaluation.harness import make_lm

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=8,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        max_position_embeddings=512,
    )
    lm = make_lm(LlamaForCausalLM(config), tokenizer, batch_size=2)
    return [lm.tok_encode(prompt) for prompt in prompts]


def user_turn(text: str, header: str, end: str) -> str:
    """The last user turn's text in a rendered prompt."""
    return text[text.rindex(header) + len(header) :].split(end)[0]


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from bases import missing_requirement

    if missing_requirement("smollm2-135m-instruct"):
        pytest.skip(f"smollm2-135m-instruct: {missing_requirement('smollm2-135m-instruct')}")
    from transformers import AutoTokenizer

    from bases.smollm2 import ensure_smollm2

    return AutoTokenizer.from_pretrained(str(ensure_smollm2()))


def test_smollm2_the_student_sees_the_evaluation_prompt_the_teacher_the_reference_in_the_user_turn(smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    raw = datasets.Dataset.from_list([json.loads(line) for line in SVAMP.read_text().splitlines()[:6]])
    rows = to_examples(raw, "messages", tokenizer)  # as recipes/methods_smollm2.yaml's target reaches the stage
    data = sdft_data(rows, tokenizer)
    assert data.layout == "conversational" and data.teacher_template == TRL_DEFAULT_TEMPLATE
    assert data.rows["prompt"][0] == [{"role": "user", "content": raw[0]["messages"][0]["content"]}]
    student, teacher = trl_ids(tokenizer, data)
    assert student == evaluation_ids(tokenizer, rows["prompt"])  # token for token what the evaluation scores
    assert [tokenizer.decode(ids) for ids in student] == rows["prompt"]
    for ids, prompt, answer in zip(teacher, rows["prompt"], rows["completion"]):
        text = tokenizer.decode(ids)
        assert text == prompt.replace(
            "<|im_end|>\n<|im_start|>assistant\n", f"\n\n{answer}<|im_end|>\n<|im_start|>assistant\n"
        )
        assert user_turn(text, "<|im_start|>user\n", "<|im_end|>").endswith(f"Answer:\n\n{answer}")
        assert text.count("<|im_start|>system\n") == 1 and text.count("<|im_start|>assistant\n") == 1
        assert text.endswith("<|im_start|>assistant\n") and ids[1] != ids[0]  # one BOS (<|im_start|>), one header
    assert data.teacher_prompts == [tokenizer.decode(ids) for ids in teacher]


def word_tokenizer(post_bos: bool, template: str):
    """A word-level tokenizer (every word below), optionally adding BOS in its post-processor, with a chat template."""
    words = ["[UNK]", "<bos>", "<eos>", "<pad>", "<user>", "<sys>", "<bot>", "</t>", "is", "it", "red", "?", "yes"]
    words += ["be", "brief", "hi", "hello", "!", "answer", "ok", "in", "short", ":"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if post_bos:
        backend.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<user>", "<sys>", "<bot>", "</t>"]})
    tokenizer.chat_template = template
    return tokenizer


# A template with a default system turn (as SmolLM2's), that writes the BOS itself or not.
TEMPLATE = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<sys> be brief </t> {% endif %}"
    "{% if m['role'] == 'system' %}<sys>{% elif m['role'] == 'user' %}<user>{% else %}<bot>{% endif %}"
    " {{ m['content'] }} </t> {% endfor %}{% if add_generation_prompt %}<bot>{% endif %}"
)


def rows_of(*conversations) -> datasets.Dataset:
    return datasets.Dataset.from_list([{"messages": turns} for turns in conversations])


ONE_TURN = [{"role": "user", "content": "is it red ?"}, {"role": "assistant", "content": " yes "}]
HISTORY = [
    {"role": "system", "content": "answer in short"},
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello !"},
    {"role": "user", "content": "is it red ?"},
    {"role": "assistant", "content": "yes"},
]


@pytest.mark.parametrize("post_bos, writes_bos", [(False, False), (True, True)])
def test_a_conversation_goes_to_trl_and_the_template_is_applied_once(post_bos, writes_bos):
    tokenizer = word_tokenizer(post_bos, ("{{ bos_token }}" if writes_bos else "") + TEMPLATE)
    rows = to_examples(rows_of(ONE_TURN, HISTORY), "messages", tokenizer)
    data = sdft_data(rows, tokenizer, "{prompt} : {privileged_context}")
    assert data.layout == "conversational"
    assert data.rows["prompt"] == [ONE_TURN[:1], HISTORY[:-1]]  # the history read back turn by turn
    student, teacher = trl_ids(tokenizer, data)
    assert student == evaluation_ids(tokenizer, rows["prompt"])
    bos = "<bos> " if writes_bos else ""
    assert [tokenizer.decode(ids) for ids in teacher] == [
        f"{bos}<sys> be brief </t> <user> is it red ? : yes </t> <bot>",
        f"{bos}<sys> answer in short </t> <user> hi </t> <bot> hello ! </t> <user> is it red ? : yes </t> <bot>",
    ]
    assert all(ids.count(1) == writes_bos for ids in student + teacher)


def test_a_tokenizer_that_adds_a_bos_the_template_does_not_write_gets_the_teacher_rendered_here():
    """TRL encodes a conversation without special tokens, the evaluation with them: the rows stay text, the teacher's
    prompt is rendered by the same template and handed to TRL whole."""
    tokenizer = word_tokenizer(True, TEMPLATE)
    rows = to_examples(rows_of(ONE_TURN), "messages", tokenizer)
    data = sdft_data(rows, tokenizer)
    assert data.layout == "rendered" and data.teacher_template == RENDERED_TEACHER
    student, teacher = trl_ids(tokenizer, data)
    assert student == evaluation_ids(tokenizer, rows["prompt"]) and student[0][0] == 1
    assert data.teacher_prompts == ["<sys> be brief </t> <user> is it red ?\n\nyes </t> <bot>"]  # BOS: the tokenizer's
    assert tokenizer.decode(teacher[0]) == "<bos> <sys> be brief </t> <user> is it red ? yes </t> <bot>"
    assert teacher[0].count(1) == 1


def test_plain_rows_beside_chat_rows_keep_the_plain_teacher():
    tokenizer = word_tokenizer(False, TEMPLATE)
    chat = to_examples(rows_of(ONE_TURN), "messages", tokenizer)
    rows = datasets.Dataset.from_dict(
        {"prompt": [chat[0]["prompt"], "is it red ?"], "completion": [chat[0]["completion"], " yes"]}
    )
    data = sdft_data(rows, tokenizer, "{prompt} answer : {privileged_context}")
    assert data.layout == "rendered"
    student, teacher = trl_ids(tokenizer, data)
    assert student == evaluation_ids(tokenizer, rows["prompt"])
    assert [tokenizer.decode(ids) for ids in teacher] == [
        "<sys> be brief </t> <user> is it red ? answer : yes </t> <bot>",
        "is it red ? answer : yes",
    ]


def test_without_the_chat_template_every_row_is_plain_as_before():
    tokenizer = word_tokenizer(False, TEMPLATE)
    rows = to_examples(rows_of(ONE_TURN), "messages", tokenizer)
    for data in (sdft_data(rows, tokenizer, chat=False), sdft_data(rows, word_tokenizer(False, None))):
        assert data.layout == "plain" and data.teacher_template == TRL_DEFAULT_TEMPLATE
        assert data.rows.to_dict() == {"prompt": rows["prompt"], "privileged_context": ["yes"]}
    plain = to_examples(rows_of(ONE_TURN), "messages", word_tokenizer(False, None))  # "User: ...\nAssistant:"
    assert sdft_data(plain, tokenizer).layout == "plain"


def test_a_prompt_no_conversation_renders_is_not_read_as_one():
    layout = ChatLayout(word_tokenizer(False, TEMPLATE))
    assert layout.turns("<sys> be brief </t> <user> is it red ? </t> <bot> yes") is None
    assert layout.turns("is it red ?") is None
    assert layout.turns("<sys> be brief </t> <user> is it red ? </t> <bot>") == [
        {"role": "user", "content": "is it red ?"}
    ]


def test_chat_rows_are_in_the_stage_key_plain_rows_are_not():
    tokenizer = word_tokenizer(False, TEMPLATE)
    chat = to_examples(rows_of(ONE_TURN), "messages", tokenizer)
    plain = to_examples(rows_of(ONE_TURN), "messages", word_tokenizer(False, None))
    config = Config(batch_size=8)
    assert config.key_inputs(chat, tokenizer)["teacher_prompt"] == CHAT_TEACHER
    assert config.key_inputs(plain, tokenizer) == config.key_inputs() == {"trl": config.key_inputs()["trl"]}
