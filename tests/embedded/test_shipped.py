"""The embedded default base ships with the package (embedded/base/): its files match SHA256SUMS, a damaged file is
refused in one line naming it, and it loads as docs/results.md says, without training anything."""

import dataclasses
import hashlib
import json
import shutil

import pytest

from embedded import model as base
from embedded import rebuild, shipped
from pipeline.cli import main

RECIPE = (
    "name: demo\ntarget: {{name: letter_rule, train: 'embedded:letter_rule', train_rows: 8, test_rows: 4}}\n"
    "model: {{path: embedded}}\nevaluation: {{limit: 2}}\nrecipes:\n  sft:\n    - kind: finetune\n"
    "      steps: 1\n"
)


def test_every_shipped_file_has_the_sha256_it_records():
    sums = (shipped.SHIPPED_DIR / "SHA256SUMS").read_text().splitlines()
    recorded = dict(reversed(line.split("  ", 1)) for line in sums)
    assert {"model.safetensors", "tokenizer.json", "config.json", "tokenizer_config.json"} <= set(recorded)
    for name, digest in recorded.items():
        assert hashlib.sha256((shipped.SHIPPED_DIR / name).read_bytes()).hexdigest() == digest, name
    assert shipped.main(["check"]) == 0


def test_the_default_base_is_the_shipped_folder_and_nothing_trains(monkeypatch):
    monkeypatch.setattr(base, "build_base_model", lambda *a, **k: pytest.fail("trained the default base"))
    monkeypatch.setattr(base, "_build", lambda *a, **k: pytest.fail("trained the default base"))
    assert base.ensure_base_model() == shipped.SHIPPED_DIR
    import bases

    assert bases.ensure("embedded") == shipped.SHIPPED_DIR


def test_it_loads_as_the_readme_says():
    """docs/results.md: `AutoModelForCausalLM.from_pretrained(ensure_base_model())`, 1.08M parameters, general 0.971."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from embedded.model import ensure_base_model, greedy_exact_match
    from embedded.tasks import make_examples

    folder = ensure_base_model()
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    build = json.loads((folder / "build.json").read_text())
    assert model.num_parameters() == build["num_parameters"] == 1075968
    assert round(sum(build["exact_match"].values()) / len(build["exact_match"]), 3) == 0.971
    assert build["cpu"]["capability"] == "AVX2"  # built by the portable build (embedded/portable.py)
    assert greedy_exact_match(model, tokenizer, make_examples("copy", "test", 20)) >= 0.9  # it learned, loaded


def test_the_shipped_base_is_what_the_default_spec_and_tokenizer_build():
    """Changing DEFAULT_SPEC or the tasks' vocabulary without shipping a new base (make base-rebuild) fails here."""
    from embedded.tokenizer import build_tokenizer

    build = json.loads((shipped.SHIPPED_DIR / "build.json").read_text())
    assert build["spec"] == json.loads(json.dumps(dataclasses.asdict(base.DEFAULT_SPEC), default=str))
    shipped_vocab = json.loads((shipped.SHIPPED_DIR / "tokenizer.json").read_text())["model"]["vocab"]
    assert shipped_vocab == build_tokenizer().get_vocab()


@pytest.fixture
def damaged(tmp_path, monkeypatch):
    copy = tmp_path / "base"
    shutil.copytree(shipped.SHIPPED_DIR, copy)
    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[-1] ^= 1  # one bit of one weight
    (copy / "model.safetensors").write_bytes(bytes(weights))
    monkeypatch.setattr(shipped, "SHIPPED_DIR", copy)
    return copy


def test_a_damaged_file_is_refused_in_one_line_naming_it(damaged, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format())
    run_dir = tmp_path / "run"
    for args in (["validate", str(recipe)], ["run", str(recipe), "--run-dir", str(run_dir)]):
        assert main(args) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
        assert len(err) == 1 and f"{damaged / 'model.safetensors'}: sha256 " in err[0], err
    assert not (run_dir / "base").exists()
    assert shipped.main(["check"]) == 1
    assert str(damaged / "model.safetensors") in capsys.readouterr().err


def test_rebuild_compares_the_weights_and_the_tokenizer(monkeypatch, tmp_path, capsys):
    """`make base-rebuild`: the same bytes exit 0; one flipped bit in the weights exits 1 (the build is stubbed)."""
    flip = {"on": False}

    def fake_build(spec, out_dir):
        assert spec == base.DEFAULT_SPEC
        for path in shipped.SHIPPED_DIR.iterdir():
            if path.name != "SHA256SUMS":
                shutil.copyfile(path, out_dir / path.name)
        (out_dir / "build.json").write_text("{}")  # build time and CPU differ on every build: not compared
        if flip["on"]:
            weights = bytearray((out_dir / "model.safetensors").read_bytes())
            weights[-1] ^= 1
            (out_dir / "model.safetensors").write_bytes(bytes(weights))

    monkeypatch.setattr(base, "_build", fake_build)
    assert rebuild.main([]) == 0
    assert "the same base as the shipped one" in capsys.readouterr().out
    flip["on"] = True
    assert rebuild.main([]) == 1
    out = capsys.readouterr().out
    assert "model.safetensors" in out and "DIFFERS" in out and "NOT the shipped base" in out
