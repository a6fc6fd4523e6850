"""Checks that open the model's config and tokenizer and read the data; still nothing is trained.

Each check returns one line per problem; warnings (pad token, train/test overlap) go to the log.
"""

from __future__ import annotations

import logging

from pipeline.config import EMBEDDED, RecipeFile
from pipeline.errors import UserError

log = logging.getLogger("pipeline.validate")


def load_tokenizer_for_checks(recipe: RecipeFile, problems: list[str]):
    """The tokenizer the run will use, without building the embedded base model."""
    if recipe.model.path == EMBEDDED:
        from embedded.tokenizer import build_tokenizer

        return build_tokenizer()
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path, remote = recipe.model.path, recipe.model.trust_remote_code
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=remote)
    except (OSError, ValueError) as err:
        problems.append(f"model.path: {path}: cannot read a model config ({_first_line(err)})")
        return None
    if type(config) not in AutoModelForCausalLM._model_mapping:
        problems.append(f"model.path: {path}: model type {config.model_type!r} is not a causal LM")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=remote)
    except (OSError, ValueError, TypeError) as err:
        problems.append(f"model.path: {path}: no usable tokenizer ({_first_line(err)})")
        return None
    if tokenizer.pad_token is None:
        log.warning("model.path: %s: tokenizer has no pad token; eos (%r) will be used", path, tokenizer.eos_token)
    return tokenizer


def check_content(recipe: RecipeFile) -> list[str]:
    """Load every data source once and check what would hurt training: emptiness, truncation, overlap."""
    problems: list[str] = []
    tokenizer = load_tokenizer_for_checks(recipe, problems)
    if tokenizer is None:
        return problems
    import datasets

    from data_recipes.catalog import load_source

    datasets.disable_progress_bars()  # a check prints its findings, not progress bars
    sources = {name: (f"data.{name}", config) for name, config in recipe.data.items()}
    if recipe.target is not None:
        t = recipe.target
        sources["target"] = ("target.train", t.source("train"))
    loaded = {}
    for name, (field, config) in sources.items():
        try:
            loaded[name] = load_source(config, tokenizer).data
        except UserError as err:
            problems.append(f"{field}: {err}")
            continue
        except (OSError, ValueError, KeyError) as err:
            problems.append(f"{field}: {config.source}: cannot load ({_first_line(err)})")
            continue
        if len(loaded[name]) == 0:
            problems.append(f"{field}: {config.source}: no rows left after filtering")
            continue
        problems += check_truncation(field, config.source, loaded[name], tokenizer, recipe.max_length)
    if recipe.target is not None and "target" in loaded:
        problems += check_labels(recipe.target.labels, loaded["target"], tokenizer)
        if recipe.target.test:
            warn_overlap(recipe, loaded["target"], tokenizer)
    return problems


def check_labels(labels: list[str], train, tokenizer) -> list[str]:
    """Each label is something the model can write, and an answer the target's data actually gives."""
    problems = []
    unknown = tokenizer.unk_token_id
    words = {word for completion in train["completion"] for word in completion.split()}
    for label in labels:
        # As trained: after the prompt, with the leading space the converters give an answer.
        ids = tokenizer(" " + label, add_special_tokens=False)["input_ids"]
        if unknown is not None and unknown in ids:
            problems.append(f"target.labels: {label!r} encodes to the tokenizer's unknown token "
                            f"{tokenizer.unk_token!r}: the model cannot write it")
        elif label not in words:
            problems.append(f"target.labels: {label!r} never occurs in the target's answers (target.train)")
    return problems


def check_truncation(field: str, source: str, data, tokenizer, max_length: int) -> list[str]:
    """Examples whose prompt alone fills max_length would train on nothing: an error if all, a warning if some."""
    from stages.sft_data import count_fully_truncated

    cut = count_fully_truncated(data, tokenizer, max_length)
    if cut == len(data):
        return [f"{field}: {source}: all {cut} examples would be truncated away by max_length={max_length} "
                f"(prompts are at least that long); raise max_length"]
    if cut:
        log.warning("%s: %s: %d of %d examples (%.1f%%) lose their whole answer to max_length=%d",
                    field, source, cut, len(data), 100 * cut / len(data), max_length)
    return []


def warn_overlap(recipe: RecipeFile, train, tokenizer) -> None:
    """Warn when held-out test prompts also appear in the training data."""
    from data_recipes.catalog import load_source

    t = recipe.target
    try:
        test = load_source(t.source("test"), tokenizer).data
    except UserError as err:
        log.warning("target.test: %s", err)
        return
    overlap = len(set(test["prompt"]) & set(train["prompt"]))
    if overlap:
        log.warning("target.test: %d of %d test prompts also appear in target.train; scores will be optimistic",
                    overlap, len(test))


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def locate(problems: list[str], recipe: RecipeFile) -> list[str]:
    """Prefix each `field: message` with `file:line:` using the recipe's remembered YAML lines."""
    lines = getattr(recipe, "source_lines", {}) or {}
    source = getattr(recipe, "source_path", None)
    located = []
    for problem in problems:
        field = problem.split(":", 1)[0]
        parts = field.split(".")
        line = next((lines[".".join(parts[:i])] for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in lines), None)
        where = f"{source}:{line}: " if source and line else (f"{source}: " if source else "")
        located.append(where + problem)
    return located


def yaml_lines(data, prefix: str = "") -> dict[str, int]:
    """Map dotted field paths of a LineDict tree to their YAML line numbers."""
    out = {}
    for key, line in getattr(data, "lines", {}).items():
        path = f"{prefix}{key}"
        out[path] = line
        value = data.get(key)
        if isinstance(value, dict):
            out.update(yaml_lines(value, path + "."))
    return out
