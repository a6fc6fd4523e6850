"""A run folder never lies: reruns with other settings, --only, overrides through anchors, relative model paths.

Everything goes through `pipeline run` on the ProMoT recipe file with a tiny base. The invariant checked
after every rerun: each reported stage was trained with the settings config.yaml states, from the stages
the report says it came from.
"""

import hashlib
import json
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.cli import main
from pipeline.engine.plan import key_of

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("promot_merge",)  # its own tests (tests/test_merge_end_to_end.py)


def _without_variants() -> str:
    """recipes/promot.yaml, anchors and all, less promot_merge: each rerun here trains the three ProMoT and
    baseline recipes only, which keeps the many reruns fast."""
    import re
    import tempfile

    text = (ROOT / "recipes" / "promot.yaml").read_text()
    for name in VARIANTS:
        text, found = re.subn(rf"^  {name}:\n(?:    - .*\n)+", "", text, flags=re.M)
        assert found == 1, name
    text, found = re.subn(r"^  # The project's bar beyond the paper.*\Z", "", text, flags=re.M | re.S)  # its checks
    assert found == 1
    path = Path(tempfile.mkdtemp(prefix="forgetless-recipe-")) / "promot.yaml"
    path.write_text(text)
    return str(path)


RECIPE = _without_variants()


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    return ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))


def settings(base) -> list[str]:
    steps = {"prompt_tuning.0": 2, "promot.0": 2, "promot.1": 2, "sft.0": 2}
    return [
        f"model.path={base}",
        "seeds=[0]",
        "evaluation.limit=2",
        "target.train_rows=32",
        "target.test_rows=2",
        *[f"recipes.{k}.steps={v}" for k, v in steps.items()],
        *[f"recipes.{k}.batch_size=4" for k in steps],
    ]


def run(run_dir, base, *extra, args=()) -> int:
    sets = [a for s in [*settings(base), *extra] for a in ("--set", s)]
    return main(["run", RECIPE, "--run-dir", str(run_dir), *sets, *args])


