"""The embedded default base, shipped: its weights, tokenizer and config in embedded/base/, each file's sha256 in
embedded/base/SHA256SUMS (`sha256sum -c` reads it too).

Built once by a maintainer with the portable build (embedded/portable.py): built again, it comes out the same only
where MKL's reproducible mode holds, which Intel promises for Intel CPUs alone (an AMD EPYC built general 0.990
where an Intel Xeon built 0.971). Shipped, it is the same bytes on every machine, and loading checks them.

    python -m embedded.shipped check             every file against SHA256SUMS; exit 1 naming the first bad one
    python -m embedded.rebuild [--replace]      (embedded/rebuild.py)
        build DEFAULT_SPEC again (portable kernels, ~3 min) into a temporary folder and print each file's sha256
        beside the shipped one; exit 0 when the weights and the tokenizer are identical. --replace ships the new
        build instead (after a change to DEFAULT_SPEC, the tasks or the tokenizer) and rewrites SHA256SUMS.
"""

from __future__ import annotations

import sys
from pathlib import Path

from core.errors import UserError
from core.hashing import file_sha256

SHIPPED_DIR = Path(__file__).resolve().parent / "base"
SUMS = "SHA256SUMS"
SAME_BASE = ("model.safetensors", "tokenizer.json")  # what a rebuild must repeat byte for byte to be the same base
UNREPEATABLE = ("build.json",)  # build time and CPU: differs on every build, so not compared


def sha256(path: Path) -> str:
    return file_sha256(path)


def recorded(folder: Path | None = None) -> dict[str, str]:
    """File name -> sha256, as SHA256SUMS lists them."""
    sums = (folder or SHIPPED_DIR) / SUMS
    if not sums.is_file():
        raise UserError(f"{sums}: missing; the shipped embedded base cannot be checked (restore embedded/base/)")
    pairs = [line.split(None, 1) for line in sums.read_text().splitlines() if line.strip()]
    return {name.strip().lstrip("*"): digest for digest, name in pairs}


def verified(folder: Path | None = None) -> Path:
    """`folder` once every file SHA256SUMS lists has its sha256; else one line naming the first file that does not."""
    folder = folder or SHIPPED_DIR
    for name, want in recorded(folder).items():
        path = folder / name
        if not path.is_file():
            raise UserError(f"{path}: missing from the shipped embedded base (restore it: git checkout -- {path})")
        got = sha256(path)
        if got != want:
            raise UserError(
                f"{path}: sha256 {got} is not the {want} that {folder / SUMS} records: the shipped "
                f"embedded base is damaged or changed (restore it: git checkout -- {path})"
            )
    return folder


def problem() -> str | None:
    """Why the shipped base cannot be used (a missing or damaged file, in one line), or None."""
    try:
        verified()
    except UserError as err:
        return str(err)
    return None


def write_sums(folder: Path) -> None:
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != SUMS)
    (folder / SUMS).write_text("".join(f"{sha256(folder / name)}  {name}\n" for name in names))


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"] and len(argv) == 1:
        try:
            verified()
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"embedded base: every file matches {SHIPPED_DIR / SUMS}")
        return 0
    print(
        "usage: python -m embedded.shipped check   (to build it again: python -m embedded.rebuild [--replace])",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
