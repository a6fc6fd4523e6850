"""Functions the real_* task YAMLs name with `!function utils.<name>`: the local dataset loader, and
lm-eval's own prompt functions re-exported.

lm-eval imports this file by its path (a `!function` module is looked up next to the YAML, and older lm-eval
releases look nowhere else), so lm-eval's functions are reached through here rather than named in the YAML.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

import datasets
from lm_eval.tasks.hellaswag.utils import preprocess
from lm_eval.tasks.winogrande.preprocess_winogrande import doc_to_choice, doc_to_target, doc_to_text

TASKS_DIR = Path(__file__).resolve().parent

__all__ = [
    "load_local",
    "process_hellaswag",
    "doc_to_text",
    "doc_to_target",
    "doc_to_choice",
    "score_gsm8k",
    "score_winogrande_answer",
]


def load_local(data_files: dict[str, str], **_metadata) -> datasets.DatasetDict:
    """`custom_dataset`: the task's `dataset_kwargs.data_files` read as JSON, relative to this folder.

    `dataset_path: json` alone would resolve a relative data file against the working folder, and an
    absolute one cannot be written into a shipped YAML; this keeps the YAML's own spelling and fixes the base.
    """
    # lm-eval calls custom_dataset(**metadata, **dataset_kwargs); metadata (version, config_source,
    # CLI model_args) is not ours to interpret, hence **_metadata.
    files = {split: str(TASKS_DIR / path) for split, path in data_files.items()}
    return datasets.load_dataset("json", data_files=files)


def process_hellaswag(dataset: datasets.Dataset) -> datasets.Dataset:
    """lm-eval's hellaswag fields (query, choices, gold) from the text dump's rows {ctx, endings, label}.

    lm-eval's process_docs builds query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize());
    the dump kept only the joined, already preprocessed ctx, so the query is that ctx (preprocess changes
    none of the shipped rows) and ctx_b keeps its lower-case first letter. ATTRIBUTION.md says more.
    """
    return dataset.map(_hellaswag_doc)


def _hellaswag_doc(doc: dict) -> dict:
    # Module level, not a closure: datasets can then hash it and reuse its cached map.
    return {
        "query": preprocess(doc["ctx"]),
        "choices": [preprocess(e) for e in doc["endings"]],
        "gold": int(doc["label"]),
    }


def score_gsm8k(doc: dict, results: list[str]) -> dict[str, float]:
    """real_gsm8k: the generation's final answer against the reference's `#### N`, by value (math_acc)."""
    from evaluation.domain_scoring import MATH_METRIC, answers_match

    return {MATH_METRIC: float(answers_match(results[0], doc["answer"]))}


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalization: lower case, punctuation and the articles a/an/the removed, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def names(text: str, phrase: str) -> bool:
    """Whether the normalized text holds the normalized phrase as whole words (an empty phrase never)."""
    phrase = normalize_answer(phrase)
    return bool(phrase) and f" {phrase} " in f" {normalize_answer(text)} "


def score_winogrande_answer(doc: dict, results: list[str]) -> dict[str, float]:
    """real_winogrande_answer: 1 when the answer names the right option and not the other (unless the other is part
    of the right one's words), else 0."""
    right, other = (doc["option1"], doc["option2"]) if doc["answer"] == "1" else (doc["option2"], doc["option1"])
    said = results[0]
    ok = names(said, right) and (not names(said, other) or names(right, other))
    return {"contains_answer": float(ok)}
