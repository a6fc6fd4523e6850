"""End to end: the DMT recipe file (every strategy, a k sweep) on a tiny model, in seconds."""

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from embedded.model import TEST_SPEC, ensure_base_model

    base = ensure_base_model(TEST_SPEC, cache_root=tmp_path_factory.mktemp("cache"))
    run_dir = tmp_path_factory.mktemp("runs") / "dmt"
    sets = [
        f"model.path={base}",
        "evaluation.limit=3",
        "data.math.rows=64",
        "data.code.rows=32",
        "data.general.rows=80",
        "dmt.k=1/256,1/16",
        "dmt_kl.general.kl_weight=1.0",
        "dmt_lr.general.lr=2.0e-4",
    ]
    stages = {
        "general_only": 1,
        "domain_only": 1,
        "multi_task": 1,
        "sequential": 3,
        "mixed_sequential": 2,
        "dmt": 2,
        "dmt_merge": 2,
        "dmt_kl": 2,
        "dmt_asft": 2,
        "dmt_osf": 2,
        "dmt_lr": 2,
        "dmt_lr_kl": 2,
        "dmt_lr_asft": 2,
        "dmt_osf_long": 2,
    }
    for recipe, count in stages.items():
        for i in range(count):
            sets += [f"recipes.{recipe}.{i}.steps=2", f"recipes.{recipe}.{i}.batch_size=8"]
    args = ["run", str(ROOT / "recipes" / "dmt.yaml"), "--run-dir", str(run_dir)]
    for item in sets:
        args += ["--set", item]
    assert main(args) == 0
    return run_dir


def test_every_strategy_and_k_is_reported(finished_run):
    frame = pd.read_csv(finished_run / "results.csv")
    assert set(frame.recipe) == {
        "general_only",
        "domain_only",
        "multi_task",
        "sequential",
        "mixed_sequential",
        "dmt@k=1/256",
        "dmt@k=1/16",
        "dmt_merge",
        "dmt_kl@kl_weight=1.0",
        "dmt_asft",
        "dmt_osf",
        "dmt_lr@lr=0.0002",
        "dmt_lr_kl",
        "dmt_lr_asft",
        "dmt_osf_long",
    }
    assert set(frame.suite) == {"general", "domain"} and frame.score.between(0, 1).all()
    assert {"embedded_math", "embedded_code"} <= set(frame.task)
    report = (finished_run / "report.md").read_text()
    assert "Table 1" in report and "dmt@k=1/256 beats sequential" in report
    assert "dmt_lr@lr=0.0002 keeps >= 80% of domain_only's domain score" in report
    assert (finished_run / "domain_vs_general.png").exists()


def test_the_code_suite_ran_in_the_best_sandbox_here(finished_run):
    from evaluation.sandbox import best_available

    manifest = json.loads((finished_run / "manifest.json").read_text())
    assert manifest["code_isolation"] == best_available().mode.value != "none"


def test_k_draw_is_recorded_and_domain_stage_is_shared(finished_run):
    stages = json.loads((finished_run / "manifest.json").read_text())["stages"]
    # 1/256 of 64 math and 32 code rows rounds to 0: one example of each is kept, never dropped.
    assert stages["seed0/dmt@k=1-256/general"]["data_rows"] == {"general": 80, "math": 1, "code": 1}
    assert (
        "math: 1/256 x 64 rows rounds to 0; keeping 1 example" in stages["seed0/dmt@k=1-256/general"]["data_notes"][0]
    )
    assert stages["seed0/dmt@k=1-16/general"]["data_rows"] == {"general": 80, "math": 4, "code": 2}
    assert stages["seed0/sequential/code"]["data_rows"] == {"code": 32}
    assert stages["seed0/dmt@k=1-16/domain"] == {
        **stages["seed0/dmt@k=1-16/domain"],
        "status": "reused",
        "reused_from": "seed0/domain_only/domain",
    }
