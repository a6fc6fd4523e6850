"""One line per mistake, through the command line: recipe files that are no recipe, command-line folders, world
sizes, `pipeline gate` and `pipeline report` on broken run folders, and messages that stay short and say a
shared mistake once. Recipe mistakes that fit the run + validate convention are cases of tests/bad_inputs."""

import json
import os
from pathlib import Path

import pytest

from pipeline.cli import main, output_folder

RECIPE = "name: demo\ntarget: {}\nrecipes:\n  sft:\n    - kind: finetune\n      steps: 2\n"
GATED = RECIPE + "gate: {recipe: sft}\n"


def errors(capsys) -> list[str]:
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith(("error: ", "warning: ")) for line in err), err
    return [line for line in err if line.startswith("error: ")]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- the recipe file --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_directory_as_recipe_file_is_one_line(tmp_path, capsys, command):
    assert main([command, str(tmp_path)]) == 2
    assert errors(capsys) == [f"error: {tmp_path}: is a directory, not a YAML file"]


def test_an_unreadable_recipe_file_is_one_line(tmp_path, capsys, monkeypatch):
    recipe = write(tmp_path / "recipe.yaml", RECIPE)
    read_text = Path.read_text

    def denied(self, *args, **kwargs):  # as for a file of another user (this test may run as root)
        if self == recipe:
            raise PermissionError(13, "Permission denied")
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    assert main(["validate", str(recipe)]) == 2
    assert errors(capsys) == [f"error: {recipe}: cannot read (Permission denied)"]


def test_a_key_merged_from_an_anchor_may_be_overridden(tmp_path, capsys):
    recipe = write(
        tmp_path / "recipe.yaml",
        "name: demo\ntarget: {}\nx-ft: &ft {kind: finetune, steps: 2}\nrecipes:\n  sft:\n    - {<<: *ft, steps: 3}\n",
    )
    assert main(["validate", str(recipe)]) == 0, capsys.readouterr().err


# --- one mistake, one line --------------------------------------------------------------------------------------


def test_a_typo_in_a_shared_anchor_is_reported_once(tmp_path, capsys):
    recipe = write(
        tmp_path / "recipe.yaml",
        "name: demo\ntarget: {}\n"
        "x-finetune: &finetune {kind: finetune, steps: 2, lrr: 0.1}\n"
        "recipes:\n  sft:\n    - *finetune\n  promot:\n    - {kind: prompt_tune, steps: 2}\n"
        "    - {<<: *finetune, prompt_from: prompt_tune}\n  again:\n    - *finetune\n",
    )
    assert main(["validate", str(recipe)]) == 2
    assert errors(capsys) == [f"error: {recipe}:3: recipes.sft[0].lrr: unknown key; did you mean 'lr'?"]


def test_a_typo_in_a_swept_recipe_is_reported_once(tmp_path, capsys):
    recipe = write(tmp_path / "recipe.yaml", RECIPE + "      lrr: 0.1\nsweep: {sft.steps: [2, 3, 4]}\n")
    assert main(["validate", str(recipe)]) == 2
    assert errors(capsys) == [f"error: {recipe}:7: recipes.sft@steps=2[0].lrr: unknown key; did you mean 'lr'?"]


def test_the_same_key_in_two_recipes_of_their_own_is_two_lines(tmp_path, capsys):
    recipe = write(tmp_path / "recipe.yaml", RECIPE + "      lrr: 0.1\n  other:\n    - {kind: finetune, lrr: 0.1}\n")
    assert main(["validate", str(recipe)]) == 2
    assert len(errors(capsys)) == 2


@pytest.mark.parametrize(
    "value, shown",
    [
        ("'" + "x" * 100_000 + "'", "'... (100000 characters)"),
        ("{kind: '" + "y" * 100_000 + "'}", "(100000 characters)"),
    ],
)
def test_a_long_value_is_echoed_short(tmp_path, capsys, value, shown):
    recipe = write(
        tmp_path / "recipe.yaml",
        f"name: demo\ntarget: {{}}\nrecipes:\n  sft:\n    - kind: finetune\n      steps: 2\n      lr: {value}\n"
        if value.startswith("'")
        else f"name: demo\ntarget: {{}}\nrecipes:\n  sft:\n    - {value}\n",
    )
    assert main(["validate", str(recipe)]) == 2
    (line,) = errors(capsys)
    assert len(line) < len(str(recipe)) + 400, line  # the path, the field, the kept start and the choices
    assert shown in line


def test_a_long_name_from_the_recipe_file_is_echoed_short(tmp_path, capsys):
    recipe = write(tmp_path / "recipe.yaml", RECIPE.replace("name: demo", "name: '../" + "z" * 50_000 + "'"))
    assert main(["validate", str(recipe)]) == 2
    (line,) = errors(capsys)
    assert len(line) < len(str(recipe)) + 250 and "(50003 characters)" in line, line


