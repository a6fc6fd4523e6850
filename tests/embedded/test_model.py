"""Building, caching and reloading the embedded base model (with the tiny TEST_SPEC)."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from embedded import model as base
from embedded.model import TEST_SPEC, BaseModelSpec, ensure_base_model, greedy_exact_match
from embedded.tasks import make_examples


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    return root, ensure_base_model(TEST_SPEC, cache_root=root)


def test_build_loads_offline(built):
    _, path = built
    manifest = json.loads((path / "build.json").read_text())
    assert set(manifest["exact_match"]) == set(manifest["trained_on"])
    assert "letter_rule" not in manifest["trained_on"]
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.config.vocab_size == len(tokenizer)
    assert 0.0 <= greedy_exact_match(model, tokenizer, make_examples("copy", "test", 5)) <= 1.0
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name]  # temp build dir was renamed


def test_second_call_reuses_the_cache(built, monkeypatch):
    root, path = built
    monkeypatch.setattr(base, "build_base_model", lambda *a, **k: pytest.fail("rebuilt a cached base"))
    assert ensure_base_model(TEST_SPEC, cache_root=root) == path


def test_cache_root_from_environment(built, monkeypatch):
    root, path = built
    monkeypatch.setenv("FORGETLESS_CACHE", str(root))
    monkeypatch.setattr(base, "build_base_model", lambda *a, **k: pytest.fail("rebuilt a cached base"))
    assert ensure_base_model(TEST_SPEC) == path


def test_same_spec_gives_bit_identical_weights(built, tmp_path):
    _, path = built
    again = ensure_base_model(TEST_SPEC, cache_root=tmp_path)
    first, second = load_file(path / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_folder_without_manifest_is_rebuilt(tmp_path):
    path = ensure_base_model(TEST_SPEC, cache_root=tmp_path)
    os.remove(path / "build.json")
    (path / "junk").write_text("left by a crashed build")
    assert ensure_base_model(TEST_SPEC, cache_root=tmp_path) == path
    assert (path / "build.json").is_file() and not (path / "junk").exists()


def test_spec_changes_the_folder_name():
    assert base.spec_hash(TEST_SPEC) != base.spec_hash(BaseModelSpec())


def test_bad_spec_names_the_field():
    with pytest.raises(ValueError, match="num_heads"):
        BaseModelSpec(hidden_size=30, num_heads=4)


def test_task_weights_accept_only_general_tasks():
    with pytest.raises(ValueError, match="task_weights"):
        BaseModelSpec(task_weights=(("letter_rule", 2),))  # the target must stay new to the base


def test_concurrent_callers_build_once(tmp_path, monkeypatch):
    import threading
    import time

    calls = []

    def fake_build(spec, out_dir):
        calls.append(out_dir)
        time.sleep(0.3)  # long enough for the other caller to reach the lock
        (out_dir / "build.json").write_text("{}")

    monkeypatch.setattr(base, "build_base_model", fake_build)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_base_model(TEST_SPEC, tmp_path))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(set(results)) == 1


def test_build_json_names_the_kernels_that_built_it(built):
    from core.machine import cpu_kernels

    _, path = built
    assert json.loads((path / "build.json").read_text())["cpu"] == cpu_kernels()  # TEST_SPEC: built here, as is


def test_the_default_is_built_with_pinned_kernels(tmp_path):
    """A portable spec is built in a child interpreter pinned to AVX2 (embedded/portable.py), whatever this CPU has."""
    import dataclasses

    from embedded.portable import can_pin

    if not can_pin():
        pytest.skip("not an x86-64 CPU with AVX2: built with the machine's own kernels")
    assert base.DEFAULT_SPEC.portable_kernels
    path = ensure_base_model(dataclasses.replace(TEST_SPEC, portable_kernels=True), cache_root=tmp_path)
    manifest = json.loads((path / "build.json").read_text())
    assert manifest["cpu"]["capability"] == "AVX2"
    assert AutoModelForCausalLM.from_pretrained(path).config.vocab_size == len(AutoTokenizer.from_pretrained(path))


def test_the_cached_files_have_the_umasks_mode(built):
    from core.atomic import current_umask

    _, path = built
    modes = {p.name: p.stat().st_mode & 0o777 for p in path.iterdir()}
    assert modes and all(mode == 0o666 & ~current_umask() for mode in modes.values()), modes  # weights not 0600
