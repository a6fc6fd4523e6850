"""End to end: ProMoT with LoRA in stage 1 (the paper's ablation) and a plain LoRA fine-tune, through `pipeline run`.

Evaluation attaches a target-scoped LoRA adapter for the target task only, and an every_suite one for every suite.
"""

import json

import pandas as pd
import pytest

from pipeline.cli import main

RECIPE = """name: lora
seeds: [0]
model: {path: BASE}
target: {name: letter_rule, train: embedded:letter_rule, train_rows: 64, test_rows: 6}
evaluation: {general_suite: embedded_general, limit: 4, batch_size: 8}
max_length: 48
x-finetune: &finetune {kind: finetune, steps: 4, batch_size: 8, lr: 1.0e-3}
x-lora: &lora {kind: lora_tune, steps: 4, batch_size: 8, lr: 1.0e-2, r: 4}
recipes:
  promot:
    - {kind: prompt_tune, steps: 4, batch_size: 8, lr: 0.3, num_virtual_tokens: 4}
    - {<<: *finetune, prompt_from: prompt_tune}
  lora_promot:
    - *lora
    - {<<: *finetune, prompt_from: lora_tune}
  lora_everywhere:
    - {<<: *lora, scope: every_suite}
  lora_merged:
    - {<<: *lora, scope: merged}
    - *finetune
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """The run, and what each evaluation scored: (evaluation folder, suite kind, PEFT method attached or None)."""
    import evaluation.harness
    import stages.evaluate
    from embedded.model import TEST_SPEC, ensure_base_model

    base = ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))
    folder = tmp_path_factory.mktemp("lora")
    (folder / "recipe.yaml").write_text(RECIPE.replace("BASE", str(base)))
    run_dir = folder / "run"
    scored, current = [], []
    run_evaluation, score_suite = stages.evaluate.run, evaluation.harness.evaluate_suite

    def evaluate(config, ctx):
        current[:] = [ctx.stage_dir.relative_to(run_dir).as_posix()]
        return run_evaluation(config, ctx)

    def evaluate_suite(model, tokenizer, suite, **kwargs):
        method = model.active_peft_config.peft_type.value if hasattr(model, "active_peft_config") else None
        scored.append((current[0], suite.suite_kind, method))
        return score_suite(model, tokenizer, suite, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stages.evaluate, "run", evaluate)
        patch.setattr(evaluation.harness, "evaluate_suite", evaluate_suite)
        assert main(["validate", str(folder / "recipe.yaml")]) == 0
        assert main(["run", str(folder / "recipe.yaml"), "--run-dir", str(run_dir)]) == 0
    return run_dir, scored


def test_the_lora_adapter_is_attached_for_the_target_only(finished_run):
    run_dir, scored = finished_run
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    lora = {"path": str(run_dir / "seed0/lora_promot/lora_tune/adapter"), "kind": "lora", "scope": "target"}
    assert stages["seed0/lora_promot/lora_tune-eval"]["input_adapters"] == {"lora_tune": lora}
    stage_2 = stages["seed0/lora_promot/finetune"]
    stage_1 = stages["seed0/lora_promot/lora_tune"]
    assert stage_2["input_adapters"] == {"lora_tune": lora}
    assert stage_2["input_model"] == stage_1["output_model"] == stage_1["input_model"]  # the weights, untouched
    rehomed = {**lora, "path": str(run_dir / "seed0/lora_promot/finetune/adapter")}
    assert (
        stages["seed0/lora_promot/finetune-eval"]["input_adapters"]
        == stage_2["output_adapters"]
        == {"lora_tune": rehomed}
    )
    for evaluation in ("seed0/lora_promot/lora_tune-eval", "seed0/lora_promot/finetune-eval"):
        seen = {(kind, method) for stage, kind, method in scored if stage == evaluation}
        assert ("target", "LORA") in seen and ("general", "LORA") not in seen, evaluation
    # stage 1 changed no weights: its general rows are the base's, not scored again; stage 2's are scored
    assert not [s for s in scored if s[0] == "seed0/lora_promot/lora_tune-eval" and s[1] == "general"]
    assert ("seed0/lora_promot/finetune-eval", "general", None) in scored


def test_results_have_rows_for_every_recipe_and_stage(finished_run):
    run_dir, _ = finished_run
    frame = pd.read_csv(run_dir / "results.csv")
    assert set(frame.recipe) == {"promot", "lora_promot", "lora_everywhere", "lora_merged"}
    lora_promot = frame[frame.recipe == "lora_promot"]
    assert list(dict.fromkeys(lora_promot.stage)) == ["base", "lora_tune", "finetune"]
    assert set(lora_promot.suite) == {"general", "target"} and (lora_promot[lora_promot.suite == "target"].n == 6).all()
    columns = ["task", "metric", "score", "n", "stderr"]
    general = lora_promot[lora_promot.suite == "general"].sort_values(columns)
    assert (
        general[general.stage == "lora_tune"][columns].to_numpy().tolist()
        == general[general.stage == "base"][columns].to_numpy().tolist()
    )


def test_an_every_suite_lora_is_attached_for_the_general_suite_too(finished_run):
    run_dir, scored = finished_run
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    evaluation = "seed0/lora_everywhere/lora_tune-eval"
    assert stages[evaluation]["input_adapters"] == {
        "lora_tune": {
            "path": str(run_dir / "seed0/lora_everywhere/lora_tune/adapter"),
            "kind": "lora",
            "scope": "every_suite",
        }
    }
    seen = {(kind, method) for stage, kind, method in scored if stage == evaluation}
    assert seen == {("general", "LORA"), ("target", "LORA")}  # the base's rows are not reused
    frame = pd.read_csv(run_dir / "results.csv")
    rows = frame[(frame.recipe == "lora_everywhere") & (frame.stage == "lora_tune")]
    assert set(rows.suite) == {"general", "target"}


def test_a_merged_lora_is_the_next_stages_model_and_never_attached(finished_run):
    run_dir, scored = finished_run
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    lora, stage_2 = stages["seed0/lora_merged/lora_tune"], stages["seed0/lora_merged/finetune"]
    assert lora["output_model"] == str(run_dir / "seed0/lora_merged/lora_tune/model") == stage_2["input_model"]
    assert lora["output_adapters"]["lora_tune"]["scope"] == "merged"
    seen = {(kind, method) for stage, kind, method in scored if stage == "seed0/lora_merged/lora_tune-eval"}
    assert seen == {("general", None), ("target", None)}  # new weights: every suite scored, nothing attached


def test_a_rerun_skips_every_lora_stage(finished_run, monkeypatch, tmp_path):
    import stages

    run_dir, _ = finished_run
    before = (run_dir / "results.csv").read_text()

    def must_not_run(config, ctx):
        raise AssertionError(f"stage ran again: {ctx.stage_dir}")

    for module in stages.STAGES.values():
        monkeypatch.setattr(module, "run", must_not_run)
    assert main(["run", str(run_dir.parent / "recipe.yaml"), "--run-dir", str(run_dir)]) == 0
    assert (run_dir / "results.csv").read_text() == before


def test_prompt_from_names_a_lora_stage_or_the_field_is_named(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.replace("BASE", "embedded").replace("prompt_from: lora_tune", "prompt_from: lora"))
    assert main(["validate", str(recipe)]) != 0
    assert (
        "finetune.prompt_from: needs an earlier stage named 'lora' that makes a soft prompt or LoRA adapter"
        in capsys.readouterr().err
    )