@pytest.mark.parametrize(
    "field, value, message",
    [
        (
            "name",
            "n" * 201,
            "name: 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn'... (201 characters) "
            "is 201 bytes long; at most 200 (it names the run folder)",
        ),
        (
            "recipe",
            "r" * 201,
            "recipes: recipe name 'rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr'... "
            "(201 characters) is 201 bytes long; at most 200 (it names a folder)",
        ),
        ("target", "t" * 201, "is 201 bytes long; at most 200 (it names files)"),
    ],
)
def test_names_that_make_file_names_fit_the_file_system(tmp_path, capsys, field, value, message):
    text = {
        "name": RECIPE.replace("name: demo", f"name: {value}"),
        "recipe": RECIPE.replace("  sft:", f"  {value}:"),
        "target": RECIPE.replace("target: {}", f"target: {{name: {value}}}"),
    }[field]
    assert main(["validate", str(write(tmp_path / "recipe.yaml", text))]) == 2
    (line,) = errors(capsys)
    assert message in line


@pytest.mark.parametrize(
    "seeds, message",
    [
        ("[3, 1, 3, 1]", "seeds: 1, 3 listed more than once; list each seed once"),
        ("[-1]", "seeds: -1 is outside 0..4294967295"),
    ],
)
def test_seeds_are_distinct_and_usable(tmp_path, capsys, seeds, message):
    recipe = write(tmp_path / "recipe.yaml", RECIPE + f"seeds: {seeds}\n")
    assert main(["validate", str(recipe)]) == 2
    assert errors(capsys) == [f"error: {recipe}:7: {message}"]


def test_a_folder_without_a_suffix_as_data_is_a_directory(tmp_path, capsys):
    (tmp_path / "rows").mkdir()
    recipe = write(
        tmp_path / "recipe.yaml",
        RECIPE.replace("target: {}", f"data: {{g: {{source: {tmp_path / 'rows'}}}}}").replace(
            "steps: 2", "steps: 2\n      data: [g]"
        ),
    )
    assert main(["validate", str(recipe)]) == 2
    assert errors(capsys) == [
        f"error: {recipe}:2: data.g.source: {tmp_path / 'rows'}: is a directory, not a data "
        "file; name a .jsonl/.json/.parquet/.csv file in it"
    ]


# --- command-line numbers and folders ---------------------------------------------------------------------------


@pytest.mark.parametrize("world_size", ["0", "-2"])
def test_world_size_below_one_is_one_line(tmp_path, capsys, world_size):
    recipe = write(tmp_path / "recipe.yaml", RECIPE)
    assert main(["validate", str(recipe), "--world-size", world_size]) == 2
    assert errors(capsys) == [f"error: --world-size: must be >= 1 (the number of processes), got {world_size}"]


