"""Synthetic tasks over a closed vocabulary: general skills, a held-out target task, two domains.

Every example is `{"prompt": str, "completion": str}`: lowercase word tokens separated by single
spaces (the only capitalised tokens are the target answers `True` / `False`). General prompts end
in `=`, the target prompt in `?`, so the target's output format is distinctive: a model tuned hard
on it starts answering True/False to general prompts, which is the forgetting we measure.
"""

from __future__ import annotations

import random
import string
import zlib
from typing import Callable

TaskFn = Callable[[random.Random], dict]

LETTERS = list(string.ascii_lowercase)
TRUE_LETTERS = LETTERS[:8]  # letter_rule: a hypothesis letter in a-h is "True"
FALSE_LETTERS = LETTERS[8:]
MAX_TERM = 20  # math terms are 0..20 and results stay in 0..3*MAX_TERM, one number token each

FACTS = {  # fixed: the base memorises this table, so there is no held-out "unseen" fact
    "france": "paris",
    "spain": "madrid",
    "italy": "rome",
    "germany": "berlin",
    "japan": "tokyo",
    "china": "beijing",
    "egypt": "cairo",
    "kenya": "nairobi",
    "peru": "lima",
    "chile": "santiago",
    "canada": "ottawa",
    "russia": "moscow",
    "greece": "athens",
    "norway": "oslo",
    "sweden": "stockholm",
    "poland": "warsaw",
    "austria": "vienna",
    "portugal": "lisbon",
    "ireland": "dublin",
    "cuba": "havana",
}
DICTIONARY = {  # translate: word-by-word substitution; held-out prompts are new word sequences
    "cat": "chat",
    "dog": "chien",
    "red": "rouge",
    "blue": "bleu",
    "house": "maison",
    "water": "eau",
    "sun": "soleil",
    "moon": "lune",
    "tree": "arbre",
    "book": "livre",
    "big": "grand",
    "small": "petit",
    "green": "vert",
    "bread": "pain",
    "milk": "lait",
    "night": "nuit",
}
# Tokens that appear only as fixed words in the templates below (kept here so the vocabulary is
# declared, not sampled: sampling could miss a rare token).
KEYWORDS = [
    ":",
    "=",
    "+",
    "-",
    "?",
    "reverse",
    "copy",
    "sort",
    "add",
    "count",
    "capital",
    "of",
    "translate",
    "premise",
    "hypothesis",
    "question",
    "true",
    "or",
    "false",
    "True",
    "False",
    "solve",
    "####",
    "code",
    "to",
    "subtract",
    "from",
    "multiply",
    "by",
    "double",
    "square",
    "negate",
    "then",
    "x",
    "def",
    "f",
    "(",
    ")",
    "return",
    "*",
    "**",
    "compare",
    "<",
    ">",
]


def _letters(rng: random.Random) -> list[str]:
    return [rng.choice(LETTERS) for _ in range(rng.randint(3, 6))]


def _example(prompt: list[str], completion: list[str], **extra) -> dict:
    return {"prompt": " ".join(prompt), "completion": " ".join(completion), **extra}


# ---- general tasks: eight distinct output formats, all trained into the base model ----


def reverse(rng: random.Random) -> dict:
    """reverse : c a f = -> f a c"""
    xs = _letters(rng)
    return _example(["reverse", ":", *xs, "="], xs[::-1])


def copy(rng: random.Random) -> dict:
    """copy : c a f = -> c a f"""
    xs = _letters(rng)
    return _example(["copy", ":", *xs, "="], xs)


def sort(rng: random.Random) -> dict:
    """sort : c a f = -> a c f (distinct letters)."""
    # Distinct letters: with repeats the base model stalled at ~0.84 exact match even when trained
    # on sort alone; without them it reaches 1.0.
    xs = rng.sample(LETTERS, rng.randint(3, 6))
    return _example(["sort", ":", *xs, "="], sorted(xs))


def add(rng: random.Random) -> dict:
    """add : 7 + 5 = -> 1 2 (single digits; the sum is written digit by digit)."""
    # Two-digit operands (0..99) reached only 0.09 exact match in the base's 1200-step budget:
    # carrying into the first output digit needs far more steps. Single digits are an addition
    # table the base memorises, like `fact`.
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    return _example(["add", ":", str(a), "+", str(b), "="], list(str(a + b)))


