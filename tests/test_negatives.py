"""Distractor sampling (paper section 3.2): from the other masked steps of the same utterance."""

from __future__ import annotations

import pytest
import torch

from w2v2_lite.negatives import sample_negatives


def _random_mask(batch: int, steps: int, fraction: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, steps, generator=generator) < fraction
    mask[:, 0] = True  # at least two masked steps per row
    mask[:, -1] = True
    return mask


def test_shape_and_dtype():
    mask = _random_mask(3, 20, 0.5, 0)
    negatives = sample_negatives(mask, 7, generator=torch.Generator().manual_seed(0))
    assert negatives.shape == (3, 20, 7)
    assert negatives.dtype == torch.long
    with_cross = sample_negatives(mask, 7, cross_sample_negatives=4, generator=torch.Generator().manual_seed(0))
    assert with_cross.shape == (3, 20, 11)


def test_negatives_are_other_masked_steps_of_the_same_utterance():
    batch, steps, k = 4, 30, 25
    mask = _random_mask(batch, steps, 0.4, 1)
    negatives = sample_negatives(mask, k, generator=torch.Generator().manual_seed(1))
    flat_mask = mask.reshape(-1)
    for b in range(batch):
        for t in range(steps):
            if not mask[b, t]:
                continue
            for index in negatives[b, t].tolist():
                assert index // steps == b, "a distractor from another utterance"
                assert flat_mask[index], "a distractor at an unmasked step"
                assert index != b * steps + t, "the step itself as its own distractor"


def test_unmasked_rows_point_at_themselves():
    mask = _random_mask(2, 10, 0.5, 2)
    negatives = sample_negatives(mask, 3, generator=torch.Generator().manual_seed(2))
    for b in range(2):
        for t in range(10):
            if not mask[b, t]:
                assert (negatives[b, t] == b * 10 + t).all()


def test_cross_sample_negatives_come_from_any_masked_step_never_itself():
    batch, steps, k, cross = 4, 12, 3, 40
    mask = _random_mask(batch, steps, 0.5, 3)
    negatives = sample_negatives(mask, k, cross_sample_negatives=cross, generator=torch.Generator().manual_seed(3))
    flat_mask = mask.reshape(-1)
    utterances_seen = set()
    for b in range(batch):
        for t in range(steps):
            if not mask[b, t]:
                continue
            own = negatives[b, t, :k].tolist()
            assert all(index // steps == b for index in own)
            for index in negatives[b, t, k:].tolist():
                assert flat_mask[index]
                assert index != b * steps + t
                utterances_seen.add((b, index // steps))
    # Cross-sample draws do reach other utterances.
    assert any(b != other for b, other in utterances_seen)


def test_cross_sample_only():
    mask = _random_mask(3, 10, 0.5, 4)
    negatives = sample_negatives(mask, 0, cross_sample_negatives=5, generator=torch.Generator().manual_seed(4))
    assert negatives.shape == (3, 10, 5)
    flat_mask = mask.reshape(-1)
    for b, t in mask.nonzero().tolist():
        for index in negatives[b, t].tolist():
            assert flat_mask[index] and index != b * 10 + t


def test_distribution_is_roughly_uniform_over_the_other_masked_steps():
    steps = 12
    mask = torch.zeros(1, steps, dtype=torch.bool)
    masked_steps = [1, 3, 4, 8, 11]
    mask[0, masked_steps] = True
    k = 4000
    negatives = sample_negatives(mask, k, generator=torch.Generator().manual_seed(5))
    for t in masked_steps:
        others = [s for s in masked_steps if s != t]
        counts = torch.bincount(negatives[0, t], minlength=steps).float()
        expected = k / len(others)  # 1000
        for s in others:
            # binomial sd = sqrt(4000 * 0.25 * 0.75) ~ 27; allow ~5 sd
            assert abs(counts[s].item() - expected) < 140, (t, s, counts[s].item())
        assert counts.sum().item() == k
        assert counts[t].item() == 0


def test_cross_sample_distribution_is_roughly_uniform():
    mask = torch.zeros(2, 4, dtype=torch.bool)
    mask[0, [0, 2]] = True
    mask[1, [1, 3]] = True
    negatives = sample_negatives(mask, 0, cross_sample_negatives=3000, generator=torch.Generator().manual_seed(6))
    counts = torch.bincount(negatives[0, 0], minlength=8).float()
    for index in (2, 5, 7):  # the other masked steps of the whole batch
        assert abs(counts[index].item() - 1000) < 130
    assert counts[0].item() == 0


def test_reproducible_with_a_generator():
    mask = _random_mask(3, 40, 0.5, 7)
    first = sample_negatives(mask, 10, 2, generator=torch.Generator().manual_seed(7))
    second = sample_negatives(mask, 10, 2, generator=torch.Generator().manual_seed(7))
    other = sample_negatives(mask, 10, 2, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_single_masked_step_points_at_itself():
    # With no other masked step the positive stands in; contrastive_logits then makes it -inf.
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 3] = True
    mask[1, [1, 4]] = True
    negatives = sample_negatives(mask, 5, generator=torch.Generator().manual_seed(9))
    assert (negatives[0, 3] == 3).all()
    assert (negatives[1, 1] == 6 + 4).all()
    assert (negatives[1, 4] == 6 + 1).all()


def test_no_masked_steps_at_all():
    mask = torch.zeros(2, 5, dtype=torch.bool)
    negatives = sample_negatives(mask, 3, cross_sample_negatives=2)
    assert negatives.shape == (2, 5, 5)
    assert torch.equal(negatives, torch.arange(10).view(2, 5, 1).expand(2, 5, 5))


@pytest.mark.parametrize("seed", range(3))
def test_indices_address_the_flattened_batch(seed):
    # Gathering with the indices picks the vectors of the same utterance.
    batch, steps = 3, 9
    mask = _random_mask(batch, steps, 0.6, seed)
    targets = torch.arange(batch)[:, None, None].expand(batch, steps, 1).float()  # value = utterance id
    negatives = sample_negatives(mask, 6, generator=torch.Generator().manual_seed(seed))
    gathered = targets.reshape(batch * steps, 1)[negatives.reshape(-1)].view(batch, steps, 6)
    for b in range(batch):
        assert (gathered[b][mask[b]] == b).all()
