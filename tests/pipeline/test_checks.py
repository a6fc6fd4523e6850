"""The declared check type (pipeline/recipe/checks.py): every measure and bound, relative checks, n/a, sweeps, the gate's
thresholds as checks, the `checks:` section's validation and the report that shows it."""

import pandas as pd
import pytest
import yaml

from core.typed_yaml import ConfigError
from pipeline.cli import main
from pipeline.engine.results_csv import write_csv
from pipeline.recipe.checks import CheckConfig, from_config
from pipeline.recipe.config import load_recipe, resolved_dict
from pipeline.reports.checks import measure_check
from pipeline.reports.report import TableScores
from pipeline.reports.results import over_seeds, summarise
from pipeline.retraining import gate as gates


def rows(recipe, stage, general, target=None, leak=None, domain=None, seed=0):
    out = [
        dict(recipe=recipe, seed=seed, stage=stage, task=t, suite="general", metric="exact_match", score=general, n=10)
        for t in ("copy", "sort")
    ]
    if target is not None:
        out.append(
            dict(
                recipe=recipe,
                seed=seed,
                stage=stage,
                task="rule",
                suite="target",
                metric="exact_match",
                score=target,
                n=10,
            )
        )
    if leak is not None:
        out.append(
            dict(
                recipe=recipe,
                seed=seed,
                stage=stage,
                task="copy",
                suite="general",
                metric="format_leak",
                score=leak,
                n=10,
            )
        )
    if domain is not None:
        out.append(
            dict(recipe=recipe, seed=seed, stage=stage, task="math", suite="domain", metric="m", score=domain, n=10)
        )
    return out


def scores(data, swept=None):
    return TableScores(*over_seeds(summarise(pd.DataFrame(data))), swept or {})


@pytest.fixture
def run():
    """sft forgets (general 0.9 -> 0.3) and leaks; promot keeps most; a domain score on promot only."""
    data = rows("sft", "base", 0.9, 0.5, 0.0) + rows("sft", "finetune", 0.3, 0.98, 0.6)
    data += rows("promot", "base", 0.9, 0.5, 0.0) + rows("promot", "prompt_tune", 0.9, 0.6, 0.0)
    data += rows("promot", "finetune", 0.8, 0.95, 0.05, domain=0.4)
    return scores(data)


def check(**fields):
    return CheckConfig(**{"name": "c", "recipe": "promot", **fields})


@pytest.mark.parametrize(
    "measure, value, text",
    [
        ("general", 0.8, "0.800"),
        ("target", 0.95, "0.950"),
        ("domain", 0.4, "0.400"),
        ("forgetting", -0.1, "-0.100"),
        ("general_drop", 0.1, "drop 0.100"),
        ("format_leak", 0.05, "5.0%"),
    ],
)
def test_each_measure_of_the_final_stage(run, measure, value, text):
    outcome = measure_check(check(measure=measure, min=-1.0), run)
    assert outcome.value == pytest.approx(value) and outcome.text == text and outcome.passed is True


def test_a_named_stage_instead_of_the_final_one(run):
    assert measure_check(check(measure="target", stage="prompt_tune", max=0.7), run).value == pytest.approx(0.6)


@pytest.mark.parametrize(
    "bound, limit, passed",
    [
        ("min", 0.8, True),
        ("min", 0.81, False),
        ("max", 0.8, True),
        ("max", 0.79, False),
        ("above", 0.8, False),
        ("above", 0.79, True),
        ("below", 0.8, False),
        ("below", 0.81, True),
    ],
)
def test_bounds_inclusive_and_strict(run, bound, limit, passed):
    outcome = measure_check(check(measure="general", **{bound: limit}), run)
    assert outcome.passed is passed
    assert outcome.limit == f"{ {'min': '>=', 'max': '<=', 'above': '>', 'below': '<'}[bound] } {limit:.3f}"


@pytest.mark.parametrize(
    "against, relation, value, text",
    [
        ("sft", "difference", 0.5, "+0.500"),
        ("sft", "drop", -0.5, "0.300 -> 0.800: drop -0.500"),
        ("sft", "distance", 0.03, "0.950 vs 0.980"),
        ("base", "ratio", 0.8 / 0.9, "0.800 / 0.900 = 88.9%"),
        ("base", "loss", 1 - 0.8 / 0.9, "0.800 vs 0.900: loses 11%"),
    ],
)
def test_relative_to_another_recipe_or_the_base(run, against, relation, value, text):
    measure = "target" if relation == "distance" else "general"
    outcome = measure_check(check(measure=measure, against=against, relation=relation, min=-10.0), run)
    assert outcome.value == pytest.approx(value) and outcome.text == text


