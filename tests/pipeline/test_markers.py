"""The manifest is repaired from the stage markers at every start: the markers are the truth."""

import json

from pipeline.engine.markers import DONE, marker_of, repair


class Held:
    """A manifest as run_recipe holds it before commit: data only."""

    def __init__(self, stages):
        self.data = {"stages": stages}


def marker(run_dir, stage_id, key, model="model"):
    folder = run_dir / stage_id
    (folder / "trainer" / "checkpoint-1").mkdir(parents=True)  # left by a kill before the cleanup
    (folder / DONE).write_text(
        json.dumps(
            {
                "model_dir": {"run": f"{stage_id}/{model}"},
                "adapter_dir": None,
                "metrics": {},
                "rows": [],
                "seconds": 1.5,
                "key": key,
                "inputs": {"kind": "finetune", "seed": 0},
            }
        )
    )


def test_a_stage_killed_between_its_marker_and_the_manifest_is_done_with_the_markers_paths(tmp_path):
    marker(tmp_path, "seed0/sft/finetune", "k1")
    manifest = Held({"seed0/sft/finetune": {"kind": "finetune", "status": "running", "seed": 0, "input_model": "b"}})
    repair(manifest, tmp_path, ["seed0/sft/finetune"])
    entry = manifest.data["stages"]["seed0/sft/finetune"]
    assert entry["status"] == "done" and entry["key"] == "k1" and entry["input_model"] == "b"
    assert entry["output_model"] == str(tmp_path / "seed0/sft/finetune/model") and entry["output_adapter"] is None
    assert not (tmp_path / "seed0/sft/finetune/trainer").exists()


def test_a_marker_without_an_entry_gets_one_and_an_entry_without_a_marker_is_not_done(tmp_path):
    marker(tmp_path, "seed0/a/finetune", "k1")
    marker(tmp_path, "seed0/b/finetune", "k2")
    manifest = Held(
        {
            "seed0/gone/finetune": {"status": "done", "key": "k3"},  # its folder was cleared (--rerun-changed)
            "seed0/b/prompt": {"status": "reused", "reused_from": "seed0/b/finetune", "key": "k2"},
            "seed0/c/prompt": {"status": "reused", "reused_from": "seed0/gone/finetune", "key": "k3"},
            "seed0/d/finetune": {"status": "running"},  # killed mid-stage
        }
    )
    repair(manifest, tmp_path, ["seed0/a/finetune"])
    stages = manifest.data["stages"]
    assert stages["seed0/a/finetune"]["status"] == "done" and stages["seed0/a/finetune"]["kind"] == "finetune"
    assert "seed0/gone/finetune" not in stages and "seed0/c/prompt" not in stages
    assert stages["seed0/b/prompt"]["status"] == "reused"
    assert marker_of(tmp_path, "seed0/b/prompt", stages) == tmp_path / "seed0/b/finetune" / DONE
    assert stages["seed0/d/finetune"]["status"] == "interrupted"


def test_a_reused_entry_whose_twin_has_another_key_is_not_reused(tmp_path):
    marker(tmp_path, "seed0/a/finetune", "new")
    stages = {"seed0/b/finetune": {"status": "reused", "reused_from": "seed0/a/finetune", "key": "old"}}
    repair(Held(stages), tmp_path, ["seed0/a/finetune"])
    assert stages == {"seed0/a/finetune": stages["seed0/a/finetune"]} and stages["seed0/a/finetune"]["key"] == "new"


def test_the_registry_takes_model_paths_from_the_markers_and_refuses_a_model_that_would_not_load(tmp_path):
    import torch
    from safetensors.torch import save_file

    from pipeline.retraining.registry import entry_for, loadable_problem

    stage = "seed0/promot/finetune"
    marker(tmp_path, stage, "k1")
    (tmp_path / "manifest.json").write_text(json.dumps({"stages": {stage: {"status": "running"}}}))  # stale
    model = tmp_path / stage / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    save_file({"w": torch.zeros(2)}, model / "model.safetensors")
    entry = entry_for(tmp_path, "promot", "finetune", {}, {"fingerprint": "f"}, [])
    assert entry["model"] == str(model.resolve()) and entry["adapter"] is None and loadable_problem(entry) is None
    (model / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes()[:20])
    assert "model.safetensors: cut short" in loadable_problem(entry)
    (tmp_path / stage / DONE).unlink()
    entry = entry_for(tmp_path, "promot", "finetune", {}, {"fingerprint": "f"}, [])
    assert entry["model"] is None and "no finished model" in loadable_problem(entry)


def test_a_marker_names_its_adapters_and_one_from_before_names_gets_them_from_the_stage_contract(tmp_path):
    from types import SimpleNamespace

    from pipeline.engine.markers import commit, result_of
    from stages import finetune, prompt_tune
    from stages.context import StageResult
    from stages.handoff import Adapter, Scope

    class Manifest:
        def stage_finished(self, *args):
            pass

    made = SimpleNamespace(stage_id="seed0/prompt_tuning/pt", key="k", inputs={}, config=prompt_tune.Config(name="pt"))
    (tmp_path / made.stage_id / "adapter").mkdir(parents=True)
    commit(
        Manifest(),
        tmp_path,
        made,
        StageResult(tmp_path / "base", {"pt": Adapter(tmp_path / made.stage_id / "adapter")}),
        1.0,
    )
    # reused by an identical stage of another recipe, named otherwise: the adapter goes by that stage's name
    twin = SimpleNamespace(stage_id="seed0/promot/prompt_tune", config=prompt_tune.Config())
    result = result_of(tmp_path / made.stage_id / DONE, tmp_path, twin)
    assert result.adapters == {"prompt_tune": Adapter(tmp_path / made.stage_id / "adapter", "prompt", Scope.TARGET)}
    # a marker written before adapters were named: one adapter_dir, named by the stage's contract
    old = tmp_path / "seed0/promot/finetune" / DONE
    old.parent.mkdir(parents=True)
    old.write_text(
        json.dumps(
            {
                "model_dir": {"run": "seed0/promot/finetune/model"},
                "adapter_dir": {"run": "seed0/promot/finetune/adapter"},
                "metrics": {},
                "rows": [],
            }
        )
    )
    stage = SimpleNamespace(stage_id="seed0/promot/finetune", config=finetune.Config(prompt_from="pt"))
    assert result_of(old, tmp_path, stage).adapters == {"pt": Adapter(tmp_path / "seed0/promot/finetune/adapter")}
