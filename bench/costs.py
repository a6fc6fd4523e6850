"""Start-up and no-op costs of the CLI, and the share of a finished run's stage time spent evaluating."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.stats import summary

ROOT = Path(__file__).resolve().parents[1]


def _timed(args: list[str]) -> tuple[float, str]:
    """Wall seconds of `python -m pipeline ARGS` run from the repo root, and its combined output."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"pipeline {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return seconds, done.stdout + done.stderr


def _shown(path: Path) -> str:
    """A path as the page shows it: relative to the repository root where it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def tiny_overrides(recipe: str = "recipes/promot.yaml") -> list[str]:
    """tests/test_end_to_end.py's tiny overrides for `recipe`: one seed, 4 evaluation rows, 64 target rows, and 4
    steps of batch 8 for every stage with `steps`. The stages are read from the recipe file itself, so a recipe
    renamed or moved to another file cannot leave a stale override behind (`pipeline run` exits 2 on one)."""
    import yaml

    recipes = yaml.safe_load((ROOT / recipe).read_text())["recipes"]
    trained = [
        f"recipes.{name}.{i}" for name, stages in recipes.items() for i, stage in enumerate(stages) if "steps" in stage
    ]
    return [
        "seeds=[0]",
        "evaluation.limit=4",
        "target.train_rows=64",
        "target.test_rows=4",
        *[f"{key}.steps=4" for key in trained],
        *[f"{key}.batch_size=8" for key in trained],
    ]


def tiny_run(run_dir: Path, recipe: str = "recipes/promot.yaml") -> list[str]:
    """Make a tiny finished run of `recipe` (tiny_overrides) on the embedded base and return its run arguments."""
    from embedded.model import ensure_base_model

    args = ["run", recipe, "--run-dir", str(run_dir)]
    for item in [f"model.path={ensure_base_model()}", *tiny_overrides(recipe)]:
        args += ["--set", item]
    _timed(args)
    return args


def startup(repetitions: int = 3, log=print, tiny_dir: Path | None = None) -> dict:
    """`pipeline --help`, `pipeline validate recipes/promot.yaml`, and a rerun where every stage is skipped: of
    runs/promot when it is finished, else (or when `tiny_dir` is given: the quick mode) of a tiny run made here."""
    run_dir = ROOT / "runs" / "promot"
    if tiny_dir is not None:
        rerun, source = tiny_run(tiny_dir), f"{_shown(tiny_dir)} (tiny run made by the benchmark)"
    elif (run_dir / "manifest.json").exists():
        rerun, source = ["run", "recipes/promot.yaml", "--run-dir", "runs/promot"], "runs/promot (existing, full size)"
    else:
        rerun, source = tiny_run(ROOT / "runs" / "bench-tiny"), "runs/bench-tiny (tiny run made by the benchmark)"
    commands = {"help": ["--help"], "validate": ["validate", "recipes/promot.yaml"], "rerun_all_skipped": rerun}
    results = {}
    for name, args in commands.items():
        times = []
        for _ in range(repetitions):
            seconds, output = _timed(args)
            times.append(seconds)
            if name == "rerun_all_skipped":
                lines = output.splitlines()
                skips = sum(" skip " in line or " reuse " in line for line in lines)
                ran = [line for line in lines if "orchestrator: run " in line]
                if ran or not skips:
                    raise RuntimeError(f"rerun was not a no-op ({skips} skip lines, ran: {ran[:3]})")
            log(f"  {name:18s} {seconds:.2f} s")
        results[name] = {"seconds": summary(times, 2), "command": "pipeline " + " ".join(args)}
    results["rerun_all_skipped"].update(run=source, skip_lines=skips)
    return results


def eval_share(runs: dict | None = None) -> dict:
    """Evaluate-stage seconds / all stage seconds, from runs/promot and runs/dmt manifests (or the run folders
    given, by name), reused stages excluded."""
    results = {}
    for name, folder in (runs or {name: ROOT / "runs" / name for name in ("promot", "dmt")}).items():
        path = Path(folder) / "manifest.json"
        if not path.exists():
            continue
        stages = json.loads(path.read_text())["stages"].values()
        timed = [s for s in stages if s.get("status") == "done" and "seconds" in s]
        total = sum(s["seconds"] for s in timed)
        evaluate = sum(s["seconds"] for s in timed if s.get("kind") == "evaluate")
        results[name] = {
            "run": _shown(path),
            "evaluate_s": round(evaluate, 2),
            "all_stages_s": round(total, 2),
            "share": round(evaluate / total, 4) if total else None,
            "stages_timed": len(timed),
            "stages_reused": sum(s.get("status") == "reused" for s in stages),
        }
    return results
