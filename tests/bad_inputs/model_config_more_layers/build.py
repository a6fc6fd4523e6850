"""config.json says 2 layers over weights of 1: the second layer would train from random values."""

from tests.test_bad_inputs import edit_config, tiny_model


def build(folder):
    edit_config(tiny_model(folder / "model", layers=1), num_hidden_layers=2)
