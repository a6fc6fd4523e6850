"""A model folder with its config and tokenizer, but no weights file."""

from tests.test_bad_inputs import tiny_model


def build(folder):
    (tiny_model(folder / "model") / "model.safetensors").unlink()