def test_not_measured_is_n_a_unless_told_otherwise(run):
    leak = measure_check(check(recipe="sft", measure="domain", min=0.1, missing_name="SFT domain"), run)
    assert (leak.name, leak.passed, leak.text) == ("SFT domain", None, "domain not measured")
    gone = measure_check(check(recipe="weak", measure="general", min=0.1), run)
    assert gone.passed is None and gone.text == "no results for recipe 'weak'"
    against = measure_check(check(measure="general", against="weak", max=0.1), run)
    assert against.passed is None and "weak" in against.text
    assert measure_check(check(recipe="weak", measure="general", min=0.1, if_missing="fail"), run).passed is False
    assert measure_check(check(recipe="weak", measure="general", min=0.1, if_missing="pass"), run).passed is True


def test_an_unmeasured_format_leak_says_how_to_measure_it():
    data = rows("sft", "base", 0.9, 0.5) + rows("sft", "finetune", 0.3, 0.98)
    outcome = measure_check(check(recipe="sft", measure="format_leak", above=0.3), scores(data))
    assert outcome.passed is None and outcome.text == "not measured: set target.labels"


def sweep_run(ks=("1/16", "1/256", "1/64"), domains=(0.5, 0.2, 0.3)):
    """dmt swept on k, written in results in another order than k's; plus sequential."""
    data = rows("sequential", "base", 0.9, domain=0.0) + rows("sequential", "general", 0.9, domain=0.1)
    swept = {}
    for k, domain in zip(ks, domains):
        data += rows(f"dmt@k={k}", "base", 0.9, domain=0.0) + rows(f"dmt@k={k}", "general", 0.9, domain=domain)
        swept[f"dmt@k={k}"] = {"k": k}
    return scores(data, swept)


def test_where_picks_the_swept_copy_and_along_follows_the_sweep_in_order_of_value():
    run = sweep_run()
    gap = measure_check(
        CheckConfig("{recipe} beats sequential", "dmt", "domain", where={"k": "1/64"}, against="sequential", min=0.05),
        run,
    )
    assert (gap.name, gap.text, gap.passed) == ("dmt@k=1/64 beats sequential", "+0.200", True)
    trend = measure_check(CheckConfig("rises", "dmt", "domain", along="k", min=-0.03), run)
    assert trend.text == "k=1/256: 0.200, k=1/64: 0.300, k=1/16: 0.500" and trend.passed is True
    falls = measure_check(
        CheckConfig("rises", "dmt", "domain", along="k", min=-0.03), sweep_run(domains=(0.1, 0.2, 0.3))
    )
    assert falls.passed is False and falls.value == pytest.approx(-0.2)  # 1/64 -> 1/16: 0.3 -> 0.1
    missing = measure_check(CheckConfig("x", "dmt", "domain", where={"k": "1/2"}, min=0.0), run)
    assert missing.passed is None and missing.text == "no results for recipe 'dmt' with k=1/2"
    single = measure_check(CheckConfig("rises", "dmt", "domain", along="k", min=-0.03), sweep_run(("1/256",), (0.2,)))
    assert single.passed is None and single.text == "fewer than two values of k measured"


def test_a_where_falls_back_to_the_recipe_run_unswept():
    data = rows("dmt", "base", 0.9, domain=0.0) + rows("dmt", "general", 0.9, domain=0.3)
    outcome = measure_check(
        CheckConfig("{recipe} learns", "dmt", "domain", where={"k": "1/256"}, min=0.2), scores(data)
    )
    assert (outcome.name, outcome.passed) == ("dmt learns", True)


def test_the_gate_thresholds_are_checks_of_the_same_type():
    gate = gates.GateConfig(recipe="promot", min_target=0.9, max_general_drop=0.05, max_regression=0.02)
    candidate = {"general": 0.8, "target": 0.95, "base_general": 0.82, "general_drop": 0.02}
    built = gates.gate_checks(gate, candidate, {"general": 0.83, "target": 0.95})
    assert all(type(c) is CheckConfig for c in built)
    assert [(c.name, c.measure.value, c.against, c.bound) for c in built] == [
        ("min_target (target)", "target", None, (">=", 0.9)),
        ("max_general_drop", "general_drop", None, ("<=", 0.05)),
        ("max_regression (general)", "general", "accepted", ("<=", 0.02)),
        ("max_regression (target)", "target", "accepted", ("<=", 0.02)),
    ]
    checks = gates.check_gate(gate, candidate, {"general": 0.83, "target": 0.95}, "r1")
    assert [(c.gate, c.passed, c.note) for c in checks] == [
        ("min_target (target)", True, ""),
        ("max_general_drop", True, "base 0.820 -> 0.800"),
        ("max_regression (general)", False, "r1 0.830 -> 0.800"),
        ("max_regression (target)", True, "r1 0.950 -> 0.950"),
    ]
    assert checks[2].measured == pytest.approx(0.03)


