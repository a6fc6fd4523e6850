"""`--set KEY=VALUE`: the one parser of command-line overrides, for `pipeline run/validate/retrain` (a recipe
field, pipeline/recipe/config.py) and `pipeline gate` (a gate threshold, pipeline/retraining/gate.py)."""

from __future__ import annotations

from typing import Callable


def parse_set(
    item: str, builder, label: Callable[[str], str] = str, claim: Callable[[str, str], bool] | None = None
) -> tuple[str, object] | None:
    """(key, value parsed as YAML) of one `--set key=value`; None after recording the problem in `builder` (its
    path written by `label`), or when `claim(key, raw value)` took the item whole (a sweep, `--set sft.lr=1,2`)."""
    import yaml

    key, sep, raw_value = item.partition("=")
    if not sep or not key:
        builder.error(label(item), None, "expected key=value")
        return None
    try:
        if claim is not None and claim(key, raw_value):
            return None
        return key, yaml.safe_load(raw_value)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        builder.error(label(key), None, f"value {raw_value!r} is not valid YAML ({problem})")
        return None
