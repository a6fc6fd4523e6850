"""make gpu-check's CPU dry run: the same script a lent GPU runs (bench/gpu_check.py), on the CPU at the tiny size,
without the wheel install, so a broken GPU path shows here. Through the command line, as `make gpu-check
GPU_PY=.venv/bin/python GPU_CHECK_ARGS=--cpu-dry-run` runs it by hand."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from bench import gpu_check

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    base = tmp_path_factory.mktemp("gpu-check")
    out, export = base / "out", base / "export"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # ~60 s on a quiet 2-core machine; the budget is wide so that a busy CI machine does not flake
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.gpu_check",
            "--cpu-dry-run",
            "--budget-s",
            "1200",
            "--out",
            str(out),
            "--export",
            str(export),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    return done, out, export


def test_every_part_runs_and_says_how_long_it_took(dry):
    done, out, _ = dry
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is True and summary["mode"].startswith("CPU dry run")
    assert list(summary["parts"]) == ["install", "environment", "bench_gpu", "promot"]
    assert all(part["ok"] and part["seconds"] >= 0 for part in summary["parts"].values())
    assert "skipped" in summary["parts"]["install"]
    assert "# GPU check: PASSED" in (out / "summary.md").read_text()
    for log in ("environment.log", "bench_gpu.log", "promot.log"):
        assert (out / log).stat().st_size > 0, log


def test_the_locked_libraries_are_the_ones_seen(dry):
    _, out, _ = dry
    env = json.loads((out / "env.json").read_text())
    assert env["cuda"] is False
    for name, version in gpu_check.locked_versions().items():
        assert env["versions"][name] == version, name


def test_bench_gpu_and_the_promot_run_wrote_their_results(dry):
    _, out, _ = dry
    bench = json.loads((out / "bench_gpu.json").read_text())
    assert bench["settings"]["size"] == "tiny" and set(bench["modes"]) == {"plain", "pipeline", "pipeline_packed"}
    checks = json.loads((out / "checks.json").read_text())
    # recipes/promot.yaml declares 7 checks; at 4 steps they are read, not required to pass
    assert len(checks) == 7 and all(set(c) == {"check", "measured", "passed", "verdict"} for c in checks)
    config = (out / "promot" / "config.yaml").read_text()
    # every trained stage (6 in recipes/promot.yaml; the merge trains nothing) asked for bf16, as on the GPU
    assert config.count("bf16: true") == 6 and "bf16: false" not in config


def test_export_fits_the_device_tool(dry):
    _, _, export = dry
    files = sorted(p.name for p in export.iterdir())
    assert len(files) <= 8 and "summary.md" in files and "promot_report.md" in files
    with tarfile.open(export / "gpu_check_logs.tar.gz") as tar:
        names = tar.getnames()
    assert "promot.log" in names and "promot/results.csv" in names
    assert not any(name.endswith(".safetensors") for name in names)


def test_a_report_without_checks_is_an_error(tmp_path):
    report = tmp_path / "report.md"
    report.write_text("# a report\n\nno table\n")
    with pytest.raises(RuntimeError, match="no checks table"):
        gpu_check.checks_from_report(report)


def test_the_gpu_run_requires_the_checks(tmp_path, monkeypatch):
    """Outside the dry run a failed check fails the part (the conclusions must match the CPU run's)."""
    run_dir = tmp_path / "promot"
    run_dir.mkdir()
    (run_dir / "report.md").write_text(
        "| check | measured | pass |\n|---|---|---|\n| a | 1 | yes |\n| b | 0 | **no** |\n"
    )
    check = gpu_check.Check(tmp_path, dry=False, budget_s=60)
    monkeypatch.setattr(check, "child", lambda part, args: None)
    with pytest.raises(RuntimeError, match=r"checks failed .*\['b'\]"):
        check.promot()
    check.dry = True
    assert check.promot() == {"checks": 2, "checks_passed": 1, "checks_required": False}
