"""The GPU check (`make gpu-check`): one command for a machine with one CUDA GPU and no network.

Parts, each timed, each writing into one folder (--out, default runs/gpu-check/):
1. install: the wheels `make gpu-wheels` prepared (.gpu-wheels/) go with `pip install --no-index --no-deps --target`
   into OUT/site, put first on PYTHONPATH of every later part, over the machine's own CUDA torch; `pip check` logged.
2. environment: the versions every later part imports, and the GPU (env.json); the locked transformers, datasets,
   lm-eval, peft and accelerate must be the ones imported.
3. bench_gpu: `python -m bench.gpu` at the 0.5B size, bf16: our finetune stage padded and packed against a plain
   Trainer; tokens/s, MFU, peak GPU memory (bench_gpu.json).
4. promot: `pipeline run recipes/promot.yaml` end to end, every trained stage with bf16: true, every evaluation
   (OUT/promot/); then the report's checks, which must all pass, as they do on the CPU (checks.json).

summary.md / summary.json say what each part took and found; the exit status is 0 only when every part passed.
`--cpu-dry-run` runs the same script on a CPU at the tiny size (no install, bench.gpu --size tiny, the promot recipe
with tests' tiny overrides; the checks are read but not required to pass at 4 steps): tests/test_bench_gpu_check.py.
`--export DIR` copies the summary, the results and a tarball of the logs there (the device tool's $OUT: <= 8 files).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "gpu-check"
WHEELS = ROOT / ".gpu-wheels"
BUDGET_S = 480  # the 8 minutes on an H100
LOCKED = ("transformers", "datasets", "lm-eval", "peft", "accelerate")
BENCH = {
    "gpu": ["--size", "0.5b", "--steps", "20", "--batch", "16", "--max-length", "1024", "--repetitions", "2"],
    "dry": [
        "--size",
        "tiny",
        "--in-process",
        "--steps",
        "2",
        "--batch",
        "4",
        "--max-length",
        "64",
        "--repetitions",
        "1",
        "--modes",
        "plain,pipeline,pipeline_packed",
    ],
}
ENV_PROBE = """import json, importlib, importlib.metadata as md, sys
out = {"python": sys.version.split()[0], "executable": sys.executable, "versions": {}, "files": {}}
for name in ("torch", "transformers", "datasets", "lm-eval", "peft", "accelerate", "deepspeed", "tokenizers",
             "huggingface-hub", "safetensors", "numpy", "pandas", "pyarrow"):
    try:
        out["versions"][name] = md.version(name)
        if sys.argv[1:] != ["--import"]:  # the dry run: versions only (importing deepspeed and lm-eval takes long)
            continue
        module = importlib.import_module({"lm-eval": "lm_eval", "huggingface-hub": "huggingface_hub"}.get(name, name))
        out["files"][name] = getattr(module, "__file__", None)
    except Exception as error:
        out["versions"].setdefault(name, None)
        out["files"][name] = f"{type(error).__name__}: {error}"[:300]
import torch
out["cuda"] = torch.cuda.is_available()
out["device"] = torch.cuda.get_device_name(0) if out["cuda"] else "cpu"
out["cuda_version"] = torch.version.cuda
out["bf16"] = bool(out["cuda"] and torch.cuda.is_bf16_supported())
print(json.dumps(out))
"""


def locked_versions() -> dict:
    lines = (ROOT / "requirements.lock.txt").read_text().splitlines()
    pins = dict(line.split("==", 1) for line in lines if "==" in line and not line.startswith(("#", " ")))
    return {name: pins[name].split()[0] for name in LOCKED}


def checks_from_report(report: Path) -> list[dict]:
    """The report's checks table (| check | measured | pass |): one row per check, passed true/false."""
    rows, inside = [], False
    for line in report.read_text().splitlines():
        if line.strip() == "| check | measured | pass |":
            inside = True
            continue
        if inside and line.startswith("|---"):
            continue
        if inside and line.startswith("|"):
            name, measured, verdict = (cell.strip() for cell in line.strip().strip("|").split("|"))
            rows.append({"check": name, "measured": measured, "passed": verdict == "yes", "verdict": verdict})
        elif inside:
            break
    if not rows:
        raise RuntimeError(f"{report}: no checks table (| check | measured | pass |)")
    return rows


