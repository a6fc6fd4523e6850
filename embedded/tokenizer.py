"""A word-level tokenizer over the embedded tasks' closed vocabulary, built offline in milliseconds."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from embedded.tasks import vocabulary

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0..3, fixed ahead of the sorted words
MODEL_MAX_LENGTH = 256


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Build the embedded tokenizer: one token per vocabulary word, same ids on every call."""
    words = SPECIAL_TOKENS + vocabulary()
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # WordPiece's decoder puts a space before every token that does not start with its prefix; no
    # whitespace-split token starts with a space, so decode joins all tokens with single spaces.
    # (The default "##" prefix would glue the `####` answer marker to the previous token.)
    backend.decoder = decoders.WordPiece(prefix=" ", cleanup=False)
    # No post-processor: nothing (no BOS) is added around the text, so prompt/answer token
    # boundaries in training are exactly those of evaluation.
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
    )
