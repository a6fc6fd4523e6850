"""Build the embedded default base again and compare it with the shipped one (embedded/shipped.py says why).

    python -m embedded.rebuild [--replace]      (make base-rebuild)

Apart from embedded/shipped.py, which the model loader imports: building needs embedded/model.py, which imports it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from embedded.shipped import SAME_BASE, SHIPPED_DIR, SUMS, UNREPEATABLE, recorded, sha256, write_sums


def rebuild(replace: bool = False) -> int:
    """Build DEFAULT_SPEC again as a fresh cache would, compare it with the shipped files, and say so."""
    from embedded.model import DEFAULT_SPEC, _build

    shipped, target = recorded(), SHIPPED_DIR
    with tempfile.TemporaryDirectory(prefix="embedded-base-rebuild-") as tmp:
        built = Path(tmp) / "base"
        built.mkdir()
        _build(DEFAULT_SPEC, built)
        names = sorted({p.name for p in built.iterdir() if p.is_file()} | set(shipped))
        same = True
        for name in names:
            got = sha256(built / name) if (built / name).is_file() else "(not built)"
            want = shipped.get(name, "(not shipped)")
            verdict = "skipped (build time, CPU)" if name in UNREPEATABLE else ("same" if got == want else "DIFFERS")
            print(f"{name:24} built {got}  shipped {want}  {verdict}")
            same &= name not in SAME_BASE or got == want
        print("the same base as the shipped one" if same else "NOT the shipped base: its weights or tokenizer differ")
        if replace:
            for path in built.iterdir():
                shutil.copyfile(path, target / path.name)
            write_sums(target)
            print(f"replaced the shipped base in {target}; commit it with its {SUMS}")
            return 0
    return 0 if same else 1


def main(argv: list[str]) -> int:
    if argv in ([], ["--replace"]):
        return rebuild(replace=argv == ["--replace"])
    print("usage: python -m embedded.rebuild [--replace]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
