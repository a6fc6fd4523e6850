"""The promotion gate on synthetic results: scores per suite, each kind of failure, the `pipeline gate` command."""

import json

import pandas as pd
import pytest
import yaml

from core.typed_yaml import ConfigError
from pipeline.cli import main
from pipeline.recipe.config import load_recipe
from pipeline.recipe.gate_config import GateConfig
from pipeline.retraining import gate as gates
from pipeline.retraining.registry import ModelRegistry

STAGES = ["prompt_tune", "finetune"]
DEMO = "name: demo\ntarget: {name: letter_rule}\nrecipes:\n  sft:\n    - kind: finetune\n"


def frame(general=0.5, target=0.6, base_general=0.6, domain=None, seeds=(0, 1), spread=0.02):
    """results.csv rows: base and two stages per seed; the final stage scores as given (mean over seeds)."""
    rows = []
    for i, seed in enumerate(seeds):
        offset = spread * (1 if i % 2 else -1) if len(seeds) > 1 else 0.0  # seeds differ, the mean is exact
        for stage in ["base", *STAGES]:
            final = stage == STAGES[-1]
            g = general + offset if final else base_general + offset
            for task, delta in [("reverse", -0.1), ("copy", 0.1)]:
                rows.append(
                    dict(
                        recipe="promot",
                        seed=seed,
                        stage=stage,
                        task=task,
                        suite="general",
                        metric="exact_match",
                        score=g + delta,
                        n=4,
                    )
                )
                # format_leak rows are not scores: a value of 1.0 would move every mean if counted
                rows.append(
                    dict(
                        recipe="promot",
                        seed=seed,
                        stage=stage,
                        task=task,
                        suite="general",
                        metric="format_leak",
                        score=1.0,
                        n=4,
                    )
                )
            rows.append(
                dict(
                    recipe="promot",
                    seed=seed,
                    stage=stage,
                    task="letter_rule",
                    suite="target",
                    metric="exact_match",
                    score=(target if final else 0.1) + offset,
                    n=4,
                )
            )
            if domain is not None:
                rows.append(
                    dict(
                        recipe="promot",
                        seed=seed,
                        stage=stage,
                        task="med",
                        suite="domain",
                        metric="acc",
                        score=(domain if final else 0.1) + offset,
                        n=4,
                    )
                )
    return pd.DataFrame(rows)


def scores(**kwargs):
    return gates.final_scores(frame(**kwargs), "promot", "finetune")


def failing(checks):
    return [c.gate for c in checks if not c.passed]


def test_final_scores_are_means_over_seeds_without_format_leak():
    got = scores(general=0.5, target=0.6, base_general=0.6)
    assert got == pytest.approx({"general": 0.5, "target": 0.6, "base_general": 0.6, "general_drop": 0.1})
    assert "domain" in scores(domain=0.7) and scores(domain=0.7)["domain"] == pytest.approx(0.7)


def test_gate_passes_within_every_threshold():
    gate = GateConfig(min_target=0.5, max_general_drop=0.1, max_regression=0.02)
    reference = {"general": 0.51, "target": 0.6}
    checks = gates.check_gate(gate, scores(general=0.5, target=0.6, base_general=0.6), reference)
    assert gates.passed(checks), gates.gate_table(checks)  # a drop exactly at the threshold passes


def test_min_target_fails_below_threshold():
    checks = gates.check_gate(GateConfig(min_target=0.7), scores(target=0.6, base_general=0.5), None)
    assert failing(checks) == ["min_target (target)"]


def test_min_target_also_applies_to_a_domain():
    checks = gates.check_gate(GateConfig(min_target=0.5), scores(target=0.6, domain=0.3, base_general=0.5), None)
    assert failing(checks) == ["min_target (domain)"]


def test_general_drop_against_base_fails():
    checks = gates.check_gate(GateConfig(max_general_drop=0.05), scores(general=0.4, base_general=0.6), None)
    assert failing(checks) == ["max_general_drop"]
    assert checks[-2].measured == pytest.approx(0.2)


@pytest.mark.parametrize("suite", ["general", "target"])
def test_regression_against_accepted_run_fails_per_suite(suite):
    candidate = scores(general=0.5, target=0.6, base_general=0.5)
    reference = {"general": 0.5, "target": 0.6, suite: candidate[suite] + 0.1}
    checks = gates.check_gate(GateConfig(max_regression=0.05), candidate, reference, "run-1")
    assert failing(checks) == [f"max_regression ({suite})"]
    assert "run-1" in gates.gate_table(checks) and "**FAIL**" in gates.gate_table(checks)


