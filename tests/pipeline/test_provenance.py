"""Provenance through `pipeline run`: each DONE.json records the code and library versions that made its stage, and
report.md says so, in one line, when a run folder's stages were made by different ones (here: a second recipe run
into the same folder "after an upgrade")."""

import json

import pytest

from pipeline.cli import main
from pipeline.engine import markers

RECIPE = """\
name: provenance
seeds: [0]
model: {{path: {base}}}
target: {{name: letter_rule, train: "embedded:letter_rule", train_rows: 8, test_rows: 2}}
evaluation: {{limit: 2, batch_size: 8}}
recipes:
  sft: [{{kind: finetune, steps: 1, batch_size: 4}}]
  longer: [{{kind: finetune, steps: 2, batch_size: 4}}]
"""


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    return ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))


def test_done_markers_record_versions_and_the_report_notes_a_mix(tiny_base, tmp_path, monkeypatch):
    recipe, run_dir = tmp_path / "recipe.yaml", tmp_path / "run"
    recipe.write_text(RECIPE.format(base=tiny_base))
    assert main(["run", str(recipe), "--run-dir", str(run_dir), "--only", "sft"]) == 0
    done = [json.loads(p.read_text()) for p in sorted(run_dir.glob("**/DONE.json"))]
    assert len(done) == 3  # base/evaluate, seed0/sft/finetune, seed0/sft/finetune-eval
    for marker in done:
        assert set(marker["versions"]) == {
            "forgetless",
            "torch",
            "transformers",
            "peft",
            "lm_eval",
            "accelerate",
            "deepspeed",
        }
        assert marker["versions"]["forgetless"] and marker["versions"]["transformers"]
    assert "different versions" not in (run_dir / "report.md").read_text()

    upgraded = {**markers.versions(), "transformers": "99.0.0"}  # as if transformers were upgraded in between
    monkeypatch.setattr(markers, "versions", lambda: upgraded)
    assert main(["run", str(recipe), "--run-dir", str(run_dir), "--only", "longer"]) == 0
    notes = [line for line in (run_dir / "report.md").read_text().splitlines() if "different versions" in line]
    installed = json.loads((run_dir / "base/evaluate/DONE.json").read_text())["versions"]["transformers"]
    assert len(notes) == 1 and f"transformers {installed} (3) / 99.0.0 (2)" in notes[0], notes
