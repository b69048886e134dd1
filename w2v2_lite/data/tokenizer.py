"""Characters <-> ids for CTC fine-tuning, with the vocabulary of the released checkpoints.

The 32 symbols are those of fairseq's `dict.ltr.txt` for LibriSpeech, in the order of
the Hugging Face `facebook/wav2vec2-base-960h` vocabulary: id 0 `<pad>` is the CTC
blank, then `<s>`, `</s>`, `<unk>` (kept only so ids match the checkpoints), `|` the
word delimiter, the 26 upper-case letters by frequency, and the apostrophe. So
`len(CharTokenizer())` equals `ModelConfig.vocab_size` (32) and `blank_id` (0).

Normalisation, exactly: letters are upper-cased and runs of whitespace become one
word delimiter. Nothing else is changed: any other character (digits, punctuation,
accents) is an error that lists it; spell numbers out and strip punctuation first.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
WORD_DELIMITER = "|"
LETTERS = tuple("ETAONIHSRDLUMWCFGYPBVK'XJQZ")  # fairseq's LibriSpeech order (by frequency)
VOCABULARY = SPECIAL_TOKENS + (WORD_DELIMITER,) + LETTERS  # 32 symbols


@dataclass(frozen=True)
class CharTokenizer:
    """Encode transcripts as CTC targets (S,) and decode ids back to text."""

    vocabulary: tuple[str, ...] = VOCABULARY

    @property
    def blank_id(self) -> int:
        return 0

    @property
    def word_delimiter_id(self) -> int:
        return self.vocabulary.index(WORD_DELIMITER)

    @cached_property
    def symbol_ids(self) -> dict[str, int]:
        """Symbol -> id, built once per tokenizer."""
        return {symbol: i for i, symbol in enumerate(self.vocabulary)}

    def __len__(self) -> int:
        return len(self.vocabulary)

    def normalize(self, text: str) -> str:
        """'hello  world' -> 'HELLO|WORLD': upper case, words joined by the delimiter."""
        words = text.upper().split()
        if not words:
            raise ValueError(f"empty transcript {text!r}: CTC needs at least one character; drop the utterance "
                             "from the labelled set or fix its transcript")
        normalized = WORD_DELIMITER.join(words)
        unknown = sorted(set(normalized) - set(self.vocabulary[len(SPECIAL_TOKENS):]))
        if unknown:
            raise ValueError(f"transcript {text!r} has characters outside the vocabulary: {unknown}; the "
                             "vocabulary is A-Z, apostrophe and space: spell out digits and remove punctuation")
        return normalized

    def encode(self, text: str) -> Tensor:
        """Transcript -> ids (S,) long, e.g. 'HI YOU' -> [H, I, |, Y, O, U]."""
        return torch.tensor([self.symbol_ids[c] for c in self.normalize(text)], dtype=torch.long)

    def decode(self, ids: Tensor | list[int]) -> str:
        """ids (S,) -> text: special tokens and the padding label -100 are dropped, `|` becomes a space.

        It does not collapse CTC repeats; greedy CTC decoding does that before calling it.
        """
        values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        symbols = [self.vocabulary[i] for i in values if len(SPECIAL_TOKENS) <= i < len(self.vocabulary)]
        return " ".join("".join(symbols).replace(WORD_DELIMITER, " ").split())
