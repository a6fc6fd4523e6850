"""Run folders carry a format_version; an older folder's records are upgraded as they are read
(pipeline/engine/migrate.py), and a folder from a newer format than this code knows is refused in one line."""

import json
from types import SimpleNamespace

import pytest

from core.errors import UserError
from pipeline.cli import main
from pipeline.engine import migrate
from pipeline.engine.manifest import Manifest
from pipeline.engine.markers import DONE, marker_of, repair, result_of
from pipeline.formats import FORMAT_VERSION
from pipeline.reports.results import read_results

OLD_RESULTS = """recipe,seed,stage,task,suite,metric,score,n
sft,0,base,g1,general,acc,0.600000,50
sft,0,finetune,g1,general,acc,0.500000,50
sft,0,finetune,t,target,exact_match,0.900000,20
"""


def old_folder(tmp_path):
    """A run folder as forgetless wrote it before format_version: no version anywhere, DONE.json's paths as plain
    strings, one unnamed adapter_dir, a marker without its key (the manifest kept it), results.csv without the
    columns added later."""
    run = tmp_path / "run"
    stage = run / "seed0" / "promot" / "finetune"
    (stage / "model").mkdir(parents=True)
    (stage / "adapter").mkdir()
    (stage / DONE).write_text(
        json.dumps(
            {
                "model_dir": "seed0/promot/finetune/model",
                "adapter_dir": "seed0/promot/finetune/adapter",
                "metrics": {},
                "rows": [],
                "seconds": 2.0,
                "inputs": {"kind": "finetune", "seed": 0},
            }
        )
    )
    (run / "manifest.json").write_text(
        json.dumps(
            {
                "created": "then",
                "code_version": "old",
                "stages": {"seed0/promot/finetune": {"kind": "finetune", "status": "done", "seed": 0, "key": "k-old"}},
            }
        )
    )
    (run / "results.csv").write_text(OLD_RESULTS)
    return run


def test_an_old_folder_is_read_and_upgraded(tmp_path):
    from stages import finetune
    from stages.handoff import Adapter

    run = old_folder(tmp_path)
    marker = run / "seed0/promot/finetune" / DONE
    entry = json.loads((run / "manifest.json").read_text())["stages"]["seed0/promot/finetune"]
    done = migrate.read_marker(marker, entry=entry)
    assert done["format_version"] == FORMAT_VERSION and done["key"] == "k-old"
    assert done["model_dir"] == {"run": "seed0/promot/finetune/model"}
    # the unnamed adapter is the soft prompt its stage's contract names
    stage = SimpleNamespace(stage_id="seed0/promot/finetune", config=finetune.Config(prompt_from="pt"))
    result = result_of(marker, run, stage)
    assert result.model_dir == run / "seed0/promot/finetune/model"
    assert result.adapters == {"pt": Adapter(run / "seed0/promot/finetune/adapter")}
    # the manifest: upgraded as it is opened, and written in the current format from then on
    manifest = Manifest.open(run, tmp_path / "recipe.yaml")
    assert manifest.data["format_version"] == FORMAT_VERSION
    repair(manifest, run, ["seed0/promot/finetune"])
    assert manifest.data["stages"]["seed0/promot/finetune"]["key"] == "k-old"
    assert marker_of(run, "seed0/promot/finetune", manifest.data["stages"]) == marker
    # results.csv: the columns added later at their defaults
    frame = read_results(run / "results.csv")
    assert list(frame.primary) == [1, 1, 1] and frame.stderr.isna().all() and frame.paired_stderr.isna().all()
    assert main(["report", str(run)]) == 0 and (run / "report.md").is_file()


def test_records_written_now_carry_the_format_version(tmp_path):
    from pipeline.engine.markers import commit
    from stages.context import StageResult

    class Held:
        def stage_finished(self, *args):
            pass

    stage = SimpleNamespace(stage_id="seed0/sft/finetune", key="k", inputs={}, config=None)
    (tmp_path / stage.stage_id / "model").mkdir(parents=True)
    commit(Held(), tmp_path, stage, StageResult(tmp_path / stage.stage_id / "model"), 1.0)
    assert json.loads((tmp_path / stage.stage_id / DONE).read_text())["format_version"] == FORMAT_VERSION
    manifest = Manifest.open(tmp_path, tmp_path / "recipe.yaml")
    manifest.commit()
    assert json.loads((tmp_path / "manifest.json").read_text())["format_version"] == FORMAT_VERSION


@pytest.mark.parametrize("record", ["manifest", "marker"])
def test_a_folder_from_a_newer_format_is_refused_in_one_line(tmp_path, capsys, record):
    run = old_folder(tmp_path)
    newer = FORMAT_VERSION + 1
    path = run / "manifest.json" if record == "manifest" else run / "seed0/promot/finetune" / DONE
    path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": newer}))
    reader = migrate.read_manifest if record == "manifest" else migrate.read_marker
    with pytest.raises(UserError) as err:
        reader(path)
    message = str(err.value)
    assert message == (
        f"{path}: format_version {newer} is newer than this forgetless reads ({FORMAT_VERSION}): "
        "read this run folder with the forgetless that wrote it, or a newer one"
    )
    if record == "manifest":  # every command that reads the folder says so, in one line
        assert main(["report", str(run)]) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and f"format_version {newer} is newer" in lines[0]


def test_a_version_that_is_no_number_is_refused(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"format_version": "two", "stages": {}}))
    with pytest.raises(UserError, match="format_version 'two' is no format version"):
        migrate.read_manifest(path)
