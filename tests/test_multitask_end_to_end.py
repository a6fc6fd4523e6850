"""End to end: multi-task ProMoT (one prompt per target, stage 2 mixing the tasks), through `pipeline run`."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from pipeline.cli import main

RECIPE = """
name: multitask
seeds: [0]
model: {path: BASE}
targets:
  - {name: letter_rule, train: "embedded:letter_rule", train_rows: 48, test_rows: 6}
  - {name: capital_rule, train: "embedded:capital_rule", train_rows: 32, test_rows: 6}
evaluation: {general_suite: embedded_general, limit: 4, batch_size: 100}
max_length: 48
x-finetune: &finetune {kind: finetune, steps: 3, batch_size: 8, lr: 1.0e-3}
x-prompt: &prompt {kind: prompt_tune, steps: 3, batch_size: 8, lr: 0.3, num_virtual_tokens: 8, init: sampled_vocab}
recipes:
  sft:
    - *finetune
  promot_multitask:
    - {<<: *prompt, name: prompt_letter, data: [letter_rule]}
    - {<<: *prompt, name: prompt_capital, data: [capital_rule]}
    - {<<: *finetune, prompt_from: [prompt_letter, prompt_capital]}
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    return ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))


def write_recipe(folder: Path, base, text: str = RECIPE) -> Path:
    path = folder / "multitask.yaml"
    path.write_text(text.replace("BASE", str(base)))
    return path


@pytest.fixture(scope="module")
def finished_run(base, tmp_path_factory):
    root = tmp_path_factory.mktemp("multitask")
    recipe = write_recipe(root, base)
    assert main(["validate", str(recipe)]) == 0
    assert main(["run", str(recipe), "--run-dir", str(root / "run")]) == 0
    return root / "run"


def test_each_prompt_serves_its_own_target(finished_run):
    stages = json.loads((finished_run / "manifest.json").read_text())["stages"]
    letter = stages["seed0/promot_multitask/prompt_letter"]
    assert letter["data_rows"] == {"letter_rule": 48}
    assert letter["output_adapters"]["prompt_letter"]["tasks"] == ["letter_rule"]
    final = stages["seed0/promot_multitask/finetune"]
    assert final["data_rows"] == {"target": 80}  # both tasks mixed
    out = final["output_adapters"]
    assert out["prompt_letter"]["tasks"] == ["letter_rule"] and out["prompt_capital"]["tasks"] == ["capital_rule"]
    assert out["prompt_capital"]["path"] == str(
        finished_run / "seed0/promot_multitask/finetune/adapters/prompt_capital"
    )
    done = json.loads((finished_run / "seed0/promot_multitask/finetune/DONE.json").read_text())
    assert done["metrics"]["prompts"] == {"prompt_letter": ["letter_rule"], "prompt_capital": ["capital_rule"]}


def test_results_score_each_target_and_the_general_suite(finished_run):
    frame = pd.read_csv(finished_run / "results.csv")
    final = frame[(frame.recipe == "promot_multitask") & (frame.stage == "finetune") & (frame.primary == 1)]
    targets = final[final.suite == "target"]
    assert sorted(targets.task) == ["embedded_capital_rule", "embedded_letter_rule"] and (targets.n == 6).all()
    assert ((final.suite == "general") & (final.metric != "format_leak")).sum() == 8
    sft = frame[(frame.recipe == "sft") & (frame.suite == "target") & (frame.primary == 1)]
    assert sorted(set(sft.task)) == ["embedded_capital_rule", "embedded_letter_rule"]


def test_stage_two_prompts_are_frozen_and_its_model_loads_plainly(finished_run):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    folder = finished_run / "seed0/promot_multitask"
    for name in ("prompt_letter", "prompt_capital"):
        before = load_file(folder / name / "adapter" / "adapter_model.safetensors")
        after = load_file(folder / "finetune" / "adapters" / name / "adapter_model.safetensors")
        assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    model = AutoModelForCausalLM.from_pretrained(folder / "finetune" / "model")
    PeftModel.from_pretrained(model, str(folder / "finetune" / "adapters" / "prompt_capital"))


