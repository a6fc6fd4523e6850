"""End to end: on-policy self-distillation (stages/sdft.py, TRL's SDFTTrainer) through `pipeline run`; the wrapper's
mapping onto TRL's SDFTConfig and dataset; what `pipeline validate` refuses."""

import json
from importlib import metadata
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pipeline.cli import main

RECIPE = """name: sdft
seeds: [0]
model: {path: BASE}
target: {name: letter_rule, train: embedded:letter_rule, train_rows: 16, test_rows: 4}
evaluation: {general_suite: embedded_general, limit: 2, batch_size: 8}
max_length: 48
recipes:
  sdft:
    - {kind: sdft, steps: 2, batch_size: 8, lr: 3.0e-3, max_new_tokens: 4, num_generations: 2}
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    return ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, base):
    folder = tmp_path_factory.mktemp("sdft")
    (folder / "recipe.yaml").write_text(RECIPE.replace("BASE", str(base)))
    assert main(["validate", str(folder / "recipe.yaml")]) == 0
    assert main(["run", str(folder / "recipe.yaml"), "--run-dir", str(folder / "run")]) == 0
    return folder / "run"


def test_the_sdft_model_loads_in_plain_transformers_and_trained(finished_run, base):
    from transformers import AutoModelForCausalLM

    folder = finished_run / "seed0/sdft/sdft/model"
    AutoModelForCausalLM.from_pretrained(str(folder))  # a plain folder, as finetune hands on
    assert sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".safetensors")) == ["model.safetensors"]
    start, trained = load_file(str(base / "model.safetensors")), load_file(str(folder / "model.safetensors"))
    assert any(not torch.equal(start[name], trained[name]) for name in start)
    done = json.loads((finished_run / "seed0/sdft/sdft/DONE.json").read_text())
    assert done["metrics"]["steps_run"] == 2 and done["metrics"]["train_rows"] == 16
    assert done["metrics"]["completion_length_history"]  # TRL sampled answers, on-policy
    assert 0 < done["metrics"]["completion_length_history"][-1] <= 4  # max_new_tokens
    assert done["inputs"]["trl"] == metadata.version("trl")  # TRL's version is part of the stage key
    assert done["inputs"]["settings"]["num_generations"] == 2
    rows = json.loads((finished_run / "seed0/sdft/sdft-eval/DONE.json").read_text())["rows"]
    assert {row["suite"] for row in rows} == {"general", "target"}


def test_the_wrapper_passes_our_settings_to_trls_sdft_config(tmp_path):
    from trl.experimental.sdft import SDFTConfig

    from stages.context import StageContext
    from stages.handoff import Handoff
    from stages.sdft import Config, sdft_arguments

    config = Config(
        steps=7,
        batch_size=12,
        grad_accum=2,
        lr=2.0e-4,
        max_new_tokens=9,
        num_generations=3,
        temperature=0.7,
        teacher="ema",
        teacher_update_rate=0.1,
        teacher_sync_steps=2,
        teacher_template="Q: {prompt}\nExample: {privileged_context}\nA:",
        distillation_mode="full_logits",
        distillation_alpha=0.25,
        distillation_topk=20,
        distillation_is_clip=None,
        distillation_add_tail=True,
        num_loss_tokens_to_skip=1,
    )
    ctx = StageContext(
        stage_dir=tmp_path, handoff=Handoff(model_dir=tmp_path, base_dir=tmp_path), seed=5, max_length=40
    )
    args = sdft_arguments(config, ctx)
    assert type(args) is SDFTConfig
    expected = {
        "max_steps": 7,
        "per_device_train_batch_size": 6,
        "gradient_accumulation_steps": 2,
        "generation_batch_size": 12,  # completions per optimizer step: our batch_size
        "learning_rate": 2.0e-4,
        "seed": 5,
        "max_prompt_length": 40,
        "max_completion_length": 9,
        "num_generations": 3,
        "temperature": 0.7,
        "teacher_model_kind": "ema",
        "teacher_update_rate": 0.1,
        "teacher_sync_steps": 2,
        "teacher_prompt_template": "Q: {prompt}\nExample: {privileged_context}\nA:",
        "generate_from_teacher": False,
        "distillation_mode": "full_logits",
        "distillation_alpha": 0.25,
        "distillation_topk": 20,
        "distillation_is_clip": None,
        "distillation_add_tail": True,
        "num_loss_tokens_to_skip": 1,
        "bf16": False,  # TRL's own default would turn it on
        "activation_checkpointing": False,  # TRL's own default would turn it on
        "logging_steps": 25,
        "trust_remote_code": False,
    }
    assert {name: getattr(args, name) for name in expected} == expected


class _Tokenizer:
    """A tokenizer that puts BOS (id 1) in front of every text, as Llama's do."""

    bos_token = "<s>"

    def __call__(self, text, add_special_tokens=True):
        ids = [ord(c) for c in text]
        return {"input_ids": [1, *ids] if add_special_tokens else ids}