def test_the_gate_with_thresholds_off_and_no_accepted_run():
    gate = gates.GateConfig(min_target=None, max_general_drop=None, max_regression=None)
    checks = gates.check_gate(gate, {"general": 0.5, "base_general": 0.6, "general_drop": 0.1}, None)
    assert [(c.gate, c.measured, c.limit, c.passed) for c in checks] == [
        ("min_target", None, "not set", True),
        ("max_general_drop", 0.1, "not set", True),
        ("max_regression", None, "not set", True),
    ]
    missing = gates.check_gate(
        gates.GateConfig(min_target=0.5), {"general": 0.5, "base_general": 0.6, "general_drop": 0.1}, None
    )
    assert (missing[0].gate, missing[0].passed, missing[0].note) == ("min_target", False, "no target or domain score")
    assert missing[-1].note == "no accepted run yet: skipped" and missing[-1].passed


RECIPE = """name: demo
target: {name: letter_rule}
recipes:
  sft:
    - {kind: finetune, steps: 2}
  dmt:
    - {kind: finetune, steps: 2}
sweep: {dmt.steps: [2, 3]}
"""


@pytest.mark.parametrize(
    "check_yaml, problem",
    [
        (
            "{name: a, recipe: nope, measure: general, min: 0.1}",
            "checks[0].recipe: unknown recipe 'nope'; one of ['dmt', 'dmt@steps=2', 'dmt@steps=3', 'sft']",
        ),
        ("{name: a, recipe: sft, measure: generl, min: 0.1}", "checks[0].measure: must be one of ['general', "),
        ("{name: a, recipe: sft, measure: general, mni: 0.1}", "checks[0].mni: unknown key; did you mean 'min'?"),
        (
            "{name: a, recipe: sft, measure: general, against: nobody, min: 0.1}",
            "checks[0].against: unknown recipe 'nobody'",
        ),
        ("{name: a, recipe: sft, measure: general, relation: ratio, min: 0.1}", "checks[0].relation: needs `against`"),
        ("{name: a, recipe: sft, measure: general}", "checks[0].min: a check needs a bound"),
        ("{name: a, recipe: sft, measure: general, min: 0.1, max: 0.2}", "checks[0].max: one bound per check"),
    ],
)
def test_a_bad_check_is_one_line_naming_the_field_and_line(tmp_path, check_yaml, problem):
    path = tmp_path / "recipe.yaml"
    path.write_text(
        RECIPE
        + f"checks:\n  - {{name: fine, recipe: dmt, measure: general, min: 0}}\n  - {check_yaml}\n".replace(
            "checks[0]", "checks[1]"
        )
    )
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith(f"{path}:11: {problem.replace('checks[0]', 'checks[1]')}"), (
        err.value.problems
    )


def test_a_bad_report_section_is_one_line(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE + "report:\n  compare: {domain: nope}\n")
    assert main(["validate", str(path)]) == 2
    assert f"{path}:10: report.compare.domain: unknown recipe 'nope'" in capsys.readouterr().err


