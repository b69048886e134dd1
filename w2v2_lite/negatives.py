"""Distractor sampling for the contrastive task (paper section 3.2).

For each masked step t the model must pick the true quantized vector q_t among K
distractors, drawn uniformly (with replacement) from the quantized vectors of the
*other* masked steps of the same utterance. fairseq can add distractors from any
utterance of the batch ("cross-sample negatives").
"""

from __future__ import annotations

import torch
from torch import Tensor


def _draw_others(candidates: Tensor, count: int, generator: torch.Generator | None) -> Tensor:
    """For each of the n `candidates`, `count` draws from the other n - 1: (n, count)."""
    n = candidates.numel()
    if n < 2:  # no other step: the positive stands in, and its logit becomes -inf
        return candidates[:, None].expand(n, count)
    draws = torch.randint(0, n - 1, (n, count), generator=generator)
    draws = draws + (draws >= torch.arange(n)[:, None]).long()  # skip the step itself
    return candidates[draws]


def sample_negatives(mask: Tensor, num_negatives: int, cross_sample_negatives: int = 0,
                     generator: torch.Generator | None = None) -> Tensor:
    """Indices of the K distractors of every step: (B, T, K) long.

    mask (B, T) bool marks the masked steps. Each index points into the flattened
    (B * T) sequence of quantized vectors, so utterance b, step t is b * T + t. The first
    `num_negatives` come from the same utterance, the next `cross_sample_negatives`
    from the masked steps of the whole batch; never the step itself. Rows of unmasked
    steps point at the step itself and are not used.
    """
    batch, steps = mask.shape
    total = num_negatives + cross_sample_negatives
    flat_mask = mask.reshape(-1).cpu()
    indices = torch.arange(batch * steps).unsqueeze(-1).repeat(1, total)  # (B*T, K)
    if num_negatives:
        for row in range(batch):
            masked = torch.nonzero(flat_mask[row * steps:(row + 1) * steps]).squeeze(-1) + row * steps
            indices[masked, :num_negatives] = _draw_others(masked, num_negatives, generator)
    if cross_sample_negatives:
        masked = torch.nonzero(flat_mask).squeeze(-1)
        indices[masked, num_negatives:] = _draw_others(masked, cross_sample_negatives, generator)
    return indices.view(batch, steps, total).to(mask.device)
