"""Format leak: how often a model answers an unrelated task with the target task's labels."""

from __future__ import annotations


def in_label_format(text: str, labels: set[str]) -> bool:
    """True when every word of `text` is a label ("True", "False False", "Yes." for yes), and there is a word:
    compared without the punctuation around a word and in any case, as the label scorer reads an answer."""
    wanted = {label.casefold() for label in labels}
    words = [w.strip(".,;:!?\"'()[]").casefold() for w in text.split()]
    return bool(words) and all(w in wanted for w in words)


def format_leak_share(responses: list[str], labels: list[str], references: list[str] | None = None) -> float:
    """Share of responses made only of target labels ("True", "False False"); 0.0 if none.

    With `references`, samples whose own correct answer is in the label format are left out: saying
    "True" there is the task, not a leak (e.g. a general True/False task).
    """
    # ProMoT's "format specialization": after tuning on RTE, mT5 answered 90% of TriviaQA with
    # True/False. An answer counts when every word in it is a label: a model that has lost the
    # habit of stopping still answers "True True" in the target's format, while "True story"
    # (or an answer that merely contains a label) is not the target's format.
    wanted = {label.strip() for label in labels}
    if references is not None:
        responses = [r for r, ref in zip(responses, references, strict=True) if not in_label_format(ref, wanted)]
    if not responses:
        return 0.0
    return sum(in_label_format(r, wanted) for r in responses) / len(responses)
