"""Span masking of the latent features (paper section 3.1), with fairseq's semantics.

Each step of an utterance of length T starts a span with probability p; every span
covers M steps, and spans may overlap. fairseq parameterises this with
`mask_prob = p * M`: the number of spans is int(mask_prob * T / M + u), u ~ U[0, 1),
and the starts are drawn without replacement. With p = 0.065 and M = 10 about 49% of
the steps end up masked, in merged spans of 14.7 steps on average.
"""

from __future__ import annotations

import torch
from torch import Tensor


def span_mask(shape: tuple[int, int], mask_prob: float, span_length: int, min_spans: int = 0,
              lengths: Tensor | None = None, require_same_masks: bool = False,
              generator: torch.Generator | None = None, device: torch.device | str | None = None) -> Tensor:
    """Draw a boolean span mask (B, T): True where a step is masked.

    Args:
        shape: (B, T), batch size and number of steps.
        mask_prob: p * M, fairseq's `mask_prob` (0.65 in the paper).
        span_length: M, the steps covered by each span (10 in the paper).
        min_spans: at least this many spans per utterance (fairseq `min_masks`).
        lengths: (B,) real steps per utterance; steps past them (padding) are never
            masked and do not count towards the number of spans.
        require_same_masks: trim every row, at random, to the smallest masked count in
            the batch (fairseq's default, needed when targets are stacked per row).
        generator: a `torch.Generator` to make the draw reproducible.
    """
    batch, steps = shape
    mask = torch.zeros(batch, steps, dtype=torch.bool)
    if mask_prob <= 0 or steps == 0:
        return mask.to(device)
    row_lengths = [steps] * batch if lengths is None else [int(n) for n in lengths.tolist()]
    chosen: list[Tensor] = []
    for size in row_lengths:
        if size <= 0:
            chosen.append(torch.empty(0, dtype=torch.long))
            continue
        uniform = torch.rand((), generator=generator).item()
        num_spans = max(min_spans, int(mask_prob * size / span_length + uniform))
        # Starts may lie anywhere a whole span fits; when that leaves too few places,
        # fairseq widens the range and lets the spans run past the end (cut below).
        start_range = size - span_length
        if start_range <= num_spans:
            start_range = num_spans + 1
        starts = torch.randperm(start_range, generator=generator)[:num_spans]
        steps_in_spans = (starts[:, None] + torch.arange(span_length)).flatten()
        chosen.append(torch.unique(steps_in_spans[steps_in_spans < size]))
    if require_same_masks:
        fewest = min(len(indices) for indices in chosen)
        chosen = [indices[torch.randperm(len(indices), generator=generator)[:fewest]] for indices in chosen]
    for row, indices in enumerate(chosen):
        mask[row, indices] = True
    return mask.to(device)


def apply_mask(x: Tensor, time_mask: Tensor | None, mask_embedding: Tensor | None,
               channel_mask: Tensor | None = None) -> Tensor:
    """Replace masked steps of x (B, T, D) by `mask_embedding` (D,), zero masked channels.

    time_mask: (B, T) bool; channel_mask: (B, D) bool, the same channels for every step.
    """
    if time_mask is not None:
        x = torch.where(time_mask.unsqueeze(-1), mask_embedding.to(x.dtype), x)
    if channel_mask is not None:
        x = x.masked_fill(channel_mask.unsqueeze(1), 0.0)
    return x


def span_statistics(mask: Tensor, lengths: Tensor | None = None) -> tuple[float, float]:
    """(fraction of real steps masked, mean length of the merged masked spans) of (B, T).

    Overlapping spans merge into one run, so the mean run is longer than M.
    """
    mask = mask.bool()
    if lengths is not None:
        real = torch.arange(mask.shape[1], device=mask.device)[None, :] < lengths[:, None]
        total = int(real.sum())
    else:
        total = mask.numel()
    padded = torch.nn.functional.pad(mask.to(torch.int8), (1, 1))
    starts = int(((padded[:, 1:] - padded[:, :-1]) == 1).sum())
    masked = int(mask.sum())
    return masked / max(total, 1), masked / max(starts, 1)
