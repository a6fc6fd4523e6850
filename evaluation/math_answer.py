"""Extract and compare final answers of GSM8K-style math solutions."""

from __future__ import annotations

import math
import re
import threading

# A number: thousands groups with commas ("1,234,567") or plain digits, optional decimals, an optional
# "$". A minus is a sign only where it cannot be subtraction or a range ("3-5" ends in 5, not -5).
_SIGN = r"(?:(?<![\w)\].])-)?(?:\$\s?)?"
NUMBER = re.compile(_SIGN + r"(?<![\w.])(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")
FINAL_LINE = re.compile(r"####[ \t]*([^\n#]*)")


def extract_answer(text: str) -> str | None:
    """The answer after the last `#### ` marker, else the last number in the text; None if there is none."""
    if text is None:
        return None
    marked = [_clean(answer) for answer in FINAL_LINE.findall(text)]
    if any(marked):
        return [answer for answer in marked if answer][-1]
    numbers = NUMBER.findall(text)
    return _clean(numbers[-1]) if numbers else None


def answers_match(predicted_text: str, reference_text: str) -> bool:
    """True when both texts' final answers are the same number (or, via math-verify, expression)."""
    predicted, reference = extract_answer(predicted_text), extract_answer(reference_text)
    if predicted is None or reference is None:
        return False
    predicted_value, reference_value = _to_float(predicted), _to_float(reference)
    if predicted_value is not None and reference_value is not None:
        return math.isclose(predicted_value, reference_value, rel_tol=1e-9, abs_tol=1e-9)
    return _math_verify(predicted, reference)


def _clean(answer: str) -> str:
    # "$1,234.00." -> "1,234.00" -> "1234.00": currency, grouping and sentence punctuation are not the answer.
    answer = answer.strip().replace("$", "").replace(",", "").rstrip(".").strip()
    return re.sub(r"^-\s+", "-", answer)


def _to_float(answer: str) -> float | None:
    try:
        return float(answer)
    except ValueError:
        return None


def _math_verify(predicted: str, reference: str) -> bool:
    """Compare non-plain answers ("3/4" vs "0.75", "\\frac{1}{2}") symbolically."""
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
