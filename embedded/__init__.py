"""The embedded default: a tiny model, tokenizer and synthetic tasks, all built offline.

- `embedded.tasks`: the task generators and `make_examples(task, split, n)` (pure Python, cheap).
- `embedded.tokenizer`: `build_tokenizer()`, a word-level tokenizer over the tasks' vocabulary.
- `embedded.model`: `ensure_base_model()`, the base pretrained on the general tasks (the default ships in `base/`).
- `embedded.shipped`: the shipped base's sha256 check and its rebuild.

Names from the model and tokenizer modules load lazily, so `import embedded.tasks` stays free of
torch and transformers.
"""

from embedded.tasks import ALL_TASKS, DOMAIN_TASKS, GENERAL_TASKS, TARGET_LABELS, TARGET_TASKS, make_examples, task_kind

_LAZY = {
    "build_tokenizer": "embedded.tokenizer",
    "BaseModelSpec": "embedded.model",
    "DEFAULT_SPEC": "embedded.model",
    "TEST_SPEC": "embedded.model",
    "ensure_base_model": "embedded.model",
    "greedy_exact_match": "embedded.model",
}

__all__ = [
    "ALL_TASKS",
    "DOMAIN_TASKS",
    "GENERAL_TASKS",
    "TARGET_LABELS",
    "TARGET_TASKS",
    "make_examples",
    "task_kind",
    *_LAZY,
]


def __getattr__(name: str):
    """Import model/tokenizer names on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'embedded' has no attribute {name!r}")