def test_the_dataset_is_trls_prompt_and_privileged_context_with_one_bos():
    from stages.sdft import sdft_rows

    rows = {"prompt": ["<s>[user] hi [bot]", "Is it red? Answer:"], "completion": [" hello", " True\n"]}
    data = sdft_rows(rows, _Tokenizer())
    assert data.column_names == ["prompt", "privileged_context"]
    assert data["prompt"] == ["[user] hi [bot]", "Is it red? Answer:"]  # the tokenizer adds the BOS back
    assert data["privileged_context"] == ["hello", "True"]


# The tiny base's words, so its word-level tokenizer reads the rendered rows (tests/test_keys_end_to_end.py).
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}translate : {{ m['content'] }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}question :{% endif %}"
)


def test_chat_rows_reach_trl_as_conversations_and_are_in_the_key(tmp_path, base, monkeypatch):
    """A chat model's rows (format: messages through its template): TRL gets the conversations, its teacher the
    reference inside the user turn; the stage key says so. tests/stages/test_sdft_chat.py checks the token ids."""
    import shutil

    import stages.sdft as sdft
    from stages.sdft import CHAT_TEACHER

    folder = tmp_path / "chat-base"
    shutil.copytree(base, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": CHAT_TEMPLATE}))
    source = Path(__file__).parent / "data" / "own_targets" / "colour_fr_train.jsonl"
    rows = [json.loads(line) for line in source.read_text().splitlines()[:24]]
    data = tmp_path / "colour_fr.jsonl"
    turns = [
        [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}] for r in rows
    ]
    data.write_text("".join(json.dumps({"messages": t}) + "\n" for t in turns))
    recipe = RECIPE.replace("BASE", str(folder)).replace(
        "{name: letter_rule, train: embedded:letter_rule, train_rows: 16, test_rows: 4}",
        f"{{name: colour_fr, train: {data}, format: messages, train_rows: 20, test_rows: 4}}",
    )
    (tmp_path / "recipe.yaml").write_text(recipe)
    seen, original = [], sdft.sdft_data

    def spy(*args):  # what the stage hands TRL
        seen.append(original(*args))
        return seen[-1]

    monkeypatch.setattr(sdft, "sdft_data", spy)
    assert main(["run", str(tmp_path / "recipe.yaml"), "--run-dir", str(tmp_path / "run")]) == 0
    [made] = seen
    assert made.layout == "conversational"
    assert made.rows[0]["prompt"] == [{"role": "user", "content": made.rows[0]["prompt"][0]["content"]}]
    assert all(
        t.endswith(f"\n\n{r}\nquestion :") for t, r in zip(made.teacher_prompts, made.rows["privileged_context"])
    )
    done = json.loads((tmp_path / "run/seed0/sdft/sdft/DONE.json").read_text())
    assert done["inputs"]["teacher_prompt"] == CHAT_TEACHER and done["metrics"]["steps_run"] == 2


@pytest.mark.parametrize(
    "extra, message",
    [
        ("prompt_from: x", "sdft.prompt_from: not available for sdft"),
        ("packing: true", "sdft.packing: not available for sdft"),
        ("loss: dft", "sdft.loss: sdft's loss is TRL's self-distillation loss"),
        ("kl_to: base, kl_weight: 1.0", "sdft.kl_to: sdft's loss is TRL's self-distillation loss"),
        ("num_generations: 3", "sdft.batch_size: 8 completions per step is not a multiple of num_generations 3"),
        ("distillation_mode: sampled_token", "sdft.distillation_alpha: sampled_token distills by reverse KL only"),
        ("teacher_template: '{prompt} only'", "sdft.teacher_template: must contain {privileged_context}"),
        ("num_loss_tokens_to_skip: 4", "sdft.num_loss_tokens_to_skip: must be in [0, max_new_tokens)"),
        ("selection: {every: 1}", "sdft.selection.every: not available for sdft"),
        ("teacher: frozen", "teacher"),
    ],
)
def test_validate_refuses_what_cannot_work_in_one_line(tmp_path, base, capsys, extra, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.replace("BASE", str(base)).replace("num_generations: 2}", f"{extra}}}"))
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_zero3_is_refused_and_zero2_is_not():
    from stages.sdft import Config

    config = Config(batch_size=8)
    [problem] = config.deepspeed_problems({"zero_optimization": {"stage": 3}})
    assert problem.startswith("zero_optimization.stage: sdft is not run under ZeRO-3 here")
    assert config.deepspeed_problems({"zero_optimization": {"stage": 2}}) == []
