"""End to end: checkpoint selection (a stage's `selection:`) through `pipeline run`, a crash and its resume."""

import json
from pathlib import Path

import pytest

from pipeline.cli import main

RECIPE = """
name: select
seeds: [0]
model: {path: BASE}
target: {name: letter_rule, train: "embedded:letter_rule", train_rows: 64, test_rows: 6}
evaluation: {general_suite: embedded_general, limit: 4, batch_size: 100}
max_length: 48
x-finetune: &finetune {kind: finetune, steps: 4, batch_size: 8, lr: 1.0e-3, scheduler: constant, warmup_ratio: 0,
                       save_steps: 2}
x-pick: &pick {every: 2, criterion: target, validation_rows: 8}
recipes:
  best4:
    - {<<: *finetune, selection: *pick}
  best2:
    - {<<: *finetune, steps: 2, selection: *pick}
  promot_best:
    - {kind: prompt_tune, steps: 4, batch_size: 8, lr: 0.3, num_virtual_tokens: 16, init: sampled_vocab}
    - {<<: *finetune, prompt_from: prompt_tune,
       selection: {every: 2, criterion: target_with_retention, min_general_ratio: 0.95, validation_rows: 8}}
"""


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    base = ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))
    path = tmp_path_factory.mktemp("recipe") / "select.yaml"
    path.write_text(RECIPE.replace("BASE", str(base)))
    return path


@pytest.fixture(scope="module")
def finished_run(recipe, tmp_path_factory):
    """best4 and best2 get scripted target scores (the first check wins), their general scores real; best4 crashes
    at its second check and the rerun resumes it. promot_best is scored for real."""
    import stages.selection as selection

    run_dir = tmp_path_factory.mktemp("select") / "run"
    real, scored, crash = selection.validation_scores, [], {"armed": True}

    def scripted(selector, model):
        scores, recipe = real(selector, model), selector.folder.parts[-4]  # <run>/seed0/<recipe>/<stage>/trainer/..
        if recipe in ("best4", "best2"):
            scored.append((recipe, len(selector.history)))
            if crash["armed"] and recipe == "best4" and selector.history:
                raise RuntimeError("injected crash at best4's second check")
            scores["target"] = 0.0 if selector.history else 1.0
        return scores

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(selection, "validation_scores", scripted)
        assert main(["validate", str(recipe)]) == 0
        with pytest.raises(RuntimeError, match="injected crash"):
            main(["run", str(recipe), "--run-dir", str(run_dir)])
        first = list(scored)
        crash["armed"] = False
        assert main(["run", str(recipe), "--run-dir", str(run_dir)]) == 0
    return run_dir, first, scored[len(first) :]


def done(run_dir: Path, recipe: str, stage: str = "finetune") -> dict:
    return json.loads((run_dir / "seed0" / recipe / stage / "DONE.json").read_text())["metrics"]


def weights(run_dir: Path, recipe: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "seed0" / recipe / "finetune" / "model" / "model.safetensors"))


def test_the_kept_step_and_its_history_are_recorded(finished_run):
    run_dir, _, _ = finished_run
    metrics = done(run_dir, "best4")
    assert metrics["selected_step"] == 2
    assert [(c["step"], c["target"]) for c in metrics["selection_history"]] == [(2, 1.0), (4, 0.0)]
    from evaluation.suites import SUITES

    validation = metrics["selection"]["validation"]
    assert (validation["target_rows"], validation["general_docs_from"], validation["train_rows"]) == (8, 4, 56)
    assert validation["general_docs"] == {task: 8 for task in SUITES["embedded_general"].tasks}
    assert metrics["train_rows"] == 56  # the 8 validation rows are not trained on
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["stages"]["seed0/best4/finetune"]["status"] == "done"
    report = (run_dir / "report.md").read_text()
    assert "best4" in report and "kept step" in report


def test_the_saved_model_is_the_kept_checks_weights(finished_run):
    run_dir, _, _ = finished_run
    kept, two_steps = weights(run_dir, "best4"), weights(run_dir, "best2")
    assert done(run_dir, "best2")["selected_step"] == 2
    assert kept.keys() == two_steps.keys()
    assert all((kept[k] == two_steps[k]).all() for k in kept)  # step 2 of 4 is the 2-step run's last step


def test_a_resume_keeps_the_history(finished_run):
    run_dir, first, rerun = finished_run
    assert ("best4", 1) in first  # the crash came at the second check
    assert ("best4", 0) not in rerun and ("best4", 1) in rerun  # step 2 was not scored again
    metrics = done(run_dir, "best4")
    assert metrics["resumed_from"].endswith("checkpoint-2")
    assert not (run_dir / "seed0" / "best4" / "finetune" / "trainer").exists()  # cleared with the stage's checkpoints


