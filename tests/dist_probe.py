"""Launched instead of `-m pipeline` by tests/test_distributed.py: the same CLI, logging which rank writes which file.

Every file the pipeline writes goes through core.atomic.write_bytes or safetensors' save_file (models,
adapters); both are wrapped before anything imports them by name.
"""

import json
import os
import sys
from pathlib import Path

LOG = Path(os.environ["FORGETLESS_WRITE_LOG"])


def record(path) -> None:
    """Append one line: which rank wrote `path` (O_APPEND lines from two processes do not interleave)."""
    with open(LOG, "a") as handle:
        handle.write(json.dumps({"rank": int(os.environ.get("RANK", "0")), "path": str(path)}) + "\n")


def wrap(module, name: str) -> None:
    """Replace module.name with a version that records its first argument (the path)."""
    original = getattr(module, name)

    def recorded(*args, **kwargs):
        position, keyword = (1, "filename") if name == "save_file" else (0, "path")
        record(args[position] if len(args) > position else kwargs[keyword])
        return original(*args, **kwargs)

    setattr(module, name, recorded)


if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # not tests/: tests/pipeline would shadow pipeline
    import safetensors.torch

    from core import atomic

    wrap(safetensors.torch, "save_file")
    wrap(atomic, "write_bytes")  # write_text / write_json call it through the module
    from pipeline.cli import main

    sys.exit(main())
