"""Answer extraction and numeric comparison for GSM8K-style solutions."""

import json
import threading
from pathlib import Path

import pytest

from evaluation.math_answer import answers_match, extract_answer

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Natalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72", "72"),
        ("#### 1,234", "1234"),
        ("#### $1,234.", "1234"),
        ("#### -5", "-5"),
        ("#### 3/4", "3/4"),
        ("first #### 1 then #### 2", "1"),  # the first marked answer, as lm-eval's strict-match takes it
        ("#### 72\n\nQuestion: How many?\nAnswer: 2 + 3 = 5\n#### 5", "72"),  # a run-on keeps its own answer
        ("####\n#### 5", "5"),  # a marker with nothing after it is skipped
        ("#### 72 apples", "72"),  # the number the marked line starts with
        ("#### \\frac{3}{4}", "\\frac{3}{4}"),  # no leading number: the line, for math-verify
        ("#### \u22125", "-5"),  # U+2212 MINUS SIGN
        ("The change is \u22127 degrees.", "-7"),
        ("It fell to \u20133 degrees.", "-3"),  # an en dash as minus
        ("A \uff0d4 score", "-4"),  # fullwidth hyphen-minus
        ("Between 3\u20135 hours", "5"),  # still a range
        ("We compute 10 \u2212 4", "4"),  # still subtraction
        ("#### 1 234", "1234"),  # space as thousands separator
        ("So she has 1\u2009234 coins.", "1234"),  # thin space
        ("They paid $12 345 678.", "12345678"),
        ("It has 1\u202f000\u00a0000 grains", "1000000"),  # narrow no-break and no-break spaces
        ("Pick 1,234 567", "567"),  # commas or spaces, not both in one number
        ("Day 1 2345", "2345"),  # groups are exactly three digits
        ("1.5e3 grams", "1.5e3"),
        ("The answer is 2.5E-3.", "2.5E-3"),
        ("She ate 3/4", "3/4"),  # a bare fraction, not its denominator
        ("-3/4 of a turn", "-3/4"),
        ("Due 3/4/2020", "2020"),  # a date is no fraction
        ("She earned $10.", "10"),
        ("So she has 1,234,567 coins.", "1234567"),
        ("The change is -7 degrees.", "-7"),
        ("The answer is 18.50.", "18.50"),
        ("It costs $ 5", "5"),
        ("Between 3-5 hours", "5"),
        ("We compute 10 - 4", "4"),
        ("Half is .5", ".5"),
        ("Pick 1, 2, 3", "3"),
        ("<<48/2=24>>24 clips", "24"),
        ("no number here", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("predicted", "reference", "expected"),
    [
        ("The answer is 72.", "reasoning\n#### 72", True),
        ("#### 1,234", "#### 1234", True),
        ("Total: $18.50", "#### 18.5", True),
        ("so 72.0", "#### 72", True),
        ("I think -3", "#### -3", True),
        ("#### 3/4", "#### 0.75", True),  # not plain numbers: math-verify compares them
        ("#### 72 apples", "#### 72", True),
        ("The answer is 73.", "#### 72", False),
        ("#### 3", "#### -3", False),
        ("I do not know", "#### 72", False),
        ("#### 72", "no reference number", False),
        ("#### 72\n\nQuestion: q\nAnswer: #### 5", "#### 72", True),  # run on into the next question
        ("She ate 3/4 of it.", "#### 0.75", True),  # fractions compare by value
        ("#### 6/8", "#### 3/4", True),
        ("#### 3/0", "#### 0", False),
        ("1.5e3 grams", "#### 1500", True),
        ("The change is \u22127 degrees.", "#### -7", True),
        ("The change is \u22127 degrees.", "#### 7", False),  # not read as plus
        ("#### \u22125", "#### -5", True),
        ("So 1 234 coins", "#### 1234", True),
        ("So 1\u2009234 coins", "#### 234", False),
    ],
)
def test_answers_match(predicted, reference, expected):
    assert answers_match(predicted, reference) is expected


def test_math_verify_path_works_outside_the_main_thread():
    # math-verify's own timeouts use signal.alarm, which only the main thread may use.
    results = []
    worker = threading.Thread(target=lambda: results.append(answers_match("#### 3/4", "#### 0.75")))
    worker.start()
    worker.join()
    assert results == [True]


def test_every_real_gsm8k_answer_matches_itself_and_not_its_neighbour():
    path = SHARED_DATA / "gsm8k" / "train.jsonl"
    if not path.is_file():
        pytest.skip(f"real data sample not available: {path}")
    answers = [json.loads(line)["answer"] for line in path.read_text(encoding="utf-8").splitlines()]
    finals = [extract_answer(answer) for answer in answers]
    assert all(final is not None and float(final) == float(final) for final in finals)
    assert all(answers_match(answer, answer) for answer in answers)
    differing = [(a, b) for a, b, fa, fb in zip(answers, answers[1:], finals, finals[1:]) if fa != fb]
    assert differing and not any(answers_match(a, b) for a, b in differing)
