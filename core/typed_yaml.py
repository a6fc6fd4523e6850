"""Load YAML into typed dataclasses, collecting every problem as one line naming field, file and line.

After PEFT's configs: typed dataclasses with `metadata={"help": ...}`, str Enums for fixed choices, and
`__post_init__` refusing a bad combination by naming the field. Unlike lm-evaluation-harness's task loading, a
file that does not parse is never skipped: every problem is reported.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import re
import types
import typing
from fractions import Fraction
from pathlib import Path

import yaml

from core.errors import UserError


def parse_fraction(value) -> Fraction:
    """Read 1/256, '1/256', 0.25 or 1 as an exact fraction in (0, 1]; ValueError otherwise."""
    try:
        fraction = Fraction(str(value).strip()).limit_denominator(1 << 20)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"expected a fraction like 1/256 or 0.25, got {value!r}") from None
    if not 0 < fraction <= 1:
        raise ValueError(f"must be in (0, 1], got {value}")
    return fraction


class ConfigError(UserError):
    """One or more user errors in a recipe; str() is one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class LineDict(dict):
    """A dict that remembers the YAML line of each key, so errors can point at it."""

    lines: dict


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings are LineDicts."""


class DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping names the same key twice: YAML would keep the last one silently."""

    def __init__(self, key, first_line: int, mark):
        super().__init__(
            None,
            None,
            f"duplicate key {shown(key)} (first on line {first_line}); YAML would keep only the last one: remove one",
            mark,
        )


def _construct_mapping(loader, node, deep=False):
    _refuse_duplicate_keys(loader, node)
    mapping = LineDict(loader.construct_mapping(node, deep=deep))
    mapping.lines = {loader.construct_object(k): k.start_mark.line + 1 for k, _ in node.value}
    return mapping


