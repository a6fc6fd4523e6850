"""The SmolLM2 recipes' training slices are what data_recipes.slices builds from ../shared/data, byte for byte,
and no evaluated example is trained on."""

import json
from pathlib import Path

import pytest

from data_recipes import slices

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [
    ROOT / "recipes" / "data" / name
    for name in (
        "boolq_train.jsonl",
        "boolq_test.jsonl",
        "gsm8k_train.jsonl",
        "general_train.jsonl",
        "svamp_train.jsonl",
        "svamp_test.jsonl",
        "svamp_op_train.jsonl",
        "svamp_op_test.jsonl",
    )
]
TASKS_DATA = ROOT / "evaluation" / "tasks" / "real" / "data"


@pytest.mark.skipif(not (slices.SOURCE / "real").is_dir(), reason="../shared/data is not beside this checkout")
def test_the_shipped_slices_are_rebuilt_byte_for_byte(tmp_path):
    (tmp_path / "tasks").mkdir()
    for name in ("nq_open", "piqa", "arc_easy"):  # general_train.jsonl is chosen against the evaluation slices
        (tmp_path / "tasks" / f"{name}.jsonl").write_bytes((TASKS_DATA / f"{name}.jsonl").read_bytes())
    built = slices.build(slices.SOURCE, tmp_path / "out", tmp_path / "tasks")
    by_name = {path.name: path for path in built}
    for shipped in [*SHIPPED, TASKS_DATA / "gsm8k.jsonl"]:
        assert by_name[shipped.name].read_bytes() == shipped.read_bytes(), shipped.name


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_training_and_evaluated_rows_are_disjoint():
    boolq = {r["idx"] for r in rows(SHIPPED[0])} & {r["idx"] for r in rows(SHIPPED[1])}
    assert not boolq
    gsm8k = {r["question"] for r in rows(SHIPPED[2])} & {r["question"] for r in rows(TASKS_DATA / "gsm8k.jsonl")}
    assert not gsm8k
    trained = {r["messages"][0]["content"].rstrip("?").lower() for r in rows(SHIPPED[3])}
    evaluated = {r["question"].lower() for r in rows(TASKS_DATA / "nq_open.jsonl")}
    evaluated |= {r["goal"].lower() for r in rows(TASKS_DATA / "piqa.jsonl")}
    evaluated |= {r["question"].lower() for r in rows(TASKS_DATA / "arc_easy.jsonl")}
    assert not trained & evaluated
    for train, test in ((SHIPPED[4], SHIPPED[5]), (SHIPPED[6], SHIPPED[7])):  # SVAMP: by problem id and by text
        assert not {r["id"] for r in rows(train)} & {r["id"] for r in rows(test)}
        assert len(rows(train)) + len(rows(test)) == 1000


def test_svamp_rows_are_answered_by_value_and_label():
    from evaluation.domain_scoring import answers_match

    for row in rows(SHIPPED[5]):
        equation, final = row["answer"].split("\n")
        assert final.startswith("#### ") and equation.endswith(" = " + final[5:])
        assert answers_match(final, row["answer"]) and not answers_match("#### 1" + final[5:], row["answer"])
    assert {r["messages"][1]["content"] for r in rows(SHIPPED[7])} == {
        "addition",
        "subtraction",
        "multiplication",
        "division",
    }


def test_boolq_rows_are_chat_turns_with_lm_evals_prompt_and_answer_words():
    for row in rows(SHIPPED[1]):
        user, assistant = row["messages"]
        assert user["role"] == "user" and user["content"].endswith("?\nAnswer:") and "\nQuestion: " in user["content"]
        assert assistant == {"role": "assistant", "content": assistant["content"]}
        assert assistant["content"] in {"yes", "no"}
