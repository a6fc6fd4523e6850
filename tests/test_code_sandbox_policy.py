"""Where no isolation works, a recipe that runs model-written code stops before training, naming the package;
`evaluation.unsafe_code_execution: true` waives that; the manifest records which isolation a run used."""

import json

import pytest

from evaluation import sandbox
from pipeline.cli import main

CODE_RECIPE = (
    "name: demo\ntarget: {{}}\nmodel: {{path: {model}}}\nevaluation: {{domain_suites: [embedded_code], limit: 2,"
    " unsafe_code_execution: {unsafe}}}\nrecipes:\n  sft:\n    - kind: finetune\n      steps: 1\n"
)


@pytest.fixture
def base_model(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    return ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))


def recipe(tmp_path, base_model, unsafe: bool):
    path = tmp_path / "recipe.yaml"
    path.write_text(CODE_RECIPE.format(model=base_model, unsafe=str(unsafe).lower()))
    return path


def test_no_isolation_refuses_before_anything_runs(tmp_path, base_model, capsys, monkeypatch):
    monkeypatch.setenv("FORGETLESS_SANDBOX", "none")  # as on a machine without bubblewrap or unshare
    path, run_dir = recipe(tmp_path, base_model, unsafe=False), tmp_path / "run"
    for args in (["validate", str(path)], ["run", str(path), "--run-dir", str(run_dir)]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len([line for line in err if line.startswith("error: ")]) == 1, err
        assert "evaluation.unsafe_code_execution" in err[-1] and "apt-get install bubblewrap" in err[-1]
    assert not (run_dir / "manifest.json").exists() and not (run_dir / "base").exists()


def test_a_bad_forced_mode_is_one_line(tmp_path, base_model, capsys, monkeypatch):
    monkeypatch.setenv("FORGETLESS_SANDBOX", "docker")
    assert main(["validate", str(recipe(tmp_path, base_model, unsafe=False))]) == 2
    assert "FORGETLESS_SANDBOX='docker': must be one of" in capsys.readouterr().err


def test_the_waiver_runs_and_the_manifest_says_so(tmp_path, base_model, monkeypatch):
    monkeypatch.setenv("FORGETLESS_SANDBOX", "none")
    run_dir = tmp_path / "run"
    try:
        assert main(["run", str(recipe(tmp_path, base_model, unsafe=True)), "--run-dir", str(run_dir)]) == 0
    finally:
        sandbox.allow_unisolated(False)  # the policy is per process: leave it as the other tests expect
    assert json.loads((run_dir / "manifest.json").read_text())["code_isolation"] == "none"


@pytest.fixture
def no_bubblewrap(monkeypatch):
    """As on a machine where unshare works but bubblewrap does not (not installed, or its probe fails)."""
    from evaluation.sandbox import isolation

    if isolation.isolation_for(sandbox.Mode.UNSHARE) is None:
        pytest.skip("unshare does not work here")
    real = isolation.isolation_for
    monkeypatch.setattr(
        isolation, "isolation_for", lambda mode: None if mode is sandbox.Mode.BUBBLEWRAP else real(mode)
    )
    monkeypatch.delenv("FORGETLESS_SANDBOX", raising=False)


def test_without_bubblewrap_the_weaker_fallback_needs_its_opt_in(tmp_path, base_model, capsys, no_bubblewrap):
    path, run_dir = recipe(tmp_path, base_model, unsafe=False), tmp_path / "run"
    for args in (["validate", str(path)], ["run", str(path), "--run-dir", str(run_dir)]):
        assert main(args) == 2
        err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error: ")]
        assert len(err) == 1, err
        assert "FORGETLESS_SANDBOX=unshare-weaker" in err[0] and "apt-get install bubblewrap" in err[0], err
        assert "io.FileIO" in err[0]  # the opt-in says what it gives up
    assert not (run_dir / "manifest.json").exists() and not (run_dir / "base").exists()


def test_the_opt_in_runs_unshare_and_the_manifest_says_so(tmp_path, base_model, monkeypatch, no_bubblewrap):
    monkeypatch.setenv("FORGETLESS_SANDBOX", "unshare-weaker")
    run_dir = tmp_path / "run"
    assert main(["validate", str(recipe(tmp_path, base_model, unsafe=False))]) == 0
    assert main(["run", str(recipe(tmp_path, base_model, unsafe=False)), "--run-dir", str(run_dir)]) == 0
    assert json.loads((run_dir / "manifest.json").read_text())["code_isolation"] == "unshare"


def test_the_old_unshare_value_is_refused_naming_the_opt_in(tmp_path, base_model, capsys, monkeypatch):
    monkeypatch.setenv("FORGETLESS_SANDBOX", "unshare")
    assert main(["validate", str(recipe(tmp_path, base_model, unsafe=False))]) == 2
    assert (
        "FORGETLESS_SANDBOX='unshare': must be one of ['bubblewrap', 'unshare-weaker', 'none']"
        in capsys.readouterr().err
    )
