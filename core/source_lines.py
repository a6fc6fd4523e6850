"""Where in a recipe file a field was written: dotted field paths mapped to YAML lines, and problems located by them.

A problem is a line `field.path: message`; `locate` prefixes it with `file:line:` so the user's editor can jump
to the field, as a compiler's error does.
"""

from __future__ import annotations


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


def locate(problems: list[str], recipe) -> list[str]:
    """Prefix each `field: message` with `file:line:` using the recipe's remembered YAML lines."""
    lines = getattr(recipe, "source_lines", {}) or {}
    source = getattr(recipe, "source_path", None)
    located = []
    for problem in problems:
        field = problem.split(":", 1)[0]
        parts = field.split(".")
        line = next(
            (lines[".".join(parts[:i])] for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in lines), None
        )
        where = f"{source}:{line}: " if source and line else (f"{source}: " if source else "")
        located.append(where + problem)
    return located
