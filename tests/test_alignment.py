"""Forced alignment: the same path as torchaudio's, the best of all paths, word times in seconds."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from w2v2_lite.alignment import WordTiming, align_words, count_repeats, forced_align, word_timings
from w2v2_lite.config import ModelConfig
from w2v2_lite.data.tokenizer import CharTokenizer
from w2v2_lite.decoding import TokenSpan, merge_repeats

torchaudio_functional = pytest.importorskip("torchaudio.functional")
TOKENIZER = CharTokenizer()


def torchaudio_path(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torchaudio_functional.forced_align(log_probs[None], targets[None].int(), blank=0)[0][0].long()


def random_case(rng: random.Random, max_frames: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Random log-probs (T, V) and targets (S,) that fit them (S + repeats <= T)."""
    while True:
        frames, vocab = rng.randint(1, max_frames), rng.randint(2, 6)
        targets = torch.tensor([rng.randint(1, vocab - 1) for _ in range(rng.randint(1, frames))])
        if targets.numel() + count_repeats(targets) <= frames:  # numpy: torch's per-call cost dominates here
            logits = np.random.default_rng(rng.getrandbits(32)).standard_normal((frames, vocab))
            log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            return torch.from_numpy(log_probs).float(), targets


def test_same_path_as_torchaudio_on_random_log_probs():
    rng = random.Random(0)
    for _ in range(200):
        log_probs, targets = random_case(rng)
        alignment = forced_align(log_probs, targets)
        torch.testing.assert_close(alignment.frame_tokens, torchaudio_path(log_probs, targets), rtol=0, atol=0)


def test_same_path_as_torchaudio_when_every_path_ties():
    for frames, targets in [(6, [1, 2]), (7, [1, 1, 2]), (5, [3]), (9, [1, 2, 1, 2])]:
        log_probs = torch.full((frames, 4), -1.0)
        targets = torch.tensor(targets)
        assert forced_align(log_probs, targets).frame_tokens.tolist() == torchaudio_path(log_probs, targets).tolist()


def test_spans_and_scores_match_torchaudio_merge_tokens():
    generator = torch.Generator().manual_seed(1)
    log_probs = torch.randn(60, 8, generator=generator).log_softmax(-1)
    targets = torch.tensor([3, 3, 5, 1, 1, 1, 7])
    alignment = forced_align(log_probs, targets)
    path = torchaudio_path(log_probs, targets)
    reference = torchaudio_functional.merge_tokens(path, log_probs[torch.arange(60), path].exp())
    assert [(s.token, s.start, s.end) for s in alignment.token_spans] == [(s.token, s.start, s.end) for s in reference]
    assert [s.score for s in alignment.token_spans] == pytest.approx([s.score for s in reference])
    assert [s.token for s in alignment.token_spans] == targets.tolist()


def ctc_paths(targets: list[int], frames: int, vocab: int) -> list[tuple[int, ...]]:
    """Every frame sequence over the vocabulary whose CTC collapse is `targets` (brute force)."""
    return [path for path in itertools.product(range(vocab), repeat=frames)
            if [s.token for s in merge_repeats(torch.tensor(path))] == targets]


@pytest.mark.parametrize("targets", [[1], [1, 2], [2, 2], [1, 2, 1]])
def test_the_path_is_the_best_of_all_paths(targets):
    generator = torch.Generator().manual_seed(len(targets))
    log_probs = torch.randn(6, 3, generator=generator).log_softmax(-1)
    alignment = forced_align(log_probs, torch.tensor(targets))
    scores = {path: float(log_probs[torch.arange(6), list(path)].sum()) for path in ctc_paths(targets, 6, 3)}
    best = max(scores, key=scores.get)
    assert alignment.frame_tokens.tolist() == list(best)
    assert alignment.score == pytest.approx(scores[best])


