"""ProMoT + 1-shot data: every prompt preceded by one other example of its source, seeded, never itself."""

from collections import Counter

import pytest
import yaml
from datasets import Dataset

from core.errors import UserError
from core.typed_yaml import ConfigError
from data_recipes.mixes import ONE_SHOT_NOTE, SHOT_GAP, Mix, shot_text, with_one_shot
from data_recipes.stage_data import fold_replay
from pipeline.cli import main
from pipeline.recipe.config import load_recipe, resolved_dict, stage_dict


def source(name, n):
    return Dataset.from_list([{"prompt": f"{name} {i} =", "completion": f"a{i}"} for i in range(n)])


SOURCES = {"general": source("general", 300), "math": source("math", 256), "small": source("small", 10)}
ONE_SHOT = {"sources": {"general": 1, "math": "1/16"}, "one_shot": True}


def shot_and_prompt(row: str) -> tuple[str, str]:
    """A one-shot prompt split back into its shot and the example's own prompt."""
    shot, _, prompt = row.partition(SHOT_GAP)
    return shot, prompt


# --- parsed and written back -------------------------------------------------------------------------------------


def test_the_long_form_takes_one_shot_and_writes_it_back():
    mix = Mix.from_yaml(ONE_SHOT)
    assert mix.one_shot and mix.seed is None and mix.shares()[0] == ("general", 1)
    assert mix.stage_fields() == {"data": {"sources": {"general": 1, "math": "1/16"}, "one_shot": True}}
    assert Mix.from_yaml(mix.stage_fields()["data"]) == mix
    seeded = Mix.from_yaml({"sources": {"target": 1}, "seed": 7, "one_shot": True})
    assert seeded.stage_fields() == {"data": {"sources": {"target": 1}, "seed": 7, "one_shot": True}}
    assert Mix.from_yaml(seeded.stage_fields()["data"]) == seeded


@pytest.mark.parametrize(
    "zero_shot, long",
    [
        (["general", "math"], {"sources": {"general": 1, "math": 1}}),
        ({"general": 1, "math": "1/4"}, {"sources": {"general": 1, "math": "1/4"}}),
        ({"sources": {"general": 1, "math": 2}, "seed": 3}, {"sources": {"general": 1, "math": 2}, "seed": 3}),
    ],
)
def test_a_mix_without_one_shot_keeps_its_dump_and_a_one_shot_one_never_shares_it(zero_shot, long):
    mix = Mix.from_yaml(zero_shot)
    assert not mix.one_shot and Mix.from_yaml({**long, "one_shot": False}).stage_fields() == mix.stage_fields()
    assert "one_shot" not in str(mix.stage_fields())
    one_shot = Mix.from_yaml({**long, "one_shot": True})
    assert one_shot.shares() == mix.shares() and one_shot.stage_fields() != mix.stage_fields()


def test_the_zero_shot_forms_are_written_as_before():
    """Pinned: the stage key's settings of every 0-shot form (tests/data_recipes/test_mix_forms.py has more)."""
    assert Mix.from_yaml(["target"]).stage_fields() == {"data": ["target"], "replay": [], "k": "1"}
    assert Mix.from_yaml({"general": 1, "math": "1/256"}).stage_fields() == {
        "data": ["general"],
        "replay": ["math"],
        "k": "1/256",
    }
    assert Mix.from_yaml({"sources": {"math": 1}, "seed": 7}).stage_fields() == {
        "data": {"sources": {"math": 1}, "seed": 7}
    }


@pytest.mark.parametrize(
    "value, message",
    [
        ({"sources": {"math": 1}, "one_shot": "yes"}, "one_shot: expected true or false, got 'yes'"),
        ({"sources": {"math": 1}, "one_shot": 1}, "one_shot: expected true or false, got 1"),
        ({"sources": {"math": 1}, "one_shot": None}, "one_shot: expected true or false, got None"),
        (
            {"sources": {"math": 1}, "one_shoot": True},
            "unknown key 'one_shoot' next to sources; a mix takes sources, seed and one_shot",
        ),
    ],
)
def test_a_bad_one_shot_is_one_line(value, message):
    with pytest.raises(ValueError) as err:
        Mix.from_yaml(value)
    assert str(err.value) == message


