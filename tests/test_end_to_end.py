"""End to end: the full ProMoT recipe file on a tiny model, in seconds; then a rerun that skips every stage."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    return ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))


def tiny_overrides(
    base, steps=("prompt_tuning.0", "promot.0", "promot.1", "sft.0", "promot_merge.0", "promot_merge.1")
):
    # evaluation.limit caps the general tasks only; the target's test set has its own size.
    return [
        f"model.path={base}",
        "seeds=[0]",
        "evaluation.limit=4",
        "target.train_rows=64",
        "target.test_rows=6",
        *[f"recipes.{k}.steps=4" for k in steps],
        *[f"recipes.{k}.batch_size=8" for k in steps],
    ]


@pytest.fixture(scope="module")
def finished_run(tiny_base, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "promot"
    args = ["run", str(ROOT / "recipes" / "promot.yaml"), "--run-dir", str(run_dir)]
    for item in tiny_overrides(tiny_base):
        args += ["--set", item]
    assert main(args) == 0
    return run_dir, args


def test_run_folder_is_self_describing(finished_run):
    run_dir, _ = finished_run
    for name in ["config.yaml", "manifest.json", "results.csv", "report.md", "report.png"]:
        assert (run_dir / name).is_file(), name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["code_version"]
    assert manifest["data"]["rows"] == {"embedded:letter_rule": 64}
    assert manifest["launch"]["threads"] >= 1  # chosen and recorded (pipeline/engine/threads.py)
    assert manifest["launch"]["cpu"]["capability"] and manifest["launch"]["cpu"]["machine"]  # the kernels used
    stages = manifest["stages"]
    # The hand-off: ProMoT stage 2 starts from stage 1's checkpoint and prompt, recorded, not guessed.
    # ProMoT's stage 1 is identical to the prompt_tuning recipe's only stage, so it is trained once.
    assert stages["seed0/promot/prompt_tune"] == {
        **stages["seed0/promot/prompt_tune"],
        "status": "reused",
        "reused_from": "seed0/prompt_tuning/prompt_tune",
    }
    pt, ft = stages["seed0/prompt_tuning/prompt_tune"], stages["seed0/promot/finetune"]
    assert ft["input_model"] == pt["output_model"]
    prompt = {"path": str(run_dir / "seed0/prompt_tuning/prompt_tune/adapter"), "kind": "prompt", "scope": "target"}
    assert ft["input_adapters"] == {"prompt_tune": prompt}
    # stage 2 hands the same prompt on, next to its model; the evaluation after it attaches that one (scope target)
    assert (
        stages["seed0/promot/finetune-eval"]["input_adapters"]
        == ft["output_adapters"]
        == {"prompt_tune": {**prompt, "path": ft["output_adapter"]}}
    )
    assert stages["seed0/sft/finetune-eval"]["input_adapters"] == {}
    assert {s["status"] for s in stages.values()} == {"done", "reused"}


def test_results_schema(finished_run):
    run_dir, _ = finished_run
    frame = pd.read_csv(run_dir / "results.csv")
    assert list(frame.columns) == [
        "recipe",
        "seed",
        "stage",
        "task",
        "suite",
        "metric",
        "score",
        "n",
        "stderr",
        "primary",
        "paired_stderr",
    ]
    assert frame.score.between(0, 1).all() and set(frame.suite) == {"general", "target"}
    # Every score is a mean over n examples, with its standard error; the leak is a share with one too.
    scores = frame[frame.metric != "format_leak"]
    p = scores.score
    assert ((scores.stderr - (p * (1 - p) / (scores.n - 1)) ** 0.5).abs() < 1e-6).all()
    assert (frame.primary == 1).all()
    assert set(frame.recipe) == {"sft", "prompt_tuning", "promot", "promot_merge"}
    promot = frame[frame.recipe == "promot"]
    assert list(dict.fromkeys(promot.stage)) == ["base", "prompt_tune", "finetune"]
    general = promot[(promot.suite == "general") & (promot.metric != "format_leak")]
    assert len(general) == 3 * 8 and (general.n == 4).all()
    assert len(promot[promot.metric == "format_leak"]) == 3 * 7  # not on compare, whose answers are True/False
    assert (promot[promot.suite == "target"].n == 6).all()
    # A prompt-tune stage changes no weights: the suites scored without the prompt are the base's own rows.
    columns = ["task", "metric", "score", "n", "stderr"]
    unprompted = promot[promot.suite == "general"].sort_values(columns)
    assert (
        unprompted[unprompted.stage == "prompt_tune"][columns].to_numpy().tolist()
        == unprompted[unprompted.stage == "base"][columns].to_numpy().tolist()
    )
    assert "ProMoT vs SFT: the bar" in (run_dir / "report.md").read_text()


def test_forgetting_has_a_paired_standard_error(finished_run):
    """Each evaluation pairs its per-example scores with the base's, on the same docs (results.csv's paired_stderr),
    and summarise's forgetting_se takes that over adding the two variances: no larger for a stage near the base.
    The tiny model scores 0 on these tasks, so the comparison is strict only in tests/test_own_tasks.py."""
    import statistics

    from pipeline.reports.results import read_results, summarise

    run_dir, _ = finished_run
    frame = read_results(run_dir / "results.csv")
    general = frame[(frame.recipe == "sft") & (frame.suite == "general") & (frame.metric != "format_leak")]
    base, stage = (general[general.stage == s].set_index("task") for s in ("base", "finetune"))
    assert stage.paired_stderr.notna().all() and (base.paired_stderr == 0).all()
    values, base_values = (
        json.loads((run_dir / folder / "per_example.json").read_text())
        for folder in ("seed0/sft/finetune-eval", "base/evaluate")
    )
    for task, row in stage.iterrows():
        assert statistics.mean(values[task].values()) == pytest.approx(row.score, abs=1e-6)
        differences = [values[task][doc] - base_values[task][doc] for doc in base_values[task]]
        assert row.paired_stderr == pytest.approx(statistics.stdev(differences) / len(differences) ** 0.5, abs=1e-6)
    table = summarise(frame).set_index(["recipe", "stage"])
    unpaired = (table.general_se["sft", "finetune"] ** 2 + table.general_se["sft", "base"] ** 2) ** 0.5
    assert table.forgetting_se["sft", "finetune"] <= unpaired + 1e-9
    # a prompt-tune stage's suites without the prompt are the base's own rows: nothing differs
    prompt_tune = frame[(frame.recipe == "promot") & (frame.stage == "prompt_tune") & (frame.suite == "general")]
    assert (prompt_tune[prompt_tune.metric != "format_leak"].paired_stderr == 0).all()


def test_final_model_and_prompt_load_with_plain_libraries(finished_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run_dir, _ = finished_run
    model = AutoModelForCausalLM.from_pretrained(run_dir / "seed0" / "promot" / "finetune" / "model")
    with_prompt = PeftModel.from_pretrained(model, run_dir / "seed0" / "promot" / "finetune" / "adapter")
    assert with_prompt.active_peft_config.num_virtual_tokens == 16


def test_auto_peft_model_puts_the_prompt_on_the_stage_2_model(finished_run):
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    run_dir, _ = finished_run
    stage = run_dir / "seed0" / "promot" / "finetune"
    loaded = AutoPeftModelForCausalLM.from_pretrained(stage / "adapter").get_base_model()
    stage_2 = AutoModelForCausalLM.from_pretrained(stage / "model")
    base = AutoModelForCausalLM.from_pretrained(
        json.loads((run_dir / "manifest.json").read_text())["stages"]["seed0/prompt_tuning/prompt_tune"]["input_model"]
    )
    for name, weight in stage_2.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], weight), name
    assert any(not torch.equal(w, base.state_dict()[n]) for n, w in stage_2.state_dict().items())


def test_rerun_skips_completed_stages(finished_run, monkeypatch):
    import stages

    run_dir, args = finished_run
    before = (run_dir / "results.csv").read_text()

    def must_not_run(config, ctx):
        raise AssertionError(f"stage ran again: {ctx.stage_dir}")

    for module in stages.STAGES.values():
        monkeypatch.setattr(module, "run", must_not_run)
    assert main(args) == 0
    assert (run_dir / "results.csv").read_text() == before


def test_interrupted_stage_is_rerun(finished_run, tmp_path):
    run_dir, args = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "seed0" / "sft" / "finetune" / "DONE.json").unlink()  # as if killed before the marker
    args = [a if a != str(run_dir) else str(copy) for a in args]
    assert main(args) == 0
    assert (copy / "seed0" / "sft" / "finetune" / "DONE.json").exists()


def test_a_rerun_removes_what_killed_writers_left_and_files_follow_the_umask(finished_run):
    import os
    import stat

    run_dir, args = finished_run
    leftovers = [run_dir / ".results.csv.k3j_x9q2.tmp", run_dir / "seed0" / "sft" / ".DONE.json.abcdefgh.tmp"]
    kept = run_dir / ".notes.tmp"  # not a name our writers make: someone else's file stays
    for path in [*leftovers, kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half written")
    old = os.umask(0o022)
    try:
        assert main(args) == 0
    finally:
        os.umask(old)
    assert [p for p in leftovers if p.exists()] == [] and kept.exists()
    assert stat.S_IMODE((run_dir / "results.csv").stat().st_mode) == 0o644  # not mkstemp's 0600


def test_the_variants_file_runs_its_untrained_prompt_control(tiny_base, tmp_path):
    """recipes/promot_variants.yaml through `pipeline run` (its other recipes have their own end-to-end tests):
    the frozen_prompt control's 0-step prompt is a stage of its own, not promot's trained prompt."""
    run_dir = tmp_path / "variants"
    steps = ("frozen_prompt.0", "frozen_prompt.1")
    args = ["run", str(ROOT / "recipes" / "promot_variants.yaml"), "--run-dir", str(run_dir), "--only", "frozen_prompt"]
    for item in tiny_overrides(tiny_base, steps=steps[1:]):
        args += ["--set", item]
    assert main(args) == 0
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert stages["seed0/frozen_prompt/prompt_tune"]["status"] == "done"
    assert (
        json.loads((run_dir / "seed0/frozen_prompt/prompt_tune/DONE.json").read_text())["metrics"]["train_seconds"]
        == 0.0
    )
    frame = pd.read_csv(run_dir / "results.csv")
    assert set(frame.recipe) == {"frozen_prompt"} and set(frame.stage) == {"base", "prompt_tune", "finetune"}
