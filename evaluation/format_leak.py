"""Format leak: how often a model answers an unrelated task with the target task's labels."""

from __future__ import annotations


def format_leak_share(responses: list[str], labels: list[str]) -> float:
    """Share of responses made only of target labels ("True", "False False"); 0.0 if none."""
    # ProMoT's "format specialization": after tuning on RTE, mT5 answered 90% of TriviaQA with
    # True/False. An answer counts when every word in it is a label: a model that has lost the
    # habit of stopping still answers "True True" in the target's format, while "True story"
    # (or an answer that merely contains a label) is not the target's format.
    if not responses:
        return 0.0
    wanted = {label.strip() for label in labels}
    return sum(bool(r.split()) and all(w in wanted for w in r.split()) for r in responses) / len(responses)
