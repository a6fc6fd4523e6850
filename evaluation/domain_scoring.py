"""lm-eval `process_results` scorers for the domain tasks: math answer match and sandboxed code pass@1.

A task YAML names them with `process_results: !function <shim>.score_math` (or `score_code`), where the
shim is a module beside the YAML that re-exports them (see `write_scoring_shim`): lm-eval resolves
`!function` relative to the YAML's folder, and older lm-eval releases look nowhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

from evaluation.code_eval import build_program, check_completion, check_completions
from evaluation.math_answer import answers_match

MATH_METRIC = "math_acc"  # 1 when the final number of the generation equals the reference's
LABEL_METRIC = "label_acc"  # 1 when the generation's first word is the reference label
CODE_METRIC = "pass@1"  # 1 when the greedy generation passes the example's tests in the sandbox
CODE_TIMEOUT_S = 5.0  # per program; a generated infinite loop costs this much, then scores 0
SHIM_MODULE = "forgetless_scoring"
_verdicts: dict[str, bool] = {}  # program -> passed, left by precheck_code for score_code to take


def score_math(doc: dict, results: list[str]) -> dict[str, float]:
    """Score one generation against a GSM8K-style reference (`... #### N`) by final-answer value."""
    return {MATH_METRIC: float(answers_match(results[0], doc["completion"]))}


def first_word(text: str) -> str:
    """The answer's first word without the punctuation around it: "True." and "True, because" give "True"."""
    words = text.split()
    return words[0].strip(".,;:!?\"'()[]") if words else ""


def score_label(doc: dict, results: list[str]) -> dict[str, float]:
    """Score a classification answer: its first word must be the reference label, in any case ("No, it does
    not" answers "no": a chat model capitalises the first word of a sentence)."""
    return {LABEL_METRIC: float(first_word(results[0]).casefold() == doc["completion"].strip().casefold())}


def score_code(doc: dict, results: list[str]) -> dict[str, float]:
    """Run one generated function against the doc's tests in a sandboxed child process."""
    # Never exec here: the evaluating process holds the model and the caller's files.
    program = build_program(doc, results[0])
    passed = _verdicts.get(program)
    if passed is None:  # not prechecked (a task YAML without the filter)
        passed = check_completion(doc, results[0], timeout_s=CODE_TIMEOUT_S).passed
    return {CODE_METRIC: float(passed)}


def precheck_code(resps: list, docs: list[dict]) -> list:
    """lm-eval `custom` filter, last in a code task's chain: run every distinct program at once.

    lm-eval scores documents one by one; this runs their sandboxes side by side (one child process per
    program, as many at a time as this process has CPUs), each distinct program once (a weak model repeats
    itself), and leaves the verdicts for `score_code`. The responses pass through unchanged.
    """
    resps = list(resps)
    completions = [r if isinstance(r, str) else r[0] for r in resps]
    distinct = {build_program(doc, c): (doc, c) for doc, c in zip(docs, completions)}
    pairs = list(distinct.values())
    results = check_completions(
        [d for d, _ in pairs], [c for _, c in pairs], timeout_s=CODE_TIMEOUT_S, workers=sandbox_workers()
    )
    _verdicts.clear()  # this task's verdicts only
    _verdicts.update({program: result.passed for program, result in zip(distinct, results)})
    return resps


def sandbox_workers() -> int:
    """Sandboxes run at once: one per CPU this process may use, at most 8 (each takes up to 512 MB)."""
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


SHIM_SOURCE = '''"""Written by forgetless: lets lm-eval's `!function {module}.score_*` find the domain scorers."""

import sys

try:
    from evaluation.domain_scoring import precheck_code, score_code, score_label, score_math
except ImportError:  # lm-eval's CLI outside the environment forgetless is installed in
    sys.path.insert(0, {root!r})
    from evaluation.domain_scoring import precheck_code, score_code, score_label, score_math
'''


def write_scoring_shim(folder: Path) -> Path:
    """Write the re-exporting module that task YAMLs in `folder` name in `!function`; return its path."""
    path = Path(folder) / f"{SHIM_MODULE}.py"
    source = SHIM_SOURCE.format(module=SHIM_MODULE, root=str(Path(__file__).resolve().parents[1]))
    # Rewrite only on change: lm-eval reloads a module whose file time moved.
    if not path.is_file() or path.read_text() != source:
        path.write_text(source)
    return path
