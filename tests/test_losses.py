"""The pretraining objective against direct, loop-by-loop implementations of the paper's formulas."""

from __future__ import annotations

import math

import pytest
import torch

from w2v2_lite.losses import (batched_contrastive_logits, contrastive_logits, contrastive_loss, diversity_loss,
                              feature_penalty)
from w2v2_lite.negatives import sample_negatives
from w2v2_lite.quantizer import codebook_perplexity

from tolerances import assert_close_to_scale

KAPPA = 0.1


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _reference_step_loss(c: list[float], q: list[float], distractors: list[list[float]], kappa: float) -> float:
    """Paper eq. 3: -log exp(sim(c, q)/k) / sum_{q~ in Q_t} exp(sim(c, q~)/k), where Q_t holds
    q and the distractors, and a distractor identical to q is left out of the sum."""
    numerator = math.exp(_cosine(c, q) / kappa)
    denominator = numerator
    for negative in distractors:
        if negative == q:
            continue
        denominator += math.exp(_cosine(c, negative) / kappa)
    return -math.log(numerator / denominator)


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    n, k, f = 6, 5, 8
    context = torch.randn(n, f, generator=generator, dtype=torch.float64)
    positives = torch.randn(n, f, generator=generator, dtype=torch.float64)
    negatives = torch.randn(n, k, f, generator=generator, dtype=torch.float64)
    return context, positives, negatives


def test_contrastive_logits_are_cosine_over_kappa(batch):
    context, positives, negatives = batch
    logits = contrastive_logits(context, positives, negatives, KAPPA)
    n, k = negatives.shape[:2]
    assert logits.shape == (n, 1 + k)
    expected = [[_cosine(context[i].tolist(), q) / KAPPA for q in [positives[i].tolist()] + negatives[i].tolist()]
                for i in range(n)]
    assert_close_to_scale(logits, torch.tensor(expected), 1e-6)  # sim is computed in fp32


def test_contrastive_logits_depend_on_kappa(batch):
    context, positives, negatives = batch
    assert_close_to_scale(contrastive_logits(context, positives, negatives, 0.5) * 0.5,
                          contrastive_logits(context, positives, negatives, 1.0), 1e-6)


def test_cosine_ignores_scale(batch):
    context, positives, negatives = batch
    assert_close_to_scale(contrastive_logits(3.0 * context, 0.5 * positives, 7.0 * negatives, KAPPA),
                          contrastive_logits(context, positives, negatives, KAPPA), 1e-6)


def test_contrastive_loss_matches_equation_3(batch):
    context, positives, negatives = batch
    logits = contrastive_logits(context, positives, negatives, KAPPA)
    per_step = [_reference_step_loss(context[i].tolist(), positives[i].tolist(),
                                     negatives[i].tolist(), KAPPA) for i in range(len(context))]
    assert contrastive_loss(logits).item() == pytest.approx(sum(per_step), rel=1e-5)
    assert contrastive_loss(logits, reduction="mean").item() == pytest.approx(sum(per_step) / len(per_step), rel=1e-5)


def test_negative_equal_to_positive_gets_minus_inf_and_is_excluded(batch):
    context, positives, negatives = batch
    negatives = negatives.clone()
    negatives[0, 2] = positives[0]
    negatives[3, 0] = positives[3]
    negatives[3, 4] = positives[3]
    logits = contrastive_logits(context, positives, negatives, KAPPA)
    assert logits[0, 3].item() == float("-inf")
    assert logits[3, 1].item() == float("-inf") and logits[3, 5].item() == float("-inf")
    finite = torch.isfinite(logits)
    assert finite.sum().item() == logits.numel() - 3
    # Positive column untouched.
    assert torch.isfinite(logits[:, 0]).all()
    per_step = [_reference_step_loss(context[i].tolist(), positives[i].tolist(),
                                     negatives[i].tolist(), KAPPA) for i in range(len(context))]
    loss = contrastive_loss(logits)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(sum(per_step), rel=1e-5)


def test_only_exact_duplicates_are_excluded(batch):
    context, positives, negatives = batch
    negatives = negatives.clone()
    negatives[1, 1] = positives[1] * 2.0  # same direction, cosine 1, but not the same vector
    logits = contrastive_logits(context, positives, negatives, KAPPA)
    assert torch.isfinite(logits).all()
    assert logits[1, 2].item() == pytest.approx(logits[1, 0].item(), rel=1e-6)


