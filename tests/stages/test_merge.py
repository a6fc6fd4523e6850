"""The merge stage's parts: its settings, its contract in a recipe's chain, and the interpolation of two folders."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.errors import UserError
from stages import finetune, merge, prompt_tune
from stages.context import StageContext, StageResult
from stages.handoff import Adapter, Handoff, Reads, Scope, chain_problems


def folder(path, tensors, shards=None, **files):
    """A save_pretrained-like folder: its weights (split into the named shard files) and other files."""
    path.mkdir(parents=True)
    for name, keys in (shards or {"model.safetensors": list(tensors)}).items():
        save_file({k: tensors[k] for k in keys}, path / name, metadata={"format": "pt"})
    for name, text in {"config.json": "{}", **files}.items():
        (path / name).write_text(text)
    return path


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"alpha": -0.1}, "merge.alpha: must be a number in [0, 1], got -0.1"),
        ({"alpha": 1.01}, "merge.alpha: must be a number in [0, 1], got 1.01"),
        ({"alpha": float("nan")}, "merge.alpha: must be a number in [0, 1], got nan"),
        ({"start": "input"}, "merge.end: 'input' is also start"),
        ({"name": "m", "end": ""}, "m.end: must name a checkpoint"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(settings, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        merge.Config(**settings)


def test_only_earlier_stage_names_are_read_and_an_unknown_one_is_refused():
    assert merge.Config().contract().reads == ()  # base and input are always there
    assert merge.Config(start="stage1").contract().reads == (Reads("stage1", "start"),)
    promot = [prompt_tune.Config(), finetune.Config(prompt_from="prompt_tune")]
    assert chain_problems([*promot, merge.Config(start="prompt_tune", end="finetune")]) == []
    assert chain_problems([*promot, merge.Config(end="stage1")]) == [
        (
            "merge.end",
            "no earlier stage named 'stage1' in this recipe; expected base, input or an earlier stage's "
            "name ('prompt_tune', 'finetune')",
        )
    ]
    assert [p[0] for p in chain_problems([merge.Config(name="m", start="m")])] == ["m.start"]  # not itself


def test_the_hand_off_keeps_each_stage_model_by_name(tmp_path):
    base = tmp_path / "base"
    one = Handoff(base, base).after(StageResult(tmp_path / "one"), "one")
    two = one.after(StageResult(tmp_path / "two"), "two").after(StageResult(tmp_path / "two"))  # an evaluation
    assert two.models == {"one": tmp_path / "one", "two": tmp_path / "two"}
    assert [two.model_named(n) for n in ("base", "input", "one")] == [base, tmp_path / "two", tmp_path / "one"]


def test_interpolation_keeps_end_dtypes_layout_and_files(tmp_path):
    a = {
        "w": torch.tensor([0.0, 2.0, -4.0]),
        "b16": torch.tensor([1.0, 3.0], dtype=torch.bfloat16),
        "step": torch.tensor([1]),
    }
    b = {
        "w": torch.tensor([2.0, 2.0, 4.0]),
        "b16": torch.tensor([3.0, 5.0], dtype=torch.bfloat16),
        "step": torch.tensor([7]),
    }
    start = folder(tmp_path / "a", a)
    end = folder(
        tmp_path / "b",
        b,
        {"one.safetensors": ["w"], "two.safetensors": ["b16", "step"]},
        **{"tokenizer.json": "tok", "training_args.bin": "pickle"},
    )
    merge.interpolate(start, end, 0.25, tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "one.safetensors",
        "tokenizer.json",
        "two.safetensors",
    ]
    assert load_file(out / "one.safetensors")["w"].equal(torch.tensor([0.5, 2.0, -2.0]))
    two = load_file(out / "two.safetensors")
    assert two["b16"].dtype == torch.bfloat16 and two["b16"].equal(torch.tensor([1.5, 3.5], dtype=torch.bfloat16))
    assert two["step"].equal(torch.tensor([7]))  # not a weight: end's


@pytest.mark.parametrize(
    "other, words",
    [
        ({"w": torch.zeros(4)}, "w: [3] vs [4]"),
        ({"w": torch.zeros(3), "extra": torch.zeros(1)}, "extra only in the second"),
    ],
)
def test_two_architectures_are_refused_naming_both_checkpoints(tmp_path, other, words):
    start, end = folder(tmp_path / "a", {"w": torch.zeros(3)}), folder(tmp_path / "b", other)
    with pytest.raises(UserError, match=r"m.start \(base\) and m.end \(input\): not the same architecture"):
        merge.interpolate(start, end, 0.5, tmp_path / "out", names=("m.start (base)", "m.end (input)"))
    with pytest.raises(UserError, match=words.replace("[", r"\[").replace("]", r"\]")):
        merge.interpolate(start, end, 0.5, tmp_path / "out")


def test_run_rehomes_the_adapters_made_on_its_input_and_passes_the_others_on(tmp_path):
    base = folder(tmp_path / "base", {"w": torch.zeros(2)})
    tuned = folder(tmp_path / "tuned", {"w": torch.ones(2)})
    adapters = {}
    for name, home, scope in [("pt", tuned, Scope.TARGET), ("old", base, Scope.TARGET), ("lora", tuned, Scope.MERGED)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(home)}))
        adapters[name] = Adapter(tmp_path / name, scope=scope)
    ctx = StageContext(stage_dir=tmp_path / "stage", handoff=Handoff(tuned, base, adapters), seed=0, max_length=8)
    result = merge.run(merge.Config(alpha=0.5), ctx)
    assert load_file(result.model_dir / "model.safetensors")["w"].equal(torch.full((2,), 0.5))
    assert result.adapters == {"pt": Adapter(tmp_path / "stage/adapters/pt")}
    moved = json.loads((tmp_path / "stage/adapters/pt/adapter_config.json").read_text())
    assert moved["base_model_name_or_path"] == str(result.model_dir.resolve())
    handed = ctx.handoff.after(result, "merge").adapters
    assert handed["old"] == adapters["old"] and handed["lora"] == adapters["lora"]
