"""The evaluation stage scores on the process's GPU when there is one (lm-eval leaves a model object where it lies)."""

import torch

from stages.evaluate import evaluation_device


def test_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert evaluation_device() == "cpu"


def test_the_local_ranks_gpu_with_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert evaluation_device() == "cuda:0"
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert evaluation_device() == "cuda:1"
