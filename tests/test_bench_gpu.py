"""bench/gpu.py on a CPU: the tiny size runs every mode in-process, counts the same tokens, and its FLOPs and
MFU follow the stated formula; the 0.5b size refuses to run without CUDA."""

import json

import pytest
import torch

from bench import gpu

# Tiny config by hand: per layer q,k,v,o 4*64*64 + MLP 3*64*128 + 2 norms of 64; final norm 64; lm_head 512*64.
TINY_N = 2 * (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) + 64 + 512 * 64  # 115,008 without the input embedding
TINY_PARAMS = TINY_N + 512 * 64  # plus the untied input embedding


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-gpu") / "gpu.json"
    code = gpu.main(
        [
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
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return json.loads(out.read_text())


def test_every_mode_trains_the_same_tokens(smoke):
    assert smoke["errors"] == {}
    assert set(smoke["modes"]) == {"plain", "pipeline", "pipeline_packed"}
    tokens = {mode: r["tokens"] for mode, r in smoke["modes"].items()}
    assert tokens["plain"] == tokens["pipeline"] == tokens["pipeline_packed"] > 0
    # 2 steps x 4 rows: every generated row once, each row's words plus eos, nothing truncated
    assert tokens["plain"] == round(smoke["lengths"]["mean"] * smoke["lengths"]["rows"])
    assert smoke["same_tokens"] is True
    for mode, r in smoke["modes"].items():
        assert r["tok_s_steady"]["median"] > 0 and r["tok_s_wall"]["median"] > 0, mode
        assert r["attn"] == "sdpa" and r["dtype"] == "float32" and r["bf16_autocast"] is False, mode
    assert smoke["modes"]["pipeline_packed"]["cells"] < smoke["modes"]["pipeline"]["cells"]
    assert set(smoke["ratios"]) == {"pipeline/plain", "pipeline_packed/pipeline"}


def test_lengths_vary_within_bounds(smoke):
    n = smoke["lengths"]
    assert 16 <= n["p50"] <= n["p90"] <= n["max"] <= 64 and n["rows"] == 8
    rows = gpu.make_rows(200, 1024, 32000)
    assert rows == gpu.make_rows(200, 1024, 32000)  # seeded
    lengths = [len(r["prompt"].split()) + len(r["completion"].split()) + 1 for r in rows]
    assert min(lengths) >= 16 and max(lengths) <= 1024 and len(set(lengths)) > 100


def test_flops_per_token_matches_a_hand_count(smoke):
    assert smoke["model"]["params"] == TINY_PARAMS == 147_776
    assert smoke["model"]["params_no_embedding"] == TINY_N == 115_008
    s = smoke["lengths"]["mean"]
    assert gpu.flops_per_token(TINY_N, 2, 64, s) == 6 * 115_008 + 12 * 2 * 64 * s
    assert smoke["flops"]["per_token"] == pytest.approx(690_048 + 1_536 * s)


def test_mfu_is_null_without_a_peak_and_achieved_over_peak_with_one(smoke):
    assert smoke["peak_flops"] is None
    assert all(r["mfu"] is None for r in smoke["modes"].values())
    assert gpu.peak_flops("NVIDIA H100 80GB HBM3") == 989e12 and gpu.peak_flops("NVIDIA H100 PCIe") == 756e12
    assert gpu.peak_flops("NVIDIA H200") == 989e12 and gpu.peak_flops("NVIDIA H200 NVL") is None
    with_peak = gpu.summarize(smoke, peak_tflops=2.0)
    assert with_peak["peak_source"] == "--peak-tflops"
    for mode, runs in smoke["raw"].items():  # steps 2..N: the second batch's tokens over the second step
        assert 0 < runs[0]["steady_tokens"] < runs[0]["tokens"]
        achieved = runs[0]["steady_tokens"] * smoke["flops"]["per_token"] / runs[0]["steady_s"]
        assert with_peak["modes"][mode]["mfu"]["median"] == pytest.approx(achieved / 2e12, abs=1e-6)
    assert any("MFU" in line and "6*N + 12*L*d*S_attn" in line for line in gpu.render(with_peak))


def test_render_gives_the_section(smoke):
    text = "\n".join(gpu.render(smoke))
    assert "## GPU: our stages vs a plain Trainer" in text and smoke["meta"]["command"] in text
    assert "| pipeline/plain |" in text and "`pipeline_packed`" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_0_5b_refuses_without_cuda(capsys, tmp_path):
    assert gpu.main(["--size", "0.5b", "--out", str(tmp_path / "gpu.json")]) != 0
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "gpu.json").exists()