@pytest.fixture(scope="module")
def finished(tiny_base, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "promot"
    assert run(run_dir, tiny_base) == 0
    return run_dir


def snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def copy_of(finished, tmp_path) -> Path:
    copy = tmp_path / "promot"
    shutil.copytree(finished, copy)
    return copy


def assert_truthful(run_dir: Path) -> None:
    """Every reported (recipe, seed, stage) was trained with config.yaml's settings, in config.yaml's chain."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    frame = pd.read_csv(run_dir / "results.csv")
    manifest = json.loads((run_dir / "manifest.json").read_text())["stages"]

    def done(stage_id):
        entry = manifest[stage_id]
        folder = entry.get("reused_from", stage_id) if entry["status"] == "reused" else stage_id
        return json.loads((run_dir / folder / "DONE.json").read_text())

    for (recipe, seed, stage), _ in frame[frame.stage != "base"].groupby(["recipe", "seed", "stage"]):
        stages = config["recipes"][recipe]
        names = [s["name"] for s in stages]
        upstream = None
        for spec in stages[: names.index(stage) + 1]:
            trained = done(f"seed{seed}/{recipe}/{spec['name']}")
            assert trained["inputs"]["settings"] == {k: v for k, v in spec.items() if k != "name"}, (recipe, spec)
            if upstream is not None:
                assert trained["inputs"]["upstream"][0] == upstream
            upstream = key_of(trained["inputs"])
        evaluated = done(f"seed{seed}/{recipe}/{stage}-eval")
        assert evaluated["inputs"]["upstream"] == [upstream]


def test_a_first_run_is_truthful(finished):
    assert_truthful(finished)


def test_changed_settings_are_refused_and_change_nothing(finished, tiny_base, tmp_path, capsys):
    run_dir = copy_of(finished, tmp_path)
    before = snapshot(run_dir)
    assert run(run_dir, tiny_base, "recipes.sft.0.lr=0.05") == 2
    err = capsys.readouterr().err
    assert "seed0/sft/finetune (settings.lr: 0.001 -> 0.05)" in err and "--rerun-changed" in err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(run_dir) == before  # config.yaml, manifest, results: all as they were


def test_a_different_base_model_is_refused_even_for_the_base_evaluation(finished, tiny_base, tmp_path, capsys):
    other = tmp_path / "other-base"
    shutil.copytree(tiny_base, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    run_dir = copy_of(finished, tmp_path)
    before = snapshot(run_dir)
    assert run(run_dir, other) == 2
    assert "base/evaluate (an earlier stage or the base model changed)" in capsys.readouterr().err
    assert snapshot(run_dir) == before


def test_rerun_changed_retrains_what_changed_and_only_that(finished, tiny_base, tmp_path):
    run_dir = copy_of(finished, tmp_path)
    untouched = (run_dir / "seed0/prompt_tuning/prompt_tune/DONE.json").read_text()
    assert run(run_dir, tiny_base, "recipes.promot.1.lr=0.002", args=["--rerun-changed"]) == 0
    assert json.loads((run_dir / "seed0/promot/finetune/DONE.json").read_text())["inputs"]["settings"]["lr"] == 0.002
    assert (run_dir / "seed0/prompt_tuning/prompt_tune/DONE.json").read_text() == untouched
    assert_truthful(run_dir)


def test_an_override_through_a_shared_anchor_changes_its_own_recipe_only(finished, tiny_base, tmp_path):
    run_dir = copy_of(finished, tmp_path)
    assert run(run_dir, tiny_base, "recipes.promot.0.steps=3", args=["--rerun-changed"]) == 0
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["recipes"]["promot"][0]["steps"] == 3 and config["recipes"]["prompt_tuning"][0]["steps"] == 2
    assert json.loads((run_dir / "manifest.json").read_text())["stages"]["seed0/promot/prompt_tune"]["status"] == "done"
    assert_truthful(run_dir)


def test_only_keeps_every_other_recipes_results(finished, tiny_base, tmp_path):
    run_dir = copy_of(finished, tmp_path)
    before = pd.read_csv(run_dir / "results.csv")
    assert run(run_dir, tiny_base, args=["--only", "sft"]) == 0
    after = pd.read_csv(run_dir / "results.csv")
    assert set(after.recipe) == set(before.recipe) and len(after) == len(before)
    pd.testing.assert_frame_equal(after, before)


def test_only_with_an_unknown_name_is_refused_before_anything(finished, tiny_base, tmp_path, capsys):
    run_dir = copy_of(finished, tmp_path)
    before = snapshot(run_dir)
    assert run(run_dir, tiny_base, args=["--only", "sftt"]) == 2
    assert "--only: no recipe named 'sftt' in this file; its recipes: sft, prompt_tuning" in capsys.readouterr().err
    assert snapshot(run_dir) == before


def test_a_relative_model_path_survives_a_rerun_that_skips_the_prompt_stage(tiny_base, tmp_path, monkeypatch):
    shutil.copytree(tiny_base, tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    assert run(tmp_path / "runs" / "rel", "./model") == 0
    assert run(tmp_path / "runs" / "rel", "./model") == 0  # every stage skipped, promot's prompt handed on
    assert_truthful(tmp_path / "runs" / "rel")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_changes_never_leave_an_untrue_report(finished, tiny_base, tmp_path, seed):
    """Property: whatever changes, a rerun either refuses and leaves the folder as it was, or (with
    --rerun-changed) reports only what was trained with the reported config."""
    rng = random.Random(seed)
    changes = rng.sample(
        [
            "recipes.sft.0.lr=0.002",
            "recipes.promot.0.lr=0.1",
            "recipes.promot.1.steps=3",
            "target.train_rows=24",
            "evaluation.limit=3",
            "max_length=40",
            "recipes.prompt_tuning.0.num_virtual_tokens=8",
        ],
        k=2,
    )
    run_dir = copy_of(finished, tmp_path)
    before = snapshot(run_dir)
    assert run(run_dir, tiny_base, *changes) == 2
    assert snapshot(run_dir) == before
    assert run(run_dir, tiny_base, *changes, args=["--rerun-changed"]) == 0
    assert_truthful(run_dir)


def test_a_hub_id_base_survives_a_rerun_that_skips_the_prompt_stage(tiny_base, tmp_path):
    """A hub-id-shaped base (`org/name`), served offline from a local Hugging Face cache, as a user's hub model."""
    import os
    import subprocess
    import sys

    snapshot_dir = tmp_path / "hub" / "models--acme--tiny-llama" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_base, snapshot_dir)
    (tmp_path / "hub" / "models--acme--tiny-llama" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny-llama" / "refs" / "main").write_text("0" * 40)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    sets = [a for s in settings("acme/tiny-llama") for a in ("--set", s)]
    command = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "run",
        RECIPE,
        "--run-dir",
        str(tmp_path / "run"),
        *sets,
        "--only",
        "prompt_tuning",
        "--only",
        "promot",
    ]
    for _ in range(2):  # the second run skips every stage and hands promot's prompt on from its marker
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    assert_truthful(tmp_path / "run")
