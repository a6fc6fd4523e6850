"""A model folder whose weights are a pickle (pytorch_model.bin) only: loading one runs code; safetensors only."""

from tests.test_bad_inputs import tiny_model


def build(folder):
    import torch
    from safetensors.torch import load_file

    model = tiny_model(folder / "model")
    torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()