def promot_args(run_dir: Path, dry: bool) -> list[str]:
    """`pipeline run recipes/promot.yaml` with bf16: true on every trained stage (the stages read from the file,
    as bench/costs.py's tiny overrides are); the dry run adds those tiny overrides."""
    from bench.costs import tiny_overrides

    sets = [s.replace(".steps=4", ".bf16=true") for s in tiny_overrides() if s.endswith(".steps=4")]
    if dry:
        sets += tiny_overrides()
    args = ["-m", "pipeline", "run", "recipes/promot.yaml", "--run-dir", str(run_dir)]
    for item in sets:
        args += ["--set", item]
    return args


class Check:
    """Runs the parts in order, each a child process logged to OUT/<part>.log, within one time budget."""

    def __init__(self, out: Path, dry: bool, budget_s: float):
        self.out, self.dry, self.deadline = out, dry, time.monotonic() + budget_s
        self.parts: dict = {}
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TQDM_DISABLE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "DS_BUILD_OPS": "0",
            "PYTHONUNBUFFERED": "1",
        }

    def child(self, part: str, args: list[str]) -> subprocess.CompletedProcess:
        left = self.deadline - time.monotonic()
        if left < 10:
            raise TimeoutError(f"no time left in the {BUDGET_S} s budget")
        with open(self.out / f"{part}.log", "a") as log:
            log.write(f"$ {' '.join([sys.executable, *args])}\n")
            log.flush()
            try:
                done = subprocess.run(
                    [sys.executable, *args],
                    cwd=ROOT,
                    env=self.env,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                    timeout=left,
                )
            except subprocess.TimeoutExpired as error:
                raise TimeoutError(f"{part}: stopped at the budget's end ({left:.0f} s left when it began)") from error
            log.write(done.stdout)
        if done.returncode != 0:
            tail = (self.out / f"{part}.log").read_text()[-1500:]
            raise RuntimeError(f"{part}: exit {done.returncode}; {part}.log ends:\n{tail}")
        return done

    def part(self, name: str, run) -> None:
        print(f"gpu-check: {name} ...", flush=True)
        started = time.monotonic()
        try:
            found = run()
            self.parts[name] = {"ok": True, "seconds": round(time.monotonic() - started, 1), **(found or {})}
        except Exception as error:  # recorded, and the next part still runs
            self.parts[name] = {
                "ok": False,
                "seconds": round(time.monotonic() - started, 1),
                "error": f"{type(error).__name__}: {error}"[-2000:],
            }
        print(
            f"gpu-check: {name}: {'ok' if self.parts[name]['ok'] else 'FAILED'} in {self.parts[name]['seconds']} s",
            flush=True,
        )

    def install(self, wheels: Path) -> dict:
        if self.dry:
            return {"skipped": "--cpu-dry-run: this venv's own packages"}
        found = sorted(wheels.glob("*.whl"))
        if not found:
            raise FileNotFoundError(f"{wheels}: no wheels (make gpu-wheels here, then carry .gpu-wheels)")
        site = self.out / "site"
        self.child(
            "install",
            [
                "-m",
                "pip",
                "install",
                "-q",
                "--no-index",
                "--no-deps",
                "--no-compile",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--target",
                str(site),
                *map(str, found),
            ],
        )
        self.env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
        check = subprocess.run([sys.executable, "-m", "pip", "check"], env=self.env, capture_output=True, text=True)
        (self.out / "pip_check.log").write_text(check.stdout + check.stderr)
        return {"wheels": len(found), "site": str(site), "pip_check_problems": check.stdout.count("\n")}

    def environment(self) -> dict:
        probe = ["-c", ENV_PROBE, *([] if self.dry else ["--import"])]
        found = json.loads(self.child("environment", probe).stdout.strip().splitlines()[-1])
        (self.out / "env.json").write_text(json.dumps(found, indent=1) + "\n")
        problems = [
            f"{name} {found['versions'].get(name)} imported, {version} locked"
            for name, version in locked_versions().items()
            if found["versions"].get(name) != version
        ]
        if not self.dry and not found["cuda"]:
            problems.append("no CUDA GPU seen by torch")
        if problems:
            raise RuntimeError("; ".join(problems))
        return {"device": found["device"], "torch": found["versions"]["torch"], "cuda": found["cuda_version"]}

    def bench_gpu(self) -> dict:
        path = self.out / "bench_gpu.json"
        self.child("bench_gpu", ["-m", "bench.gpu", *BENCH["dry" if self.dry else "gpu"], "--out", str(path)])
        result = json.loads(path.read_text())
        if result["errors"]:
            raise RuntimeError(f"bench.gpu modes failed: {result['errors']}")
        return {
            "modes": {
                mode: {
                    "tok_s": r["tok_s_steady"]["median"],
                    "mfu": r["mfu"]["median"] if r["mfu"] else None,
                    "peak_memory_mb": r["peak_memory_mb"]["median"],
                }
                for mode, r in result["modes"].items()
            },
            "ratios": {name: r["steady"]["median"] for name, r in result["ratios"].items()},
        }

    def promot(self) -> dict:
        run_dir = self.out / "promot"
        self.child("promot", promot_args(run_dir, self.dry))
        checks = checks_from_report(run_dir / "report.md")
        (self.out / "checks.json").write_text(json.dumps(checks, indent=1) + "\n")
        failed = [c["check"] for c in checks if not c["passed"]]
        if failed and not self.dry:
            raise RuntimeError(f"checks failed (they pass on the CPU): {failed}")
        return {"checks": len(checks), "checks_passed": len(checks) - len(failed), "checks_required": not self.dry}


