"""CTC forced alignment: where in time each character and word of a known transcript lies.

Given the model's log-probabilities (T, V) and a transcript y of S tokens, CTC reads y
as the extended sequence z = (_, y_1, _, y_2, _, ..., y_S, _) of 2S + 1 states (`_` the
blank). A path spends each frame in one state and moves, from one frame to the next,
from state s to s (stay), s + 1 (step) or s + 2 (skip a blank; allowed only between two
different tokens, since a blank must separate repeats). The Viterbi recursion keeps the
best path into each state:

    delta_0(0) = log p_0(_),  delta_0(1) = log p_0(y_1)
    delta_t(s) = log p_t(z_s) + max(delta_t-1(s), delta_t-1(s - 1), delta_t-1(s - 2) if z_s != _ and z_s != z_s-2)

and the path ends in the last token or the final blank. Backtracking gives every frame's
state, hence each token's frames [start, end); a word spans its characters, and frame k
starts at k * frame_stride samples (320, 20 ms at 16 kHz).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .data.tokenizer import CharTokenizer
from .decoding import TokenSpan

NEGATIVE_INFINITY = float("-inf")


@dataclass(frozen=True)
class Alignment:
    """The best CTC path for a transcript.

    frame_tokens: (T,) long, the token each frame emits (the blank where none).
    frame_log_probs: (T,) log-probability of each frame's token.
    token_spans: one `TokenSpan` per target token, in order (frames [start, end)).
    """

    frame_tokens: Tensor
    frame_log_probs: Tensor
    token_spans: list[TokenSpan]

    @property
    def score(self) -> float:
        """log-probability of the whole path (the sum over frames)."""
        return float(self.frame_log_probs.sum())


@dataclass(frozen=True)
class WordTiming:
    """A word and where it lies, in seconds; score is its mean per-frame probability."""

    word: str
    start: float
    end: float
    score: float


def count_repeats(targets: Tensor) -> int:
    """Adjacent equal tokens in targets (S,): each needs a blank frame between the two."""
    return int((targets[1:] == targets[:-1]).sum()) if targets.numel() > 1 else 0


def forced_align(log_probs: Tensor, targets: Tensor, blank_id: int = 0) -> Alignment:
    """Viterbi CTC alignment: log_probs (T, V), targets (S,) token ids -> the best `Alignment`.

    Raises ValueError when the targets contain the blank or an id outside V, or when no
    path exists: T must be at least S + the number of adjacent repeats, and some path
    must have a nonzero probability.
    Ties go the way torchaudio's `forced_align` breaks them (stay, then step, then skip;
    the last token before the final blank), so the two give the same path.
    """
    if log_probs.dim() != 2:
        raise ValueError(f"log_probs must be (T, V), got shape {tuple(log_probs.shape)}")
    targets = torch.as_tensor(targets, dtype=torch.long).reshape(-1).cpu()
    num_frames, vocab_size = log_probs.shape
    if targets.numel() and (targets.min() < 0 or targets.max() >= vocab_size):
        raise ValueError(f"targets hold ids outside the vocabulary [0, {vocab_size}): {targets.tolist()}")
    if (targets == blank_id).any():
        raise ValueError(f"targets contain the blank id {blank_id}; the blank is never a target")
    repeats = count_repeats(targets)
    if num_frames < targets.numel() + repeats:
        raise ValueError(f"cannot align {targets.numel()} tokens ({repeats} adjacent repeats, each needing a blank "
                         f"between) to {num_frames} frames: CTC needs at least {targets.numel() + repeats} frames; "
                         "the audio is too short for this transcript")
    # The recursion runs in numpy: T steps of a few tiny operations, where torch's per-call
    # overhead (and its threads, on a busy CPU) would dominate. float32 as torchaudio's.
    states = np.full(2 * targets.numel() + 1, blank_id, dtype=np.int64)  # z: (2S + 1,)
    states[1::2] = targets.numpy()
    num_states = len(states)
    can_skip = np.zeros(num_states, dtype=bool)  # s - 2 -> s is allowed at tokens unlike the previous one
    can_skip[3::2] = states[3::2] != states[1:-2:2]
    emissions = log_probs.detach().float().cpu().numpy()[:, states]  # (T, 2S + 1): log p_t(z_s)
    delta = np.full(num_states, NEGATIVE_INFINITY, dtype=np.float32)
    delta[:2] = emissions[0, :2]
    moves = np.zeros((num_frames, num_states), dtype=np.int64)  # 0 stay, 1 step, 2 skip
    candidates = np.full((3, num_states), NEGATIVE_INFINITY, dtype=np.float32)  # from s, s - 1, s - 2
    for t in range(1, num_frames):
        candidates[0] = delta
        candidates[1, 1:] = delta[:-1]
        candidates[2, 2:] = np.where(can_skip[2:], delta[:-2], NEGATIVE_INFINITY)
        moves[t] = candidates.argmax(axis=0)  # the first maximum on ties: stay, then step, then skip
        delta = candidates[moves[t], np.arange(num_states)] + emissions[t]
    state = num_states - 1 if num_states == 1 or delta[-1] > delta[-2] else num_states - 2
    if delta[state] == NEGATIVE_INFINITY:
        raise ValueError("every path for these targets passes through a frame where its token has probability 0 "
                         "(log-probability -inf); the transcript does not fit this audio")
    path = np.zeros(num_frames, dtype=np.int64)  # (T,) each frame's state, an index into z
    for t in range(num_frames - 1, -1, -1):
        path[t] = state
        state -= moves[t, state]
    frame_tokens = torch.from_numpy(states[path])
    frame_log_probs = torch.from_numpy(emissions[np.arange(num_frames), path])
    probs, path = np.exp(frame_log_probs.numpy()).tolist(), path.tolist()
    spans, start = [], 0
    for t in range(1, num_frames + 1):  # a token's frames are the run of its (odd) state
        if t == num_frames or path[t] != path[start]:
            if path[start] % 2 == 1:
                spans.append(TokenSpan(int(states[path[start]]), start, t, sum(probs[start:t]) / (t - start)))
            start = t
    return Alignment(frame_tokens, frame_log_probs, spans)


def word_timings(token_spans: list[TokenSpan], tokenizer: CharTokenizer | None = None,
                 seconds_per_frame: float = 0.02) -> list[WordTiming]:
    """Group token spans into words at the word delimiter; frames -> seconds.

    A word starts at its first character's first frame and ends after its last
    character's last frame; its score is the mean per-frame probability over its
    characters' frames. seconds_per_frame: `ModelConfig.frame_stride / sample_rate`.
    """
    tokenizer = tokenizer or CharTokenizer()
    words: list[list[TokenSpan]] = [[]]
    for span in token_spans:
        if span.token == tokenizer.word_delimiter_id:
            words.append([])
        else:
            words[-1].append(span)
    timings = []
    for spans in filter(None, words):
        frames = sum(span.end - span.start for span in spans)
        score = sum(span.score * (span.end - span.start) for span in spans) / frames
        timings.append(WordTiming(tokenizer.decode([span.token for span in spans]), spans[0].start * seconds_per_frame,
                                  spans[-1].end * seconds_per_frame, score))
    return timings


def align_words(log_probs: Tensor, text: str, tokenizer: CharTokenizer | None = None,
                seconds_per_frame: float = 0.02) -> list[WordTiming]:
    """Times of each word of `text` in log_probs (T, V): forced alignment, then `word_timings`.

    An empty text has no words. Raises ValueError as `forced_align` does (text too long
    for the audio) or as the tokenizer does (characters outside the vocabulary).
    """
    tokenizer = tokenizer or CharTokenizer()
    if not text.strip():
        return []
    alignment = forced_align(log_probs, tokenizer.encode(text), tokenizer.blank_id)
    return word_timings(alignment.token_spans, tokenizer, seconds_per_frame)
