"""`pipeline validate` on model folders and hub ids: weights checked against config.json by their headers,
a hub that cannot be reached is one line at once, and a model's own code (trust_remote_code) never runs.

The refusals themselves (no weights, pickle only, corrupt, too many layers, another architecture, a missing
shard) are cases of tests/bad_inputs; here: the folders that must pass, and what needs more than one command.
"""

import json
import shutil
import time

import pytest

from pipeline.cli import main
from tests.test_bad_inputs import edit_config, tiny_model

RECIPE = (
    "name: demo\nmodel:\n  path: {path}\n{extra}target: {{}}\nrecipes:\n  sft:\n    - kind: finetune\n      steps: 2\n"
)


def validate(tmp_path, capsys, path, extra=""):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(path=path, extra=extra))
    capsys.readouterr()  # progress bars of building the model folder
    code = main(["validate", str(recipe)])
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def sharded(folder):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model(folder, layers=2))
    (folder / "model.safetensors").unlink()
    model.save_pretrained(folder, max_shard_size="20KB")
    assert (folder / "model.safetensors.index.json").exists()
    return folder


def base_model_only(folder):
    """Weights saved from the base model (LlamaModel): no `model.` prefix, and no lm_head (tied embeddings)."""
    from transformers import AutoModel

    tiny_model(folder, tied=True)
    AutoModel.from_pretrained(folder).save_pretrained(folder)
    edit_config(folder, architectures=["LlamaForCausalLM"])
    return folder


@pytest.mark.parametrize(
    "make",
    [
        lambda f: tiny_model(f),
        lambda f: tiny_model(f, layers=2, tied=True),  # lm_head.weight is not in the file: it is the embedding
        sharded,
        base_model_only,
    ],
    ids=["untied", "tied", "sharded", "base_model_prefix"],
)
def test_weights_that_fit_their_config_pass(tmp_path, capsys, make):
    folder = make(tmp_path / "model")
    code, out, err = validate(tmp_path, capsys, folder)
    assert code == 0, err
    assert out.startswith("ok: ") and not [line for line in err if line.startswith("error: ")]


def test_only_the_headers_are_read(tmp_path, capsys, monkeypatch):
    """Checking the weights loads no tensor: only names and shapes from the safetensors headers."""
    import safetensors.torch
    from safetensors import safe_open

    folder = tiny_model(tmp_path / "model")

    def no_loading(*args, **kwargs):
        raise AssertionError("validate loaded the weights")

    monkeypatch.setattr(safetensors.torch, "load_file", no_loading)
    monkeypatch.setattr(
        type(safe_open(str(folder / "model.safetensors"), framework="pt")), "get_tensor", no_loading, raising=False
    )
    assert validate(tmp_path, capsys, folder)[0] == 0


def test_a_config_with_fewer_layers_than_the_weights_is_refused(tmp_path, capsys):
    edit_config(tiny_model(tmp_path / "model", layers=2), num_hidden_layers=1)
    code, _, err = validate(tmp_path, capsys, tmp_path / "model")
    assert code == 2 and len(err) == 1
    assert "9 tensor(s) in them have no place in the model (model.layers.1.input_layernorm.weight" in err[0]


def test_an_untied_config_over_weights_without_lm_head_is_refused(tmp_path, capsys):
    edit_config(tiny_model(tmp_path / "model", tied=True), tie_word_embeddings=False)
    code, _, err = validate(tmp_path, capsys, tmp_path / "model")
    assert code == 2 and len(err) == 1
    assert "1 tensor(s) the model needs are not in them (lm_head.weight); they would train from random values" in err[0]


def test_a_vocabulary_size_that_differs_from_the_weights_is_refused(tmp_path, capsys):
    folder = tiny_model(tmp_path / "model")
    edit_config(folder, vocab_size=json.loads((folder / "config.json").read_text())["vocab_size"] + 3)
    code, _, err = validate(tmp_path, capsys, folder)
    assert code == 2 and len(err) == 1
    assert "2 tensor(s) have another shape (lm_head.weight: [205, 16] in the files, [208, 16] by config.json" in err[0]


