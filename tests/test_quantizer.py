"""The Gumbel product quantizer (paper section 2, eq. 1-2) and its temperature schedule."""

from __future__ import annotations

import math

import pytest
import torch

from w2v2_lite.config import ModelConfig
from w2v2_lite.quantizer import GumbelVectorQuantizer, codebook_perplexity, gumbel_temperature_at

from tolerances import assert_close_to_scale, scaled_difference


@pytest.fixture
def quantizer() -> GumbelVectorQuantizer:
    torch.manual_seed(0)
    return GumbelVectorQuantizer(ModelConfig.tiny())


def _features(batch: int = 2, steps: int = 9, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, steps, ModelConfig.tiny().conv_dim, generator=torch.Generator().manual_seed(seed))


def test_shapes(quantizer):
    cfg = ModelConfig.tiny()
    out = quantizer.eval()(_features())
    assert out.quantized.shape == (2, 9, cfg.codevector_dim)
    assert out.codes.shape == (2, 9, cfg.num_code_groups)
    assert out.probs.shape == (2, 9, cfg.num_code_groups, cfg.num_codes_per_group)
    assert out.softmax_perplexity.shape == () and out.code_perplexity.shape == ()
    assert_close_to_scale(out.probs.sum(dim=-1), torch.ones(2, 9, cfg.num_code_groups), 1e-6)


def test_eval_mode_is_argmax_and_concatenates_chosen_codevectors(quantizer):
    quantizer.eval()
    features = _features()
    out = quantizer(features)
    groups, entries = quantizer.num_groups, quantizer.num_codes
    scores = features @ quantizer.logits.weight.T + quantizer.logits.bias  # (B, T, G*V)
    scores = scores.view(2, 9, groups, entries)
    assert torch.equal(out.codes, scores.argmax(dim=-1))
    size = quantizer.codevector_dim // groups
    for b in range(2):
        for t in range(9):
            chosen = [quantizer.codevectors[g * entries + out.codes[b, t, g]] for g in range(groups)]
            assert_close_to_scale(out.quantized[b, t], torch.cat(chosen), 1e-6)
            assert all(len(piece) == size for piece in chosen)


def test_eval_mode_is_deterministic(quantizer):
    quantizer.eval()
    features = _features()
    assert torch.equal(quantizer(features).quantized, quantizer(features).quantized)


def test_train_mode_is_hard_one_hot_with_straight_through_gradients(quantizer):
    quantizer.train()
    torch.manual_seed(1)
    features = _features()
    out = quantizer(features)
    groups, entries = quantizer.num_groups, quantizer.num_codes
    # Forward values: exactly one codevector per group (hard).
    for b in range(2):
        for t in range(9):
            chosen = [quantizer.codevectors[g * entries + out.codes[b, t, g]] for g in range(groups)]
            # hard - soft.detach() + soft is 1 or 0 up to rounding
            assert_close_to_scale(out.quantized[b, t], torch.cat(chosen), 1e-6)
    # Gradients reach the scoring layer (straight-through), and the codebook.
    weights = torch.randn_like(out.quantized)
    (out.quantized * weights).sum().backward()
    assert quantizer.logits.weight.grad is not None
    assert quantizer.logits.weight.grad.abs().sum() > 0
    assert quantizer.codevectors.grad.abs().sum() > 0
    # Only the chosen rows of the codebook get gradient.
    used = {g * entries + c for g in range(groups) for c in out.codes[..., g].flatten().tolist()}
    for row in range(groups * entries):
        has_grad = quantizer.codevectors.grad[row].abs().sum().item() > 0
        assert has_grad == (row in used)


def test_train_mode_samples_eval_mode_does_not(quantizer):
    features = _features(4, 50)
    quantizer.eval()
    argmax_codes = quantizer(features).codes
    quantizer.train()
    quantizer.set_temperature(2.0)
    torch.manual_seed(2)
    sampled = quantizer(features).codes
    # With Gumbel noise at tau=2 some choices differ from the argmax (logit std ~ sqrt(C)).
    assert not torch.equal(sampled, argmax_codes)


def test_eval_mode_has_no_gradient_to_the_scores_via_codes(quantizer):
    # argmax one-hot is not differentiable: the scoring layer gets no gradient from Q.
    quantizer.eval()
    out = quantizer(_features())
    out.quantized.sum().backward()
    assert quantizer.logits.weight.grad is None or quantizer.logits.weight.grad.abs().sum() == 0


def test_temperature_is_settable_and_validated(quantizer):
    assert quantizer.temperature == ModelConfig.tiny().gumbel_temperature[0]
    quantizer.set_temperature(0.7)
    assert quantizer.temperature == 0.7
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            quantizer.set_temperature(bad)
    assert quantizer.temperature == 0.7


def test_temperature_is_used_in_training(quantizer, monkeypatch):
    seen = []
    original = torch.nn.functional.gumbel_softmax

    def spy(logits, tau=1.0, hard=False, **kwargs):
        seen.append((tau, hard))
        return original(logits, tau=tau, hard=hard, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "gumbel_softmax", spy)
    quantizer.train()
    quantizer.set_temperature(0.37)
    quantizer(_features())
    assert seen == [(0.37, True)]


