"""report.md from results.csv: the ProMoT bar and the DMT strategies table, computed from the numbers given."""

import pandas as pd

from pipeline.report import write_report
from pipeline.results import write_csv

GENERAL = ["embedded_copy", "embedded_sort"]


def rows(recipe, stage, general, target=None, leak=None, math=None, code=None, seed=0):
    out = [dict(recipe=recipe, seed=seed, stage=stage, task=t, suite="general", metric="exact_match", score=general, n=10)
           for t in GENERAL]
    if target is not None:
        out.append(dict(recipe=recipe, seed=seed, stage=stage, task="embedded_letter_rule", suite="target",
                        metric="exact_match", score=target, n=10))
    if leak is not None:
        out += [dict(recipe=recipe, seed=seed, stage=stage, task=t, suite="general", metric="format_leak",
                     score=leak, n=10) for t in GENERAL]
    for task, value in (("embedded_math", math), ("embedded_code", code)):
        if value is not None:
            out.append(dict(recipe=recipe, seed=seed, stage=stage, task=task, suite="domain", metric="m", score=value, n=10))
    return out


def test_promot_report_measures_the_bar(tmp_path):
    data = []
    for seed, wobble in ((0, 0.0), (1, 0.02)):
        data += rows("sft", "base", 0.9, 0.5, 0.0, seed=seed) + rows("sft", "finetune", 0.2 + wobble, 0.98, 0.7, seed=seed)
        data += rows("promot", "base", 0.9, 0.5, 0.0, seed=seed) + rows("promot", "prompt_tune", 0.9, 0.6, 0.0, seed=seed)
        data += rows("promot", "finetune", 0.85, 0.96, 0.02 + wobble, seed=seed)
    write_csv(tmp_path / "results.csv", data)
    report = write_report(tmp_path).read_text()
    assert "| SFT forgets: general drop >= 0.20 | drop 0.690 | yes |" in report
    assert "| ProMoT keeps >= 80% of base general | 0.850 / 0.900 = 94.4% | yes |" in report
    assert "| ProMoT target within 0.05 of SFT | 0.960 vs 0.980 | yes |" in report
    assert "| SFT format leak > 30% | 70.0% | yes |" in report
    assert "0.210 ± 0.014" in report  # SFT general over two seeds
    assert (tmp_path / "report.png").stat().st_size > 1000


def test_promot_report_says_no_when_the_effect_is_missing(tmp_path):
    data = rows("sft", "base", 0.9, 0.5, 0.0) + rows("sft", "finetune", 0.85, 0.98, 0.05)
    data += rows("promot", "base", 0.9, 0.5, 0.0) + rows("promot", "finetune", 0.5, 0.7, 0.2)
    write_csv(tmp_path / "results.csv", data)
    report = write_report(tmp_path).read_text()
    assert "| SFT forgets: general drop >= 0.20 | drop 0.050 | **no** |" in report
    assert "| ProMoT format leak < 10% | 20.0% | **no** |" in report


def test_dmt_report_table_and_bar(tmp_path):
    data = rows("domain_only", "base", 0.9, math=0.0, code=0.0) + rows("domain_only", "domain", 0.1, math=0.8, code=0.9)
    data += rows("general_only", "general", 0.95, math=0.0, code=0.0)
    data += rows("sequential", "code", 0.1, math=0.0, code=0.9) + rows("sequential", "general", 0.95, math=0.05, code=0.1)
    for k, math, code in (("1/256", 0.1, 0.2), ("1/64", 0.3, 0.4), ("1/16", 0.28, 0.8)):
        data += rows(f"dmt@k={k}", "domain", 0.1, math=0.8, code=0.9) + rows(f"dmt@k={k}", "general", 0.95, math=math, code=code)
    write_csv(tmp_path / "results.csv", data)
    report = write_report(tmp_path).read_text()
    assert "| sequential loses >= 30% of domain_only's domain score | 0.075 vs 0.850: loses 91% | yes |" in report
    assert "| dmt@k=1/256 beats sequential on domain by >= 0.05 | +0.075 | yes |" in report
    assert "k=1/256: 0.150, k=1/64: 0.350, k=1/16: 0.540 | yes |" in report
    table = report.split("Table 1)")[1]
    assert "Δdomain vs domain_only" in table and "Δgeneral vs general_only" in table
    assert (tmp_path / "domain_vs_general.png").exists()
    frame = pd.read_csv(tmp_path / "results.csv")
    assert set(frame.suite) == {"general", "domain"}
