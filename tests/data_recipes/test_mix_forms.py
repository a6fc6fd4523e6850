"""A stage's `data:` in each form a user may write: parsed, refused in one line, written back, and built."""

from collections import Counter
from fractions import Fraction

import pytest
from datasets import Dataset

from data_recipes.mixes import MAX_WEIGHT, Mix, Portion, build_mix
from data_recipes.stage_data import fold_replay


def source(name, n):
    return Dataset.from_list([{"prompt": f"{name} {i}", "completion": str(i)} for i in range(n)])


SOURCES = {
    "general": source("general", 700),
    "math": source("math", 1024),
    "code": source("code", 512),
    "small": source("small", 10),
}


# --- parsing ----------------------------------------------------------------------------------------------------


def test_a_list_is_every_row_of_each_source():
    mix = Mix.from_yaml(["math", "code"])
    assert mix.shares() == [("math", 1), ("code", 1)] and mix.seed is None


def test_a_mapping_gives_each_source_its_fraction_or_weight():
    mix = Mix.from_yaml({"general": 1, "math": "1/256", "code": 0.25, "small": 2.5})
    assert mix.shares() == [
        ("general", 1),
        ("math", Fraction(1, 256)),
        ("code", Fraction(1, 4)),
        ("small", Fraction(5, 2)),
    ]


def test_sources_with_a_seed_of_its_own():
    mix = Mix.from_yaml({"sources": {"general": 1, "math": "1/16"}, "seed": 7})
    assert mix.shares() == [("general", 1), ("math", Fraction(1, 16))] and mix.seed == 7
    assert Mix.from_yaml({"sources": {"general": 1}}).seed is None


@pytest.mark.parametrize(
    "value, message",
    [
        ([], "must name at least one source"),
        ({}, "must name at least one source"),
        ({"sources": {}, "seed": 1}, "must name at least one source"),
        ("math", "expected a list of sources or a mapping of source: fraction, got str 'math'"),
        (3, "expected a list of sources or a mapping of source: fraction, got int 3"),
        (["math", 3], "expected a source name, got 3"),
        (["math", ""], "expected a source name, got ''"),
        (["math", "code", "math"], "source 'math' named twice; name each source once"),
        ({"math": 0}, f"math: must be in (0, {MAX_WEIGHT}] (above 1 upsamples the source), got 0"),
        ({"math": "-1/4"}, f"math: must be in (0, {MAX_WEIGHT}] (above 1 upsamples the source), got -1/4"),
        ({"math": 256}, f"math: must be in (0, {MAX_WEIGHT}] (above 1 upsamples the source), got 256"),
        ({"math": "a/b"}, "math: expected a fraction like 1/256 or 0.25, or a weight like 2, got 'a/b'"),
        ({"math": True}, "math: expected a fraction like 1/256 or 0.25, or a weight like 2, got True"),
        ({"math": None}, "math: expected a fraction like 1/256 or 0.25, or a weight like 2, got None"),
        ({"math": "1/0"}, "math: expected a fraction like 1/256 or 0.25, or a weight like 2, got '1/0'"),
        (
            {"sources": {"math": 1}, "sead": 3},
            "unknown key 'sead' next to sources; a mix takes sources, seed and one_shot",
        ),
        ({"sources": {"math": 1}, "seed": -1}, "seed: expected a non-negative integer, got -1"),
        ({"sources": {"math": 1}, "seed": "7"}, "seed: expected a non-negative integer, got '7'"),
        ({"sources": {"math": 1}, "seed": True}, "seed: expected a non-negative integer, got True"),
    ],
)
def test_a_bad_mix_is_one_line(value, message):
    with pytest.raises(ValueError) as err:
        Mix.from_yaml(value)
    assert str(err.value) == message


# --- written back (config.yaml and the stage key's settings) -------------------------------------------------------


def test_a_list_is_written_as_before_the_mapping_form():
    assert Mix.from_yaml(["math", "code"]).stage_fields() == {"data": ["math", "code"], "replay": [], "k": "1"}


