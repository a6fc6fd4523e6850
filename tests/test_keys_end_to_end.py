"""Every input that changes a number is in a stage key (issue 31), through `pipeline run` on the tiny base.

The two cases the issue found: `target.scorer` changed on a finished run, and `evaluation.chat_template` changed
on a run whose target rows are chat-rendered (the training stage trained on other token ids). Then a property:
for seeded random changes of keyed inputs, a rerun refuses in one line (exit 2) and leaves the folder as it was,
or with --rerun-changed recomputes; it never exits 0 on the old numbers.
"""

import hashlib
import json
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "own_targets"
RECIPE = str(DATA / "colour_fr.yaml")
# Words of the tiny base's vocabulary, so the rendered rows' token ids differ from the plain "User: ..." ones (the
# tiny word-level tokenizer reads "<|user|>" and "User:" alike, as its unknown token).
TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}translate : {{ m['content'] }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}question :{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    return ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def chat_base(tiny_base, tmp_path_factory):
    """The tiny base with a chat template in its tokenizer_config.json, as a chat model's folder has."""
    folder = tmp_path_factory.mktemp("chat") / "base"
    shutil.copytree(tiny_base, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": TEMPLATE}))
    return folder


def tiny(base) -> list[str]:
    return [
        f"model.path={base}",
        "seeds=[0]",
        "threads=1",
        "target.train_rows=32",
        "target.test_rows=4",
        "evaluation.limit=2",
        "evaluation.batch_size=8",
        "recipes.sft.0.steps=2",
        "recipes.sft.0.batch_size=4",
    ]


def run(run_dir, base, *changes, args=(), recipe=RECIPE) -> int:
    sets = [a for s in [*tiny(base), *changes] for a in ("--set", s)]
    return main(["run", recipe, "--run-dir", str(run_dir), "--only", "sft", *sets, *args])


def snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def done(run_dir: Path, stage_id: str) -> dict:
    return json.loads((run_dir / stage_id / "DONE.json").read_text())


def test_a_changed_scorer_is_refused_then_rescored(tiny_base, tmp_path, capsys):
    run_dir = tmp_path / "colour_fr"
    assert run(run_dir, tiny_base, "target.scorer=exact") == 0
    before = snapshot(run_dir)
    capsys.readouterr()
    assert run(run_dir, tiny_base, "target.scorer=label") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "scoring.scorer: exact -> label" in err, err
    assert snapshot(run_dir) == before
    assert run(run_dir, tiny_base, "target.scorer=label", args=["--rerun-changed"]) == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["data"]["target_scoring"]["scorer"] == "label"
    assert done(run_dir, "base/evaluate")["inputs"]["scoring"]["scorer"] == "label"
    assert done(run_dir, "seed0/sft/finetune-eval")["inputs"]["scoring"]["scorer"] == "label"


def messages_target(tmp_path: Path) -> list[str]:
    """colour_fr's rows as chat messages: rendered through the chat template when it is on."""
    out = []
    for split in ("train", "test"):
        rows = [json.loads(line) for line in (DATA / f"colour_fr_{split}.jsonl").read_text().splitlines()]
        path = tmp_path / f"colour_fr_{split}_messages.jsonl"
        path.write_text(
            "".join(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": r["prompt"]},
                            {"role": "assistant", "content": r["completion"]},
                        ]
                    }
                )
                + "\n"
                for r in rows
            )
        )
        out.append(f"target.{split}={path}")
    return [*out, "target.format=messages"]


