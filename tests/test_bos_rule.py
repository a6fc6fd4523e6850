"""One BOS rule for training, lm-eval's scoring and the generate helper, tried on a Llama 3 style tokenizer.

That tokenizer adds BOS in its post-processor while it reports add_bos_token=False: training used to
read the flag and add nothing, while lm-eval's encoding adds BOS.
"""

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from evaluation.generation import _left_padded
from evaluation.harness import make_lm
from stages.sft_data import encode_example

WORDS = ["[UNK]", "<bos>", "<eos>", "<pad>", "is", "it", "big", "?", "yes", "no"]


def llama3_style_tokenizer():
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def test_training_evaluation_and_generation_start_a_prompt_alike():
    tokenizer = llama3_style_tokenizer()
    assert not tokenizer.add_bos_token and tokenizer("is it")["input_ids"][0] == 1  # the trap
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(WORDS),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=32,
        )
    )
    lm = make_lm(model, tokenizer, batch_size=2)
    prompt = "is it big ?"
    trained = encode_example(prompt, " yes", tokenizer, max_length=32)
    prompt_part = [i for i, label in zip(trained["input_ids"], trained["labels"]) if label == -100]
    assert prompt_part == lm.tok_encode(prompt) == [1, 4, 5, 6, 7]  # BOS first, in both
    batch, _ = lm.tok_batch_encode([prompt, "is it"])  # lm-eval's generation encoding
    assert torch.equal(_left_padded(tokenizer, [prompt, "is it"])["input_ids"], batch)
    # A prompt that writes the BOS text itself (a chat template) gets no second one, in either.
    assert encode_example("<bos> is it", " no", tokenizer, 32)["input_ids"][:3] == lm.tok_encode("<bos> is it")
