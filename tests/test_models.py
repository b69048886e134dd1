"""The three models on the tiny config: input checks, shapes, the pretraining step, CTC, padding."""

from __future__ import annotations

import pytest
import torch

from w2v2_lite.config import ModelConfig
from w2v2_lite.losses import contrastive_logits
from w2v2_lite.masking import span_mask
from w2v2_lite.models import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining, Wav2Vec2Model
from w2v2_lite.negatives import sample_negatives

from tolerances import assert_close_to_scale, scaled_difference

SAMPLES = 16000  # 1 s -> 49 frames
FRAMES = 49
NO_DROPOUT = dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, dropout_input=0.0,
                  dropout_features=0.0, final_dropout=0.0, layerdrop=0.0)


def _tiny(**overrides) -> ModelConfig:
    return ModelConfig.tiny(**(NO_DROPOUT | overrides))


def _waveform(batch: int = 2, samples: int = SAMPLES, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


def _mask_and_negatives(cfg: ModelConfig, batch: int = 2, steps: int = FRAMES, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    time_mask = span_mask((batch, steps), cfg.mask_time_prob, cfg.mask_time_length, 2, generator=generator)
    negatives = sample_negatives(time_mask, cfg.num_negatives, cfg.cross_sample_negatives, generator=generator)
    return time_mask, negatives


@pytest.fixture(scope="module")
def encoder() -> Wav2Vec2Model:
    torch.manual_seed(0)
    return Wav2Vec2Model(_tiny()).eval()


@pytest.fixture(scope="module")
def pretraining() -> Wav2Vec2ForPreTraining:
    torch.manual_seed(0)
    return Wav2Vec2ForPreTraining(_tiny()).eval()


# ----------------------------------------------------------------- input checks
@pytest.mark.parametrize("waveform,attention_mask,message", [
    (torch.randn(SAMPLES), None, r"unsqueeze\(0\)"),
    (torch.randn(1, 1, SAMPLES), None, r"\(batch, samples\)"),
    (torch.randn(()), None, r"\(batch, samples\)"),
    (torch.zeros(1, SAMPLES, dtype=torch.int16), None, r"float"),
    (torch.zeros(1, SAMPLES, dtype=torch.long), None, r"float"),
    (torch.randn(2, 399), None, r"399 samples.*receptive field of 400"),
    (torch.randn(2, SAMPLES).index_fill_(1, torch.tensor([123]), float("nan")), None, r"NaN or inf.*sample 123"),
    (torch.randn(2, SAMPLES).index_fill_(1, torch.tensor([7]), float("inf")), None, r"NaN or inf"),
    (torch.randn(2, SAMPLES).index_fill_(1, torch.tensor([7]), float("-inf")), None, r"NaN or inf"),
    (torch.randn(2, SAMPLES), torch.ones(2, SAMPLES - 1), r"attention_mask has shape"),
    (torch.randn(2, SAMPLES), torch.ones(1, SAMPLES), r"attention_mask has shape"),
    ([0.0] * SAMPLES, None, r"torch.Tensor"),
], ids=["1d", "3d", "0d", "int16", "int64", "too-short", "nan", "inf", "-inf", "mask-length", "mask-batch", "list"])
def test_bad_audio_raises_helpful_value_error(encoder, waveform, attention_mask, message):
    with pytest.raises(ValueError, match=message):
        encoder(waveform, attention_mask)


def test_minimum_length_is_accepted(encoder):
    assert encoder(torch.randn(1, 400)).last_hidden_state.shape == (1, 1, 192)


def test_bad_time_mask_shape_raises(encoder):
    with pytest.raises(ValueError, match="time_mask"):
        encoder(_waveform(), time_mask=torch.zeros(2, FRAMES + 1, dtype=torch.bool))


def test_pretraining_validates_input_too(pretraining):
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        pretraining(torch.randn(SAMPLES))


# ----------------------------------------------------------------------- shapes
def test_encoder_output_shapes(encoder):
    cfg = encoder.config
    out = encoder(_waveform(3, 20000), output_hidden_states=True)
    frames = cfg.num_frames(20000)
    assert out.last_hidden_state.shape == (3, frames, cfg.hidden_size)
    assert out.extract_features.shape == (3, frames, cfg.conv_dim)
    assert out.features.shape == (3, frames, cfg.conv_dim)
    assert out.time_mask is None and out.frame_mask is None  # eval: no masking by default
    assert len(out.hidden_states) == cfg.num_layers + 1
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)


def test_pretraining_output_shapes(pretraining):
    cfg = pretraining.config
    time_mask, negatives = _mask_and_negatives(cfg)
    out = pretraining(_waveform(), time_mask=time_mask, negative_indices=negatives)
    n = int(time_mask.sum())
    assert out.logits.shape == (n, 1 + cfg.num_negatives)
    assert out.projected_context.shape == (2, FRAMES, cfg.final_dim)
    assert out.projected_quantized.shape == (2, FRAMES, cfg.final_dim)
    assert out.codes.shape == (2, FRAMES, cfg.num_code_groups)
    assert out.num_masked == n
    assert torch.equal(out.time_mask, time_mask)


def test_ctc_output_shapes():
    torch.manual_seed(0)
    cfg = _tiny(vocab_size=12)
    model = Wav2Vec2ForCTC(cfg).eval()
    out = model(_waveform(2, 24000))
    assert out.logits.shape == (2, cfg.num_frames(24000), 12)
    assert out.output_lengths.tolist() == [cfg.num_frames(24000)] * 2
    assert out.loss is None


# ------------------------------------------------------------------ pretraining
def test_pretraining_loss_terms_and_diagnostics():
    torch.manual_seed(0)
    cfg = ModelConfig.tiny()  # dropout on, as in real training
    model = Wav2Vec2ForPreTraining(cfg).train()
    with torch.no_grad():  # the tiny CNN's latents are ~1e-4 at init; make the penalty visible
        model.wav2vec2.feature_encoder.conv_layers[-1].conv.weight.mul_(300.0)
    out = model(_waveform(), generator=torch.Generator().manual_seed(0))
    assert cfg.feature_penalty_weight * out.feature_penalty.item() > 1e-3
    expected = (out.contrastive_loss + cfg.diversity_weight * out.diversity_loss
                + cfg.feature_penalty_weight * out.feature_penalty)
    assert_close_to_scale(out.loss, expected, 1e-6)
    assert torch.isfinite(out.loss)
    for term in (out.contrastive_loss, out.diversity_loss, out.feature_penalty):
        assert term.requires_grad and term.item() >= 0
    gv = cfg.num_code_groups * cfg.num_codes_per_group
    assert 0.0 <= out.accuracy.item() <= 1.0
    assert 1.0 <= out.code_perplexity.item() <= gv
    assert 1.0 <= out.softmax_perplexity.item() <= gv
    assert_close_to_scale(out.diversity_loss, (gv - out.softmax_perplexity) / gv, 1e-6)
    assert out.temperature == cfg.gumbel_temperature[0]
    assert out.mask_fraction == pytest.approx(out.num_masked / (2 * FRAMES))
    assert out.mask_fraction == pytest.approx(out.time_mask.float().mean().item())
    assert 0.2 < out.mask_fraction < 0.8
    features = model.wav2vec2(_waveform(), time_mask=out.time_mask).features
    assert_close_to_scale(out.feature_penalty, features.pow(2).mean(), 1e-5)
    out.loss.backward()
    assert model.quantizer.logits.weight.grad.abs().sum() > 0
    assert model.wav2vec2.mask_embedding.grad.abs().sum() > 0


def test_contrastive_loss_is_mean_over_masked_steps(pretraining):
    cfg = pretraining.config
    time_mask, negatives = _mask_and_negatives(cfg)
    out = pretraining(_waveform(), time_mask=time_mask, negative_indices=negatives)
    manual = -torch.log_softmax(out.logits, dim=-1)[:, 0].mean()
    assert_close_to_scale(out.contrastive_loss, manual, 1e-6)
    accuracy = (out.logits.argmax(dim=-1) == 0).float().mean()
    assert_close_to_scale(out.accuracy, accuracy, 1e-6)


def test_temperature_is_reported(pretraining):
    pretraining.set_gumbel_temperature(0.9)
    try:
        time_mask, negatives = _mask_and_negatives(pretraining.config)
        assert pretraining(_waveform(), time_mask=time_mask, negative_indices=negatives).temperature == 0.9
    finally:
        pretraining.set_gumbel_temperature(pretraining.config.gumbel_temperature[0])


def test_logits_are_built_from_the_given_mask_and_negatives(pretraining):
    cfg = pretraining.config
    time_mask, negatives = _mask_and_negatives(cfg)
    out = pretraining(_waveform(), time_mask=time_mask, negative_indices=negatives)
    context = out.projected_context.reshape(2 * FRAMES, -1)
    targets = out.projected_quantized.reshape(2 * FRAMES, -1)
    rows = time_mask.reshape(-1).nonzero().squeeze(-1)
    expected = contrastive_logits(context[rows], targets[rows],
                                  targets[negatives.reshape(2 * FRAMES, -1)[rows]], cfg.logit_temperature)
    assert_close_to_scale(out.logits, expected, 1e-6)


def test_changing_a_negative_changes_only_its_logit(pretraining):
    cfg = pretraining.config
    time_mask, negatives = _mask_and_negatives(cfg)
    out = pretraining(_waveform(), time_mask=time_mask, negative_indices=negatives)
    b, t = time_mask.nonzero()[0].tolist()
    changed = negatives.clone()
    # Point the first distractor of the first masked step at a different masked step.
    candidates = [i for i in (b * FRAMES + time_mask[b].nonzero().squeeze(-1)).tolist()
                  if i != changed[b, t, 0].item() and i != b * FRAMES + t]
    changed[b, t, 0] = candidates[0]
    out2 = pretraining(_waveform(), time_mask=time_mask, negative_indices=changed)
    scale = out.logits[:, 0].abs().max().item()  # the positives' column is always finite
    assert abs(out2.logits[0, 1].item() - out.logits[0, 1].item()) > 1e-3 * scale
    same = torch.ones_like(out.logits, dtype=torch.bool)
    same[0, 1] = False
    assert_close_to_scale(out2.logits[same], out.logits[same], 1e-6)


def test_explicit_time_mask_is_honoured(pretraining):
    cfg = pretraining.config
    time_mask = torch.zeros(2, FRAMES, dtype=torch.bool)
    time_mask[0, 5:15] = True
    time_mask[1, 30:33] = True
    negatives = sample_negatives(time_mask, cfg.num_negatives, generator=torch.Generator().manual_seed(0))
    out = pretraining(_waveform(), time_mask=time_mask, negative_indices=negatives)
    assert out.num_masked == 13 and torch.equal(out.time_mask, time_mask)
    # In the encoder, exactly the masked steps are replaced before the transformer: an input
    # change inside masked frames only (samples 320*8 .. 320*12) leaves every output unchanged.
    # (A layer_norm encoder: group_norm normalises each channel over time, so it would leak.)
    torch.manual_seed(0)
    encoder = Wav2Vec2Model(_tiny(extractor_mode="layer_norm")).eval()
    waveform = _waveform(1)
    one = time_mask[:1].clone()
    one[0, 5:15] = True
    changed = waveform.clone()
    changed[0, 320 * 8: 320 * 12] += 1.0  # touches frames 7..11 only (receptive field 400)
    a = encoder(waveform, time_mask=one).last_hidden_state
    b = encoder(changed, time_mask=one).last_hidden_state
    assert_close_to_scale(a, b, 1e-5)
    unmasked = encoder(changed).last_hidden_state
    assert scaled_difference(a, unmasked) > 1e-2


def test_drawn_mask_and_negatives_are_reproducible_with_a_generator(pretraining):
    first = pretraining(_waveform(), generator=torch.Generator().manual_seed(5))
    second = pretraining(_waveform(), generator=torch.Generator().manual_seed(5))
    assert torch.equal(first.time_mask, second.time_mask)
    assert_close_to_scale(first.logits, second.logits, 1e-6)
    third = pretraining(_waveform(), generator=torch.Generator().manual_seed(6))
    assert not torch.equal(first.time_mask, third.time_mask)


def test_pretraining_without_masking_raises():
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(_tiny(mask_time_prob=0.0)).eval()
    with pytest.raises(ValueError, match="mask_time_prob"):
        model(_waveform())


def test_time_mask_without_a_real_frame_is_an_error_that_says_so(pretraining):
    with pytest.raises(ValueError, match="time_mask masks no real frame, so there is nothing to predict"):
        pretraining(_waveform(), time_mask=torch.zeros(2, FRAMES, dtype=torch.bool))
    attention_mask = torch.ones(2, SAMPLES, dtype=torch.long)
    attention_mask[:, 8000:] = 0
    padding_only = torch.zeros(2, FRAMES, dtype=torch.bool)
    padding_only[:, 30:] = True  # frames past the real 0.5 s
    with pytest.raises(ValueError, match="time_mask masks no real frame"):
        pretraining(_waveform(), attention_mask, time_mask=padding_only)


def test_padding_frames_are_not_masked_or_counted():
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(_tiny()).eval()
    waveform = _waveform(2, SAMPLES)
    attention_mask = torch.ones(2, SAMPLES, dtype=torch.long)
    attention_mask[1, 8000:] = 0
    real = [FRAMES, model.config.num_frames(8000)]
    time_mask = torch.ones(2, FRAMES, dtype=torch.bool)  # asks for padding too
    out = model(waveform, attention_mask, time_mask=time_mask, generator=torch.Generator().manual_seed(0))
    assert out.time_mask.sum(dim=1).tolist() == real
    assert out.num_masked == sum(real)
    assert out.mask_fraction == pytest.approx(1.0)
    negatives = sample_negatives(out.time_mask, 5, generator=torch.Generator().manual_seed(0))
    assert (negatives[1][out.time_mask[1]] < FRAMES + real[1]).all()


# ------------------------------------------------------------- gradient scaling
def _conv_grads(feature_grad_mult: float) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(_tiny(feature_grad_mult=feature_grad_mult)).eval()
    time_mask, negatives = _mask_and_negatives(model.config)
    out = model(_waveform(), time_mask=time_mask, negative_indices=negatives)
    out.loss.backward()
    return [layer.conv.weight.grad.clone() for layer in model.wav2vec2.feature_encoder.conv_layers]


def test_feature_encoder_gradient_is_scaled_by_feature_grad_mult():
    full, scaled = _conv_grads(1.0), _conv_grads(0.1)
    for g_full, g_scaled in zip(full, scaled):
        assert g_full.abs().sum() > 0
        # The same chain of convolutions, rounded differently: ~3e-6 of the scale on every kernel.
        assert_close_to_scale(g_scaled, 0.1 * g_full, 3e-5)


def test_feature_grad_mult_only_scales_the_feature_encoder():
    grads = {}
    for mult in (1.0, 0.1):
        torch.manual_seed(0)
        model = Wav2Vec2ForPreTraining(_tiny(feature_grad_mult=mult)).eval()
        time_mask, negatives = _mask_and_negatives(model.config)
        model(_waveform(), time_mask=time_mask, negative_indices=negatives).loss.backward()
        grads[mult] = model.wav2vec2.feature_projection.projection.weight.grad.clone()
    assert_close_to_scale(grads[0.1], grads[1.0], 1e-6)


def test_zero_feature_grad_mult_freezes_the_cnn():
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(_tiny(feature_grad_mult=0.0)).eval()
    time_mask, negatives = _mask_and_negatives(model.config)
    model(_waveform(), time_mask=time_mask, negative_indices=negatives).loss.backward()
    for parameter in model.wav2vec2.feature_encoder.parameters():
        assert parameter.grad is None
    assert model.wav2vec2.feature_projection.projection.weight.grad.abs().sum() > 0


def test_freeze_feature_encoder_gives_no_cnn_gradients():
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(_tiny(feature_grad_mult=1.0)).eval()
    model.wav2vec2.freeze_feature_encoder()
    time_mask, negatives = _mask_and_negatives(model.config)
    out = model(_waveform(), time_mask=time_mask, negative_indices=negatives)
    assert not out.feature_penalty.requires_grad  # built without a graph through the CNN
    out.loss.backward()
    for parameter in model.wav2vec2.feature_encoder.parameters():
        assert not parameter.requires_grad and parameter.grad is None
    assert model.wav2vec2.encoder.layers[0].attention.q_proj.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------- CTC
def _labels() -> torch.Tensor:
    return torch.tensor([[3, 4, 5, 4, -100, -100], [7, 8, 9, 10, 11, 2]])


def test_ctc_loss_is_finite_and_trains_the_head():
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(_tiny(vocab_size=12)).train()
    out = model(_waveform(), labels=_labels())
    assert out.loss.dim() == 0 and torch.isfinite(out.loss) and out.loss.item() > 0
    out.loss.backward()
    assert model.lm_head.weight.grad.abs().sum() > 0
    assert model.wav2vec2.encoder.layers[-1].feed_forward.output.weight.grad.abs().sum() > 0


def test_ctc_loss_matches_torch_ctc():
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(_tiny(vocab_size=12)).eval()
    labels = _labels()
    out = model(_waveform(), labels=labels)
    log_probs = out.logits.log_softmax(-1).transpose(0, 1)
    expected = torch.nn.functional.ctc_loss(log_probs, labels[labels >= 0], out.output_lengths,
                                            (labels >= 0).sum(-1), blank=0, reduction="sum")
    # The default normalisation is fairseq's sentence_avg: the sum over the batch / B.
    assert_close_to_scale(out.loss, expected / labels.shape[0], 1e-6)


def test_ctc_zero_infinity_makes_impossible_alignments_zero():
    impossible = torch.randint(1, 12, (1, FRAMES + 5), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(_tiny(vocab_size=12)).eval()
    assert model(_waveform(1), labels=impossible).loss.item() == 0.0
    torch.manual_seed(0)
    strict = Wav2Vec2ForCTC(_tiny(vocab_size=12, ctc_zero_infinity=False)).eval()
    assert strict(_waveform(1), labels=impossible).loss.item() == float("inf")


def test_ctc_rejects_labels_outside_the_vocabulary():
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(_tiny(vocab_size=12)).eval()
    with pytest.raises(ValueError, match="vocab_size"):
        model(_waveform(1), labels=torch.tensor([[1, 12]]))


def test_ctc_output_lengths_follow_the_attention_mask():
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(_tiny(vocab_size=12)).eval()
    lengths = [SAMPLES, 12345, 719, 400]
    attention_mask = torch.zeros(4, SAMPLES, dtype=torch.long)
    for row, length in enumerate(lengths):
        attention_mask[row, :length] = 1
    out = model(_waveform(4), attention_mask)
    assert out.output_lengths.tolist() == [model.config.num_frames(n) for n in lengths]


def test_ctc_feature_encoder_frozen_by_default():
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(_tiny(vocab_size=12, feature_grad_mult=1.0)).train()
    assert all(not p.requires_grad for p in model.wav2vec2.feature_encoder.parameters())
    model(_waveform(), labels=_labels()).loss.backward()
    assert all(p.grad is None for p in model.wav2vec2.feature_encoder.parameters())
    trainable = Wav2Vec2ForCTC(_tiny(vocab_size=12, feature_grad_mult=1.0), freeze_feature_encoder=False).train()
    trainable(_waveform(), labels=_labels()).loss.backward()
    assert trainable.wav2vec2.feature_encoder.conv_layers[0].conv.weight.grad.abs().sum() > 0


def test_from_pretraining_copies_encoder_weights():
    torch.manual_seed(0)
    pretrained = Wav2Vec2ForPreTraining(_tiny())
    with torch.no_grad():
        pretrained.wav2vec2.mask_embedding.fill_(0.123)
    torch.manual_seed(1)
    model = Wav2Vec2ForCTC.from_pretraining(pretrained, vocab_size=20, final_dropout=0.1)
    assert model.config.vocab_size == 20 and model.config.final_dropout == 0.1
    assert model.lm_head.out_features == 20
    source, target = pretrained.wav2vec2.state_dict(), model.wav2vec2.state_dict()
    assert source.keys() == target.keys()
    for name in source:
        assert torch.equal(source[name], target[name]), name
    assert all(not p.requires_grad for p in model.wav2vec2.feature_encoder.parameters())
    # Same encoder, same context vectors.
    pretrained.eval()
    model.eval()
    waveform = _waveform(1)
    assert_close_to_scale(model.wav2vec2(waveform).last_hidden_state, pretrained.wav2vec2(waveform).last_hidden_state,
                          1e-6)
    # A copy, not shared storage.
    with torch.no_grad():
        model.wav2vec2.mask_embedding.zero_()
    assert pretrained.wav2vec2.mask_embedding[0].item() == pytest.approx(0.123)


# ------------------------------------------------------------ attention, layerdrop
@pytest.mark.parametrize("layer_norm_first", [False, True])
def test_attention_weights_path_matches_sdpa(layer_norm_first):
    torch.manual_seed(0)
    model = Wav2Vec2Model(_tiny(layer_norm_first=layer_norm_first)).eval()
    attention_mask = torch.ones(2, SAMPLES, dtype=torch.long)
    attention_mask[1, 9000:] = 0
    real = model.config.num_frames(9000)
    fast = model(_waveform(), attention_mask, output_hidden_states=True)
    slow = model(_waveform(), attention_mask, output_hidden_states=True, output_attentions=True)
    assert fast.attentions is None
    assert_close_to_scale(slow.last_hidden_state, fast.last_hidden_state, 1e-5)
    for a, b in zip(slow.hidden_states, fast.hidden_states):
        assert_close_to_scale(a, b, 1e-5)
    cfg = model.config
    assert len(slow.attentions) == cfg.num_layers
    for weights in slow.attentions:
        assert weights.shape == (2, cfg.num_heads, FRAMES, FRAMES)
        assert_close_to_scale(weights.sum(dim=-1), torch.ones(2, cfg.num_heads, FRAMES), 1e-5)
        assert (weights >= 0).all()
        assert (weights[1, :, :, real:] == 0).all()  # padded keys get no weight
        assert (weights[1, :, :, :real] > 0).any()
        assert (weights[0, :, :, real:] > 0).any()  # the unpadded row attends everywhere


def test_layerdrop_skips_layers_in_training_only():
    torch.manual_seed(0)
    model = Wav2Vec2Model(_tiny(layerdrop=0.99))
    waveform = _waveform()
    model.eval()
    evaluated = model(waveform, output_hidden_states=True)
    model.train()
    torch.manual_seed(1)
    trained = model(waveform, output_hidden_states=True, draw_time_mask=False)
    assert len(trained.hidden_states) == model.config.num_layers + 1
    assert len(evaluated.hidden_states) == model.config.num_layers + 1
    assert scaled_difference(trained.last_hidden_state, evaluated.last_hidden_state) > 1e-2
    # With (almost surely) every post-LN layer skipped, the output is the layers' input.
    assert torch.equal(trained.last_hidden_state, trained.hidden_states[0])
    assert_close_to_scale(trained.hidden_states[0], evaluated.hidden_states[0], 1e-6)


def test_training_mode_draws_a_time_mask_and_eval_does_not(encoder):
    encoder.train()
    try:
        out = encoder(_waveform(), generator=torch.Generator().manual_seed(0))
    finally:
        encoder.eval()
    assert out.time_mask is not None and out.time_mask.any()
    assert encoder(_waveform()).time_mask is None


# ------------------------------------------------------------------------ padding
@pytest.mark.parametrize("layer_norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_padded_batch_matches_unpadded_for_layer_norm_encoder(layer_norm_first):
    torch.manual_seed(0)
    cfg = _tiny(extractor_mode="layer_norm", conv_bias=True, layer_norm_first=layer_norm_first)
    model = Wav2Vec2Model(cfg).eval()
    short, long = 9000, SAMPLES
    waveform = _waveform(2, long)
    alone = model(waveform[1:, :short]).last_hidden_state  # (1, T_short, D)
    padded_wave = waveform.clone()
    padded_wave[1, short:] = 0.0
    attention_mask = torch.ones(2, long, dtype=torch.long)
    attention_mask[1, short:] = 0
    batched = model(padded_wave, attention_mask)
    real = cfg.num_frames(short)
    assert alone.shape[1] == real
    assert batched.frame_mask[1].sum().item() == real
    assert_close_to_scale(batched.last_hidden_state[1, :real], alone[0], 1e-5)
    # The long utterance is unaffected by its neighbour.
    assert_close_to_scale(batched.last_hidden_state[0], model(waveform[:1]).last_hidden_state[0], 1e-5)
    # Without the attention mask the padding leaks in (so the mask is doing the work).
    leaky = model(padded_wave).last_hidden_state
    assert scaled_difference(leaky[1, :real], alone[0]) > 1e-2


def test_padding_values_do_not_matter_with_attention_mask():
    torch.manual_seed(0)
    model = Wav2Vec2Model(_tiny(extractor_mode="layer_norm")).eval()
    waveform = _waveform(1)
    attention_mask = torch.ones(1, SAMPLES, dtype=torch.long)
    attention_mask[0, 10000:] = 0
    noisy = waveform.clone()
    noisy[0, 10000:] = torch.randn(SAMPLES - 10000)
    real = model.config.num_frames(10000)
    a = model(waveform, attention_mask).last_hidden_state[0, :real]
    b = model(noisy, attention_mask).last_hidden_state[0, :real]
    assert_close_to_scale(a, b, 1e-5)


# ----------------------------------------------------------------- channel masking
def test_channel_mask_is_applied_in_training_only():
    torch.manual_seed(0)
    model = Wav2Vec2Model(_tiny(mask_channel_prob=0.5, mask_channel_length=8, mask_time_prob=0.0))
    waveform = _waveform()
    model.eval()
    evaluated = model(waveform).last_hidden_state
    model.train()
    trained = model(waveform).last_hidden_state
    assert scaled_difference(trained, evaluated) > 1e-2
    model.eval()
    assert_close_to_scale(model(waveform).last_hidden_state, evaluated, 1e-6)


def test_generator_makes_channel_masking_reproducible():
    torch.manual_seed(0)
    model = Wav2Vec2Model(_tiny(mask_channel_prob=0.5, mask_channel_length=8)).train()
    waveform = _waveform()
    torch.manual_seed(1)
    first = model(waveform, generator=torch.Generator().manual_seed(3)).last_hidden_state
    torch.manual_seed(2)
    second = model(waveform, generator=torch.Generator().manual_seed(3)).last_hidden_state
    assert_close_to_scale(first, second, 1e-6)


def test_output_lengths_agree_with_num_frames():
    cfg = ModelConfig.tiny()
    encoder = Wav2Vec2Model(cfg).feature_encoder
    samples = torch.tensor([0, 1, 399, 400, 401, 719, 720, 1039, 1040, 16000, 16319, 16320, 32000])
    assert encoder.output_lengths(samples).tolist() == [cfg.num_frames(int(n)) for n in samples]


def test_utterance_shorter_than_the_receptive_field_in_a_batch_stays_finite():
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(_tiny(vocab_size=12)).eval()
    attention_mask = torch.ones(2, SAMPLES, dtype=torch.long)
    attention_mask[1, 300:] = 0  # no whole frame: zero real frames
    out = model(_waveform(), attention_mask, labels=torch.tensor([[1, 2], [3, -100]]))
    assert out.output_lengths.tolist() == [FRAMES, 0]
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.loss)
