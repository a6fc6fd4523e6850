"""Regenerate data/ (the shipped benchmark slices) from the real benchmark files in ../shared/data/real.

Run:  python -m evaluation.tasks.real.build_slices [--source DIR] [--check]

Each slice keeps ROWS rows (IFEval all of its 541 prompts, ALL_ROWS), chosen by a seeded hash of the row's line number (not the first N: some source
files are ordered by origin, e.g. ARC by exam source), kept in file order, and is rewritten in the field
layout of the Hugging Face dataset that lm-eval's standard task loads, so lm-eval's own prompt functions
read it unchanged. ATTRIBUTION.md gives each file's source, license and conversion.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
DEFAULT_SOURCE = HERE.parents[3] / "shared" / "data" / "real"  # <repo>/../shared/data/real
ROWS = 300
ALL_ROWS = {"ifeval"}  # slices that keep every row of their source (in file order)
SEED = "forgetless-real-v1"


def _arc(row: dict) -> dict:
    """AI2 {id, question: {stem, choices: [{text, label}]}, answerKey} -> allenai/ai2_arc."""
    choices = row["question"]["choices"]
    return {
        "id": row["id"],
        "question": row["question"]["stem"],
        "choices": {"text": [c["text"] for c in choices], "label": [c["label"] for c in choices]},
        "answerKey": row["answerKey"],
    }


def _piqa(row: dict) -> dict:
    return {"goal": row["goal"], "sol1": row["sol1"], "sol2": row["sol2"], "label": int(row["label"])}


def _hellaswag(row: dict) -> dict:
    # The dump lost ctx_a/ctx_b/activity_label (its ctx is "<activity_label>: <ctx_a> <ctx_b>", already
    # preprocessed); the label is a string as in Rowan/hellaswag.
    return {"ctx": row["ctx"], "endings": list(row["endings"]), "label": str(row["label"])}


def _winogrande(row: dict) -> dict:
    """llm-foundry {context_options, continuation, gold} -> allenai/winogrande {sentence, option1, option2, answer}.

    lm-eval's winogrande builds the contexts `sentence[:i] + option` (i = the "_") and the continuation
    `sentence[i+1:].strip()`: the blank goes where the two contexts part, moved back to a word start so
    options sharing a first letter ("Jeffrey"/"Justin") stay whole; whatever the split, lm-eval rebuilds
    exactly the two context_options.
    """
    first, second = row["context_options"]
    cut = len(os.path.commonprefix([first, second]))
    while cut and first[cut - 1].isalnum():
        cut -= 1
    continuation = row["continuation"]
    if "_" in first[:cut] or continuation != continuation.strip() or not continuation:
        raise ValueError(f"winogrande row {row!r}: cannot place the blank")
    # "_'s" and "_." have no space; lm-eval strips the continuation, so this only shapes `sentence`.
    joiner = " " if continuation[0].isalnum() else ""
    return {
        "sentence": first[:cut] + "_" + joiner + continuation,
        "option1": first[cut:],
        "option2": second[cut:],
        "answer": str(int(row["gold"]) + 1),
    }


def _nq_open(row: dict) -> dict:
    return {"question": row["question"], "answer": list(row["answer"])}


def _ifeval(row: dict) -> dict:
    return {
        "key": row["key"],
        "prompt": row["prompt"],
        "instruction_id_list": row["instruction_id_list"],
        "kwargs": row["kwargs"],
    }


# slice name -> (source file in --source, row converter)
SLICES = {
    "arc_easy": ("arc_easy_test.jsonl", _arc),
    "arc_challenge": ("arc_challenge_test.jsonl", _arc),
    "piqa": ("piqa_dev.jsonl", _piqa),
    "hellaswag": ("hellaswag_val.jsonl", _hellaswag),
    "winogrande": ("winogrande_dev.jsonl", _winogrande),
    "nq_open": ("nq_open_dev.jsonl", _nq_open),
    "ifeval": ("ifeval.jsonl", _ifeval),
}


def chosen_lines(name: str, n_rows: int, keep: int = ROWS) -> list[int]:
    """The `keep` line numbers (0-based) whose sha256("<SEED>:<name>:<line>") sorts first, in file order."""

    def rank(i: int) -> str:
        return hashlib.sha256(f"{SEED}:{name}:{i}".encode()).hexdigest()

    return sorted(sorted(range(n_rows), key=rank)[:keep])


def render_slice(name: str, source: Path) -> str:
    """The text of data/<name>.jsonl built from the source folder."""
    file_name, convert = SLICES[name]
    with (source / file_name).open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    keep = len(rows) if name in ALL_ROWS else ROWS
    lines = [json.dumps(convert(rows[i]), ensure_ascii=False) + "\n" for i in chosen_lines(name, len(rows), keep)]
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder of the real benchmark files")
    parser.add_argument("--check", action="store_true", help="compare with data/ instead of writing it")
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        parser.error(f"{args.source}: no such folder (the real benchmark files, see ATTRIBUTION.md)")
    DATA_DIR.mkdir(exist_ok=True)
    stale = []
    for name in SLICES:
        text, target = render_slice(name, args.source), DATA_DIR / f"{name}.jsonl"
        if args.check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                stale.append(target.name)
        else:
            target.write_text(text, encoding="utf-8")
            print(f"{target.relative_to(HERE)}: {text.count(chr(10))} rows")
    if stale:
        print(f"differs from build_slices' output: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