# --- hub ids ----------------------------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """The hub cannot be reached: the one probe fails as a missing network does (DNS)."""
    import huggingface_hub

    calls = []

    def unreachable(*args, **kwargs):
        calls.append(args)
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return calls


def test_an_unreachable_hub_is_one_line_at_once(tmp_path, capsys, monkeypatch, no_network):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    started = time.monotonic()
    code, _, err = validate(tmp_path, capsys, "someorg/somemodel")
    assert code == 2
    assert err == [
        f"error: {tmp_path / 'recipe.yaml'}:3: model.path: someorg/somemodel: not in the local Hugging Face "
        "cache, and the hub cannot be reached (ConnectionError: [Errno -2] Name or service not known); "
        "download the model where there is a network, or name a local folder"
    ]
    assert time.monotonic() - started < 10  # transformers alone retries for 31 s
    assert len(no_network) == 1


def test_an_unreachable_hub_reads_a_model_from_the_cache(tmp_path, capsys, monkeypatch, no_network):
    import huggingface_hub

    cache = tmp_path / "cache"
    commit = "0" * 40
    snapshot = cache / "models--someorg--tiny" / "snapshots" / commit
    shutil.copytree(tiny_model(tmp_path / "model"), snapshot)
    (cache / "models--someorg--tiny" / "refs").mkdir()
    (cache / "models--someorg--tiny" / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    code, out, err = validate(tmp_path, capsys, "someorg/tiny")
    assert code == 0, err
    assert out.startswith("ok: ")


def test_hf_hub_offline_asks_nothing(tmp_path, capsys, monkeypatch, no_network):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    code, _, err = validate(tmp_path, capsys, "someorg/somemodel")
    assert code == 2 and len(err) == 1 and "someorg/somemodel" in err[0]
    assert no_network == []


# --- trust_remote_code ------------------------------------------------------------------------------------------


def own_code_model(folder, marker, auto_map=None):
    """A tiny Llama whose config.json names Python files of its own; running them leaves `marker`."""
    tiny_model(folder)
    (folder / "modeling_evil.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('the model code ran')\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n"
        "class EvilConfig(LlamaConfig):\n    model_type = 'evil'\n"
        "class EvilForCausalLM(LlamaForCausalLM):\n    config_class = EvilConfig\n"
    )
    auto_map = auto_map or {
        "AutoConfig": "modeling_evil.EvilConfig",
        "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM",
    }
    edit_config(folder, model_type="evil", auto_map=auto_map, architectures=["EvilForCausalLM"])
    return folder


def test_trust_remote_code_runs_none_of_the_models_code_in_validate(tmp_path, capsys):
    marker = tmp_path / "ran.txt"
    folder = own_code_model(tmp_path / "model", marker)
    code, out, err = validate(tmp_path, capsys, folder, extra="  trust_remote_code: true\n")
    assert code == 0, err
    assert not marker.exists()
    assert out.startswith("ok: ")
    assert err == [
        f"warning: model.path: {folder}: trust_remote_code: validation did not run the model's own code "
        "(the run will); config.json was read as JSON and its weights' names were not compared with "
        "the model"
    ]


def test_trust_remote_code_still_checks_what_needs_no_code(tmp_path, capsys):
    marker = tmp_path / "ran.txt"
    folder = own_code_model(tmp_path / "model", marker, auto_map={"AutoConfig": "modeling_evil.EvilConfig"})
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    code, _, err = validate(tmp_path, capsys, folder, extra="  trust_remote_code: true\n")
    assert code == 2 and not marker.exists()
    errors = [line for line in err if line.startswith("error: ")]
    assert any(
        "model type 'evil' is not a causal LM (config.json's auto_map names no AutoModelForCausalLM)" in e
        for e in errors
    ), err
    assert any("model.safetensors: not a readable safetensors file" in e for e in errors), err
    assert all(line.startswith(("error: ", "warning: ")) for line in err)
