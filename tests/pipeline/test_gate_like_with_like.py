"""`pipeline retrain`: the regression check compares the candidate with the accepted run only when both were scored by
the same evaluation (the registry entry's `evaluation_keys`); otherwise the gate table says why it was skipped."""

import pytest

from embedded.tasks import make_examples
from pipeline.cli import main
from pipeline.retraining.registry import ModelRegistry
from tests.pipeline.test_retrain import RECIPE, write_jsonl


@pytest.fixture
def job(tmp_path):
    from embedded.model import TEST_SPEC, ensure_base_model

    base = ensure_base_model(TEST_SPEC, cache_root=tmp_path / "cache")
    rows = make_examples("letter_rule", "train", 3 * 32)
    write_jsonl(tmp_path / "test.jsonl", make_examples("letter_rule", "test", 8))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(base=base, train=tmp_path / "train.jsonl", test=tmp_path / "test.jsonl"))

    def retrain(part: int, *overrides) -> int:  # new data each time: the next 32 rows of the task
        write_jsonl(tmp_path / "train.jsonl", rows[32 * part : 32 * (part + 1)])
        args = ["retrain", str(recipe), "--registry", str(tmp_path / "registry")]
        return main(args + [a for item in overrides for a in ("--set", item)])

    return retrain, ModelRegistry(tmp_path / "registry")


def regression_rows(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("| max_regression")]


def test_a_changed_evaluation_skips_the_regression_check_with_a_note(job, capsys):
    retrain, registry = job
    assert retrain(0) == 0
    first = registry.accepted()
    assert len(first["evaluation_keys"]) == 1
    capsys.readouterr()

    assert retrain(1, "evaluation.limit=2") == 0  # the general suite scored on 2 examples per task, not 4
    rows = regression_rows(capsys.readouterr().out)
    assert rows == [
        "| max_regression | – | <= 1.000 | pass | the accepted run was evaluated otherwise "
        "(settings.limit: 4 -> 2): skipped |"
    ], rows
    second = registry.accepted()
    assert second["run_id"] != first["run_id"] and second["evaluation_keys"] != first["evaluation_keys"]
    # `pipeline gate` judges the same way, against the first run's folder
    assert main(["gate", second["run_dir"], "--against", first["run_dir"]]) == 0
    rows = regression_rows(capsys.readouterr().out)
    assert rows == [
        f"| max_regression | – | <= 1.000 | pass | run {first['run_id']} was evaluated otherwise "
        f"(settings.limit: 4 -> 2): skipped |"
    ], rows

    assert retrain(2, "evaluation.limit=2") == 0  # evaluated as the accepted run was: compared suite by suite
    rows = regression_rows(capsys.readouterr().out)
    assert {row.split("|")[1].strip() for row in rows} == {"max_regression (general)", "max_regression (target)"}
    assert all(f"{second['run_id']} " in row for row in rows), rows
