"""End to end: a `merge` stage after ProMoT, swept over alpha, through `pipeline run`.

The merged weights are exactly the base's at alpha = 0, the fine-tune's at 1 and their mean at 0.5; the merge is
evaluated like every stage, its folder loads with transformers and its soft prompt with PEFT, and a rerun skips it.
"""

import json

import pandas as pd
import pytest

from pipeline.cli import main

RECIPE = """name: merge
seeds: [0]
model: {path: BASE}
target: {name: letter_rule, train: embedded:letter_rule, train_rows: 64, test_rows: 6}
evaluation: {general_suite: embedded_general, limit: 4, batch_size: 8}
max_length: 48
x-prompt: &prompt {kind: prompt_tune, steps: 4, batch_size: 8, lr: 0.3, num_virtual_tokens: 4}
x-finetune: &finetune {kind: finetune, steps: 4, batch_size: 8, lr: 1.0e-2, prompt_from: prompt_tune}
recipes:
  promot:
    - *prompt
    - *finetune
  promot_merge:
    - *prompt
    - *finetune
    - {kind: merge, start: base, end: input, alpha: 0.5}
  back_to_stage_2:
    - *prompt
    - *finetune
    - {kind: finetune, name: again, steps: 4, batch_size: 8, lr: 1.0e-2}
    - {kind: merge, start: finetune, end: input, alpha: 0.5}
sweep:
  promot_merge.alpha: [0, 0.5, 1]
"""
ALPHAS = ["promot_merge@alpha=0", "promot_merge@alpha=0.5", "promot_merge@alpha=1"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    base = ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))
    folder = tmp_path_factory.mktemp("merge")
    (folder / "recipe.yaml").write_text(RECIPE.replace("BASE", str(base)))
    run_dir = folder / "run"
    assert main(["validate", str(folder / "recipe.yaml")]) == 0
    assert main(["run", str(folder / "recipe.yaml"), "--run-dir", str(run_dir)]) == 0
    return run_dir, base


def weights(folder):
    from safetensors.torch import load_file

    return {k: v for path in sorted(folder.glob("*.safetensors")) for k, v in load_file(path).items()}


def test_alpha_0_is_the_base_1_the_fine_tune_and_one_half_their_mean(finished_run):
    run_dir, base = finished_run
    start, end = weights(base), weights(run_dir / "seed0/promot/finetune/model")
    assert any(not (start[k] == end[k]).all() for k in start)  # the fine-tune moved some weight
    merged = {a: weights(run_dir / f"seed0/{a}/merge/model") for a in ALPHAS}
    assert merged[ALPHAS[0]].keys() == start.keys() == end.keys()
    for key in start:
        assert merged[ALPHAS[0]][key].equal(start[key]), key
        assert merged[ALPHAS[2]][key].equal(end[key]), key
        assert merged[ALPHAS[1]][key].equal((start[key] + end[key]) / 2), key