# --- built -------------------------------------------------------------------------------------------------------


def test_each_prompt_gets_one_other_example_of_its_source_before_it():
    built = Mix.from_yaml(ONE_SHOT).build(SOURCES, 0)
    assert built.counts == {"general": 300, "math": 16}
    answers = {row["prompt"]: row["completion"] for data in SOURCES.values() for row in data}
    for row, completion in zip(built.dataset["prompt"], built.dataset["completion"]):
        shot, prompt = shot_and_prompt(row)
        shot_prompt, _, shot_answer = shot.rpartition(" ")
        assert answers[prompt] == completion  # the example itself is unchanged after its shot
        assert shot_prompt != prompt and answers[shot_prompt] == shot_answer  # another solved example...
        assert shot_prompt.split()[0] == prompt.split()[0]  # ...of the same source


def test_the_rows_and_their_order_are_those_of_the_same_mix_without_one_shot():
    for value in (ONE_SHOT, {"sources": {"general": "1/2", "small": 2.5}, "seed": 4, "one_shot": True}):
        one_shot = Mix.from_yaml(value).build(SOURCES, 1)
        zero_shot = Mix.from_yaml({**value, "one_shot": False}).build(SOURCES, 1)
        assert [shot_and_prompt(row)[1] for row in one_shot.dataset["prompt"]] == zero_shot.dataset["prompt"]
        assert one_shot.dataset["completion"] == zero_shot.dataset["completion"]
        assert one_shot.counts == zero_shot.counts
        assert one_shot.notes == zero_shot.notes + [ONE_SHOT_NOTE]  # the manifest's data_notes say one_shot


def test_a_weight_repeats_rows_with_their_shot():
    built = Mix.from_yaml({"sources": {"small": 3}, "one_shot": True}).build(SOURCES, 0)
    assert built.counts == {"small": 30} and set(Counter(built.dataset["prompt"]).values()) == {3}


def test_the_shots_are_seeded_by_the_mix_seed():
    first = Mix.from_yaml(ONE_SHOT).build(SOURCES, 5).dataset["prompt"]
    assert Mix.from_yaml(ONE_SHOT).build(SOURCES, 5).dataset["prompt"] == first  # deterministic
    own = Mix.from_yaml({**ONE_SHOT, "seed": 5}).build(SOURCES, 0).dataset["prompt"]
    assert own == first  # the mix's own seed replaces the stage's, for the shots too
    shots = {shot_and_prompt(row)[1]: shot_and_prompt(row)[0] for row in first}
    other = {
        shot_and_prompt(row)[1]: shot_and_prompt(row)[0]
        for row in Mix.from_yaml(ONE_SHOT).build(SOURCES, 6).dataset["prompt"]
    }
    common = shots.keys() & other.keys()
    assert sum(shots[p] != other[p] for p in common) > 0.9 * len(common)  # another seed, other shots


def test_every_row_is_shown_a_shot_never_itself_even_in_a_source_of_two():
    pair = with_one_shot(source("pair", 2), 0, "pair")
    assert pair["prompt"] == ["pair 1 = a1\n\npair 0 =", "pair 0 = a0\n\npair 1 ="]
    with pytest.raises(UserError, match="lonely: one_shot needs at least 2 rows"):
        with_one_shot(source("lonely", 1), 0, "lonely")


@pytest.mark.parametrize(
    "prompt, completion, shot",
    [
        ("premise : q w question : true or false ?", "True", "premise : q w question : true or false ? True"),
        ("Question: 2 + 2?\nAnswer:", " 4", "Question: 2 + 2?\nAnswer: 4"),  # gsm8k's answers start with a space
        (
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
            "yes",
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyes",
        ),  # a chat-rendered row
    ],
)
def test_a_shot_reads_as_its_prompt_then_its_answer(prompt, completion, shot):
    assert shot_text(prompt, completion) == shot