def test_temperature_shapes_the_straight_through_gradient(quantizer):
    # gumbel_softmax picks argmax(scores + g) whatever tau is; tau sets the soft
    # distribution softmax((scores + g) / tau), hence the straight-through gradient.
    features = _features()
    grads = []
    for tau in (0.5, 5.0):
        quantizer.zero_grad()
        quantizer.train()
        quantizer.set_temperature(tau)
        torch.manual_seed(3)
        out = quantizer(features)
        out.quantized.pow(2).sum().backward()
        grads.append(quantizer.logits.weight.grad.clone())
    assert scaled_difference(grads[0], grads[1]) > 1e-2


@pytest.mark.parametrize("step", [0, 1, 1000, 100_000, 277_258, 277_259, 400_000, 10**7])
def test_gumbel_temperature_schedule(step):
    assert gumbel_temperature_at(step, (2.0, 0.5, 0.999995)) == pytest.approx(max(2.0 * 0.999995**step, 0.5))


def test_gumbel_temperature_schedule_landmarks():
    schedule = (2.0, 0.5, 0.999995)
    assert gumbel_temperature_at(0, schedule) == 2.0
    # Reaches the floor after ln(4) / -ln(0.999995) ~ 277,258 updates, then stays there.
    crossing = math.log(0.25) / math.log(0.999995)
    assert gumbel_temperature_at(int(crossing) - 1000, schedule) > 0.5
    assert gumbel_temperature_at(int(crossing) + 1000, schedule) == 0.5
    assert gumbel_temperature_at(10**6, (2.0, 0.1, 0.999995)) == pytest.approx(0.1)
    values = [gumbel_temperature_at(step, schedule) for step in range(0, 400_000, 10_000)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_perplexity_is_over_masked_steps_only(quantizer):
    quantizer.eval()
    features = _features(2, 10)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, [1, 4, 5]] = True
    mask[1, [0, 9]] = True
    out = quantizer(features, mask)
    probs = out.probs.reshape(20, quantizer.num_groups, quantizer.num_codes)
    selected = probs[mask.reshape(-1)]
    assert_close_to_scale(out.softmax_perplexity, codebook_perplexity(selected), 1e-6)
    one_hot = torch.nn.functional.one_hot(out.codes.reshape(20, -1), quantizer.num_codes).float()
    assert_close_to_scale(out.code_perplexity, codebook_perplexity(one_hot[mask.reshape(-1)]), 1e-6)
    unmasked = quantizer(features)
    assert out.softmax_perplexity.item() != pytest.approx(unmasked.softmax_perplexity.item(), rel=1e-4)


def test_perplexity_bounds(quantizer):
    quantizer.eval()
    out = quantizer(_features(4, 30))
    gv = quantizer.num_groups * quantizer.num_codes
    for value in (out.softmax_perplexity.item(), out.code_perplexity.item()):
        assert quantizer.num_groups - 1e-4 <= value <= gv + 1e-3


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_collapsed_codebook_gives_code_perplexity_g(quantizer, training):
    quantizer.train(training)
    with torch.no_grad():
        quantizer.logits.weight.zero_()
        quantizer.logits.bias.zero_()
        quantizer.logits.bias[5] = 10.0  # entry 5 of group 0 always wins
        quantizer.logits.bias[quantizer.num_codes + 7] = 10.0  # entry 7 of group 1
    out = quantizer(_features())
    assert (out.codes[..., 0] == 5).all() and (out.codes[..., 1] == 7).all()
    assert out.code_perplexity.item() == pytest.approx(quantizer.num_groups)


def test_code_perplexity_in_training_counts_the_noise_free_best_codes(quantizer):
    # Weak scores, so that the Gumbel noise changes most choices: the codes used in training
    # (out.codes) then differ from the best-scoring ones, and the perplexity must be the latter's.
    with torch.no_grad():
        quantizer.logits.weight.mul_(0.01)
    features = _features(2, 40)
    mask = torch.zeros(2, 40, dtype=torch.bool)
    mask[:, ::3] = True
    quantizer.eval()
    best = quantizer(features, mask)
    quantizer.train()
    torch.manual_seed(4)
    trained = quantizer(features, mask)
    assert (trained.codes != best.codes).float().mean() > 0.5
    assert_close_to_scale(trained.code_perplexity, best.code_perplexity, 1e-6)
    sampled = torch.nn.functional.one_hot(trained.codes.reshape(80, -1), quantizer.num_codes).float()
    assert abs(codebook_perplexity(sampled, mask).item() - trained.code_perplexity.item()) > 1.0
    assert not trained.code_perplexity.requires_grad


def test_scores_start_as_fairseq_initialises_them(quantizer):
    weight = quantizer.logits.weight  # N(0, 1), bias 0: fairseq's weight_proj
    assert abs(weight.mean().item()) < 0.02 and abs(weight.std().item() - 1.0) < 0.02
    assert (quantizer.logits.bias == 0).all()


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_quantizer_follows_the_model_dtype(quantizer, training):
    quantizer.double().train(training)
    out = quantizer(_features().double())
    assert out.quantized.dtype == torch.float64


def test_a_fresh_state_dict_holds_the_schedules_start_temperature(quantizer):
    start = ModelConfig.tiny().gumbel_temperature[0]
    state = {name: value.clone() for name, value in quantizer.state_dict().items()}
    assert state["gumbel_temperature"].item() == pytest.approx(start)
    quantizer.set_temperature(0.6)
    quantizer.load_state_dict(state)  # a checkpoint saved before any annealing
    assert quantizer.temperature == pytest.approx(start)