def test_full_sources_then_one_k_are_written_as_the_replay_shorthand():
    mix = Mix.from_yaml({"general": 1, "math": "1/256", "code": "1/256"})
    assert mix.stage_fields() == {"data": ["general"], "replay": ["math", "code"], "k": "1/256"}


@pytest.mark.parametrize(
    "value, written",
    [
        ({"general": 1, "math": 2.5}, {"general": 1, "math": "5/2"}),
        ({"general": 1, "math": 2}, {"general": 1, "math": 2}),
        ({"general": 1, "math": "1/4", "code": "1/2"}, {"general": 1, "math": "1/4", "code": "1/2"}),
        ({"math": "1/4"}, {"math": "1/4"}),
        ({"general": 1, "math": "1/4", "code": 1}, {"general": 1, "math": "1/4", "code": 1}),
    ],
)
def test_any_other_mix_is_written_as_its_mapping(value, written):
    mix = Mix.from_yaml(value)
    assert mix.stage_fields() == {"data": written}
    assert Mix.from_yaml(mix.stage_fields()["data"]) == mix  # reads back to the same mix


def test_a_seed_of_its_own_is_written_with_its_sources():
    mix = Mix.from_yaml({"sources": {"math": 1}, "seed": 7})
    assert mix.stage_fields() == {"data": {"sources": {"math": 1}, "seed": 7}}
    assert Mix.from_yaml(mix.stage_fields()["data"]) == mix


# --- built -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", ["1/256", "1/64", "1/16", "1/2"])
@pytest.mark.parametrize("seed", [0, 3])
def test_dmt_stage_two_draws_the_rows_of_the_old_construction(k, seed):
    """Determinism: the new forms give exactly the rows, in order, of `Mix((Portion(general), Portion(math+code, k)))`."""
    old = build_mix(Mix((Portion(("general",)), Portion(("math", "code"), Fraction(k))), seed), SOURCES)
    shorthand, problems = fold_replay({"data": ["general"], "replay": ["math", "code"], "k": k})
    for mix in (Mix.from_yaml({"general": 1, "math": k, "code": k}), Mix.from_yaml(shorthand["data"])):
        new = mix.build(SOURCES, seed)
        assert new.dataset["prompt"] == old.dataset["prompt"] and new.dataset["completion"] == old.dataset["completion"]
        assert new.counts == old.counts and new.notes == old.notes
    assert not problems


def test_a_weight_takes_whole_copies_plus_a_seeded_share():
    built = Mix.from_yaml({"general": 1, "small": 2.5}).build(SOURCES, 0)
    assert built.counts == {"general": 700, "small": 25} and len(built.dataset) == 725 and not built.notes
    times = Counter(p for p in built.dataset["prompt"] if p.startswith("small"))
    assert sorted(Counter(times.values()).items()) == [(2, 5), (3, 5)]  # every row twice, half of them a third time
    thrice = {p for p, n in times.items() if n == 3}
    assert thrice == set(SOURCES["small"].shuffle(seed=0).select(range(5))["prompt"])  # the seeded half
    again = Mix.from_yaml({"general": 1, "small": 2.5}).build(SOURCES, 0)
    assert again.dataset["prompt"] == built.dataset["prompt"]


def test_a_whole_weight_is_that_many_copies():
    built = Mix.from_yaml({"small": 3}).build(SOURCES, 0)
    assert built.counts == {"small": 30} and set(Counter(built.dataset["prompt"]).values()) == {3}
    tiny = Mix.from_yaml({"small": "201/100"}).build(SOURCES, 0)  # 0.01 x 10 rounds to no extra row: no note
    assert tiny.counts == {"small": 20} and not tiny.notes


def test_a_seed_of_its_own_replaces_the_stage_seed():
    own = Mix.from_yaml({"sources": {"general": 1, "math": "1/16"}, "seed": 7}).build(SOURCES, 0)
    stage = Mix.from_yaml({"general": 1, "math": "1/16"})
    assert own.dataset["prompt"] == stage.build(SOURCES, 7).dataset["prompt"]
    assert own.dataset["prompt"] != stage.build(SOURCES, 0).dataset["prompt"]
