"""End to end: self-distillation fine-tuning (stages/self_distill.py) through `pipeline run`."""

import json

import pytest

from pipeline.cli import main
from stages.self_distill import agrees

RECIPE = """name: sdft
seeds: [0]
model: {path: BASE}
target: {name: letter_rule, train: embedded:letter_rule, train_rows: 16, test_rows: 4}
evaluation: {general_suite: embedded_general, limit: 2, batch_size: 8}
max_length: 64
recipes:
  sdft:
    - {kind: self_distill, steps: 2, batch_size: 8, lr: 1.0e-3, max_new_tokens: 4}
"""


@pytest.mark.parametrize(
    "said, reference, expected",
    [
        ("True. The rule holds.", "True", True),
        ("true", "True", True),
        ("False", "True", False),
        ("Truly", "True", False),
        ("", "True", False),
        ("The answer is 42 apples", "42 apples", True),
        ("41 apples", "42 apples", False),
    ],
)
def test_a_rewrite_is_kept_only_where_it_agrees_with_the_reference(said, reference, expected):
    assert agrees(said, reference) is expected


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    return ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))


def test_the_model_rewrites_and_trains_on_the_agreeing_rewrites(tmp_path, base, monkeypatch):
    """The rewrite is stubbed (the embedded model cannot follow the instruction): every other row's rewrite agrees."""
    import evaluation.generation

    seen = []

    def fake_generate(model, tokenizer, prompts, max_new_tokens):
        seen.extend(prompts)
        return [
            f"{p.split('### Reference Answer:')[1].split()[0]} indeed"
            if (len(seen) - len(prompts) + i) % 2 == 0
            else "banana"
            for i, p in enumerate(prompts)
        ]

    monkeypatch.setattr(evaluation.generation, "generate", fake_generate)
    (tmp_path / "recipe.yaml").write_text(RECIPE.replace("BASE", str(base)))
    run_dir = tmp_path / "run"
    assert main(["run", str(tmp_path / "recipe.yaml"), "--run-dir", str(run_dir)]) == 0
    rows = [json.loads(line) for line in (run_dir / "seed0/sdft/self_distill/distilled.jsonl").read_text().splitlines()]
    assert len(rows) == 16 == len(seen)
    assert all("### Reference Answer:" in p for p in seen) and all(r["prompt"] in p for r, p in zip(rows, seen))
    kept = [r for r in rows if r["kept_rewrite"]]
    assert len(kept) == 8 and all(r["completion"].endswith(" indeed") for r in kept)
    assert all(r["completion"] == r["reference"] for r in rows if not r["kept_rewrite"])
    done = json.loads((run_dir / "seed0/sdft/self_distill/DONE.json").read_text())
    assert done["metrics"]["rewritten_share"] == 0.5
    assert (run_dir / "seed0/sdft/self_distill/model/model.safetensors").is_file()


def test_on_the_embedded_model_the_stage_says_how_little_it_rewrote(tmp_path, base):
    (tmp_path / "recipe.yaml").write_text(RECIPE.replace("BASE", str(base)))
    run_dir = tmp_path / "run"
    assert main(["run", str(tmp_path / "recipe.yaml"), "--run-dir", str(run_dir)]) == 0
    done = json.loads((run_dir / "seed0/sdft/self_distill/DONE.json").read_text())
    rows = (run_dir / "seed0/sdft/self_distill/distilled.jsonl").read_text().splitlines()
    assert len(rows) == 16
    assert done["metrics"]["rewritten_share"] == sum(json.loads(r)["kept_rewrite"] for r in rows) / 16


@pytest.mark.parametrize(
    "extra, message",
    [
        ("template: 'no placeholders'", "self_distill.template: must contain {prompt} and {answer}"),
        ("template: '{prompt} {answer} {other}'", "self_distill.template: KeyError('other')"),
        ("prompt_from: x", "self_distill.prompt_from: not available for self_distill"),
    ],
)
def test_validate_refuses_a_broken_template_in_one_line(tmp_path, base, capsys, extra, message):
    (tmp_path / "recipe.yaml").write_text(
        RECIPE.replace("BASE", str(base)).replace("max_new_tokens: 4}", f"max_new_tokens: 4, {extra}}}")
    )
    assert main(["validate", str(tmp_path / "recipe.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
