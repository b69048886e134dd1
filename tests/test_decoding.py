"""CTC decoding: greedy on hand-built logits, the Kneser-Ney word LM, beam search with and without it."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from w2v2_lite.data.tokenizer import CharTokenizer
from w2v2_lite.decoding import (BeamSearchDecoder, NGramLM, TokenSpan, greedy_decode, greedy_spans,
                                kneser_ney_discount, merge_repeats, read_transcripts)

TOKENIZER = CharTokenizer()


def spell(frames: str, confidence: float = 10.0) -> torch.Tensor:
    """One frame per character ('_' the blank, '|' the word delimiter) -> logits (1, T, V)."""
    ids = [TOKENIZER.blank_id if c == "_" else TOKENIZER.symbol_ids[c] for c in frames]
    return confidence * torch.nn.functional.one_hot(torch.tensor(ids), len(TOKENIZER)).float()[None]


def frame_probs(*frames: dict[str, float]) -> torch.Tensor:
    """Log-probabilities (1, T, V) from each frame's probabilities ('_' the blank), the rest 1e-6."""
    probs = torch.full((1, len(frames), len(TOKENIZER)), 1e-6)
    for t, frame in enumerate(frames):
        for symbol, p in frame.items():
            probs[0, t, TOKENIZER.blank_id if symbol == "_" else TOKENIZER.symbol_ids[symbol]] = p
    return probs.log()


# ------------------------------------------------------------------------ greedy
def test_merge_repeats_collapses_runs_and_drops_blanks():
    path = torch.tensor([0, 0, 7, 7, 0, 5, 12, 12, 0, 12, 6, 6, 0])
    assert merge_repeats(path) == [TokenSpan(7, 2, 4, 1.0), TokenSpan(5, 5, 6, 1.0), TokenSpan(12, 6, 8, 1.0),
                                   TokenSpan(12, 9, 10, 1.0), TokenSpan(6, 10, 12, 1.0)]
    assert merge_repeats(torch.tensor([0, 0, 0])) == []
    assert merge_repeats(torch.tensor([], dtype=torch.long)) == []
    scores = merge_repeats(torch.tensor([3, 3]), frame_log_probs=torch.tensor([0.5, 0.25]).log())
    assert scores[0].score == pytest.approx(0.375)


def test_greedy_decode_exact_strings():
    assert greedy_decode(spell("__HH_E_LL_LOO__|WW_ORR_LD_")) == ["HELLO WORLD"]
    assert greedy_decode(spell("HELO")) == ["HELO"]  # no blank between the Ls: one L
    assert greedy_decode(spell("|_IT'S||_A_|")) == ["IT'S A"]  # delimiters at the edges and in runs
    assert greedy_decode(spell("______")) == [""]


def test_greedy_decode_batch_ignores_padding_frames():
    logits = torch.cat([spell("CAT_S"), spell("DOG__")])  # (2, 5, V)
    lengths = torch.tensor([3, 5])
    assert greedy_decode(logits, lengths) == ["CAT", "DOG"]
    assert greedy_decode(logits) == ["CATS", "DOG"]


def test_greedy_spans_give_frames_and_mean_probability():
    logits = spell("_HH_I_")
    spans = greedy_spans(logits)[0]
    assert [(TOKENIZER.vocabulary[s.token], s.start, s.end) for s in spans] == [("H", 1, 3), ("I", 4, 5)]
    expected = torch.softmax(logits[0, 1], dim=-1).max().item()
    assert spans[0].score == pytest.approx(expected)


def test_greedy_decode_checks_shapes():
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        greedy_decode(torch.zeros(5, 32))
    with pytest.raises(ValueError, match="output_lengths"):
        greedy_decode(torch.zeros(2, 5, 32), torch.tensor([5, 6]))


# --------------------------------------------------------------------- n-gram LM
SENTENCES = [s.split() for s in ["A CAT SAT"] * 5 + ["A BAT FLEW"] * 5 + ["THE CAT FLEW", "A DOG SAT ON THE MAT"]]


def all_contexts(lm: NGramLM) -> list[tuple[str, ...]]:
    return [()] + sorted(lm.log10_backoffs)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_conditional_distribution_sums_to_one(order):
    lm = NGramLM.from_sentences(SENTENCES, order)
    outcomes = lm.vocabulary + ["</s>", "<unk>"]
    for context in all_contexts(lm):
        total = sum(10 ** lm.log10_prob(word, context) for word in outcomes)
        assert total == pytest.approx(1.0, abs=1e-9), context


def test_kneser_ney_bigram_by_hand():
    lm = NGramLM.from_sentences([["A", "B"], ["A", "C"], ["B"]], order=2)
    # bigrams: (<s> A) 2, (A B) 1, (A C) 1, (<s> B) 1, (B </s>) 2, (C </s>) 1 -> n1 = 4, n2 = 2, D2 = 1/2
    # unigram continuation counts (distinct left neighbours): A 1, B 2, C 1, </s> 2 -> total 6, 4 types,
    # n1 = 2, n2 = 2, D1 = 1/3; the uniform share goes to A B C </s> <unk> (5 words)
    d1, d2 = 1 / 3, 1 / 2
    gamma = d1 * 4 / 6
    unigram = {"A": (1 - d1) / 6 + gamma / 5, "B": (2 - d1) / 6 + gamma / 5, "C": (1 - d1) / 6 + gamma / 5}
    assert 10 ** lm.log10_prob("B") == pytest.approx(unigram["B"])
    assert 10 ** lm.log10_prob("<unk>") == pytest.approx(gamma / 5)
    assert 10 ** lm.log10_prob("NEVER-SEEN") == pytest.approx(gamma / 5)
    # after A: (A B) 1, (A C) 1 -> gamma(A) = D2 * 2 / 2, the ARPA backoff weight of A
    assert 10 ** lm.log10_backoffs[("A",)] == pytest.approx(d2)
    assert 10 ** lm.log10_prob("C", ["A"]) == pytest.approx((1 - d2) / 2 + d2 * unigram["C"])
    assert 10 ** lm.log10_prob("A", ["A"]) == pytest.approx(d2 * unigram["A"])  # unseen bigram: backs off