# --- the stage's `one_shot:` shorthand -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stage, data",
    [
        ({"one_shot": True}, {"sources": {"target": 1}, "one_shot": True}),
        ({"data": ["general", "math"], "one_shot": True}, {"sources": {"general": 1, "math": 1}, "one_shot": True}),
        (
            {"data": {"general": 1, "math": "1/4"}, "one_shot": True},
            {"sources": {"general": 1, "math": "1/4"}, "one_shot": True},
        ),
        (
            {"data": {"sources": {"math": 1}, "seed": 3}, "one_shot": True},
            {"sources": {"math": 1}, "seed": 3, "one_shot": True},
        ),
    ],
)
def test_a_stage_one_shot_folds_into_its_mix(stage, data):
    folded, problems = fold_replay({**stage, "steps": 2})
    assert not problems and folded == {"data": data, "steps": 2}


def test_one_shot_folds_after_replay_and_false_is_no_change():
    folded, problems = fold_replay({"data": ["general"], "replay": ["math"], "k": "1/4", "one_shot": True})
    assert not problems and Mix.from_yaml(folded["data"]) == Mix.from_yaml(
        {"sources": {"general": 1, "math": "1/4"}, "one_shot": True}
    )
    assert fold_replay({"data": ["math"], "one_shot": False}) == ({"data": ["math"]}, [])


@pytest.mark.parametrize(
    "stage, problem",
    [
        ({"one_shot": "yes"}, ("one_shot", "expected true or false, got 'yes'")),
        (
            {"data": {"sources": {"g": 1}, "one_shot": True}, "one_shot": True},
            ("one_shot", "also set in data; set it in one place"),
        ),
        ({"data": ["g", "g"], "one_shot": True}, ("data", "source 'g' named twice; name each source once")),
        (
            {"data": ["g"], "replay": ["g"], "one_shot": True},
            ("replay", "source 'g' named twice; name each source once"),
        ),
    ],
)
def test_a_bad_stage_one_shot_is_one_problem(stage, problem):
    folded, problems = fold_replay(stage)
    assert problems == [problem] and "one_shot" not in folded


# --- through a recipe file ---------------------------------------------------------------------------------------

RECIPE = """name: demo
data:
  general: {source: embedded:general, rows: 8}
  math: {source: embedded:math, rows: 8}
recipes:
  zero:
    - {kind: finetune, steps: 2, data: [general, math]}
  one:
    - kind: finetune
      steps: 2
      DATA
"""


@pytest.mark.parametrize(
    "data", ["data: [general, math]\n      one_shot: true", "data: {sources: {general: 1, math: 1}, one_shot: true}"]
)
def test_both_forms_load_and_config_yaml_reads_back_and_the_key_is_not_the_zero_shot_one(tmp_path, data):
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.replace("DATA", data))
    recipe = load_recipe(path)
    zero, one = recipe.stages["zero"][0], recipe.stages["one"][0]
    assert one.data.one_shot and one.data.shares() == zero.data.shares() and not zero.data.one_shot
    assert stage_dict(one)["data"] == {"sources": {"general": 1, "math": 1}, "one_shot": True}
    assert stage_dict(one) != stage_dict(zero)  # what the stage key hashes (pipeline/engine/plan.py)
    resolved = resolved_dict(recipe)
    written = tmp_path / "config.yaml"
    written.write_text(yaml.safe_dump({key: resolved[key] for key in ("name", "data", "recipes")}, sort_keys=False))
    again = load_recipe(written).stages
    assert again["one"][0].data == one.data and again["zero"][0].data == zero.data


def test_a_bad_one_shot_in_a_recipe_is_one_line_naming_file_line_and_field(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.replace("DATA", "data: [general]\n      one_shot: often"))
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    message = f"{path}:12: recipes.one[0].one_shot: expected true or false, got 'often'"
    assert err.value.problems == [message]
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]


def test_a_sweep_over_one_shot_makes_a_zero_shot_and_a_one_shot_recipe(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(
        RECIPE.replace("DATA", "data: [general]\n      one_shot: false") + "sweep:\n  one.one_shot: [false, true]\n"
    )
    stages = load_recipe(path).stages
    assert {name: configs[0].data.one_shot for name, configs in stages.items() if name != "zero"} == {
        "one@one_shot=False": False,
        "one@one_shot=True": True,
    }
