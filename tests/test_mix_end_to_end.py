"""End to end: a recipe written with the mapping form of `data:` (one source upsampled) runs, and its rows are recorded."""

import json

import pytest
import yaml

from pipeline.cli import main

RECIPE = """name: mixes
model: {path: BASE}
data:
  general: {source: embedded:general, rows: 16}
  math: {source: embedded:math, rows: 8}
evaluation: {general_suite: embedded_general, limit: 2, batch_size: 8}
max_length: 48
x-stage: &stage {kind: finetune, steps: 2, batch_size: 8}
recipes:
  upsampled:
    - {<<: *stage, name: mixed, data: {general: 1/2, math: 2.5}}
  seeded:
    - {<<: *stage, name: mixed, data: {sources: {general: 1, math: 1/4}, seed: 5}}
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    base = ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))
    folder = tmp_path_factory.mktemp("mixes")
    (folder / "recipe.yaml").write_text(RECIPE.replace("BASE", str(base)))
    run_dir = folder / "run"
    assert main(["run", str(folder / "recipe.yaml"), "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_the_manifest_records_each_sources_rows(finished_run):
    stages = json.loads((finished_run / "manifest.json").read_text())["stages"]
    # half of 16 general rows; math twice over (16) plus a seeded half (4)
    assert stages["seed0/upsampled/mixed"]["data_rows"] == {"general": 8, "math": 20}
    assert stages["seed0/seeded/mixed"]["data_rows"] == {"general": 16, "math": 2}
    assert stages["seed0/upsampled/mixed"]["status"] == stages["seed0/seeded/mixed"]["status"] == "done"


def test_config_yaml_writes_each_mix_back_in_its_mapping_form(finished_run):
    recipes = yaml.safe_load((finished_run / "config.yaml").read_text())["recipes"]
    assert recipes["upsampled"][0]["data"] == {"general": "1/2", "math": "5/2"}
    assert recipes["seeded"][0]["data"] == {"sources": {"general": 1, "math": "1/4"}, "seed": 5}
    assert "replay" not in recipes["upsampled"][0] and "k" not in recipes["seeded"][0]