def test_a_distractor_sharing_only_some_coordinates_with_the_positive_is_kept(batch):
    # fairseq's rule is (negs == y).all(-1): only an exact copy is left out. A distractor equal
    # to the positive in all coordinates but one, or in one coordinate only, is a real distractor.
    context, positives, negatives = batch
    negatives = negatives.clone()
    negatives[2, 0] = positives[2]
    negatives[2, 0, 0] += 1.0  # all but one coordinate
    negatives[2, 1, 3] = positives[2, 3]  # one coordinate
    logits = contrastive_logits(context, positives, negatives, KAPPA)
    assert torch.isfinite(logits).all()
    expected = [_cosine(context[2].tolist(), q) / KAPPA for q in [positives[2].tolist()] + negatives[2].tolist()]
    assert_close_to_scale(logits[2], torch.tensor(expected), 1e-6)


def test_all_negatives_equal_positive_gives_zero_loss(batch):
    context, positives, _ = batch
    negatives = positives[:, None, :].repeat(1, 4, 1)
    logits = contrastive_logits(context, positives, negatives, KAPPA)
    assert contrastive_loss(logits).item() == pytest.approx(0.0, abs=1e-6)


def test_contrastive_loss_stays_on_the_logits_device():
    logits = torch.zeros(4, 3, device="meta")  # "meta" stands in for a GPU
    assert contrastive_loss(logits).device.type == "meta"


def test_contrastive_logits_computed_in_fp32_from_half_inputs():
    generator = torch.Generator().manual_seed(1)
    context = torch.randn(3, 8, generator=generator)
    positives = torch.randn(3, 8, generator=generator)
    negatives = torch.randn(3, 2, 8, generator=generator)
    logits = contrastive_logits(context.half(), positives.half(), negatives.half(), KAPPA)
    assert logits.dtype == torch.float32
    # fp16 keeps ~3 digits of each input (2e-4 of the logits' scale here, measured).
    assert_close_to_scale(logits, contrastive_logits(context, positives, negatives, KAPPA), 1e-3)


def test_contrastive_loss_gradient_pushes_positive_up(batch):
    context, positives, negatives = batch
    context = context.clone().requires_grad_(True)
    logits = contrastive_logits(context, positives, negatives, KAPPA)
    loss = contrastive_loss(logits)
    loss.backward()
    # A small step against the gradient lowers the loss.
    with torch.no_grad():
        stepped = contrastive_loss(contrastive_logits(context - 1e-3 * context.grad, positives, negatives, KAPPA))
    assert stepped.item() < loss.item()


def _reference_perplexity(probs: list[list[list[float]]]) -> float:
    """sum_g exp(-sum_v p_bar_gv log p_bar_gv), p_bar_g the average over steps, 0 log 0 = 0."""
    n, groups, entries = len(probs), len(probs[0]), len(probs[0][0])
    total = 0.0
    for g in range(groups):
        entropy = 0.0
        for v in range(entries):
            p_bar = sum(probs[i][g][v] for i in range(n)) / n
            if p_bar > 0:
                entropy -= p_bar * math.log(p_bar)
        total += math.exp(entropy)
    return total


def test_codebook_perplexity_matches_the_formula():
    generator = torch.Generator().manual_seed(2)
    probs = torch.randn(10, 2, 7, generator=generator, dtype=torch.float64).mul(3).softmax(dim=-1)
    assert codebook_perplexity(probs).item() == pytest.approx(_reference_perplexity(probs.tolist()), rel=1e-9)


def test_codebook_perplexity_with_mask_averages_selected_steps_only():
    generator = torch.Generator().manual_seed(3)
    probs = torch.randn(10, 2, 7, generator=generator, dtype=torch.float64).mul(3).softmax(dim=-1)
    mask = torch.tensor([True, False, False, True, True, False, True, False, False, False])
    expected = _reference_perplexity([probs[i].tolist() for i in range(10) if mask[i]])
    assert codebook_perplexity(probs, mask).item() == pytest.approx(expected, rel=1e-9)
    assert codebook_perplexity(probs, mask).item() != pytest.approx(codebook_perplexity(probs).item(), rel=1e-6)


@pytest.mark.parametrize("groups,entries", [(1, 4), (2, 320), (3, 5)])
def test_perplexity_is_gv_for_uniform_usage_and_g_for_collapse(groups, entries):
    uniform = torch.full((6, groups, entries), 1.0 / entries)
    assert codebook_perplexity(uniform).item() == pytest.approx(groups * entries, rel=1e-5)
    # Hard codes that use every entry equally often.
    codes = torch.arange(entries).repeat(2)[:, None].expand(-1, groups)
    one_hot = torch.nn.functional.one_hot(codes, entries).float()
    assert codebook_perplexity(one_hot).item() == pytest.approx(groups * entries, rel=1e-5)
    collapsed = torch.zeros(6, groups, entries)
    collapsed[:, :, 1] = 1.0
    assert codebook_perplexity(collapsed).item() == pytest.approx(groups, rel=1e-6)
    assert torch.isfinite(codebook_perplexity(collapsed))


