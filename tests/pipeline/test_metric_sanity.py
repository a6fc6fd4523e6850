"""Metric sanity before training, through `pipeline validate`: a task's metrics are checked from its config in
lm-eval's task index (no data loaded). The refusals themselves are cases of tests/bad_inputs (metric_out_of_range,
metric_lower_is_better, group_task), run through both `run` and `validate`."""

import shutil
from pathlib import Path

from pipeline.cli import main

CASES = Path(__file__).resolve().parents[1] / "bad_inputs"


def case_recipe(tmp_path: Path, case: str) -> Path:
    folder = shutil.copytree(CASES / case, tmp_path / case)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((folder / "recipe.yaml").read_text().replace("{dir}", str(folder)))
    return recipe


def test_a_metric_declared_in_unit_metrics_is_accepted(tmp_path, capsys):
    recipe = case_recipe(tmp_path, "metric_out_of_range")
    assert main(["validate", str(recipe)]) == 2
    assert main(["validate", str(recipe), "--set", "evaluation.unit_metrics=[bleu]"]) == 0, capsys.readouterr().err


def test_a_declaration_does_not_overrule_the_tasks_own_sign(tmp_path, capsys):
    recipe = case_recipe(tmp_path, "metric_lower_is_better")
    assert main(["validate", str(recipe), "--set", "evaluation.unit_metrics=[perplexity]"]) == 2
    assert "metric 'perplexity' is lower-is-better" in capsys.readouterr().err


def test_a_group_task_of_lm_eval_is_refused_in_one_line(tmp_path, capsys):
    """lm-eval's `mmlu` (a group) as a general task: today a KeyError after training; now one line, from the
    task index lm-eval ships (its YAMLs, no data)."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "name: hub\ntarget: {}\nevaluation: {general_tasks: [arc_easy, mmlu]}\nrecipes:\n  sft: [{kind: finetune}]\n"
    )
    assert main(["validate", str(recipe)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "evaluation.general_tasks: 'mmlu': is an lm-eval group of tasks (mmlu_" in lines[0]


def test_the_shipped_suites_pass(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "name: ok\ntarget: {}\nevaluation: {general_suite: real_general, domain_suites: "
        "[embedded_math, real_gsm8k]}\nrecipes:\n  sft: [{kind: finetune}]\n"
    )
    assert main(["validate", str(recipe)]) == 0, capsys.readouterr().err
