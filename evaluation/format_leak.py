"""Format leak: how often a model answers an unrelated task with the target task's labels."""

from __future__ import annotations


def format_leak_share(responses: list[str], labels: list[str]) -> float:
    """Share of responses whose stripped text is exactly one of the target labels (0.0 if none)."""
    # ProMoT's "format specialization": after tuning on RTE, mT5 answered 90% of TriviaQA with
    # True/False. Exact match on the whole stripped answer counts the format, not a word inside it.
    if not responses:
        return 0.0
    wanted = {label.strip() for label in labels}
    return sum(r.strip() in wanted for r in responses) / len(responses)
