"""The k draw: exact counts, proportional per source, seeded, never silently dropping a source."""

from fractions import Fraction

import pytest
from datasets import Dataset

from core.typed_yaml import parse_fraction
from data_recipes.mixes import Mix, Portion, build_mix


def source(name, n):
    return Dataset.from_list([{"prompt": f"{name} {i}", "completion": str(i)} for i in range(n)])


SOURCES = {"general": source("general", 700), "math": source("math", 1024), "code": source("code", 512)}


def dmt_mix(k, seed=0):
    return Mix((Portion(("general",)), Portion(("math", "code"), Fraction(k))), seed)


def test_counts_are_proportional_to_each_source():
    built = build_mix(dmt_mix("1/64"), SOURCES)
    assert built.counts == {"general": 700, "math": 16, "code": 8}
    assert len(built.dataset) == 724 and not built.notes
    prompts = built.dataset["prompt"]
    assert sum(p.startswith("math") for p in prompts) == 16 and len(set(prompts)) == len(prompts)  # no replacement


def test_draw_is_seeded():
    first = build_mix(dmt_mix("1/16", seed=3), SOURCES).dataset["prompt"]
    again = build_mix(dmt_mix("1/16", seed=3), SOURCES).dataset["prompt"]
    other = build_mix(dmt_mix("1/16", seed=4), SOURCES).dataset["prompt"]
    assert first == again and first != other
    assert sorted(p for p in first if p.startswith("code")) != sorted(p for p in other if p.startswith("code"))


def test_rounding_to_zero_keeps_one_and_says_so():
    built = build_mix(dmt_mix("1/1024"), {**SOURCES, "code": source("code", 100)})
    assert built.counts["code"] == 1 and built.counts["math"] == 1
    assert any("code: 1/1024 x 100 rows rounds to 0; keeping 1 example" in n for n in built.notes)


def test_larger_k_draws_a_superset():
    small = set(build_mix(dmt_mix("1/64"), SOURCES).dataset["prompt"])
    large = set(build_mix(dmt_mix("1/16"), SOURCES).dataset["prompt"])
    assert small < large  # the same seeded order, a longer prefix


@pytest.mark.parametrize("text, value", [("1/256", Fraction(1, 256)), (0.25, Fraction(1, 4)), (1, Fraction(1))])
def test_parse_fraction(text, value):
    assert parse_fraction(text) == value


@pytest.mark.parametrize("bad", ["0", "2", "-1/4", "a/b", "1/0"])
def test_parse_fraction_rejects(bad):
    with pytest.raises(ValueError):
        parse_fraction(bad)
