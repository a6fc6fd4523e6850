"""Every class of bad input: exit code 2, one clear line naming field/file/line, nothing trained or changed.

Each case is a folder in tests/bad_inputs/ with a recipe.yaml ({dir} stands for the folder) and
expected.txt holding the message the user must see. A case whose files are made at test time (a model
folder with weights) also has a build.py with `build(folder)`: the case folder is copied and built there,
and {dir} stands for the copy.
"""

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from pipeline.cli import main

CASES = Path(__file__).resolve().parent / "bad_inputs"


def tiny_model(folder: Path, layers: int = 1, tied: bool = False) -> Path:
    """A random tiny Llama with the embedded tokenizer saved as a plain save_pretrained folder (model.safetensors)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from embedded.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=tied,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def edit_config(folder: Path, **changes) -> None:
    """Change fields of a model folder's config.json (None deletes one)."""
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}, indent=1))


def case_folder(case: str, tmp_path: Path) -> Path:
    """The case's folder, or a built copy of it when it has a build.py."""
    folder = CASES / case
    if not (folder / "build.py").exists():
        return folder
    copy = shutil.copytree(folder, tmp_path / "case")
    spec = importlib.util.spec_from_file_location(f"bad_input_{case}", folder / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(copy)
    return copy


def snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_input_is_refused_before_training(case, command, tmp_path, capsys, monkeypatch):
    import stages

    folder = case_folder(case, tmp_path)
    capsys.readouterr()  # what building the case printed (progress bars) is not the command's output
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