def test_retention_keeps_a_step_that_retains_or_says_none_did(finished_run):
    run_dir, _, _ = finished_run
    metrics = done(run_dir, "promot_best")
    history, chosen = metrics["selection_history"], metrics["selection"]
    assert [c["step"] for c in history] == [2, 4]
    bar = chosen["min_general_ratio"] * chosen["base_general"]
    assert all(c["retained"] == (c["general"] >= bar) for c in history)
    retained = [c for c in history if c["retained"]]
    if retained:
        best = max(retained, key=lambda c: (c["target"], -c["step"]))
        assert "note" not in chosen
    else:
        best = max(history, key=lambda c: (c["general"], -c["step"]))
        assert "no check kept" in chosen["note"]
    assert metrics["selected_step"] == best["step"]


def test_a_changed_validation_limit_is_a_changed_stage(finished_run, recipe, tmp_path, capsys):
    """The general validation docs start after evaluation.limit: a selecting stage ran on other inputs."""
    run_dir, _, _ = finished_run
    path = tmp_path / "limit3.yaml"
    path.write_text(recipe.read_text().replace("limit: 4", "limit: 3"))
    assert main(["run", str(path), "--run-dir", str(run_dir)]) != 0
    assert "seed0/best4/finetune (validation_evaluation.settings.limit: 4 -> 3)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "setting, message",
    [
        ("{every: 0}", "finetune.selection.every: must be >= 1, got 0"),
        ("{every: 5}", "finetune.selection.every: must be <= steps (4), got 5"),
        ("{every: 2, min_general_ratio: 1.5}", "finetune.selection.min_general_ratio: must be in (0, 1], got 1.5"),
        ("{every: 2, validation_rows: 0}", "finetune.selection.validation_rows: must be >= 1, got 0"),
        ("{every: 2, criterion: best}", "selection.criterion: must be one of ['target', 'target_with_retention']"),
    ],
)
def test_a_bad_selection_is_refused_naming_the_field(recipe, tmp_path, capsys, setting, message):
    path = tmp_path / "bad.yaml"
    path.write_text(recipe.read_text().replace("selection: *pick", f"selection: {setting}", 1))
    assert main(["validate", str(path)]) != 0
    assert message in capsys.readouterr().err


def test_stage_keys_without_selection_are_as_before():
    import dataclasses

    from pipeline.recipe.config import load_recipe, stage_dict

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "promot_variants.yaml")
    for configs in recipe.stages.values():
        for config in configs:
            written = stage_dict(config)
            if getattr(config, "selection", None) is None:
                later = {"selection", "loss", "loss_alpha", "kl_to", "kl_weight"}  # omitted at their defaults
                names = [f.name for f in dataclasses.fields(config) if f.name not in later]
                assert "selection" not in written and list(written) == [
                    "kind",
                    *(k for n in names for k in (config.data.stage_fields() if n == "data" else {n: 0})),
                ]
    best = recipe.stages["promot_best"][1]
    assert stage_dict(best)["selection"] == {
        "every": 100,
        "criterion": "target_with_retention",
        "min_general_ratio": 0.95,
        "validation_rows": 100,
    }


@pytest.mark.parametrize(
    "criterion, history, kept, noted",
    [
        # the best target, whatever the general score; a tie keeps the earliest step
        ("target", [(2, 0.9, 0.2), (4, 0.7, 0.9), (6, 0.9, 0.9)], 2, False),
        # with retention: the best target among checks at or above the bar (0.95 x 0.8 = 0.76), the tie the earliest
        ("target_with_retention", [(2, 0.9, 0.2), (4, 0.7, 0.9), (6, 0.7, 0.77), (8, 0.6, 0.8)], 4, False),
        # none retains: the best general score, with a note
        ("target_with_retention", [(2, 0.9, 0.2), (4, 0.7, 0.5), (6, 1.0, 0.5)], 4, True),
    ],
)
def test_choose_keeps_the_declared_criterions_step(criterion, history, kept, noted):
    from stages.selection import choose
    from stages.train_config import Criterion, Selection

    selection = Selection(every=2, criterion=Criterion(criterion), min_general_ratio=0.95)
    checks = [{"step": s, "target": t, "general": g, "retained": g >= 0.95 * 0.8} for s, t, g in history]
    step, note = choose(checks, selection)
    assert step == kept and (note is not None) == noted