def test_first_run_and_unset_thresholds_skip_checks():
    candidate = scores(general=0.1, target=0.0, base_general=0.9)
    checks = gates.check_gate(GateConfig(min_target=None, max_general_drop=None, max_regression=0.0), candidate, None)
    assert gates.passed(checks)
    assert "no accepted run yet" in gates.gate_table(checks)


def test_gate_section_is_typed_and_located(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(DEMO + "gate:\n  recipe: sft\n  min_target: 2\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert err.value.problems == [f"{path}:8: gate.min_target: must be between 0 and 1 (scores are in [0, 1]), got 2.0"]
    path.write_text(path.read_text().replace("min_target: 2", "max_regression: 0.01"))
    assert load_recipe(path).gate == GateConfig(recipe="sft", max_regression=0.01)


def test_validate_rejects_gate_of_unknown_recipe(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(DEMO + "gate:\n  recipe: promot\n")
    assert main(["validate", str(path)]) == 2
    assert "gate.recipe: 'promot' is not a recipe of this file; one of ['sft']" in capsys.readouterr().err


def write_run(folder, **kwargs):
    """A finished run folder as far as the gate reads it: config.yaml and results.csv."""
    folder.mkdir(parents=True)
    frame(**kwargs).to_csv(folder / "results.csv", index=False)
    recipes = {"promot": [{"kind": "prompt_tune", "name": "prompt_tune"}, {"kind": "finetune", "name": "finetune"}]}
    (folder / "config.yaml").write_text(yaml.safe_dump({"recipes": recipes, "gate": {"recipe": "promot"}}))
    return folder


def test_gate_command_against_a_run_folder(tmp_path, capsys):
    old = write_run(tmp_path / "old", general=0.6, target=0.6, base_general=0.6)
    new = write_run(tmp_path / "new", general=0.58, target=0.6, base_general=0.6)
    assert main(["gate", str(new), "--against", str(old)]) == 0
    assert "| max_regression (general) | 0.020 | <= 0.020 | pass |" in capsys.readouterr().out
    assert main(["gate", str(new), "--against", str(old), "--set", "max_regression=0.01"]) == 1
    assert "FAIL: max_regression (general)" in capsys.readouterr().out
    assert main(["gate", str(new), "--against", str(old), "--set", "max_regresion=0.01"]) == 2
    assert "did you mean 'max_regression'" in capsys.readouterr().err


def test_gate_command_against_a_registry(tmp_path, capsys):
    new = write_run(tmp_path / "new", general=0.5, target=0.4, base_general=0.5)
    registry = ModelRegistry(tmp_path / "registry")
    registry.promote({"run_id": "r1", "scores": {"general": 0.5, "target": 0.6}})
    assert main(["gate", str(new), "--against", str(registry.root)]) == 1
    out = capsys.readouterr().out
    assert "against r1" in out and "FAIL: max_regression (target)" in out
    assert main(["gate", str(new), "--against", str(tmp_path / "nowhere")]) == 2


def test_history_ignores_a_promotion_killed_before_the_pointer_moved(tmp_path):
    registry = ModelRegistry(tmp_path)
    registry.promote({"run_id": "r1", "scores": {}})
    # As if killed between the two atomic writes: the history line of r2 exists, the pointer is still r1.
    with open(tmp_path / "registry.jsonl", "a") as history:
        history.write(json.dumps({"run_id": "r2"}) + "\n")
    assert registry.accepted()["run_id"] == "r1"
    assert [e["run_id"] for e in registry.history()] == ["r1"]
    registry.promote({"run_id": "r3", "scores": {}})
    assert [e["run_id"] for e in registry.history()] == ["r1", "r3"]


def with_stderr(data, se):
    return data.assign(stderr=se)


def test_general_drop_judged_against_the_noise_is_an_option():
    # A drop of 0.07 against a limit of 0.05: over the limit, but within its noise when the tasks are noisy.
    noisy = gates.final_scores(with_stderr(frame(general=0.53, base_general=0.6), 0.05), "promot", "finetune")
    assert noisy["general_drop"] == pytest.approx(0.07) and noisy["general_drop_se"] > 0.02
    strict = gates.check_gate(GateConfig(max_general_drop=0.05, max_regression=None), noisy, None)
    lenient = gates.check_gate(
        GateConfig(max_general_drop=0.05, max_regression=None, general_drop_noise=True), noisy, None
    )
    assert failing(strict) == ["max_general_drop"] and failing(lenient) == []
    assert "noise: ±" in lenient[1].note
    # The same drop with precise scores fails either way.
    precise = gates.final_scores(
        with_stderr(frame(general=0.53, base_general=0.6, spread=0.0), 0.001), "promot", "finetune"
    )
    gate = GateConfig(max_general_drop=0.05, max_regression=None, general_drop_noise=True)
    assert failing(gates.check_gate(gate, precise, None)) == ["max_general_drop"]
