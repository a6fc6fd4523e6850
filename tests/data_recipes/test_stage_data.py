"""The `replay:` + `k:` shorthand folded into the data mix, the unknown-source check, and both through a recipe file."""

from fractions import Fraction

import pytest
import yaml

from core.typed_yaml import ConfigError
from data_recipes.mixes import Mix
from data_recipes.stage_data import fold_replay, unknown_sources
from pipeline.cli import main
from pipeline.recipe.config import load_recipe, resolved_dict, stage_dict

# --- the shorthand -----------------------------------------------------------------------------------------------


def test_replay_and_k_become_the_data_mapping():
    folded, problems = fold_replay({"data": ["general"], "replay": ["math", "code"], "k": "1/256", "steps": 2})
    assert not problems and folded == {
        "data": {"general": 1, "math": Fraction(1, 256), "code": Fraction(1, 256)},
        "steps": 2,
    }


def test_a_stage_without_the_shorthand_is_left_as_it_is():
    stage = {"data": {"general": 1, "math": 2}}
    assert fold_replay(stage) == (stage, [])


def test_replay_without_k_is_the_replay_sources_in_full_and_the_default_data_is_target():
    folded, problems = fold_replay({"replay": ["math"]})
    assert not problems and folded["data"] == {"target": 1, "math": 1}


def test_the_way_config_yaml_writes_a_stage_without_replay_reads_back():
    assert fold_replay({"data": ["math"], "replay": [], "k": "1"}) == ({"data": ["math"]}, [])


@pytest.mark.parametrize(
    "stage, problem",
    [
        ({"data": ["g"], "k": "1/4"}, ("k", "set only together with replay sources")),
        ({"data": ["g"], "replay": [], "k": "1/4"}, ("k", "set only together with replay sources")),
        ({"data": ["g"], "replay": ["m"], "k": 2}, ("k", "must be in (0, 1], got 2")),
        ({"data": ["g"], "replay": ["m"], "k": 0}, ("k", "must be in (0, 1], got 0")),
        ({"data": ["g"], "replay": ["m"], "k": "x"}, ("k", "expected a fraction like 1/256 or 0.25, got 'x'")),
        ({"data": ["g"], "replay": "m"}, ("replay", "expected a list of source names, got 'm'")),
        ({"data": ["g"], "replay": ["m", 3]}, ("replay", "expected a list of source names, got ['m', 3]")),
        ({"data": ["g"], "replay": ["g"]}, ("replay", "source 'g' named twice; name each source once")),
        ({"data": ["g"], "replay": ["m", "m"]}, ("replay", "source 'm' named twice; name each source once")),
        ({"data": ["g", "g"], "replay": ["m"]}, ("data", "source 'g' named twice; name each source once")),
        (
            {"data": {"g": 1}, "replay": ["m"]},
            ("replay", "needs data as a list of sources; with a mapping, give each source its fraction"),
        ),
    ],
)
def test_a_bad_shorthand_is_one_problem_naming_its_field(stage, problem):
    folded, problems = fold_replay(stage)
    assert problems == [problem] and "replay" not in folded and "k" not in folded


# --- unknown sources ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stage, found",
    [
        ({"data": ["g", "web"]}, [("data", "web")]),
        ({"data": {"g": 1, "web": "1/2"}}, [("data", "web")]),
        ({"data": {"sources": {"web": 2}, "seed": 3}}, [("data", "web")]),
        ({"data": ["g"], "replay": ["web"], "k": "1/4"}, [("replay", "web")]),
        ({}, [("data", "target")]),
        ({"data": ["g", 3]}, []),  # a malformed name is the mix's own problem, reported there
    ],
)
def test_every_undeclared_source_is_named_under_the_field_that_wrote_it(stage, found):
    problems = unknown_sources(stage, {"g"})
    assert problems == [(field, f"unknown source {name!r}; declared: ['g']") for field, name in found]


