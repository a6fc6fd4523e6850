"""The training slices the SmolLM2 recipes ship (recipes/data/), rebuilt from ../shared/data.

    python -m data_recipes.slices [--source ../shared/data] [--out recipes/data]

Deterministic: the same source files give byte-identical outputs (tests/test_shipped_slices.py checks it).
Provenance and licenses: recipes/data/ATTRIBUTION.md. RTE is left out on purpose (no license stated).
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data"
OUT = ROOT / "recipes" / "data"
TASKS_DATA = ROOT / "evaluation" / "tasks" / "real" / "data"
BOOLQ_MAX_WORDS = 70  # short passages only: a CPU step costs time per token (README: SmolLM2 on the CPU)
BOOLQ_TEST = 100
GSM8K_TRAIN, GSM8K_TEST = 1000, 100
GENERAL_PER_SOURCE = 300  # rows of each benchmark, none of them in the evaluation slices
SVAMP_TEST = 300  # SVAMP problems held out for real_svamp; the other 700 train DMT's math domain


def general_rows(real: Path, tasks_data: Path) -> list[dict]:
    """DMT's general data on the CPU: chat turns from NQ-open, PIQA and ARC-Easy rows that are NOT in the evaluation
    slices (checked by their question text). A stand-in for an instruction mix such as ShareGPT, which cannot ship:
    in-distribution for three of the seven general tasks, which the README says."""

    def held(name: str, key: str) -> set[str]:
        return {json.loads(line)[key] for line in (tasks_data / f"{name}.jsonl").read_text().splitlines()}

    def fresh(path: Path, key, taken: set[str]) -> list[dict]:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return [row for row in rows if key(row) not in taken][:GENERAL_PER_SOURCE]

    def chat(user: str, assistant: str) -> dict:
        return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}

    out = [
        chat(f"{row['question'][0].upper()}{row['question'][1:]}?", row["answer"][0])
        for row in fresh(real / "nq_open_dev.jsonl", lambda r: r["question"], held("nq_open", "question"))
    ]
    out += [
        chat(row["goal"], row["sol1"] if int(row["label"]) == 0 else row["sol2"])
        for row in fresh(real / "piqa_dev.jsonl", lambda r: r["goal"], held("piqa", "goal"))
    ]
    for row in fresh(real / "arc_easy_test.jsonl", lambda r: r["question"]["stem"], held("arc_easy", "question")):
        choices = {c["label"]: c["text"] for c in row["question"]["choices"]}
        if row["answerKey"] in choices:
            out.append(chat(row["question"]["stem"], choices[row["answerKey"]]))
    return out


def boolq_rows(path: Path) -> list[dict]:
    """BoolQ as chat turns, with lm-eval's boolq prompt as the user turn and its answer words (yes / no)."""
    rows = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if len(row["passage"].split()) > BOOLQ_MAX_WORDS:
            continue
        prompt = f"{row['passage']}\nQuestion: {row['question']}?\nAnswer:"  # lm_eval/tasks/super_glue/boolq
        answer = {"true": "yes", "false": "no"}[row["label"]]
        rows.append(
            {
                "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
                "idx": row["idx"],
            }
        )
    return rows


def gsm8k_rows(path: Path) -> list[dict]:
    return [
        {"question": row["question"], "answer": row["answer"]} for row in map(json.loads, path.read_text().splitlines())
    ]


def svamp_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def svamp_rows(path: Path) -> list[dict]:
    """SVAMP in the `gsm8k` format: the body and question as one question; the answer is the equation with its
    numbers written plainly, its value, then `#### N`, so real_svamp (the math scorer) reads N by value."""
    rows = []
    for row in json.loads(path.read_text()):
        body, question = row["Body"].strip(), row["Question"].strip()
        text = (
            f"{body} {question}"
            if body.endswith((".", ",", "?", "!"))
            else f"{body}, {question[0].lower()}{question[1:]}"
        )
        equation = re.sub(r"(\d+)\.0\b", r"\1", row["Equation"].strip())
        equation = re.sub(r"\s+", " ", equation.replace("( ", "(").replace(" )", ")"))
        if equation.startswith("(") and equation.endswith(")") and equation.count("(") == 1:
            equation = equation[1:-1]
        answer = svamp_number(row["Answer"])
        rows.append({"question": text, "answer": f"{equation} = {answer}\n#### {answer}", "id": row["ID"]})
    return rows


SVAMP_OPERATIONS = {
    "Addition": "addition",
    "Subtraction": "subtraction",
    "Multiplication": "multiplication",
    "Common-Division": "division",
    "Common-Divison": "division",
}  # one row spells it so


def svamp_operation_rows(path: Path) -> list[dict]:
    """A label target from SVAMP (recipes/promot_smollm2.yaml): which operation solves the problem, as chat turns
    with SVAMP's `Type` as the answer word (addition, subtraction, multiplication, division)."""
    rows = []
    for row, problem in zip(json.loads(path.read_text()), svamp_rows(path)):
        prompt = (
            f"{problem['question']}\nWhich operation solves this problem: addition, subtraction, "
            "multiplication or division?\nAnswer:"
        )
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": SVAMP_OPERATIONS[row["Type"]]},
                ],
                "id": row["ID"],
            }
        )
    return rows


def split(rows: list[dict], test: int, train: int | None = None, seed: int = 0) -> tuple[list, list]:
    """A seeded shuffle, then the first `test` rows held out and the next `train` kept for training."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held, rest = sorted(order[:test]), order[test:]
    rest = sorted(rest if train is None else rest[:train])
    return [rows[i] for i in rest], [rows[i] for i in held]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def build(source: Path = SOURCE, out: Path = OUT, tasks_data: Path = TASKS_DATA) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    train, test = split(boolq_rows(source / "real" / "boolq_dev.jsonl"), BOOLQ_TEST)
    for name, rows in (("boolq_train", train), ("boolq_test", test)):
        write_jsonl(out / f"{name}.jsonl", rows)
        written.append(out / f"{name}.jsonl")
    train, test = split(gsm8k_rows(source / "gsm8k" / "train.jsonl"), GSM8K_TEST, GSM8K_TRAIN)
    # The held-out problems are the real_gsm8k domain task's data, beside the other real tasks' slices.
    for path, rows in ((out / "gsm8k_train.jsonl", train), (tasks_data / "gsm8k.jsonl", test)):
        write_jsonl(path, rows)
        written.append(path)
    write_jsonl(out / "general_train.jsonl", general_rows(source / "real", tasks_data))
    written.append(out / "general_train.jsonl")
    # SVAMP: the held-out problems stay in recipes/data too (real_svamp reads them from there).
    train, test = split(svamp_rows(source / "svamp" / "SVAMP.json"), SVAMP_TEST)
    for name, rows in (("svamp_train", train), ("svamp_test", test)):
        write_jsonl(out / f"{name}.jsonl", rows)
        written.append(out / f"{name}.jsonl")
    # The same problems, the same split, asked for the operation instead of the value (a label target).
    train, test = split(svamp_operation_rows(source / "svamp" / "SVAMP.json"), SVAMP_TEST)
    for name, rows in (("svamp_op_train", train), ("svamp_op_test", test)):
        write_jsonl(out / f"{name}.jsonl", rows)
        written.append(out / f"{name}.jsonl")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--tasks-data", type=Path, default=TASKS_DATA)
    args = parser.parse_args(argv)
    for path in build(args.source, args.out, args.tasks_data):
        print(f"{path}: {sum(1 for _ in path.open())} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
