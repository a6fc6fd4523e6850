"""A sharded model folder (model.safetensors.index.json) with one shard missing."""

from tests.test_bad_inputs import tiny_model


def build(folder):
    from transformers import AutoModelForCausalLM

    model = tiny_model(folder / "model")
    weights = AutoModelForCausalLM.from_pretrained(model)
    (model / "model.safetensors").unlink()
    weights.save_pretrained(model, max_shard_size="20KB")
    shards = sorted(model.glob("model-*.safetensors"))
    assert len(shards) > 2, shards
    shards[1].unlink()