def count(rng: random.Random) -> dict:
    """count : c a f = -> 3"""
    xs = _letters(rng)
    return _example(["count", ":", *xs, "="], [str(len(xs))])


def fact(rng: random.Random) -> dict:
    """capital of france = -> paris"""
    country = rng.choice(sorted(FACTS))
    return _example(["capital", "of", country, "="], [FACTS[country]])


def translate(rng: random.Random) -> dict:
    """translate : red cat = -> rouge chat"""
    words = [rng.choice(sorted(DICTIONARY)) for _ in range(rng.randint(2, 4))]
    return _example(["translate", ":", *words, "="], [DICTIONARY[w] for w in words])


def compare(rng: random.Random) -> dict:
    """compare : 12 < 35 = -> True. The base can say True/False, as any pretrained LM can."""
    # Without one general task answering True/False, those tokens are never outputs of the base and
    # prompt tuning alone cannot reach them (measured: log-prob of True stuck near -4 after 300 steps),
    # unlike a real pretrained model, for which the target's format is within reach of a soft prompt.
    a, b = rng.randint(0, 3 * MAX_TERM), rng.randint(0, 3 * MAX_TERM)
    op = rng.choice(["<", ">"])
    holds = a < b if op == "<" else a > b
    return _example(["compare", ":", str(a), op, str(b), "="], ["True" if holds else "False"])


# ---- target task: held out of the base; its True/False format is what leaks when over-tuned ----


def letter_rule(rng: random.Random) -> dict:
    """premise : c k a hypothesis : d question : true or false ? -> True iff the letter is a-h."""
    label = rng.random() < 0.5  # draw the label first so classes are balanced by construction
    letter = rng.choice(TRUE_LETTERS if label else FALSE_LETTERS)
    prompt = ["premise", ":", *_letters(rng), "hypothesis", ":", letter, "question", ":", "true", "or", "false", "?"]
    return _example(prompt, ["True" if label else "False"])


def capital_rule(rng: random.Random) -> dict:
    """premise : q d capital of peru hypothesis : lima question : true or false ? -> True iff it is the capital.

    A second target (multi-task ProMoT) over the same vocabulary, built on a fact the base knows; the premise's
    letters make the prompts distinct, as letter_rule's do."""
    label = rng.random() < 0.5
    country = rng.choice(sorted(FACTS))
    city = FACTS[country] if label else rng.choice(sorted(set(FACTS.values()) - {FACTS[country]}))
    prompt = [
        "premise",
        ":",
        *_letters(rng),
        "capital",
        "of",
        country,
        "hypothesis",
        ":",
        city,
        "question",
        ":",
        "true",
        "or",
        "false",
        "?",
    ]
    return _example(prompt, ["True" if label else "False"])


# ---- domain tasks for DMT: never in the base, but covered by the vocabulary ----


def math(rng: random.Random) -> dict:
    """solve : 7 - 3 + 5 = -> #### 9 (GSM8K answer format; 2-3 terms, result never negative)."""
    while True:
        terms = [rng.randint(0, MAX_TERM) for _ in range(rng.randint(2, 3))]
        ops = [rng.choice("+-") for _ in terms[1:]]
        value, tokens = terms[0], [str(terms[0])]
        for op, term in zip(ops, terms[1:]):
            value = value + term if op == "+" else value - term
            tokens += [op, str(term)]
        if value >= 0:
            return _example(["solve", ":", *tokens, "="], ["####", str(value)])


# Each code step: (description words, how it wraps the expression, how it maps an int).
_CODE_STEPS = [
    *[(["add", str(n), "to", "x"], lambda e, n=n: e + ["+", str(n)], lambda v, n=n: v + n) for n in range(1, 10)],
    *[
        (["subtract", str(n), "from", "x"], lambda e, n=n: e + ["-", str(n)], lambda v, n=n: v - n)
        for n in range(1, 10)
    ],
    *[(["multiply", "x", "by", str(n)], lambda e, n=n: e + ["*", str(n)], lambda v, n=n: v * n) for n in range(1, 10)],
    (["double", "x"], lambda e: e + ["*", "2"], lambda v: v * 2),
    (["square", "x"], lambda e: e + ["**", "2"], lambda v: v**2),
    (["negate", "x"], lambda e: ["-", *e], lambda v: -v),
]
CODE_TEST_INPUTS = (2, 0, 5)


