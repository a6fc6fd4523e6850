"""Kill a command at one write point, rerun it, and list what is wrong with the folder it leaves.

Every run is a fork of one warm process (tests/faults/zygote.py), killed at its point by SIGKILL. What
"right" means is a run that was never killed: the same results.csv byte for byte, the manifest's stages
with the same status, key and outputs, and for `pipeline retrain` one accepted run whose model and soft
prompt load. Whatever the point, no file is cut short, no temp file is left, every file follows the umask
(022 here) and no finished stage keeps its resume checkpoints.
"""

from __future__ import annotations

import json
import os
import re
import select
import stat
import subprocess
import sys
from pathlib import Path

from stages.saved_files import file_problem

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 300
# Temp files of a killed writer: core.atomic's (mkstemp) and safetensors' (Rust), named here, not imported
TEMP_FILES = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$|^\.tmp[A-Za-z0-9]{6}$")

RECIPE = """\
name: faults
seeds: [0]
model: {{path: {base}}}
target: {{name: letter_rule, train: embedded:letter_rule, train_rows: 16, test_rows: 2}}
evaluation: {{limit: 2, batch_size: 8}}
max_length: 32
# steps 2, a checkpoint every step: each training stage writes checkpoint-1 (the last step saves none)
x-prompt: &prompt {{kind: prompt_tune, steps: 2, save_steps: 1, batch_size: 4, lr: 0.3, num_virtual_tokens: 2}}
recipes:
  prompt_tuning:
    - *prompt
  promot:  # its first stage is prompt_tuning's, reused
    - *prompt
    - {{kind: finetune, steps: 2, save_steps: 1, batch_size: 4, lr: 1.0e-3, prompt_from: prompt_tune}}
gate: {{recipe: promot, min_target: 0.0, max_general_drop: 1.0, max_regression: 1.0}}
"""


class Zygote:
    """The warm process; `run` forks it for one command and returns the exit code (-9: killed at its point)."""

    def __init__(self, log: Path):
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
        }
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "faults" / "zygote.py")],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self._answer(RUN_TIMEOUT_S) == "ready", f"zygote did not start: see {log}"

    def run(self, argv: list[str], root: Path, out: Path, record: Path | None = None, kill: dict | None = None) -> int:
        """Run `pipeline <argv>` watching writes under `root`: recording the points, or killed at `kill`."""
        request = {
            "argv": argv,
            "cwd": str(ROOT),
            "out": str(out),
            "root": str(root),
            "record": str(record) if record else None,
            "kill": kill,
        }
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._answer(RUN_TIMEOUT_S))["rc"]

    def _answer(self, timeout: float) -> str:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise TimeoutError(f"no answer from the zygote in {timeout} s")
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        """Stop the warm process."""
        self.proc.stdin.close()
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def points(record: Path) -> list[dict]:
    """The points a recorded run met, in order."""
    return [json.loads(line) for line in record.read_text().splitlines()]


def unwatched(root: Path, found: list[dict]) -> list[str]:
    """Files under `root` that no point wrote, nor moved into place with their folder: writers the watch misses."""
    from tests.faults.inject import pattern

    written = {p["path"] for p in found}
    moved = tuple(p["path"] + "/" for p in found if p["kind"] == "rename")
    names = [pattern(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]
    return sorted(name for name in names if name not in written and not name.startswith(moved))


def stage_summary(run_dir: Path) -> dict:
    """What the manifest says of the run and each stage, with output paths relative to the run folder."""
    manifest = json.loads((run_dir / "manifest.json").read_text())

    def relative(path):
        return path if path is None or not Path(path).is_relative_to(run_dir) else str(Path(path).relative_to(run_dir))

    stages = {
        sid: {
            "status": e.get("status"),
            "reused_from": e.get("reused_from"),
            "key": e.get("key"),
            "output_model": relative(e.get("output_model")),
            "output_adapter": relative(e.get("output_adapter")),
        }
        for sid, e in manifest["stages"].items()
    }
    return {"status": manifest.get("status"), "stages": stages}


def folder_problems(root: Path) -> list[str]:
    """Files cut short, temp files left, modes that ignore the umask, checkpoints of finished stages."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = str(path.relative_to(root))
        if TEMP_FILES.match(path.name):
            found.append(f"{name}: temp file left")
        elif file_problem(path):
            found.append(f"{name}: corrupt ({file_problem(path)})")
        elif stat.S_IMODE(path.stat().st_mode) != 0o644:
            found.append(f"{name}: mode {oct(stat.S_IMODE(path.stat().st_mode))}, not 0o644 (umask 022)")
    for marker in root.rglob("DONE.json"):
        if (marker.parent / "trainer").exists():
            found.append(f"{marker.parent.relative_to(root)}/trainer: checkpoints of a finished stage left")
    return found


def run_problems(run_dir: Path, reference: Path) -> list[str]:
    """How a rerun's run folder differs from the reference run's (results, manifest), plus folder_problems."""
    found = []
    if (run_dir / "results.csv").read_bytes() != (reference / "results.csv").read_bytes():
        found.append("results.csv differs from the uninterrupted run's")
    summary, expected = stage_summary(run_dir), stage_summary(reference)
    if summary != expected:
        differ = [
            sid
            for sid in {**summary["stages"], **expected["stages"]}
            if summary["stages"].get(sid) != expected["stages"].get(sid)
        ]
        found.append(
            f"manifest differs: run status {summary['status']!r}; stages {differ}: "
            f"{[summary['stages'].get(s) for s in differ]}"
        )
    return found


def registry_problems(registry: Path, reference_run: Path) -> list[str]:
    """One run, one promotion, and an accepted model and prompt that load; plus run_problems for its run."""
    from pipeline.retraining.registry import ModelRegistry

    found, runs = [], sorted((registry / "runs").iterdir())
    if len(runs) != 1:
        return [f"runs/ holds {[p.name for p in runs]}, not one run"]
    try:
        reg = ModelRegistry(registry)
        reg.check()
        accepted, history = reg.accepted(), reg.history()
    except Exception as err:  # a broken registry is the finding, whatever its type
        return [f"registry: {err}"]
    if accepted is None or [e["run_id"] for e in history] != [runs[0].name] or accepted["run_id"] != runs[0].name:
        ids = [e["run_id"] for e in history]
        found.append(f"registry: accepted {accepted and accepted['run_id']!r}, history {ids}")
    else:
        found += load_problems(accepted)
    return found + run_problems(runs[0], reference_run)


def load_problems(entry: dict) -> list[str]:
    """Load the accepted model and its soft prompt as a user would."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if not entry["model"]:
        return [f"accepted model is {entry['model']!r}"]
    try:
        model = AutoModelForCausalLM.from_pretrained(entry["model"])
        if entry["adapter"]:
            PeftModel.from_pretrained(model, entry["adapter"])
    except Exception as err:  # anything that keeps it from loading
        return [f"accepted model does not load: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"]
    return []


def tail(path: Path, lines: int = 8) -> str:
    """The end of a run's output, for a failure message."""
    return "\n    ".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no output)"