def test_repeated_letters_need_a_blank_between_them():
    log_probs = torch.zeros(3, 4).log_softmax(-1)  # T = 3 = S + repeats for "AA": the only path is A _ A
    assert forced_align(log_probs, torch.tensor([2, 2])).frame_tokens.tolist() == [2, 0, 2]
    log_probs = torch.tensor([[-5.0, -0.1, -5, -5]] * 6)  # even when the blank is unlikely
    alignment = forced_align(log_probs, torch.tensor([1, 1, 1]))
    assert alignment.frame_tokens.tolist() in ([1, 1, 0, 1, 0, 1], [1, 0, 1, 1, 0, 1], [1, 0, 1, 0, 1, 1])
    assert alignment.frame_tokens.tolist() == torchaudio_path(log_probs, torch.tensor([1, 1, 1])).tolist()
    assert [(s.start, s.end) for s in alignment.token_spans][1:] != [(2, 3), (3, 4)]  # never merged


def test_just_enough_frames_leaves_no_room_for_blanks():
    targets = torch.tensor([1, 2, 3, 2])
    log_probs = torch.full((4, 4), -0.1).index_fill(1, torch.tensor([0]), -0.01)  # blanks more likely, no matter
    assert forced_align(log_probs, targets).frame_tokens.tolist() == [1, 2, 3, 2]


def test_impossible_alignments_raise_clear_errors():
    with pytest.raises(ValueError, match=r"3 tokens \(1 adjacent repeats.*at least 4 frames"):
        forced_align(torch.zeros(3, 5), torch.tensor([1, 1, 2]))
    with pytest.raises(ValueError, match="blank id 0"):
        forced_align(torch.zeros(5, 5), torch.tensor([1, 0, 2]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        forced_align(torch.zeros(5, 5), torch.tensor([1, 7]))
    with pytest.raises(ValueError, match=r"\(T, V\)"):
        forced_align(torch.zeros(1, 5, 5), torch.tensor([1]))
    log_probs = torch.zeros(4, 3)
    log_probs[:, 2] = float("-inf")  # token 2 can never be emitted
    with pytest.raises(ValueError, match="probability 0"):
        forced_align(log_probs, torch.tensor([1, 2]))


def test_no_targets_is_all_blank():
    alignment = forced_align(torch.randn(5, 3).log_softmax(-1), torch.tensor([], dtype=torch.long))
    assert alignment.frame_tokens.tolist() == [0] * 5 and alignment.token_spans == []


def test_word_timings_in_seconds():
    seconds_per_frame = ModelConfig.tiny().frame_stride / 16_000
    assert seconds_per_frame == 0.02
    ids = TOKENIZER.symbol_ids
    spans = [TokenSpan(ids["H"], 2, 4, 0.5), TokenSpan(ids["I"], 5, 6, 1.0), TokenSpan(ids["|"], 6, 8, 1.0),
             TokenSpan(ids["Y"], 9, 10, 1.0), TokenSpan(ids["O"], 10, 11, 1.0), TokenSpan(ids["U"], 12, 15, 1.0)]
    assert word_timings(spans, TOKENIZER, seconds_per_frame) == [
        WordTiming("HI", pytest.approx(0.04), pytest.approx(0.12), pytest.approx(2 / 3)),
        WordTiming("YOU", pytest.approx(0.18), pytest.approx(0.30), pytest.approx(1.0))]


def test_align_words_on_hand_built_log_probs():
    frames = "__HH_I_||_YO_UUU___"
    ids = [TOKENIZER.blank_id if c == "_" else TOKENIZER.symbol_ids[c] for c in frames]
    log_probs = (10 * torch.nn.functional.one_hot(torch.tensor(ids), len(TOKENIZER)).float()).log_softmax(-1)
    words = align_words(log_probs, "hi you", TOKENIZER, 0.02)
    assert [(w.word, round(w.start, 2), round(w.end, 2)) for w in words] == [("HI", 0.04, 0.12), ("YOU", 0.2, 0.32)]
    assert all(w.score > 0.99 for w in words)
    assert align_words(log_probs, "  ", TOKENIZER) == []