def test_the_per_row_forward_is_pefts_prompt_tuning_forward(base):
    """One row's loss through the multi-prompt module equals PEFT's own prompt-tuning forward with that prompt."""
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from stages.multi_prompt import MultiPromptModel

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base)
    peft = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4), adapter_name="a")
    peft.add_adapter("b", PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    with torch.no_grad():
        peft.prompt_encoder["b"].embedding.weight.normal_()
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    labels = torch.tensor([[-100, -100, 7, 8], [-100, 10, 11, -100]])
    multi = MultiPromptModel(peft, ["a", "b"])
    for row, name in ((0, "a"), (1, "b")):
        peft.set_adapter(name)
        own = peft(input_ids=ids[row : row + 1], attention_mask=mask[row : row + 1], labels=labels[row : row + 1]).loss
        mine = multi(ids[row : row + 1], mask[row : row + 1], labels[row : row + 1], torch.tensor([row])).loss
        assert torch.allclose(own, mine, atol=1e-6)
    mixed = multi(ids, mask, labels, torch.tensor([0, 1])).logits
    peft.set_adapter("b")
    assert torch.allclose(mixed[1:], peft(input_ids=ids[1:], attention_mask=mask[1:]).logits, atol=1e-5)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            ("prompt_from: [prompt_letter, prompt_capital]", "prompt_from: [prompt_letter, nothing]"),
            "promot_multitask.finetune.prompt_from: needs an earlier stage named 'nothing'",
        ),
        (
            ("targets:\n", "target: {name: x, train: 'embedded:letter_rule'}\ntargets:\n"),
            "targets: give either target (one task) or targets (several), not both",
        ),
        (("name: capital_rule", "name: letter_rule"), "targets[1].name: 'letter_rule' is already a source name"),
    ],
)
def test_bad_multitask_recipes_are_refused_naming_the_field(base, tmp_path, capsys, edit, message):
    recipe = write_recipe(tmp_path, base, RECIPE.replace(*edit))
    assert main(["validate", str(recipe)]) != 0
    assert message in capsys.readouterr().err


def test_evaluation_picks_the_prompt_that_serves_each_target():
    from stages.handoff import Adapter, Handoff, Scope

    letter, capital = Adapter(Path("l"), tasks=("letter_rule",)), Adapter(Path("c"), tasks=("capital_rule",))
    handoff = Handoff(Path("m"), Path("b"), {"prompt_letter": letter, "prompt_capital": capital})
    assert handoff.attached(Scope.TARGET, "letter_rule") is letter
    assert handoff.attached(Scope.TARGET, "capital_rule") is capital
    assert handoff.attached(Scope.TARGET, "other") is None
    shared = Handoff(Path("m"), Path("b"), {"prompt_tune": Adapter(Path("p"))})  # one target: serves it
    assert shared.attached(Scope.TARGET, "letter_rule").path == Path("p")


LORA_ON_ONE = """
name: lora_one
seeds: [0]
model: {path: BASE}
targets:
  - {name: letter_rule, train: "embedded:letter_rule", train_rows: 48, test_rows: 6}
  - {name: capital_rule, train: "embedded:capital_rule", train_rows: 32, test_rows: 6}
evaluation: {general_suite: embedded_general, limit: 4, batch_size: 100}
max_length: 48
recipes:
  lora_letter:
    - {kind: lora_tune, data: [letter_rule], steps: 4, batch_size: 8, lr: 5.0e-2, r: 4}
"""


def test_a_target_its_lora_does_not_serve_is_scored_without_it(base, tmp_path):
    """A target-scoped LoRA adapter trained for one of two targets: the other target is scored on the plain model
    (no LoRA layer active), so its per-example scores are the base model's, though it comes after the LoRA's own."""
    import evaluation.harness

    scored, score_suite = [], evaluation.harness.evaluate_suite

    def evaluate_suite(model, tokenizer, suite, **kwargs):
        from peft.tuners.lora import LoraLayer

        active = any(isinstance(m, LoraLayer) and not m.disable_adapters for m in model.modules())
        scored.append((suite.tasks[0], active))
        return score_suite(model, tokenizer, suite, **kwargs)

    recipe = write_recipe(tmp_path, base, LORA_ON_ONE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluation.harness, "evaluate_suite", evaluate_suite)
        assert main(["run", str(recipe), "--run-dir", str(tmp_path / "run")]) == 0
    lora_eval = scored[-2:]  # the lora stage's evaluation: its two targets, after the base's suites
    assert sorted(lora_eval) == [("embedded_capital_rule", False), ("embedded_letter_rule", True)]
    from stages.evaluate import read_per_example

    base_values = read_per_example(tmp_path / "run/base/evaluate")
    after = read_per_example(tmp_path / "run/seed0/lora_letter/lora_tune-eval")
    assert after["embedded_capital_rule"] == base_values["embedded_capital_rule"]
    frame = pd.read_csv(tmp_path / "run/results.csv")
    targets = frame[(frame.stage == "lora_tune") & (frame.suite == "target") & (frame.primary == 1)]
    assert list(targets.task) == ["embedded_letter_rule", "embedded_capital_rule"]  # the suites' order
