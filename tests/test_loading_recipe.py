"""docs/run-folder.md "Using a trained model", line for line: a saved ProMoT model answers as the evaluation scored it.

The embedded test base answers nothing in a few steps, so this runs the ProMoT recipe on a random tiny
Llama whose greedy answers are long and peaked: a misplaced or repeated soft prompt changes them.
"""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from embedded.tasks import make_examples
from embedded.tokenizer import build_tokenizer
from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 8


@pytest.fixture(scope="module")
def promot_run(tmp_path_factory):
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        initializer_range=0.5,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    base = tmp_path_factory.mktemp("model") / "random-llama"
    LlamaForCausalLM(config).save_pretrained(base)
    tokenizer.save_pretrained(base)
    run_dir = tmp_path_factory.mktemp("runs") / "promot"
    settings = [
        f"model.path={base}",
        "seeds=[0]",
        f"evaluation.limit={LIMIT}",
        f"target.test_rows={LIMIT}",
        "target.train_rows=32",
        "recipes.promot.0.steps=2",
        "recipes.promot.0.batch_size=8",
        # A tiny learning rate keeps the random model's peaked answers through stage 2.
        "recipes.promot.1.steps=2",
        "recipes.promot.1.batch_size=8",
        "recipes.promot.1.lr=1e-6",
    ]
    args = ["run", str(ROOT / "recipes" / "promot.yaml"), "--run-dir", str(run_dir), "--only", "promot"]
    assert main(args + [a for s in settings for a in ("--set", s)]) == 0
    return run_dir


def _readme_recipe(run_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = f"{run_dir}/seed0/promot/finetune"
    tokenizer = AutoTokenizer.from_pretrained(f"{run}/model")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(f"{run}/model"), f"{run}/adapter")
    return model, tokenizer


def _prompts(task: str) -> list[str]:
    return [e["prompt"] for e in make_examples(task, "test", 200)[:LIMIT]]


def test_readme_recipe_gives_the_answers_and_score_the_report_has(promot_run):
    from evaluation.generation import generate

    model, tokenizer = _readme_recipe(promot_run)
    scored = json.loads((promot_run / "seed0/promot/finetune-eval/DONE.json").read_text())["metrics"]["samples"]
    target = generate(model, tokenizer, _prompts("letter_rule"), max_new_tokens=16)
    with model.disable_adapter():
        general = generate(model, tokenizer, _prompts("fact"), max_new_tokens=16)
    assert [a.strip() for a in target] == scored["embedded_letter_rule"]
    assert [a.strip() for a in general] == scored["embedded_fact"]
    assert all(scored["embedded_letter_rule"])  # real answers, so a misplaced prompt would show

    references = [e["completion"] for e in make_examples("letter_rule", "test", 200)[:LIMIT]]
    reported = (
        pd.read_csv(promot_run / "results.csv")
        .query("recipe == 'promot' and stage == 'finetune' and suite == 'target'")
        .score.item()
    )
    assert reported == sum(a.strip() == r for a, r in zip(target, references)) / LIMIT


@pytest.mark.upstream
def test_peft_generate_would_not_give_them(promot_run):
    """Why docs/run-folder.md does not say PeftModel.generate: on the same folders its answers differ.

    If this fails, PeftModel.generate decodes a soft prompt right again (upstream fixed it, see
    tests/evaluation/test_upstream_generation.py); docs/run-folder.md could then offer it too.
    """
    model, tokenizer = _readme_recipe(promot_run)
    scored = json.loads((promot_run / "seed0/promot/finetune-eval/DONE.json").read_text())["metrics"]["samples"]
    answers = []
    for prompt in _prompts("letter_rule"):  # one at a time: no padding involved
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=16, do_sample=False)
        answers.append(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip())
    assert answers != scored["embedded_letter_rule"]
