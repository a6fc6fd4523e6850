"""Extract and compare final answers of GSM8K-style math solutions."""

from __future__ import annotations

import math
import re
import threading

# Signs that mean minus: ASCII hyphen-minus, U+2212 MINUS SIGN, and the dashes typesetting and word
# processors put in its place (hyphen, non-breaking hyphen, figure dash, en dash, small and fullwidth
# hyphen-minus). The em dash and the horizontal bar are punctuation, not signs.
MINUS_SIGNS = "-\u2010\u2011\u2012\u2013\u2212\ufe63\uff0d"
# Thousands separators, between groups of exactly three digits: commas ("1,234,567"), or spaces (plain,
# no-break, thin, narrow no-break: "1 234 567"), not both in one number.
SPACE_SEPARATORS = " \u00a0\u2009\u202f"

# A minus is a sign only where it cannot be subtraction or a range ("3-5" ends in 5, not -5), then an
# optional "$".
_SIGN = rf"(?:(?<![\w)\].])[{MINUS_SIGNS}])?(?:\$\s?)?"
_GROUPED = rf"\d{{1,3}}(?:(?:,\d{{3}})+|(?:[{SPACE_SEPARATORS}]\d{{3}})+)(?!\d)"
_EXPONENT = r"(?:[eE][+-]?\d+(?!\w|\.\d))?"  # "1.5e3"; in "3 eggs" or "5e" the e is a word
# A bare fraction, "3/4"; not part of a date or a longer chain ("3/4/2020"), nor "3/4.5".
_FRACTION = r"(?<![\w./])\d+/\d+(?![\d/]|\.\d)"
NUMBER = re.compile(_SIGN + rf"(?<![\w.])(?:{_FRACTION}|(?:(?:{_GROUPED}|\d+)(?:\.\d+)?|\.\d+){_EXPONENT})")
FINAL_LINE = re.compile(r"####[ \t]*([^\n#]*)")
# What a cleaned number looks like; only these are compared by value (float() would also take "nan").
_PLAIN = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?")
_PLAIN_FRACTION = re.compile(r"(-?\d+)/(\d+)")
_MINUS = re.compile(f"[{MINUS_SIGNS}]")


def extract_answer(text: str) -> str | None:
    """The final answer of a solution, as lm-eval's GSM8K reads it; None if there is none.

    The answer after the *first* `####` marker (lm-eval's "strict-match"): the number the marked line
    starts with, else the whole line for math-verify ("\\frac{3}{4}"); a marker with nothing after it is
    skipped. Without a marked answer, the last number in the text ("flexible-extract"). The first, not
    the last: a right answer that runs on into another question and its `#### N` keeps its own.

    Numbers: "1,234", "1 234" (groups of exactly three digits, split by commas or by plain, thin or
    no-break spaces) and "$1,234.00." read as 1234; "-5" and "\u22125" (the Unicode minus, or another dash sign) as -5, though "3-5" is a range
    ending in 5 and "10 - 4" ends in 4; "1.5e3" as 1500; a bare "3/4" as the fraction (0.75 by value).
    The answer comes back as written, less currency, grouping and sentence punctuation, with an ASCII
    minus: "1234", "-5", "1.5e3", "3/4".
    """
    if text is None:
        return None
    for line in FINAL_LINE.findall(text):
        line = line.strip()
        number = NUMBER.match(line)
        answer = _clean_number(number.group(0)) if number else _clean(line)
        if answer:
            return answer
    numbers = [match.group(0) for match in NUMBER.finditer(text)]
    return _clean_number(numbers[-1]) if numbers else None


def answers_match(predicted_text: str, reference_text: str) -> bool:
    """True when both texts' final answers are the same number (or, via math-verify, expression).

    Numbers compare by value: "1,234" equals "1234", "3/4" equals "0.75", "1.5e3" equals "1500".
    """
    predicted, reference = extract_answer(predicted_text), extract_answer(reference_text)
    if predicted is None or reference is None:
        return False
    predicted_value, reference_value = _to_float(predicted), _to_float(reference)
    if predicted_value is not None and reference_value is not None:
        return math.isclose(predicted_value, reference_value, rel_tol=1e-9, abs_tol=1e-9)
    return _math_verify(predicted, reference)


def _clean_number(number: str) -> str:
    # "$1,234" -> "1234", "\u22125" -> "-5", "$ 5" -> "5": currency and grouping are not the answer.
    number = _MINUS.sub("-", number).replace("$", "")
    return re.sub(r"[,\s]", "", number)  # \s covers every space separator


def _clean(answer: str) -> str:
    # A marked line that does not start with a number: "$ -5." -> "-5", "\\frac{3}{4}" as is.
    answer = _MINUS.sub("-", answer.strip()).replace("$", "").replace(",", "").rstrip(".").strip()
    return re.sub(r"^-\s+", "-", answer)


def _to_float(answer: str) -> float | None:
    """The value of a cleaned number ("1234", "-0.5", "1.5e3", "3/4"); None for anything else."""
    if _PLAIN.fullmatch(answer):
        return float(answer)
    fraction = _PLAIN_FRACTION.fullmatch(answer)
    if fraction and int(fraction.group(2)) != 0:
        return int(fraction.group(1)) / int(fraction.group(2))
    return None


def _math_verify(predicted: str, reference: str) -> bool:
    """Compare non-plain answers ("\\frac{1}{2}", "x = 3") symbolically."""
    from math_verify import parse, verify  # imported here: it pulls in sympy, slow to load

    # math-verify times out with signal.alarm, which only works in the main thread; elsewhere we go
    # without, which is safe because the extracted answers are short.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        gold = parse(reference, parsing_timeout=timeout)
        guess = parse(predicted, parsing_timeout=timeout)
        return bool(gold and guess and verify(gold, guess, timeout_seconds=timeout))
    except Exception:  # math-verify raises on unparseable text; such an answer simply does not match
        return False
