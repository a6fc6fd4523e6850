"""Write the three own-target datasets beside this file: python tests/data/own_targets/make_data.py

Deterministic (one seeded random.Random per task and split): rerunning rewrites byte-identical files, which
tests/test_own_targets.py checks. Every word is in embedded.tasks.vocabulary(), so the embedded tokenizer
never writes <unk>. Every row is prompt/completion: the embedded tokenizer has no chat template, so the
alpaca / messages / gsm8k converters would wrap each prompt in English template words ("Below is an
instruction ...", "User:", "Assistant:") that the closed vocabulary can only write as <unk> (30 of them per
alpaca prompt, against max_length 48). The three targets differ in file format instead: JSON lines, CSV,
Parquet. Test prompts never occur in the training file.

  colour_fr   colour_fr_train.jsonl / _test.jsonl      k red a d question : translate ?  ->  rouge
              3 labels (rouge bleu vert), scorer auto (-> label)
  country_of  country_of_train.csv / _test.csv         q lima d question : capital of ?  ->  peru
              20 labels (the countries of embedded.tasks.FACTS), scorer label
  bigger      bigger_train.parquet / _test.parquet     12 35 question : > ?              ->  35
              numbers 0..60 (no label set), scorer exact
"""

from __future__ import annotations

import csv
import io
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the repository root, for embedded.tasks

from embedded.tasks import FACTS, LETTERS, MAX_TERM  # noqa: E402

TRAIN_ROWS, TEST_ROWS = 4000, 200
COLOURS = {"red": "rouge", "blue": "bleu", "green": "vert"}
CITIES = {city: country for country, city in FACTS.items()}


def colour_fr(rng: random.Random) -> dict:
    """k red a d question : translate ? -> rouge: the one colour among 2-5 letters, in French."""
    colour = rng.choice(sorted(COLOURS))
    words = [rng.choice(LETTERS) for _ in range(rng.randint(2, 5))]
    words.insert(rng.randint(0, len(words)), colour)
    return {"prompt": " ".join([*words, "question", ":", "translate", "?"]), "completion": COLOURS[colour]}


def country_of(rng: random.Random) -> dict:
    """q lima d question : capital of ? -> peru: the country whose capital is the city among 2-4 letters."""
    city = rng.choice(sorted(CITIES))
    words = [rng.choice(LETTERS) for _ in range(rng.randint(2, 4))]
    words.insert(rng.randint(0, len(words)), city)
    return {"prompt": " ".join([*words, "question", ":", "capital", "of", "?"]), "completion": CITIES[city]}


def bigger(rng: random.Random) -> dict:
    """12 35 question : > ? -> 35: the larger of two different numbers in 0..60."""
    a, b = rng.sample(range(3 * MAX_TERM + 1), 2)
    return {"prompt": f"{a} {b} question : > ?", "completion": str(max(a, b))}


TASKS = {"colour_fr": colour_fr, "country_of": country_of, "bigger": bigger}
LABELS = {"colour_fr": sorted(COLOURS.values()), "country_of": sorted(FACTS), "bigger": None}
SUFFIX = {"colour_fr": "jsonl", "country_of": "csv", "bigger": "parquet"}


def rows(task: str) -> tuple[list[dict], list[dict]]:
    """(train, test): test first, from its own seed, all prompts distinct; train never repeats a test prompt.

    Train prompts may repeat (bigger has only 61 * 60 = 3660 distinct prompts, fewer than 4000 rows)."""
    fn = TASKS[task]
    rng, test, seen = random.Random(f"{task}/test"), [], set()
    while len(test) < TEST_ROWS:
        row = fn(rng)
        if row["prompt"] not in seen:
            seen.add(row["prompt"])
            test.append(row)
    rng, train = random.Random(f"{task}/train"), []
    while len(train) < TRAIN_ROWS:
        row = fn(rng)
        if row["prompt"] not in seen:
            train.append(row)
    return train, test


def encode(task: str, data: list[dict]) -> bytes:
    suffix = SUFFIX[task]
    if suffix == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in data).encode()
    if suffix == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=["prompt", "completion"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(data)
        return out.getvalue().encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"prompt": [r["prompt"] for r in data], "completion": [r["completion"] for r in data]})
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


def files() -> dict[str, bytes]:
    """File name -> contents, for every dataset this script writes."""
    out = {}
    for task in TASKS:
        train, test = rows(task)
        out[f"{task}_train.{SUFFIX[task]}"] = encode(task, train)
        out[f"{task}_test.{SUFFIX[task]}"] = encode(task, test)
    return out


def main(folder: Path = HERE) -> None:
    for name, data in files().items():
        (folder / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