@pytest.mark.parametrize("value", ["../../elsewhere/x", "relative/run", "ABSOLUTE"])
def test_run_dir_may_be_anywhere(tmp_path, monkeypatch, value):
    """--run-dir is a command-line path: relative to the working folder or absolute, inside it or not."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    value = str(tmp_path / "outside" / "run") if value == "ABSOLUTE" else value
    assert output_folder(value, "--run-dir") == Path(value)


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "--run-dir: empty; name a folder (or leave --run-dir out for the default)"),
        ("   ", "--run-dir: empty; name a folder (or leave --run-dir out for the default)"),
        ("FILE", "--run-dir FILE: is a file, not a folder"),
        ("FILE/run", "--run-dir FILE/run: FILE is a file, so no folder can be made inside it"),
    ],
)
def test_run_dir_refusals_are_one_line(tmp_path, capsys, monkeypatch, value, message):
    import stages

    for module in stages.STAGES.values():
        monkeypatch.setattr(module, "run", lambda *a: pytest.fail("a stage ran"))
    file = write(tmp_path / "file", "not a folder")
    recipe = write(tmp_path / "recipe.yaml", RECIPE)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(recipe), "--run-dir", value.replace("FILE", str(file))]) == 2
    assert errors(capsys) == [f"error: {message.replace('FILE', str(file))}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "recipe.yaml"]  # nothing made


def test_a_broken_link_as_run_dir_is_one_line(tmp_path, capsys):
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    assert main(["run", str(write(tmp_path / "recipe.yaml", RECIPE)), "--run-dir", str(tmp_path / "link")]) == 2
    assert errors(capsys) == [
        f"error: --run-dir {tmp_path / 'link'}: is a link to {tmp_path / 'gone'}, which does not exist"
    ]


def test_a_read_only_registry_is_one_line(tmp_path, capsys, monkeypatch):
    import pipeline.cli

    (tmp_path / "registry").mkdir()
    monkeypatch.setattr(pipeline.cli.os, "access", lambda path, mode: Path(path) != tmp_path / "registry")
    recipe = write(tmp_path / "recipe.yaml", GATED)
    assert main(["retrain", str(recipe), "--registry", str(tmp_path / "registry")]) == 2
    assert errors(capsys) == [
        f"error: --registry {tmp_path / 'registry'}: the folder is not writable by this user (read-only?)"
    ]


def test_a_read_only_run_dir_is_one_line(tmp_path, capsys, monkeypatch):
    import pipeline.cli

    (tmp_path / "ro").mkdir()
    recipe = write(tmp_path / "recipe.yaml", RECIPE)
    monkeypatch.setattr(pipeline.cli.os, "access", lambda path, mode: Path(path) != tmp_path / "ro")
    assert main(["run", str(recipe), "--run-dir", str(tmp_path / "ro")]) == 2
    assert errors(capsys) == [
        f"error: --run-dir {tmp_path / 'ro'}: the folder is not writable by this user (read-only?)"
    ]
    assert main(["run", str(recipe), "--run-dir", str(tmp_path / "ro" / "new" / "run")]) == 2
    assert errors(capsys) == [
        f"error: --run-dir {tmp_path / 'ro' / 'new' / 'run'}: {tmp_path / 'ro'}, where it would "
        "be made, is not writable by this user (read-only?)"
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_really_is_refused(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert main(["run", str(write(tmp_path / "recipe.yaml", RECIPE)), "--run-dir", str(folder / "run")]) == 2
        assert "is not writable by this user" in errors(capsys)[0]
    finally:
        folder.chmod(0o755)


def test_runs_root_that_is_a_file_is_one_line(tmp_path, capsys, monkeypatch):
    write(tmp_path / "runs", "a file where the runs folder would be")
    recipe = write(tmp_path / "recipe.yaml", RECIPE)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(recipe)]) == 2
    assert errors(capsys) == [
        f"error: runs_root runs/demo: {tmp_path / 'runs'} is a file, so no folder can be made inside it"
    ]


@pytest.mark.parametrize("option", ["--registry", "--export"])
@pytest.mark.parametrize(
    "value, message",
    [
        ("", "OPTION: empty; name a folder"),
        ("FILE", "OPTION FILE: is a file, not a folder"),
    ],
)
def test_retrain_folders_are_checked_first(tmp_path, capsys, option, value, message):
    file = write(tmp_path / "file", "not a folder")
    recipe = write(tmp_path / "recipe.yaml", GATED)
    args = {"--registry": str(tmp_path / "registry"), "--export": None}
    args[option] = value.replace("FILE", str(file))
    argv = ["retrain", str(recipe)] + [x for k, v in args.items() if v is not None for x in (k, v)]
    assert main(argv) == 2
    assert errors(capsys) == [f"error: {message.replace('OPTION', option).replace('FILE', str(file))}"]
    assert not (tmp_path / "registry").exists()


# --- pipeline gate and pipeline report on broken run folders -----------------------------------------------------

RESULTS = (
    "recipe,seed,stage,task,suite,metric,score,n\n"
    "sft,0,base,t,general,acc,0.5,10\nsft,0,finetune,t,general,acc,0.45,10\n"
    "sft,0,base,u,target,acc,0.1,10\nsft,0,finetune,u,target,acc,0.9,10\n"
)
CONFIG = "gate: {recipe: sft}\nrecipes:\n  sft:\n    - {kind: finetune, name: finetune}\n"


def run_folder(tmp_path, results=RESULTS, config=CONFIG, name="run"):
    folder = tmp_path / name
    folder.mkdir()
    write(folder / "results.csv", results) if isinstance(results, str) else (folder / "results.csv").write_bytes(
        results
    )
    if config is not None:
        write(folder / "config.yaml", config)
    return folder


def test_gate_on_a_good_run_folder(tmp_path, capsys):
    run = run_folder(tmp_path)
    assert main(["gate", str(run), "--against", str(run)]) == 0
    assert "pass" in capsys.readouterr().out


@pytest.mark.parametrize(
    "config, message",
    [
        ("gate: [\n", "config.yaml:2: invalid YAML (expected the node content, but found '<stream end>')"),
        ("- a\n", "config.yaml: expected a YAML mapping of settings (key: value lines), got a list of 1 item(s)"),
        ("gate: 5\n", "config.yaml: gate: expected a mapping of thresholds, got int 5"),
        (
            "gate: {recipe: sft}\nrecipes: {sft: [{kind: finetune}]}\n",
            "config.yaml: recipes.sft: expected a list of stages, each with a name (the file the run wrote has them)",
        ),
        ("gate: {recipe: sft}\ngate: {recipe: other}\n", "config.yaml:2: duplicate key 'gate' (first on line 1)"),
    ],
)
def test_gate_with_a_broken_config_yaml_is_one_line(tmp_path, capsys, config, message):
    run = run_folder(tmp_path, config=config)
    assert main(["gate", str(run), "--against", str(run)]) == 2
    (line,) = errors(capsys)
    assert line.startswith(f"error: {run / 'config.yaml'}") and message in line, line


@pytest.mark.parametrize(
    "item, message",
    [
        ("max_regression=[", "--set: 'max_regression': value '[' is not valid YAML (expected the node content"),
        ("max_regression", "--set: 'max_regression': expected key=value"),
        ("=0.1", "--set: '=0.1': expected key=value"),
        ("max_regression=.inf", "--set: gate.max_regression: expected a finite number, got inf"),
    ],
)
def test_gate_with_a_bad_set_is_one_line(tmp_path, capsys, item, message):
    run = run_folder(tmp_path)
    assert main(["gate", str(run), "--against", str(run), "--set", item]) == 2
    (line,) = errors(capsys)
    assert message in line, line


@pytest.mark.parametrize("pointer", ["[]", "{}", "null", '{"run_id": "r1"}', "{not json"])
def test_gate_against_a_registry_with_a_broken_pointer_is_one_line(tmp_path, capsys, pointer):
    run = run_folder(tmp_path)
    (tmp_path / "registry" / "runs").mkdir(parents=True)
    write(tmp_path / "registry" / "accepted.json", pointer)
    assert main(["gate", str(run), "--against", str(tmp_path / "registry")]) == 2
    (line,) = errors(capsys)
    assert "accepted.json" in line


GARBAGE = [
    (bytes(range(128, 256)) * 20, "results.csv: not UTF-8 text (byte 0); not a results table"),
    ("", "results.csv: empty; expected a results table with columns recipe,seed,stage,task,suite,metric,score,n"),
    (
        "a,b\n1,2\n",
        "results.csv: not a results table: no column recipe, seed, stage, task, suite, metric, score, n "
        "(its header: 'a,b'; expected recipe,seed,stage,task,suite,metric,score,n)",
    ),
    ("recipe,seed,stage,task,suite,metric,score,n\n", "results.csv: no rows"),
    ('recipe,seed,stage,task,suite,metric,score,n\n"sft,0,base\n', "results.csv: not a CSV table (Error tokenizing"),
    (RESULTS.replace("0.45", "high"), "results.csv:3: score 'high' is not a number in [0, 1]"),
    (RESULTS.replace("0.45", "7"), "results.csv:3: score 7.0 is not a number in [0, 1]"),
    (RESULTS.replace("sft,0,finetune,t,general", "sft,x,finetune,t,general"), "results.csv:3: seed 'x' is not a whole"),
    (RESULTS.replace("finetune,t,general", "finetune,t,generl"), "results.csv:3: suite 'generl' is not one of"),
    (RESULTS.replace("base,t,general", "base,t,target"), "results.csv: no general scores of the base model"),
]


@pytest.mark.parametrize("results, message", GARBAGE, ids=range(len(GARBAGE)))
def test_report_on_a_garbage_results_csv_is_one_line(tmp_path, capsys, results, message):
    run = run_folder(tmp_path, results=results)
    assert main(["report", str(run)]) == 2
    (line,) = errors(capsys)
    assert line.startswith(f"error: {run}/") and message in line, line
    assert not (run / "report.md").exists()


@pytest.mark.parametrize("results, message", GARBAGE[:3], ids=range(3))
def test_gate_on_a_garbage_results_csv_is_one_line(tmp_path, capsys, results, message):
    run = run_folder(tmp_path, results=results)
    assert main(["gate", str(run), "--against", str(run)]) == 2
    (line,) = errors(capsys)
    assert message in line, line


def test_report_with_a_broken_manifest_still_writes(tmp_path, capsys):
    run = run_folder(tmp_path)
    write(run / "manifest.json", "{broken")
    assert main(["report", str(run)]) == 0
    assert "code version `? (manifest.json unreadable)`" in (run / "report.md").read_text()


def test_report_into_a_read_only_folder_is_one_line(tmp_path, capsys, monkeypatch):
    import pipeline.cli

    run = run_folder(tmp_path)
    monkeypatch.setattr(pipeline.cli.os, "access", lambda path, mode: Path(path) != run)
    assert main(["report", str(run)]) == 2
    assert errors(capsys) == [f"error: run folder {run}: the folder is not writable by this user (read-only?)"]


def test_report_results_are_typed(tmp_path):
    from pipeline.reports.results import read_results

    frame = read_results(write(tmp_path / "results.csv", RESULTS))
    assert frame.score.dtype.kind == "f" and frame.seed.dtype.kind == "i"
    assert json.loads(frame.to_json(orient="records"))[0]["recipe"] == "sft"