def test_kneser_ney_prefers_words_seen_in_many_contexts():
    lm = NGramLM.from_sentences([["SAN", "FRANCISCO"]] * 5 + [["A", "CAT"], ["THE", "CAT"], ["MY", "CAT"]], 2)
    # FRANCISCO occurred 5 times, CAT 3 times, but only CAT follows several words
    assert lm.log10_prob("CAT", ["UNSEEN"]) > lm.log10_prob("FRANCISCO", ["UNSEEN"])


def test_discount_from_counts_of_counts():
    assert kneser_ney_discount([1, 1, 1, 2, 5]) == pytest.approx(3 / (3 + 2))
    assert kneser_ney_discount([1, 1]) == 0.5  # no n-gram seen twice


def test_arpa_file_holds_the_model(tmp_path):
    lm = NGramLM.from_sentences(SENTENCES, 3)
    text = lm.write_arpa(tmp_path / "lm.arpa").read_text()
    assert text.startswith("\\data\\\nngram 1=") and text.rstrip().endswith("\\end\\")
    probs, backoffs, order = {}, {}, 0
    for line in text.splitlines():
        if line.startswith("\\") and line.endswith("-grams:"):
            order = int(line[1])
        elif order and line.strip() and not line.startswith("\\"):
            fields = line.split("\t")
            gram = tuple(fields[1].split())
            assert len(gram) == order
            probs[gram] = float(fields[0])
            if len(fields) == 3:
                backoffs[gram] = float(fields[2])
    assert probs.keys() == lm.log10_probs.keys() and backoffs.keys() == lm.log10_backoffs.keys()
    assert all(math.isclose(probs[g], lm.log10_probs[g], abs_tol=1e-6) for g in probs)
    assert probs[("<s>",)] == -99.0
    for gram in probs:  # ARPA needs every n-gram's prefix and suffix as an entry of the order below
        assert len(gram) == 1 or (gram[:-1] in probs and gram[1:] in probs)


def test_read_transcripts(tmp_path):
    path = tmp_path / "train.wrd"
    path.write_text("the cat sat\n\nA BAT  FLEW\n")
    assert read_transcripts(path) == [["THE", "CAT", "SAT"], ["A", "BAT", "FLEW"]]
    path.write_text("A CAT\nA CAT SAT 2 TIMES\n")
    with pytest.raises(ValueError, match="line 2"):
        read_transcripts(path)
    with pytest.raises(FileNotFoundError, match="no such transcript file"):
        read_transcripts(tmp_path / "missing.wrd")


# -------------------------------------------------------------------- beam search
requires_flashlight = pytest.mark.skipif(importlib.util.find_spec("flashlight") is None,
                                         reason="beam search needs the flashlight-text package")


@requires_flashlight
def test_beam_of_one_is_greedy():
    logits = 3 * torch.randn(3, 40, len(TOKENIZER), generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([40, 25, 1])
    assert BeamSearchDecoder(beam_size=1)(logits, lengths) == greedy_decode(logits, lengths)


@requires_flashlight
def test_beam_search_sums_the_paths_of_a_prefix():
    # two frames, P(blank) = 0.6, P(A) = 0.4: the best path is "__" (0.36), but "A" has
    # the paths AA, A_, _A: 0.16 + 0.24 + 0.24 = 0.64
    log_probs = frame_probs({"_": 0.6, "A": 0.4}, {"_": 0.6, "A": 0.4})
    assert greedy_decode(log_probs) == [""]
    assert BeamSearchDecoder(beam_size=8)(log_probs) == ["A"]


@requires_flashlight
def test_the_language_model_changes_the_answer():
    # the acoustics prefer B (0.55) to C (0.45) in "A ?AT SAT"; the LM has only seen "A CAT SAT"
    log_probs = frame_probs({"A": 1}, {"|": 1}, {"B": 0.55, "C": 0.45}, {"_": 1}, {"A": 1}, {"T": 1}, {"|": 1},
                            {"S": 1}, {"A": 1}, {"T": 1}, {"_": 1})
    lm = NGramLM.from_sentences(SENTENCES, 3)
    assert greedy_decode(log_probs) == ["A BAT SAT"]
    assert BeamSearchDecoder(beam_size=10)(log_probs) == ["A BAT SAT"]
    assert BeamSearchDecoder(beam_size=10, lm=lm, lm_weight=0.0)(log_probs) == ["A BAT SAT"]
    assert BeamSearchDecoder(beam_size=10, lm=lm)(log_probs) == ["A CAT SAT"]


@requires_flashlight
def test_beam_search_with_lm_spells_only_lm_words():
    logits = 3 * torch.randn(2, 30, len(TOKENIZER), generator=torch.Generator().manual_seed(1))
    lm = NGramLM.from_sentences(SENTENCES, 2)
    for text in BeamSearchDecoder(beam_size=5, lm=lm)(logits):
        assert set(text.split()) <= set(lm.vocabulary)


@requires_flashlight
def test_beam_size_must_be_positive():
    with pytest.raises(ValueError, match="beam_size"):
        BeamSearchDecoder(beam_size=0)
