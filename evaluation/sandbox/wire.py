"""Values that cross between the judge and the program under test: exact built-in types, as tagged JSON.

Only None, bool, int, float, str and the built-in containers of them cross, each rebuilt from scratch on
the other side. An object of any other type (a subclass of int, a class with its own `__eq__`, a
generator) cannot cross, so the judge only ever compares values it built itself. Standard library only:
this module runs inside the sandbox too.
"""

from __future__ import annotations

import json

MAX_MESSAGE_BYTES = 16 << 20  # one message, either way; a longer reply is the program's failure
MAX_DEPTH = 100
# Imported once by the zygote and the judge server, before any fork: most programs and tests import some of
# these, and in each fresh child that would cost up to 10 ms (typing alone 5 ms).
WARM_MODULES = (
    "bisect",
    "collections",
    "copy",
    "datetime",
    "decimal",
    "fractions",
    "functools",
    "hashlib",
    "heapq",
    "itertools",
    "math",
    "random",
    "re",
    "statistics",
    "string",
    "typing",
)
_SCALARS = (type(None), bool, int, float, str)
_SEQUENCES = {list: "list", tuple: "tuple", set: "set", frozenset: "frozenset"}
_BUILD = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


class WireError(ValueError):
    """A value that cannot cross, or a message that is not one."""


def encode(value, depth: int = 0):
    """A JSON-ready form of `value`: scalars as they are, everything else as a one-key tagged object."""
    if depth > MAX_DEPTH:
        raise WireError(f"a value nested more than {MAX_DEPTH} deep")
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind in _SEQUENCES:
        return {_SEQUENCES[kind]: [encode(item, depth + 1) for item in value]}
    if kind is dict:
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if kind is bytes:
        return {"bytes": value.hex()}
    if kind is complex:
        return {"complex": [value.real, value.imag]}
    raise WireError(f"a value of type {kind.__name__} cannot be checked (only built-in data types cross)")


def decode(data, depth: int = 0):
    """Rebuild a value from `encode`'s form; anything else is a WireError."""
    if depth > MAX_DEPTH:
        raise WireError(f"a value nested more than {MAX_DEPTH} deep")
    if type(data) in _SCALARS:
        return data
    if type(data) is not dict or len(data) != 1:
        raise WireError("not a tagged value")
    ((tag, body),) = data.items()
    try:
        if tag in _BUILD and type(body) is list:
            return _BUILD[tag](decode(item, depth + 1) for item in body)
        if tag == "dict" and type(body) is list:
            return {decode(k, depth + 1): decode(v, depth + 1) for k, v in (_pair(p) for p in body)}
        if tag == "bytes" and type(body) is str:
            return bytes.fromhex(body)
        if tag == "complex" and type(body) is list and len(body) == 2 and all(type(x) is float for x in body):
            return complex(*body)
    except TypeError as error:  # an unhashable set member or dict key
        raise WireError(str(error)) from None
    raise WireError(f"not a tagged value: {tag!r}")


def _pair(item):
    if type(item) is not list or len(item) != 2:
        raise WireError("a dict entry is not a pair")
    return item


def warm_up() -> None:
    """Import WARM_MODULES; one missing from a trimmed Python is skipped."""
    import importlib

    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def dumps(message: dict) -> bytes:
    """One message as one line."""
    line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
    if len(line) > MAX_MESSAGE_BYTES:
        raise WireError(f"a message of {len(line)} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
    return line


def read_message(stream) -> dict | None:
    """The next message from a binary stream; None at end of input. A line past the limit is a WireError."""
    line = stream.readline(MAX_MESSAGE_BYTES + 1)
    if not line:
        return None
    if len(line) > MAX_MESSAGE_BYTES or not line.endswith(b"\n"):
        raise WireError("a message over the size limit, or cut off")
    return parse_message(line)


def parse_message(line: bytes) -> dict:
    """One message from its line; anything but a JSON object is a WireError."""
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        raise WireError("a message that is not JSON") from None
    if type(message) is not dict:
        raise WireError("a message that is not an object")
    return message