def test_checks_travel_in_the_resolved_config(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(
        RECIPE + "checks:\n  - {name: a, recipe: sft, measure: general, against: base, relation: ratio,"
        " min: 0.8}\nreport: {checks_title: The bar}\n"
    )
    config = yaml.safe_load(yaml.safe_dump(resolved_dict(load_recipe(path))))
    assert config["checks"] == [
        {"name": "a", "recipe": "sft", "measure": "general", "against": "base", "relation": "ratio", "min": 0.8}
    ]
    checks, report = from_config(config, "config.yaml")
    assert checks == load_recipe(path).checks and report.checks_title == "The bar"


def test_the_report_shows_the_declared_checks_and_none_without(tmp_path, capsys):
    data = rows("sft", "base", 0.9, 0.5) + rows("sft", "finetune", 0.3, 0.98)
    write_csv(tmp_path / "results.csv", data)
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "demo",
                "report": {"checks_title": "My bar"},
                "checks": [
                    {"name": "SFT learns the target", "recipe": "sft", "measure": "target", "min": 0.9},
                    {
                        "name": "SFT keeps half",
                        "recipe": "sft",
                        "measure": "general",
                        "against": "base",
                        "relation": "ratio",
                        "min": 0.5,
                    },
                ],
            }
        )
    )
    assert main(["report", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "## My bar\n\n| check | measured | pass |" in report
    assert "| SFT learns the target | 0.980 | yes |" in report
    assert "| SFT keeps half | 0.300 / 0.900 = 33.3% | **no** |" in report
    (tmp_path / "config.yaml").write_text("name: demo\n")
    assert main(["report", str(tmp_path)]) == 0
    assert "| check | measured | pass |" not in (tmp_path / "report.md").read_text()


def grouped_rows(recipe, stage, knowledge, generation, stderr=0.02):
    """A general suite in two groups (as real_general's): one knowledge task and one generation task."""
    return [
        dict(
            recipe=recipe,
            seed=0,
            stage=stage,
            task=task,
            suite="general",
            metric="acc",
            score=score,
            n=100,
            stderr=stderr,
            group=group,
        )
        for task, group, score in (
            ("real_arc_easy", "knowledge", knowledge),
            ("real_arc_easy_chat", "generation", generation),
        )
    ]


@pytest.fixture
def grouped():
    """sft keeps its knowledge but loses 0.30 of generation; promot loses 0.01 of it, within the noise."""
    data = grouped_rows("sft", "base", 0.5, 0.6) + grouped_rows("sft", "finetune", 0.5, 0.3)
    data += grouped_rows("promot", "base", 0.5, 0.6) + grouped_rows("promot", "finetune", 0.5, 0.59)
    return scores(data)


def test_a_check_measures_one_group_of_the_general_suite(grouped):
    drop = measure_check(check(recipe="sft", measure="general_drop", group="generation", min=0.2), grouped)
    assert drop.value == pytest.approx(0.3) and drop.passed is True
    knowledge = measure_check(check(recipe="sft", measure="general_drop", group="knowledge", max=0.01), grouped)
    assert knowledge.value == pytest.approx(0.0) and knowledge.passed is True
    assert measure_check(
        check(recipe="sft", measure="general", group="generation", max=1), grouped
    ).value == pytest.approx(0.3)
    missing = measure_check(check(recipe="sft", measure="general_drop", group="style", min=0.2), grouped)
    assert missing.passed is None and "group 'style'" in missing.text


def test_noise_on_a_min_bound_passes_only_beyond_the_noise(grouped):
    """'SFT forgets beyond 1.96 paired se': a drop of 0.30 is; promot's 0.01 is not (its noise is larger)."""
    sft = measure_check(check(recipe="sft", measure="general_drop", group="generation", min=0.0, noise=True), grouped)
    promot = measure_check(
        check(recipe="promot", measure="general_drop", group="generation", min=0.0, noise=True), grouped
    )
    assert sft.passed is True and "noise ±" in sft.text
    assert promot.passed is False
    within = measure_check(
        check(recipe="promot", measure="general_drop", group="generation", max=0.0, noise=True), grouped
    )
    assert within.passed is True


def test_a_group_needs_a_general_measure():
    assert (
        "group",
        "groups the general suite's tasks: measure must be one of general, forgetting, general_drop, not target",
    ) in check(measure="target", group="generation", min=0).problems()


def domain_rows(recipe, stage, score, stderr):
    return rows(recipe, stage, 0.9) + [
        dict(
            recipe=recipe,
            seed=0,
            stage=stage,
            task="math",
            suite="domain",
            metric="m",
            score=score,
            n=50,
            stderr=stderr,
        )
    ]


@pytest.mark.parametrize(
    "kept, kept_se, text",
    [
        (0.14, 0.05, "0.140 / 0.200 = 70.0% ± 32.0% (se, delta method)"),
        (0.0, 0.0, "0.000 / 0.200 = 0.0% (no example right: no standard error)"),
    ],
)
def test_a_share_of_another_recipe_carries_its_standard_error(kept, kept_se, text):
    """DMT's bar: the share of domain_only's domain a recipe keeps, with the delta method's standard error from
    both scores' standard errors (0.7 * sqrt((0.05 / 0.14)^2 + (0.057 / 0.2)^2) = 0.320)."""
    data = domain_rows("domain_only", "base", 0.04, 0.028) + domain_rows("domain_only", "domain", 0.2, 0.057)
    data += domain_rows("dmt", "base", 0.04, 0.028) + domain_rows("dmt", "general", kept, kept_se)
    outcome = measure_check(
        check(recipe="dmt", measure="domain", against="domain_only", relation="ratio", min=0.8), scores(data)
    )
    assert outcome.text == text and outcome.passed is False