def test_a_merge_reads_an_earlier_stage_by_name(finished_run):
    run_dir, _ = finished_run
    stages = run_dir / "seed0/back_to_stage_2"
    start, end = weights(run_dir / "seed0/promot/finetune/model"), weights(stages / "again/model")
    merged = weights(stages / "merge/model")
    assert any(not start[k].equal(end[k]) for k in start)
    assert all(merged[k].equal((start[k] + end[k]) / 2) for k in start)
    done = json.loads((stages / "merge/DONE.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert done["inputs"]["upstream"] == [
        manifest["seed0/back_to_stage_2/again"]["key"],
        manifest["seed0/back_to_stage_2/finetune"]["key"],
    ]
    # the prompt was made on the first fine-tune's model, not the merge's input: handed on as it is
    assert manifest["seed0/back_to_stage_2/merge"]["output_adapters"] == {}
    assert manifest["seed0/back_to_stage_2/merge-eval"]["input_adapters"]["prompt_tune"]["path"] == str(
        run_dir / "seed0/promot/finetune/adapter"
    )


def test_the_merge_is_evaluated_with_the_prompt_for_the_target(finished_run):
    run_dir, _ = finished_run
    frame = pd.read_csv(run_dir / "results.csv")
    assert "alpha" in frame.columns
    for name, alpha in zip(ALPHAS, [0, 0.5, 1]):
        rows = frame[frame.recipe == name]
        assert list(dict.fromkeys(rows.stage)) == ["base", "prompt_tune", "finetune", "merge"]
        assert set(rows[rows.stage == "merge"].suite) == {"general", "target"}
        assert set(rows.alpha) == {alpha}
    manifest = json.loads((run_dir / "manifest.json").read_text())["stages"]
    prompt = {"path": str(run_dir / "seed0/promot_merge@alpha=0.5/merge/adapter"), "kind": "prompt", "scope": "target"}
    assert manifest["seed0/promot_merge@alpha=0.5/merge"]["output_adapters"] == {"prompt_tune": prompt}
    assert manifest["seed0/promot_merge@alpha=0.5/merge-eval"]["input_adapters"] == {"prompt_tune": prompt}
    assert manifest["seed0/promot_merge@alpha=0.5/merge-eval"]["input_model"] == str(
        run_dir / "seed0/promot_merge@alpha=0.5/merge/model"
    )


def test_the_merged_folder_loads_with_transformers_and_its_prompt_with_peft(finished_run):
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    run_dir, _ = finished_run
    stage = run_dir / "seed0/promot_merge@alpha=0.5/merge"
    model = AutoModelForCausalLM.from_pretrained(stage / "model")
    on_disk = weights(stage / "model")
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # still tied
    assert all(model.state_dict()[k].equal(v) for k, v in on_disk.items())
    prompted = AutoPeftModelForCausalLM.from_pretrained(stage / "adapter")
    assert prompted.peft_config["default"].base_model_name_or_path == str((stage / "model").resolve())
    assert prompted.get_base_model().state_dict()["model.norm.weight"].equal(on_disk["model.norm.weight"])
    trained = AutoPeftModelForCausalLM.from_pretrained(run_dir / "seed0/promot/finetune/adapter")
    assert torch.equal(
        prompted.prompt_encoder["default"].embedding.weight, trained.prompt_encoder["default"].embedding.weight
    )  # the prompt, unchanged


def test_alpha_changes_only_the_merge_key_and_its_evaluation_key(finished_run):
    run_dir, _ = finished_run
    manifest = json.loads((run_dir / "manifest.json").read_text())["stages"]
    for stage in ("prompt_tune", "prompt_tune-eval", "finetune", "finetune-eval"):
        keys = {manifest[f"seed0/{name}/{stage}"]["key"] for name in ["promot", *ALPHAS]}
        assert len(keys) == 1, stage  # the same as plain promot's: reused, not trained again
    for stage in ("merge", "merge-eval"):
        assert len({manifest[f"seed0/{name}/{stage}"]["key"] for name in ALPHAS}) == 3, stage


def test_a_rerun_skips_the_merge(finished_run, monkeypatch):
    import stages

    run_dir, _ = finished_run
    before = (run_dir / "results.csv").read_text()

    def must_not_run(config, ctx):
        raise AssertionError(f"stage ran again: {ctx.stage_dir}")

    for module in stages.STAGES.values():
        monkeypatch.setattr(module, "run", must_not_run)
    assert main(["run", str(run_dir.parent / "recipe.yaml"), "--run-dir", str(run_dir)]) == 0
    assert (run_dir / "results.csv").read_text() == before


@pytest.mark.parametrize(
    "change, message",
    [
        ("alpha: 0.5}", "merge.alpha: must be a number in [0, 1], got 1.5"),
        ("start: finetune", "recipes.back_to_stage_2.merge.start: no earlier stage named 'fine' in this recipe"),
    ],
)
def test_a_bad_alpha_or_an_unknown_stage_is_refused_naming_the_field(tmp_path, capsys, change, message):
    bad = {"alpha: 0.5}": "alpha: 1.5}", "start: finetune": "start: fine"}[change]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.replace("BASE", "embedded").replace(change, bad))
    assert main(["validate", str(recipe)]) != 0
    assert message in capsys.readouterr().err


def test_only_a_swept_recipe_selects_every_copy_of_it(finished_run, capsys):
    """`--only promot_merge` names the recipe the sweep replaced: it means all its copies, here all finished."""
    run_dir, _ = finished_run
    before = (run_dir / "results.csv").read_bytes()
    assert main(["run", str(run_dir.parent / "recipe.yaml"), "--run-dir", str(run_dir), "--only", "promot_merge"]) == 0
    assert (run_dir / "results.csv").read_bytes() == before  # nothing trained, every recipe's rows kept
    assert main(["run", str(run_dir.parent / "recipe.yaml"), "--run-dir", str(run_dir), "--only", "promot_mer"]) == 2
    assert "--only: no recipe named 'promot_mer'" in capsys.readouterr().err