def test_diversity_loss_matches_equation_4():
    generator = torch.Generator().manual_seed(4)
    groups, entries = 2, 9
    probs = torch.randn(12, groups, entries, generator=generator, dtype=torch.float64).mul(2).softmax(dim=-1)
    perplexity = codebook_perplexity(probs)
    gv = groups * entries
    expected = (gv - _reference_perplexity(probs.tolist())) / gv
    assert diversity_loss(perplexity, gv).item() == pytest.approx(expected, rel=1e-9)
    # 0 for uniform use, (GV - G)/GV for a collapsed codebook.
    assert diversity_loss(torch.tensor(float(gv)), gv).item() == pytest.approx(0.0)
    assert diversity_loss(torch.tensor(float(groups)), gv).item() == pytest.approx((gv - groups) / gv)


def test_diversity_loss_gradient_favours_spreading():
    logits = torch.zeros(4, 1, 3)
    logits[:, 0, 0] = 2.0  # peaked on entry 0
    logits.requires_grad_(True)
    loss = diversity_loss(codebook_perplexity(logits.softmax(dim=-1)), 3)
    loss.backward()
    assert (logits.grad[:, 0, 0] > 0).all()  # descending lowers the favoured entry's score


def test_feature_penalty_is_mean_of_squares():
    generator = torch.Generator().manual_seed(5)
    features = torch.randn(2, 3, 4, generator=generator)
    expected = sum(v * v for v in features.flatten().tolist()) / features.numel()
    assert feature_penalty(features).item() == pytest.approx(expected, rel=1e-5)  # fp32 sum, any order
    assert feature_penalty(features.half()).dtype == torch.float32
    assert feature_penalty(torch.full((1, 2, 2), 3.0)).item() == pytest.approx(9.0)


# ------------------------------------------------ the batched form used in training
def _batched_case(cross_sample: int):
    generator = torch.Generator().manual_seed(3)
    batch, steps, dim = 3, 12, 8
    context = torch.randn(batch, steps, dim, generator=generator, dtype=torch.float64, requires_grad=True)
    targets = torch.randn(batch, steps, dim, generator=generator, dtype=torch.float64)
    targets[1, 4] = targets[1, 7]  # two steps with the same quantized vector: each is -inf as the other's distractor
    targets.requires_grad_()
    time_mask = torch.rand(batch, steps, generator=generator) < 0.6
    time_mask[1, 4] = time_mask[1, 7] = True
    negatives = sample_negatives(time_mask, 5, cross_sample, generator)
    negatives[1, 4, 0], negatives[1, 7, 1] = 1 * steps + 7, 1 * steps + 4
    return context, targets, time_mask, negatives


def _gathered(context, targets, time_mask, negatives):
    flat_context, flat_targets = context.reshape(-1, context.shape[-1]), targets.reshape(-1, targets.shape[-1])
    rows = time_mask.reshape(-1).nonzero().squeeze(-1)
    distractors = flat_targets[negatives.reshape(flat_targets.shape[0], -1)[rows]]  # (N, K, F)
    return contrastive_logits(flat_context[rows], flat_targets[rows], distractors, KAPPA)


@pytest.mark.parametrize("cross_sample", [0, 3])
def test_batched_logits_and_gradients_equal_the_gathered_formula(cross_sample):
    context, targets, time_mask, negatives = _batched_case(cross_sample)
    fast = batched_contrastive_logits(context, targets, time_mask, negatives, KAPPA)
    slow = _gathered(context, targets, time_mask, negatives)
    assert torch.equal(fast.isinf(), slow.isinf()) and fast.isinf().sum() >= 2
    finite = ~slow.isinf()
    assert_close_to_scale(fast[finite], slow[finite], 1e-6)  # both are computed in fp32
    fast_grads = torch.autograd.grad(contrastive_loss(fast), (context, targets))
    slow_grads = torch.autograd.grad(contrastive_loss(slow), (context, targets))
    for fast_grad, slow_grad in zip(fast_grads, slow_grads):
        assert_close_to_scale(fast_grad, slow_grad, 1e-6)


def test_batched_logits_are_fp32_under_bf16_autocast():
    context, targets, time_mask, negatives = _batched_case(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = batched_contrastive_logits(context.float(), targets.float(), time_mask, negatives, KAPPA)
    assert fast.dtype == torch.float32
    slow = _gathered(context.detach(), targets.detach(), time_mask, negatives).float()
    finite = ~slow.isinf()
    assert_close_to_scale(fast[finite].detach(), slow[finite], 1e-6)
