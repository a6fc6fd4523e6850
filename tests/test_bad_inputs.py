"""Every class of bad input: exit code 2, one clear line naming field/file/line, nothing trained or changed.

Each case is a folder in tests/bad_inputs/ with a recipe.yaml ({dir} stands for the folder) and
expected.txt holding the message the user must see.
"""

import hashlib
from pathlib import Path

import pytest

from pipeline.cli import main

CASES = Path(__file__).resolve().parent / "bad_inputs"


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_input_is_refused_before_training(case, command, tmp_path, capsys, monkeypatch):
    import stages

    folder = CASES / case
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((folder / "recipe.yaml").read_text().replace("{dir}", str(folder)))
    run_dir = tmp_path / "runs" / "existing"
    (run_dir / "seed0").mkdir(parents=True)
    (run_dir / "results.csv").write_text("recipe,seed,stage,task,suite,metric,score,n\n")
    before = snapshot(tmp_path / "runs")

    def no_training(config, ctx):
        raise AssertionError("a stage ran on bad input")

    for module in stages.STAGES.values():
        monkeypatch.setattr(module, "run", no_training)
    monkeypatch.chdir(tmp_path)
    args = [command, str(recipe)] + (["--run-dir", str(run_dir)] if command == "run" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    expected = (folder / "expected.txt").read_text().strip()
    assert expected in err, err
    lines = err.strip().splitlines()
    assert all(line.startswith(("error: ", "warning: ")) for line in lines), err
    assert len(lines) == len(set(lines)), err  # a stage shared through a YAML anchor is reported once
    assert snapshot(tmp_path / "runs") == before