def render(summary: dict) -> str:
    lines = [
        f"# GPU check: {'PASSED' if summary['ok'] else 'FAILED'}",
        "",
        f"{summary['mode']}; total {summary['total_s']} s (budget {summary['budget_s']} s); folder `{summary['out']}`.",
        "",
        "| part | ok | seconds | found |",
        "|---|---|---|---|",
    ]
    for name, part in summary["parts"].items():
        found = {k: v for k, v in part.items() if k not in ("ok", "seconds")}
        text = json.dumps(found)[:600].replace("|", "/")
        lines.append(f"| {name} | {'yes' if part['ok'] else '**no**'} | {part['seconds']} | {text} |")
    return "\n".join(lines + [""])


def export(out: Path, dest: Path) -> None:
    """At most 8 files: the summary, the results, and every log and small file in one tarball (no weights)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("summary.md", "summary.json", "bench_gpu.json", "checks.json", "env.json"):
        if (out / name).exists():
            shutil.copy2(out / name, dest / name)
    if (out / "promot" / "report.md").exists():
        shutil.copy2(out / "promot" / "report.md", dest / "promot_report.md")
    with tarfile.open(dest / "gpu_check_logs.tar.gz", "w:gz") as tar:
        for path in sorted(out.rglob("*")):
            if (
                path.is_file()
                and "site" not in path.relative_to(out).parts[:1]
                and path.suffix in (".log", ".json", ".md", ".csv", ".yaml", ".txt")
            ):
                tar.add(path, arcname=str(path.relative_to(out)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="the folder for every result and log (made afresh)")
    parser.add_argument("--wheels", type=Path, default=WHEELS, help="from make gpu-wheels (default: %(default)s)")
    parser.add_argument("--cpu-dry-run", action="store_true", help="CPU, tiny size, no install (make test runs it)")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="every part within this (default %(default)s)")
    parser.add_argument("--export", type=Path, help="copy the summary, results and logs here (at most 8 files)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.monotonic()
    check = Check(out, args.cpu_dry_run, args.budget_s)
    check.part("install", lambda: check.install(args.wheels.resolve()))
    if check.parts["install"]["ok"]:
        check.part("environment", check.environment)
        check.part("bench_gpu", check.bench_gpu)
        check.part("promot", check.promot)
    summary = {
        "ok": all(p["ok"] for p in check.parts.values()) and len(check.parts) == 4,
        "mode": "CPU dry run, tiny size (nothing here is a GPU figure)" if args.cpu_dry_run else "GPU",
        "out": str(out),
        "budget_s": args.budget_s,
        "total_s": round(time.monotonic() - started, 1),
        "parts": check.parts,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(render(summary))
    if args.export:
        export(out, args.export)
    print((out / "summary.md").read_text())
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
