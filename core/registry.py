"""Named registries: one per kind of thing (stage kinds, suites, data formats), each filled in its own package.

After lm-evaluation-harness's `api/registry.py`: an entry is the object itself, or a lazy "module" /
"module:object" string imported on first lookup, so listing names never imports heavy code and start-up stays
fast. Dispatch goes by the registry, never by `if kind == ...`. An unknown name is a ValueError that names the
close matches, the same line wherever the name was written.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator, Mapping


class Registry(Mapping):
    """Name -> object, with lazy "module[:object]" entries resolved (once) on lookup."""

    def __init__(self, what: str, entries: dict | None = None):
        self.what = what  # e.g. "stage kind": used in error messages
        self._entries: dict[str, object] = {}
        self._loaded: dict[str, object] = {}
        for name, entry in (entries or {}).items():
            self.register(name, entry)

    def register(self, name: str, entry) -> None:
        """Add one entry: an object, or a "module" / "module:object" string imported when first looked up."""
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = entry

    def __getitem__(self, name: str):
        if name not in self._entries:
            raise KeyError(name)
        if name not in self._loaded:
            entry = self._entries[name]
            self._loaded[name] = _imported(entry) if isinstance(entry, str) else entry
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def unknown(self, name) -> str:
        """The one-line message for a name that is not registered: the close matches, else every name."""
        close = difflib.get_close_matches(str(name), list(self._entries), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"one of {', '.join(self._entries)}"
        return f"unknown {self.what} {name!r}; {hint}"

    def get_or_raise(self, name: str):
        """The entry, or ValueError(self.unknown(name))."""
        if name not in self._entries:
            raise ValueError(self.unknown(name))
        return self[name]


def _imported(entry: str):
    module_name, _, attribute = entry.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module
