"""Edit distance, WER and CER against torchaudio's edit distance and hand-worked cases."""

from __future__ import annotations

import random

import pytest

from w2v2_lite.metrics import character_error_rate, edit_distance, word_error_rate


def test_edit_distance_matches_torchaudio_on_random_sequences():
    torchaudio = pytest.importorskip("torchaudio")
    rng = random.Random(0)
    for _ in range(200):
        reference = [rng.choice("abcd") for _ in range(rng.randint(0, 12))]
        hypothesis = [rng.choice("abcd") for _ in range(rng.randint(0, 12))]
        assert edit_distance(reference, hypothesis) == torchaudio.functional.edit_distance(reference, hypothesis)


def test_word_and_character_error_rates():
    assert word_error_rate("THE CAT SAT", "THE CAT SAT") == 0.0
    # one substitution (SAT->SIT), one deletion (DOWN) over 4 words
    assert word_error_rate(["THE CAT SAT DOWN"], ["THE CAT SIT"]) == pytest.approx(2 / 4)
    # corpus-level: (1 + 0) errors over (2 + 3) words, not the mean of per-utterance rates
    assert word_error_rate(["A B", "C D E"], ["A X", "C D E"]) == pytest.approx(1 / 5)
    assert word_error_rate(["A"], ["A B C"]) == pytest.approx(2.0)  # insertions can exceed 100%
    assert character_error_rate("AB CD", "AB  CE") == pytest.approx(1 / 5)


def test_error_rates_reject_bad_input():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        word_error_rate(["A", "B"], ["A"])
    with pytest.raises(ValueError, match="empty"):
        word_error_rate([""], ["A"])