def _refuse_duplicate_keys(loader, node) -> None:
    """A key written twice in one mapping is an error; keys merged in with `<<: *anchor` may be overridden."""
    seen: dict = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            raise DuplicateKey(key, seen[key], key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1


def _construct_int(loader, node):
    try:
        return yaml.SafeLoader.construct_yaml_int(loader, node)
    except ValueError:  # Python refuses to read integers of more than 4300 digits
        raise yaml.constructor.ConstructorError(
            None, None, f"a number of {len(node.value)} digits is too long", node.start_mark
        ) from None


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def load_yaml(path: Path):
    """Parse a YAML file whose top level is a mapping into LineDicts; any problem is a one-line ConfigError.

    A file that cannot be read, is not UTF-8, is not valid YAML, names a key twice in one mapping, or holds
    a list or a scalar instead of a mapping is refused, naming the file (and line).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a YAML file"]) from None
    except UnicodeDecodeError as err:
        raise ConfigError([f"{path}: not UTF-8 text ({err.reason} at byte {err.start})"]) from None
    except OSError as err:  # permission denied, a device that cannot be read, ...
        raise ConfigError([f"{path}: cannot read ({err.strerror or type(err).__name__})"]) from None
    try:
        data = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        if isinstance(err, DuplicateKey):
            raise ConfigError([f"{where}: {err.problem}"]) from None
        raise ConfigError([f"{where}: invalid YAML ({getattr(err, 'problem', None) or err})"]) from None
    if data is None:
        return LineDict()
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a YAML mapping of settings (key: value lines), got {_yaml_kind(data)}"])
    return data


def _yaml_kind(value) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    return f"{type(value).__name__} {shown(value)}"


MAX_ECHO = 80  # characters of a user's value repeated in a message


def shown(value) -> str:
    """repr(value) for a message, cut to about MAX_ECHO characters with its length: a 10 MB value is no 10 MB line."""
    text = repr(value)
    if len(text) <= MAX_ECHO:
        return text
    if isinstance(value, str):
        return f"{value[: MAX_ECHO - 10]!r}... ({len(value)} characters)"
    return f"{text[: MAX_ECHO - 10]}... ({len(text)} characters)"


# A quoted value in a message (a repr: after a space or bracket, not an apostrophe inside a word), long enough to cut.
_LONG_QUOTED = re.compile(
    r"(?<![\w'\"])('(?:[^'\\\n]|\\.){%d,}'|\"(?:[^\"\\\n]|\\.){%d,}\")(?!\w)" % (MAX_ECHO, MAX_ECHO)
)
MAX_LINE = 1000


def cut_echoes(line: str) -> str:
    """A message line with every long quoted value cut (see `shown`), and the line itself at MAX_LINE characters."""
    line = _LONG_QUOTED.sub(
        lambda m: f"{m.group(1)[: MAX_ECHO - 10]}{m.group(1)[0]}... ({len(m.group(1)) - 2} characters)", line
    )
    return line if len(line) <= MAX_LINE else f"{line[: MAX_LINE - 60]}... ({len(line)} characters)"


MAX_YAML_VALUES = 100_000  # after aliases are expanded; an "alias bomb" grows past it at once


def unaliased(data, budget: list[int] | None = None):
    """A copy in which every YAML alias is a value of its own, so a --set on one path changes that path only.

    The loader hands every `*alias` the very object of its `&anchor`: an override through one recipe would
    change every recipe that shares the anchor. Line numbers are kept; more than MAX_YAML_VALUES values
    after expansion is a ConfigError (anchors nested in anchors grow exponentially).
    """
    budget = [MAX_YAML_VALUES] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise ConfigError([f"YAML aliases expand to more than {MAX_YAML_VALUES} values; write the values out"])
    if isinstance(data, dict):
        copy = LineDict({key: unaliased(value, budget) for key, value in data.items()})
        copy.lines = dict(getattr(data, "lines", {}))
        return copy
    if isinstance(data, list):
        return [unaliased(value, budget) for value in data]
    return data


class Builder:
    """Builds typed dataclasses from plain data and collects problems instead of stopping at the first."""

    def __init__(self, source: str):
        self.source = source
        self.problems: list[str] = []
        self._seen: set = set()

    def error(self, field: str, line: int | None, message: str) -> None:
        """Record one problem, located as `file:line: field: message`.

        A problem at the same line with the same message for another recipe's stage is the same mistake seen
        through a shared YAML anchor (`- *prompt` in two recipes) or a sweep's copies: it is recorded once,
        under the first recipe that uses it.
        """
        shared = (line, _RECIPE_STAGE.sub("recipes.*", field) if line else field, message)
        if shared in self._seen:
            return
        self._seen.add(shared)
        where = f"{self.source}:{line}" if line else self.source
        self.problems.append(cut_echoes(f"{where}: {field}: {message}" if field else f"{where}: {message}"))

    def build(self, cls, data, field: str = "", line: int | None = None):
        """Return an instance of `cls` from `data`, or None after recording problems."""
        if not isinstance(data, dict):
            self.error(field or "<root>", line, f"expected a mapping, got {type(data).__name__}")
            return None
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        lines = getattr(data, "lines", {})
        kwargs, ok = {}, True
        for key, value in data.items():
            path = f"{field}.{key}" if field else str(key)
            if key not in fields:
                hint = difflib.get_close_matches(str(key), fields, n=1)
                suggestion = f"; did you mean '{hint[0]}'?" if hint else f"; valid keys: {', '.join(fields)}"
                self.error(path, lines.get(key, line), f"unknown key{suggestion}")
                ok = False
                continue
            hints = typing.get_type_hints(cls)
            converted = self.convert(hints[key], value, path, lines.get(key, line))
            if converted is _INVALID:
                ok = False
            else:
                kwargs[key] = converted
        for name, f in fields.items():
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and name not in data:
                self.error(f"{field}.{name}" if field else name, line, "missing required field")
                ok = False
        if not ok:
            return None
        try:
            return cls(**kwargs)
        except ValueError as err:  # __post_init__ names the field in its message: point at its line
            named = str(err).split(":", 1)[0].split(".")[-1].split("/")[0]
            self.error("", lines.get(named, line), str(err))
            return None

    def convert(self, hint, value, path: str, line: int | None):
        """Check and convert one value against a type hint; returns _INVALID after recording a problem."""
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            inner = [a for a in args if a is not type(None)]
            for plain in inner:  # `bool | str`: a value already of one of the plain types is taken as it is
                if plain in (bool, str) and isinstance(value, plain):
                    return value
            for listed in inner:  # `str | list[str]`: a list is read as the list type
                if isinstance(value, list) and typing.get_origin(listed) is list:
                    return self.convert(listed, value, path, line)
            return self.convert(inner[0], value, path, line)
        from_yaml = getattr(hint, "from_yaml", None)
        if callable(from_yaml):  # a type that reads itself from a list or mapping (a stage's data mix)
            try:
                return from_yaml(value)
            except ValueError as err:
                self.error(path, line, str(err))
                return _INVALID
        if dataclasses.is_dataclass(hint):
            built = self.build(hint, value, path, line)
            return _INVALID if built is None else built
        if origin is list:
            if not isinstance(value, list):
                return self._wrong(path, line, "a list", value)
            items = [self.convert(args[0], v, f"{path}[{i}]", line) for i, v in enumerate(value)]
            return _INVALID if any(i is _INVALID for i in items) else items
        if origin is dict:
            if not isinstance(value, dict):
                return self._wrong(path, line, "a mapping", value)
            lines = getattr(value, "lines", {})
            out = {k: self.convert(args[1], v, f"{path}.{k}", lines.get(k, line)) for k, v in value.items()}
            return _INVALID if any(v is _INVALID for v in out.values()) else out
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            choices = [m.value for m in hint]
            if value not in choices:
                hint_ = difflib.get_close_matches(str(value), choices, n=1)
                extra = f"; did you mean '{hint_[0]}'?" if hint_ else ""
                self.error(path, line, f"must be one of {choices}, got {shown(value)}{extra}")
                return _INVALID
            return hint(value)
        if hint is Fraction:
            try:
                return parse_fraction(value)
            except ValueError as err:
                self.error(path, line, str(err))
                return _INVALID
        if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return self._finite(value, path, line)
        if hint is float and isinstance(value, str):
            try:  # YAML reads 1e-3 as a string; accept it as the number it plainly is
                float(value)
            except ValueError:
                pass
            else:
                return self._finite(value, path, line)
        if hint is typing.Any or (
            isinstance(hint, type) and isinstance(value, hint) and not _bool_as_number(hint, value)
        ):
            return value
        return self._wrong(path, line, _type_name(hint), value)

    def _finite(self, value, path, line):
        """A float field's value as a float: .inf, .nan and numbers too large for a float are refused."""
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            number = math.inf
        if not math.isfinite(number):
            self.error(path, line, f"expected a finite number, got {shown(value)}")
            return _INVALID
        return number

    def _wrong(self, path, line, expected, value):
        self.error(path, line, f"expected {expected}, got {type(value).__name__} {shown(value)}")
        return _INVALID


_INVALID = object()
_RECIPE_STAGE = re.compile(
    r"^recipes\.(.+?)\[\d+\](?=\.|$)"
)  # recipes.<name>[<i>], the part an anchor's users differ in


def _bool_as_number(hint, value) -> bool:
    return hint in (int, float) and isinstance(value, bool)


def _type_name(hint) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))
