"""The pretraining objective L = L_m + alpha * L_d (+ feature penalty), paper section 3.2.

Pure functions of tensors; `Wav2Vec2ForPreTraining` gathers their inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def contrastive_logits(context: Tensor, positives: Tensor, negatives: Tensor, temperature: float) -> Tensor:
    """sim(c_t, q) / kappa for q in {q_t, K distractors} (paper eq. 3): (N, 1 + K).

    context c_t (N, F), positives q_t (N, F), negatives (N, K, F); column 0 is the
    positive. sim is the cosine similarity, computed in fp32. A distractor that equals
    its positive exactly gets -inf, so it is not counted against the model.
    """
    candidates = torch.cat([positives.unsqueeze(1), negatives], dim=1)  # (N, 1 + K, F)
    logits = F.cosine_similarity(context.float().unsqueeze(1), candidates.float(), dim=-1) / temperature
    same_as_positive = (negatives == positives.unsqueeze(1)).all(dim=-1)  # (N, K)
    if same_as_positive.any():
        logits[:, 1:] = logits[:, 1:].masked_fill(same_as_positive, float("-inf"))
    return logits


def batched_contrastive_logits(context: Tensor, targets: Tensor, time_mask: Tensor, negative_indices: Tensor,
                               temperature: float) -> Tensor:
    """`contrastive_logits` for every masked step of a batch, without copying a vector per candidate.

    context c (B, T, F), targets q (B, T, F), time_mask (B, T) bool, negative_indices
    (B, T, K) into the flattened (B * T) targets (see `sample_negatives`) -> (N, 1 + K)
    for the N masked steps in row-major order, column 0 the positive.

    The values are `contrastive_logits` on the gathered rows: cos(c, q) = c/|c| . q/|q|.
    Gathering N x (1 + K) copies of F-dim vectors, as the formula reads, is most of the
    loss's time and memory. Here the vectors are normalised once, every step of an
    utterance is scored against every other step in one (T, T) matrix product, and the
    candidates' scores are picked from it. Distractors from other utterances (fairseq's
    cross-sample negatives) take the row-by-row product. A distractor equal to its
    positive is found by comparing ids of distinct target vectors, and gets -inf.
    """
    batch, steps, dim = targets.shape
    rows = time_mask.reshape(-1).nonzero().squeeze(-1)  # (N,) flat index of each masked step
    candidates = torch.cat([rows[:, None], negative_indices.reshape(batch * steps, -1)[rows]], dim=1)  # (N, 1+K)
    with torch.autocast(context.device.type, enabled=False):
        c = F.normalize(context.float(), dim=-1, eps=1e-8)
        q = F.normalize(targets.float(), dim=-1, eps=1e-8)
        if bool((candidates // steps == rows[:, None] // steps).all()):
            scores = torch.bmm(c, q.transpose(1, 2)).reshape(batch * steps, steps)  # (B*T, T): c_t . q_s
            logits = scores[rows].gather(1, candidates % steps)
        else:
            logits = (c.reshape(-1, dim)[rows].unsqueeze(1) * q.reshape(-1, dim)[candidates]).sum(-1)
        logits = logits / temperature
    _, vector_id = torch.unique(targets.detach().reshape(-1, dim), dim=0, return_inverse=True)  # (B*T,)
    ids = vector_id[candidates]
    same_as_positive = ids[:, 1:] == ids[:, :1]  # (N, K)
    if same_as_positive.any():
        logits = torch.cat([logits[:, :1], logits[:, 1:].masked_fill(same_as_positive, float("-inf"))], dim=1)
    return logits


def contrastive_loss(logits: Tensor, reduction: str = "sum") -> Tensor:
    """L_m = -log softmax(logits)[:, 0]: cross-entropy with the positive in column 0.

    logits (N, 1 + K) -> scalar, summed over the N masked steps (or their mean).
    """
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits.float(), target, reduction=reduction)


def contrastive_accuracy(logits: Tensor) -> Tensor:
    """Fraction of the N masked steps whose positive (column 0) beats every distractor.

    logits (N, 1 + K) -> scalar. A tie counts as wrong: a collapsed model that gives
    every candidate the same score sits at 0, not at 1 as `argmax == 0` would report
    (argmax picks the first of equal values). fairseq counts a step wrong when the
    positive is both the argmax and the argmin, which agrees except when the positive
    ties with some, not all, distractors. Distractors set to -inf (equal to the positive,
    see `contrastive_logits`) are out of the task and never tie.
    """
    return (logits[:, 0] > logits[:, 1:].max(dim=-1).values).float().mean()


def diversity_loss(perplexity: Tensor, num_entries: int) -> Tensor:
    """L_d = (G V - sum_g exp(H(p_bar_g))) / (G V) (paper eq. 4): 0 when every entry is used.

    `perplexity` is `codebook_perplexity` of the softmax, `num_entries` is G * V.
    """
    return (num_entries - perplexity) / num_entries


def feature_penalty(features: Tensor) -> Tensor:
    """Mean squared activation of the feature encoder's output Z (B, T, C): a scalar."""
    return features.float().pow(2).mean()