def code(rng: random.Random) -> dict:
    """code : add 3 to x -> def f ( x ) : return x + 3, plus `test` asserts and `entry_point`."""
    steps = [rng.choice(_CODE_STEPS) for _ in range(rng.randint(1, 3))]
    description, expr = [], ["x"]
    for i, (words, wrap, _) in enumerate(steps):
        description += (["then"] if i else []) + words
        # Wrap anything that is not a bare `x` so Python precedence matches the step order.
        expr = wrap(expr if expr == ["x"] else ["(", *expr, ")"])
    expected = []
    for value in CODE_TEST_INPUTS:
        start = value
        for _, _, apply in steps:
            value = apply(value)
        expected.append(f"assert f({start}) == {value}")
    return _example(
        ["code", ":", *description],
        ["def", "f", "(", "x", ")", ":", "return", *expr],
        test="\n".join(expected),
        entry_point="f",
    )


GENERAL_TASKS: dict[str, TaskFn] = {
    "reverse": reverse,
    "copy": copy,
    "sort": sort,
    "add": add,
    "count": count,
    "fact": fact,
    "translate": translate,
    "compare": compare,
}
TARGET_TASKS: dict[str, TaskFn] = {"letter_rule": letter_rule, "capital_rule": capital_rule}
TARGET_LABELS = {"letter_rule": ["True", "False"], "capital_rule": ["True", "False"]}
DOMAIN_TASKS: dict[str, TaskFn] = {"math": math, "code": code}
ALL_TASKS: dict[str, TaskFn] = {**GENERAL_TASKS, **TARGET_TASKS, **DOMAIN_TASKS}

SPLITS = ("train", "validation", "test")
# Tasks whose prompt space is a small fixed table (20 facts, 100 digit pairs): all splits draw from
# the same table, with repeats, because a memorised fact cannot be "held out" (and 200 distinct test
# prompts do not exist); their test measures retention of what the base memorised.
FIXED_TABLE_TASKS = frozenset({"fact", "add"})


def task_kind(name: str) -> str:
    """Return "general", "target" or "domain" for a task name."""
    for kind, tasks in (("general", GENERAL_TASKS), ("target", TARGET_TASKS), ("domain", DOMAIN_TASKS)):
        if name in tasks:
            return kind
    raise KeyError(f"unknown task {name!r}; known: {', '.join(ALL_TASKS)}")


def split_of(prompt: str) -> str:
    """Assign a prompt to a split by a stable hash of its text (80/10/10), so splits never overlap."""
    bucket = zlib.crc32(prompt.encode()) % 10
    return "train" if bucket < 8 else ("validation" if bucket == 8 else "test")


def make_examples(task: str, split: str, n: int) -> list[dict]:
    """Return n deterministic examples of `task` for `split`; a shorter n gives a prefix of a longer one."""
    if task not in ALL_TASKS:
        raise KeyError(f"unknown task {task!r}; known: {', '.join(ALL_TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    # crc32, not hash(): Python salts str hashes per process, which would change the data each run.
    rng = random.Random(zlib.crc32(f"{task}/{split}".encode()))
    fn, fixed = ALL_TASKS[task], task in FIXED_TABLE_TASKS
    examples, seen = [], set()
    budget = 200 * n + 10_000  # rejection sampling; a budget turns a too-small space into an error
    while len(examples) < n and budget > 0:
        budget -= 1
        example = fn(rng)
        if not fixed and (split_of(example["prompt"]) != split or example["prompt"] in seen):
            continue
        seen.add(example["prompt"])
        examples.append(example)
    if len(examples) < n:
        raise ValueError(f"task {task!r} split {split!r}: only {len(examples)} distinct prompts, asked {n}")
    return examples


def vocabulary() -> list[str]:
    """Return every token any task can emit, sorted, so token ids are the same on every build."""
    numbers = [str(i) for i in range(3 * MAX_TERM + 1)]  # covers digits, counts and math results
    tokens = {*LETTERS, *numbers, *KEYWORDS, *FACTS, *FACTS.values(), *DICTIONARY, *DICTIONARY.values()}
    return sorted(tokens)
