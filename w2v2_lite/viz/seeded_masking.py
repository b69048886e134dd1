"""fairseq's span mask with a generator a browser can reproduce: the twin of static/masking.js.

`w2v2_lite.masking.span_mask` draws with torch's generator, which JavaScript cannot
replay. The masking widget redraws its mask in the browser, so it uses this module
instead: the same algorithm (`span_mask_from_draws`), fed by mulberry32, a 32-bit
generator that is a few lines in both languages and gives the same numbers in both.
tests/test_viz.py checks that `span_mask_from_draws` fed by torch's generator equals
`span_mask`, and that `seeded_span_mask` equals the JavaScript function run under node.

No torch here: the widget's picture needs only Python and numpy.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

UINT32 = 0xFFFFFFFF


def imul(a: int, b: int) -> int:
    """JavaScript's Math.imul on unsigned 32-bit values: the low 32 bits of a * b."""
    return (a * b) & UINT32


def mulberry32(seed: int) -> Callable[[], float]:
    """A generator of floats in [0, 1), each an exact multiple of 2**-32, seeded by `seed`.

    Bit for bit the `mulberry32` of static/masking.js.
    """
    state = seed & UINT32

    def next_float() -> float:
        nonlocal state
        state = (state + 0x6D2B79F5) & UINT32
        t = state
        t = imul(t ^ (t >> 15), t | 1)
        t = ((t + imul(t ^ (t >> 7), t | 61)) & UINT32) ^ t
        return ((t ^ (t >> 14)) & UINT32) / 4294967296

    return next_float


def span_mask_from_draws(steps: int, mask_prob: float, span_length: int, min_spans: int,
                         uniform: Callable[[], float],
                         first_of_permutation: Callable[[int, int], list[int]]) -> tuple[np.ndarray, list[int]]:
    """One row of fairseq's span mask (as `w2v2_lite.masking.span_mask`), given its random draws.

    The number of spans is max(min_spans, int(mask_prob * T / M + u)) with u = `uniform()`;
    their starts are `first_of_permutation(n, k)`, the first k entries of a random
    permutation of range(n), with n = T - M places (widened to k + 1 when that is too
    few, the spans then being cut at the end). Returns (mask (T,) bool, starts).
    """
    mask = np.zeros(max(steps, 0), dtype=bool)
    if mask_prob <= 0 or steps <= 0:
        return mask, []
    num_spans = max(min_spans, int(mask_prob * steps / span_length + uniform()))
    start_range = steps - span_length
    if start_range <= num_spans:
        start_range = num_spans + 1
    starts = [int(start) for start in first_of_permutation(start_range, num_spans)]
    for start in starts:
        mask[start:start + span_length] = True
    return mask, starts


def seeded_span_mask(steps: int, mask_prob: float, span_length: int, seed: int,
                     min_spans: int = 0) -> tuple[np.ndarray, list[int]]:
    """fairseq's span mask of T = `steps` steps drawn with mulberry32(seed).

    mask_prob is p * M, fairseq's `mask_prob`; span_length is M. The starts come from a
    partial Fisher-Yates shuffle. Returns (mask (T,) bool, starts in draw order), exactly
    what `seededSpanMask` in static/masking.js returns for the same arguments.
    """
    random = mulberry32(seed)

    def first_of_permutation(places: int, count: int) -> list[int]:
        order = list(range(places))
        for i in range(count):
            j = i + int(random() * (places - i))
            order[i], order[j] = order[j], order[i]
        return order[:count]

    return span_mask_from_draws(steps, mask_prob, span_length, min_spans, random, first_of_permutation)
