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


# The order of facebook/wav2vec2-base-960h's vocab.json (and fairseq's dict.ltr.txt after the four
# special symbols): a CTC head trained on those ids reads garbage if a single symbol moves.
CHECKPOINT_SYMBOLS = ("<pad>", "<s>", "</s>", "<unk>", "|", "E", "T", "A", "O", "N", "I", "H", "S", "R", "D", "L",
                      "U", "M", "W", "C", "F", "G", "Y", "P", "B", "V", "K", "'", "X", "J", "Q", "Z")


def test_symbol_order_is_that_of_the_released_checkpoints():
    tokenizer = CharTokenizer()
    assert tokenizer.vocabulary == CHECKPOINT_SYMBOLS
    assert tokenizer.symbol_ids == {symbol: i for i, symbol in enumerate(CHECKPOINT_SYMBOLS)}
    assert tokenizer.word_delimiter_id == 4
    assert tokenizer.encode("it's a quiz").tolist() == [10, 6, 27, 12, 4, 7, 4, 30, 16, 10, 31]


def test_decode_takes_a_list_or_a_tensor_and_keeps_every_letter():
    tokenizer = CharTokenizer()
    every_letter = list(range(4, len(CHECKPOINT_SYMBOLS)))
    expected = "ETAONIHSRDLUMWCFGYPBVK'XJQZ"
    assert tokenizer.decode(every_letter) == expected
    assert tokenizer.decode(torch.tensor(every_letter)) == expected
    assert tokenizer.decode([0, 1, 2, 3]) == "" and tokenizer.decode([]) == ""


def test_errors_say_how_to_fix_the_transcript():
    tokenizer = CharTokenizer()
    with pytest.raises(ValueError, match="drop the utterance from the labelled set or fix its transcript"):
        tokenizer.encode("")
    with pytest.raises(ValueError, match="the vocabulary is A-Z, apostrophe and space: spell out digits"):
        tokenizer.encode("room 101")