def test_b_a_changed_chat_template_changes_the_training_stage_key(chat_base, tmp_path, capsys):
    run_dir = tmp_path / "chat"
    target = messages_target(tmp_path)
    assert run(run_dir, chat_base, *target, "evaluation.chat_template=auto") == 0
    trained = done(run_dir, "seed0/sft/finetune")
    before = snapshot(run_dir)
    capsys.readouterr()
    assert run(run_dir, chat_base, *target, "evaluation.chat_template=false") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "seed0/sft/finetune (the token ids of target's rows" in err and "chat_template: true -> false" in err, err
    assert snapshot(run_dir) == before
    assert run(run_dir, chat_base, *target, "evaluation.chat_template=false", args=["--rerun-changed"]) == 0
    assert done(run_dir, "seed0/sft/finetune")["key"] != trained["key"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["chat_template"] == {"applied": False}


@pytest.fixture(scope="module")
def finished(tiny_base, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "colour_fr"
    assert run(run_dir, tiny_base) == 0
    return run_dir


@pytest.fixture(scope="module")
def changed_base(tiny_base, tmp_path_factory):
    """The tiny base with one weight nudged: same names, sizes and config, other content."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("changed") / "base"
    shutil.copytree(tiny_base, folder)
    weights = load_file(str(folder / "model.safetensors"))
    name = sorted(weights)[0]
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] += 1e-3
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


KEYED_CHANGES = [
    "target.scorer=exact",
    "target.max_answer_tokens=3",
    "target.labels=[rouge,bleu]",
    "target.test_rows=3",
    "target.train_rows=24",
    "model.path={changed_base}",
    "evaluation.batch_size=4",
    "recipes.sft.0.lr=0.002",
    "max_length=40",
]


def planned_keys(run_dir: Path, base, *changes) -> dict:
    """{stage id: key} that the recipe with these changes plans now (nothing trained or written)."""
    import tempfile

    from pipeline.engine.orchestrator import ReadOnlyManifest, make_plan
    from pipeline.recipe.config import load_recipe

    recipe = load_recipe(RECIPE, [*tiny(base), *changes])
    with tempfile.TemporaryDirectory() as scratch:
        plan, *_ = make_plan(recipe, ReadOnlyManifest.open(run_dir, Path(RECIPE)), Path(scratch))
    return {stage.stage_id: stage.key for stage in plan}


@pytest.mark.parametrize("seed", [2, 5, 9])  # between them, every change of KEYED_CHANGES but test_rows
def test_random_keyed_changes_refuse_or_recompute(finished, tiny_base, changed_base, tmp_path, capsys, seed):
    """Property: a change of keyed inputs is refused in one line and changes nothing, or with --rerun-changed is
    recomputed: every stage reported then carries the key its config.yaml plans. Never exit 0 on old numbers."""
    changes = [c.replace("{changed_base}", str(changed_base)) for c in random.Random(seed).sample(KEYED_CHANGES, k=3)]
    base = next((c.split("=", 1)[1] for c in changes if c.startswith("model.path=")), tiny_base)
    changes = [c for c in changes if not c.startswith("model.path=")]
    run_dir = tmp_path / "colour_fr"
    shutil.copytree(finished, run_dir)
    before = snapshot(run_dir)
    capsys.readouterr()
    assert run(run_dir, base, *changes) == 2, changes
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--rerun-changed" in err, err
    assert snapshot(run_dir) == before
    assert run(run_dir, base, *changes, args=["--rerun-changed"]) == 0
    planned = planned_keys(run_dir, base, *changes)
    frame = pd.read_csv(run_dir / "results.csv")
    for stage in {"base/evaluate", "seed0/sft/finetune", "seed0/sft/finetune-eval"}:
        assert done(run_dir, stage)["key"] == planned[stage], (stage, changes)
    assert set(frame.stage) == {"base", "finetune"}


def test_a_revision_of_a_local_folder_is_refused_before_anything(tiny_base, tmp_path, capsys):
    assert run(tmp_path / "run", tiny_base, "model.revision=v2") == 2
    err = capsys.readouterr().err
    assert "model.revision: 'v2' is for a hub id;" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").rglob("DONE.json"))


def test_a_hub_id_runs_at_its_revision_and_keys_its_content(tiny_base, changed_base, tmp_path):
    """`acme/tiny` served offline from a local Hugging Face cache: main is the tiny base, tag v2 the changed one."""
    import os
    import subprocess
    import sys

    repo = tmp_path / "hub" / "models--acme--tiny"
    for commit, folder, ref in (("a" * 40, tiny_base, "main"), ("b" * 40, changed_base, "v2")):
        shutil.copytree(folder, repo / "snapshots" / commit)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

    def hub_run(revision: str) -> subprocess.CompletedProcess:
        sets = [a for s in [*tiny("acme/tiny"), f"model.revision={revision}"] for a in ("--set", s)]
        command = [
            sys.executable,
            "-m",
            "pipeline.cli",
            "run",
            RECIPE,
            "--run-dir",
            str(tmp_path / "run"),
            "--only",
            "sft",
            *sets,
        ]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    first = hub_run("v2")
    assert first.returncode == 0, first.stderr[-2000:]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["base_model"] == {
        **manifest["base_model"],
        "name": "acme/tiny",
        "revision": "v2",
        "commit": "b" * 40,
    }
    again = hub_run("main")  # another commit, other weights: refused, in one line
    assert again.returncode == 2
    assert "base/evaluate (an earlier stage or the base model changed)" in again.stderr.strip().splitlines()[-1]
