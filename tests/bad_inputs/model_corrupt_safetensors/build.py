"""A model folder whose model.safetensors was cut short (an interrupted download)."""

from tests.test_bad_inputs import tiny_model


def build(folder):
    weights = tiny_model(folder / "model") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
