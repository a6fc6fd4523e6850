"""The real model, offline: SmolLM2-135M-Instruct from its wheel, the real general suite, a label target (the
operation that solves an SVAMP problem).

A few steps of ProMoT through `pipeline run recipes/promot_smollm2.yaml` (the shipped recipe, cut down with
--set), then what a user does with the folder: reload it in plain transformers and PEFT. And what the numbers
rest on: every prompt goes through the chat template exactly once (the base's scores: tests/test_real_base.py).
The base is converted once into the user's cache (~30 s), as `make promot-smollm2` does.
"""

import json
from pathlib import Path

import pandas as pd
import pytest

from evaluation.suites import REAL_GENERAL, REAL_GENERATION, REAL_KNOWLEDGE
from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
REAL_TASKS = [f"real_{t}" for t in REAL_GENERAL]
SYSTEM, USER, ASSISTANT = "<|im_start|>system\n", "<|im_start|>user\n", "<|im_start|>assistant\n"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base():
    from bases import missing_requirement

    if missing_requirement("smollm2-135m-instruct"):
        pytest.fail(f"smollm2-135m-instruct: {missing_requirement('smollm2-135m-instruct')}")
    from bases.smollm2 import ensure_smollm2

    return ensure_smollm2()


@pytest.fixture(scope="module")
def loaded(base):
    from stages.model_io import load_model

    model, tokenizer = load_model(base)
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def finished_run(base, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "promot_smollm2"
    overrides = [
        "threads=2",
        "evaluation.limit=2",
        "evaluation.target_limit=4",
        "target.train_rows=32",
        "max_length=160",
        "recipes.promot.0.steps=2",
        "recipes.promot.1.steps=2",
        "recipes.promot.0.batch_size=2",
        "recipes.promot.1.batch_size=2",
    ]
    args = ["run", str(ROOT / "recipes" / "promot_smollm2.yaml"), "--run-dir", str(run_dir), "--only", "promot"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    return run_dir


def test_the_run_scores_every_real_task_and_the_target(finished_run):
    frame = pd.read_csv(finished_run / "results.csv")
    final = frame[(frame.stage == "finetune") & (frame.primary == 1) & (frame.metric != "format_leak")]
    assert sorted(final[final.suite == "general"].task) == sorted(REAL_TASKS)
    assert (final[final.suite == "general"].n == 2).all()
    assert final[final.suite == "target"].n.tolist() == [4]
    # IFEval's loose accuracy is kept beside its strict one, and never averaged into the general score.
    ifeval = frame[(frame.stage == "finetune") & (frame.task == "real_ifeval") & (frame.metric != "format_leak")]
    assert dict(zip(ifeval.metric, ifeval.primary)) == {
        "prompt_level_strict_acc": 1,
        "prompt_level_loose_acc": 0,
        **{m: 0 for m in ifeval.metric if m.startswith("inst_")},
    }
    # The format leak is measured on generated answers only: a multiple-choice answer is one of its choices.
    leak = frame[(frame.stage == "finetune") & (frame.metric == "format_leak")]
    assert sorted(leak.task) == sorted(f"real_{t}" for t in REAL_GENERATION)
    # Each general task carries its group (knowledge, generation) into results.csv and the report.
    general = final[final.suite == "general"]  # the target's rows have no group
    assert dict(zip(general.task, general.group)) == {
        **{f"real_{t}": "knowledge" for t in REAL_KNOWLEDGE},
        **{f"real_{t}": "generation" for t in REAL_GENERATION},
    }
    assert "generation forgetting" in (finished_run / "report.md").read_text()
    manifest = json.loads((finished_run / "manifest.json").read_text())
    assert manifest["chat_template"]["applied"] is True
    assert "not the original bf16 weights" in manifest["base_model"]["build"]["weights"]
    report = (finished_run / "report.md").read_text()
    assert "real_arc_easy" in report and " ± " in report


def test_the_saved_folders_reload_in_plain_transformers_and_peft(finished_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evaluation.generation import generate

    stage = finished_run / "seed0" / "promot" / "finetune"
    model = AutoModelForCausalLM.from_pretrained(stage / "model")
    tokenizer = AutoTokenizer.from_pretrained(stage / "model")
    assert model.num_parameters() == 134_515_008 and tokenizer.chat_template
    prompted = PeftModel.from_pretrained(model, stage / "adapter")
    row = json.loads((ROOT / "recipes" / "data" / "svamp_op_test.jsonl").read_text().splitlines()[0])
    text = tokenizer.apply_chat_template(row["messages"][:1], tokenize=False, add_generation_prompt=True)
    answers = generate(prompted, tokenizer, [text], max_new_tokens=3)
    assert len(answers) == 1 and isinstance(answers[0], str)


def test_every_prompt_goes_through_the_chat_template_exactly_once(loaded, finished_run):
    """What the model is fed, decoded: one system turn, one user turn and one assistant opening per row, for a
    general task (lm-eval renders it) and for the target (rendered once by its messages format)."""
    from evaluation.harness import evaluate_suite
    from evaluation.suites import SUITES, Suite

    model, tokenizer = loaded
    seen = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.extend(kwargs["input_ids"].tolist()) if "input_ids" in kwargs else None,
        with_kwargs=True,
    )
    try:
        general = Suite(
            "real_check", "general", ["real_arc_easy", "real_arc_challenge_chat"], SUITES["real_general"].include_path
        )
        evaluate_suite(model, tokenizer, general, limit=2, apply_chat_template=True)
        general_rows, seen[:] = list(seen), []
        target = Suite("svamp_op", "target", ["svamp_op"], str(finished_run / "data" / "lm_eval_tasks"))
        evaluate_suite(model, tokenizer, target, limit=2, apply_chat_template=False)
        target_rows = list(seen)
    finally:
        hook.remove()
    for rows in (general_rows, target_rows):
        assert rows
        for ids in (ids for ids in rows if len(ids) > 1):  # a generation step after the first feeds one token
            text = tokenizer.decode([i for i in ids if i != tokenizer.pad_token_id])
            assert text.count(SYSTEM) == 1 and text.count(USER) == 1 and text.count(ASSISTANT) == 1, text
            assert text.index(SYSTEM) < text.index(USER) < text.index(ASSISTANT)
    # The letter tasks' assistant turn starts with their prefix, inside the one rendering.
    assert any(ASSISTANT + "The best answer is" in tokenizer.decode(ids) for ids in general_rows if len(ids) > 1)
