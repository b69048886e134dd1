"""The character tokenizer: the checkpoints' 32 symbols, round trips, clear errors."""

from __future__ import annotations

import pytest
import torch

from w2v2_lite import ModelConfig
from w2v2_lite.data import CharTokenizer


def test_vocabulary_matches_the_model_config():
    tokenizer, config = CharTokenizer(), ModelConfig()
    assert len(tokenizer) == config.vocab_size == 32
    assert tokenizer.blank_id == config.blank_id == 0 and tokenizer.vocabulary[0] == "<pad>"
    assert tokenizer.vocabulary[4] == "|" and set("ABCDEFGHIJKLMNOPQRSTUVWXYZ'") <= set(tokenizer.vocabulary)


def test_encode_decode_round_trip_and_documented_normalisation():
    tokenizer = CharTokenizer()
    ids = tokenizer.encode("peter's   Pocket")
    assert tokenizer.decode(ids) == "PETER'S POCKET"
    assert ids.dtype == torch.long and (ids == tokenizer.word_delimiter_id).sum() == 1
    assert tokenizer.decode(torch.tensor([0, 1, 11, -100, 10, 4, -100])) == "HI"


def test_errors_list_the_bad_characters():
    tokenizer = CharTokenizer()
    with pytest.raises(ValueError, match=r"\['!', '2', 'É'\]"):
        tokenizer.encode("CAFÉ 2 GO!")
    with pytest.raises(ValueError, match="empty transcript"):
        tokenizer.encode("   ")