def test_with_nothing_declared_the_hint_says_where_to_declare():
    assert unknown_sources({"data": ["web"]}, set()) == [
        ("data", "unknown source 'web'; declare it under data: (or add a target: section)")
    ]


# --- through a recipe file ---------------------------------------------------------------------------------------

RECIPE = """name: demo
data:
  general: {source: embedded:general, rows: 8}
  math: {source: embedded:math, rows: 8}
recipes:
  mix:
    - kind: finetune
      steps: 2
      DATA
"""


def recipe(tmp_path, data: str, extra: str = ""):
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.replace("DATA", data) + extra)
    return path


def test_each_form_loads_into_the_stage_mix_and_config_yaml_reads_back(tmp_path):
    forms = {
        "data: [general, math]": [("general", 1), ("math", 1)],
        "data: {general: 1, math: 2.5}": [("general", 1), ("math", Fraction(5, 2))],
        "data: {sources: {general: 1, math: 1/4}, seed: 7}": [("general", 1), ("math", Fraction(1, 4))],
        "data: [general]\n      replay: [math]\n      k: 1/4": [("general", 1), ("math", Fraction(1, 4))],
    }
    for text, shares in forms.items():
        config = load_recipe(recipe(tmp_path, text)).stages["mix"][0]
        assert isinstance(config.data, Mix) and config.data.shares() == shares, text
        # the stage as config.yaml writes it (resolved_dict) loads back to the same mix
        resolved = resolved_dict(load_recipe(recipe(tmp_path, text)))
        written = tmp_path / "config.yaml"
        written.write_text(yaml.safe_dump({key: resolved[key] for key in ("name", "data", "recipes")}, sort_keys=False))
        assert load_recipe(written).stages["mix"][0].data == config.data, text


def test_a_list_dumps_exactly_as_before(tmp_path):
    config = load_recipe(recipe(tmp_path, "data: [general, math]")).stages["mix"][0]
    settings = stage_dict(config)
    assert list(settings)[:5] == ["kind", "name", "data", "replay", "k"]
    assert (settings["data"], settings["replay"], settings["k"]) == (["general", "math"], [], "1")


def test_a_k_sweep_still_makes_one_recipe_per_k(tmp_path):
    path = recipe(tmp_path, "data: [general]\n      replay: [math]\n      k: 1/4", "sweep:\n  mix.k: [1/8, 1/2]\n")
    stages = load_recipe(path).stages
    assert {name: configs[0].data.shares()[1] for name, configs in stages.items()} == {
        "mix@k=1/8": ("math", Fraction(1, 8)),
        "mix@k=1/2": ("math", Fraction(1, 2)),
    }


@pytest.mark.parametrize(
    "data, line, message",
    [
        ("data: []", 9, "recipes.mix[0].data: must name at least one source"),
        (
            "data: {general: 1, math: 0}",
            9,
            "recipes.mix[0].data: math: must be in (0, 100] (above 1 upsamples the source), got 0",
        ),
        ("data: [general, general]", 9, "recipes.mix[0].data: source 'general' named twice; name each source once"),
        ("data: [general]\n      k: 1/4", 10, "recipes.mix[0].k: set only together with replay sources"),
        ("data: [general]\n      replay: [math]\n      k: 2", 11, "recipes.mix[0].k: must be in (0, 1], got 2"),
        (
            "data: [general]\n      replay: [general]",
            10,
            "recipes.mix[0].replay: source 'general' named twice; name each source once",
        ),
        (
            "data: {general: 1, web: 1/2}",
            6,
            "recipes.mix.finetune.data: unknown source 'web'; declared: ['general', 'math']",
        ),
        (
            "data: [general]\n      replay: [web]",
            6,
            "recipes.mix.finetune.replay: unknown source 'web'; declared: ['general', 'math']",
        ),
    ],
)
def test_a_mistake_is_one_line_naming_file_line_and_field(tmp_path, capsys, data, line, message):
    path = recipe(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert err.value.problems == [f"{path}:{line}: {message}"]
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {path}:{line}: {message}"]
