"""A BERT config.json (a causal LM with is_decoder) over Llama weights: the model would be all random."""

from tests.test_bad_inputs import tiny_model


def build(folder):
    from transformers import BertConfig

    from embedded.tokenizer import build_tokenizer

    model = tiny_model(folder / "model")
    BertConfig(
        vocab_size=len(build_tokenizer()),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        is_decoder=True,
    ).save_pretrained(model)
