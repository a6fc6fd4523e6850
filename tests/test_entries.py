"""`pipeline ls --check` builds every registered stage kind, suite and data format, and names one that breaks."""

import pytest

from pipeline.cli import main
from pipeline.recipe import entries


def test_every_registered_entry_builds(capsys):
    assert main(["ls", "--check"]) == 0
    out = capsys.readouterr().out
    assert "checked every stage kind, suite and data format: pass" in out
    for name in ("prompt_tune", "finetune", "embedded_general", "real_general", "sharegpt"):
        assert f"  {name} " in out


@pytest.mark.parametrize(
    "registry, entry, expected",
    [
        ("stages", "stages.no_such_stage", "stage broken: ModuleNotFoundError"),
        ("suites", None, "suite broken: TaskLoadError"),
        ("formats", None, "format broken: no sample row"),
    ],
)
def test_a_broken_entry_is_named_and_fails_the_check(monkeypatch, capsys, registry, entry, expected):
    from data_recipes.formats import FORMATS
    from evaluation.suites import SUITES, Suite
    from stages import STAGES

    table = {"stages": STAGES, "suites": SUITES, "formats": FORMATS}[registry]
    value = {
        "stages": entry,
        "suites": Suite("broken", "general", ["no_such_task"], str(__file__)),
        "formats": lambda row, index, tokenizer=None: row,
    }[registry]
    monkeypatch.setitem(table._entries, "broken", value)
    found = {"stages": entries.stage_problems, "suites": entries.suite_problems, "formats": entries.format_problems}[
        registry
    ]()
    assert [line for line in found if line.startswith(expected)], found


def test_an_unknown_name_names_the_close_ones():
    from stages import STAGES

    assert STAGES.unknown("fine_tune").startswith("unknown stage kind 'fine_tune'; did you mean finetune")
    with pytest.raises(ValueError, match="one of prompt_tune, finetune, evaluate, "):
        STAGES.get_or_raise("zzz")


def test_the_paper_variants_are_registered_stage_kinds(capsys):
    from stages import STAGES

    assert {"joint_tune", "lora_tune"} <= set(STAGES)
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "  joint_tune " in out and "  lora_tune " in out
