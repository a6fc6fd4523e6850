"""Three targets of a user's own making (tests/data/own_targets/), each through the user-data path.

colour_fr (JSON lines, 3 labels, scorer auto -> label), country_of (CSV, 20 labels, scorer label) and bigger
(Parquet, numbers, scorer exact): each recipe file validates, a tiny run of it on the tiny test base scores its
target with the expected scorer on every test row, and make_data.py rewrites the committed files byte for byte.
"""

import importlib.util
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "own_targets"
TEST_ROWS = 5
# target name -> (scorer the manifest must record, file suffix, label set or None)
TARGETS = {
    "colour_fr": ("label", "jsonl", ["rouge", "bleu", "vert"]),
    "country_of": ("label", "csv", 20),
    "bigger": ("exact", "parquet", None),
}
STAGES = ["sft.0", "promot.0", "promot.1", "promot_merge.0", "promot_merge.1"]
TINY = [
    "--set",
    "seeds=[0]",
    "--set",
    "threads=1",
    "--set",
    "target.train_rows=128",
    "--set",
    f"target.test_rows={TEST_ROWS}",
    "--set",
    "evaluation.limit=2",
    "--set",
    "evaluation.batch_size=8",
    *[
        arg
        for stage in STAGES
        for arg in ("--set", f"recipes.{stage}.steps=2", "--set", f"recipes.{stage}.batch_size=4")
    ],
    "--set",
    "recipes.promot.0.num_virtual_tokens=2",
    "--set",
    "recipes.promot_merge.0.num_virtual_tokens=2",
]


def make_data():
    spec = importlib.util.spec_from_file_location("own_targets_make_data", DATA / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    return ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))


def test_make_data_rewrites_the_committed_files_byte_for_byte(tmp_path):
    module = make_data()
    module.main(tmp_path)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(
        f"{t}_{split}.{suffix}" for t, (_, suffix, _) in TARGETS.items() for split in ("train", "test")
    )
    for name in written:
        committed = DATA / name
        assert committed.stat().st_size < 1_000_000, name
        assert committed.read_bytes() == (tmp_path / name).read_bytes(), f"{name} differs from make_data.py's"


def test_the_data_is_in_the_embedded_vocabulary_and_test_prompts_are_not_trained_on():
    from embedded.tokenizer import build_tokenizer

    tokenizer, module = build_tokenizer(), make_data()
    for target, (_, _, labels) in TARGETS.items():
        train, test = module.rows(target)
        assert (len(train), len(test)) == (4000, 200)
        assert not {r["prompt"] for r in test} & {r["prompt"] for r in train}, target
        assert len({r["prompt"] for r in test}) == 200, target
        for row in train + test:
            ids = tokenizer(f"{row['prompt']} {row['completion']}")["input_ids"]
            assert tokenizer.unk_token_id not in ids, (target, row)
            assert not row["prompt"].endswith("="), (target, row)  # not a general task's prompt
        answers = {r["completion"] for r in train}
        if isinstance(labels, list):
            assert answers == set(labels), target
        elif labels:
            assert len(answers) == labels, target


@pytest.mark.parametrize("target", TARGETS)
def test_the_recipe_file_validates(target, capsys):
    assert main(["validate", str(DATA / f"{target}.yaml")]) == 0
    assert "5 recipes" in capsys.readouterr().out  # sft, promot and promot_merge at three alphas


@pytest.mark.parametrize("target", TARGETS)
def test_a_tiny_run_scores_the_target_with_its_scorer(target, tiny_base, tmp_path):
    scorer, suffix, _ = TARGETS[target]
    text = (DATA / f"{target}.yaml").read_text()
    assert "  path: embedded\n" in text
    recipe = tmp_path / f"{target}.yaml"  # beside copies of its data: the recipe's paths are relative to it
    recipe.write_text(text.replace("  path: embedded\n", f"  path: {tiny_base}\n"))
    for split in ("train", "test"):
        shutil.copy(DATA / f"{target}_{split}.{suffix}", tmp_path)
    run_dir = tmp_path / "run"
    assert main(["run", str(recipe), "--run-dir", str(run_dir), "--only", "promot_merge@alpha=0.5", *TINY]) == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["data"]["target_scoring"]["scorer"] == scorer
    frame = pd.read_csv(run_dir / "results.csv")
    scored = frame[frame.suite == "target"]
    assert set(scored.task) == {target}
    assert set(scored.recipe) == {"promot_merge@alpha=0.5"}
    assert (scored.n == TEST_ROWS).all()
    assert scored.score.between(0, 1).all()
