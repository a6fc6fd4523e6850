"""A corrupt registry is refused by `pipeline retrain` before any training: one line naming file (and line), exit 2,
nothing in the registry changed. Only a missing accepted.json means "no model yet".

Cheap: the embedded model is never built and nothing trains (run_recipe is replaced by a sentinel); a registry
that passes the check reaches that sentinel, one that does not never does.
"""

import hashlib
import json
from pathlib import Path

import pytest

from embedded.tasks import make_examples
from pipeline.cli import main
from tests.pipeline.test_retrain import RECIPE, write_jsonl


class Trained(Exception):
    """run_recipe was reached: the registry passed the check."""


def entry(run_id: str, **changes) -> dict:
    """A registry entry as promotion writes it."""
    run = {
        "run_id": run_id,
        "run_dir": f"/registry/runs/{run_id}",
        "time": "2025-01-01T00:00:00Z",
        "fingerprint": "f" * 64,
        "data": {"sha256": "d" * 64},
        "code_version": "abc",
        "recipe": "promot",
        "stage": "finetune",
        "scores": {"general": 0.5, "target": 0.6, "base_general": 0.5, "general_drop": 0.0},
        "gate": [],
        "model": f"/registry/runs/{run_id}/model",
        "adapter": None,
        "models": {},
    }
    return {**run, **changes}


def line(value) -> str:
    return json.dumps(value, sort_keys=True)


GOOD_HISTORY = "".join(line(entry(r)) + "\n" for r in ("r1", "r2"))

# (case, accepted.json text or None for none, registry.jsonl text or None, the error line expected)
CASES = [
    ("pointer_empty_list", "[]", GOOD_HISTORY, "accepted.json: a list instead of an object; not a registry entry"),
    ("pointer_empty_object", "{}", GOOD_HISTORY, "accepted.json: missing run_id, scores; not a registry entry"),
    ("pointer_null", "null", GOOD_HISTORY, "accepted.json: null instead of an object"),
    (
        "pointer_without_fingerprint",
        line({k: v for k, v in entry("r2").items() if k != "fingerprint"}),
        GOOD_HISTORY,
        "accepted.json: missing fingerprint; not a registry entry",
    ),
    (
        "pointer_scores_not_numbers",
        line(entry("r2", scores={"general": "high"})),
        GOOD_HISTORY,
        "accepted.json: scores holds a value that is not a number",
    ),
    ("pointer_not_in_history", line(entry("r9")), GOOD_HISTORY, "accepted.json: accepted run 'r9' is not in"),
    ("pointer_without_history", line(entry("r2")), None, "accepted.json: accepted run 'r2' is not in"),
    ("pointer_lost", None, GOOD_HISTORY, "accepted.json: missing, but"),
    (
        "history_line_not_json",
        line(entry("r2")),
        line(entry("r1")) + "\n{oops\n" + line(entry("r2")) + "\n",
        "registry.jsonl:2: not JSON",
    ),
    (
        "history_line_empty",
        line(entry("r2")),
        line(entry("r1")) + "\n\n" + line(entry("r2")) + "\n",
        "registry.jsonl:2: empty line",
    ),
    (
        "history_line_a_list",
        line(entry("r2")),
        line(entry("r1")) + "\n[]\n" + line(entry("r2")) + "\n",
        "registry.jsonl:2: a list instead of an object",
    ),
    (
        "history_line_without_scores",
        line(entry("r2")),
        line({k: v for k, v in entry("r1").items() if k != "scores"}) + "\n" + line(entry("r2")) + "\n",
        "registry.jsonl:1: missing scores; not a registry entry",
    ),
    (
        "history_line_run_id_a_number",
        line(entry("r2")),
        line({**entry("r1"), "run_id": 1}) + "\n" + line(entry("r2")) + "\n",
        "registry.jsonl:1: run_id is a number, not a string",
    ),
]


@pytest.fixture
def recipe(tmp_path):
    """A recipe file on the embedded model and small local data (validated in a second; never trained)."""
    write_jsonl(tmp_path / "train.jsonl", make_examples("letter_rule", "train", 32))
    write_jsonl(tmp_path / "test.jsonl", make_examples("letter_rule", "test", 8))
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.format(base="embedded", train=tmp_path / "train.jsonl", test=tmp_path / "test.jsonl"))
    return path


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    import pipeline.engine.orchestrator
    import stages

    def trained(*args, **kwargs):
        raise Trained()

    monkeypatch.setattr(pipeline.engine.orchestrator, "run_recipe", trained)
    for module in stages.STAGES.values():
        monkeypatch.setattr(module, "run", trained)


def make_registry(root: Path, pointer: str | None, history: str | None) -> Path:
    root.mkdir()
    (root / "registry.lock").touch()
    if pointer is not None:
        (root / "accepted.json").write_text(pointer)
    if history is not None:
        (root / "registry.jsonl").write_text(history)
    return root


def snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("case, pointer, history, expected", CASES, ids=[c[0] for c in CASES])
def test_corrupt_registry_is_refused_before_training(case, pointer, history, expected, recipe, tmp_path, capsys):
    registry = make_registry(tmp_path / "registry", pointer, history)
    before = snapshot(registry)
    assert main(["retrain", str(recipe), "--registry", str(registry)]) == 2  # never reached Trained
    err = capsys.readouterr().err
    assert err.startswith(f"error: {registry}/{expected.split(':')[0]}") and expected in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert snapshot(registry) == before  # no run folder, no rewritten file


@pytest.mark.parametrize(
    "pointer, history",
    [
        (line(entry("r2")), GOOD_HISTORY),  # an ordinary registry
        (line(entry("r1")), GOOD_HISTORY),  # r2's promotion was killed before its pointer moved
        (None, line(entry("r1")) + "\n"),  # the first promotion was killed before its pointer was written
        (None, None),  # a new registry
    ],
    ids=["accepted", "killed_promotion", "killed_first_promotion", "new"],
)
def test_sound_registry_goes_on_to_training(pointer, history, recipe, tmp_path, capsys):
    registry = make_registry(tmp_path / "registry", pointer, history)
    with pytest.raises(Trained):
        main(["retrain", str(recipe), "--registry", str(registry)])
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("pointer", ["[]", "{}", "null"])
def test_gate_against_a_corrupt_pointer_is_refused(pointer, tmp_path, capsys):
    from tests.pipeline.test_gate import write_run

    run = write_run(tmp_path / "new", general=0.5, target=0.4, base_general=0.5)
    registry = make_registry(tmp_path / "registry", pointer, GOOD_HISTORY)
    assert main(["gate", str(run), "--against", str(registry)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {registry}/accepted.json: ") and len(err.strip().splitlines()) == 1, err


def test_entries_here_have_the_fields_promotion_writes():
    from pipeline.retraining.registry import FIELDS

    assert set(entry("r1")) == set(FIELDS)
