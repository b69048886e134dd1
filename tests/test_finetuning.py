"""CTC fine-tuning follows fairseq's recipe: presets, from_pretraining, loss normalisation,
head initialisation, the frozen body, and fine-tuned fairseq checkpoints."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from w2v2_lite.config import FINETUNING_RECIPES, FineTuningConfig, ModelConfig, channel_span_for_width
from w2v2_lite.interop import config_from_fairseq, load_fairseq_checkpoint
from w2v2_lite.models import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining

from tolerances import assert_close_to_scale

SAMPLES = 16000


def _tiny(**overrides) -> ModelConfig:
    return ModelConfig.tiny(num_layers=2, **overrides)


def _batch(batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    waveform = torch.randn(batch, SAMPLES, generator=generator)
    labels = torch.randint(1, 12, (batch, 9), generator=generator)
    labels[0, 6:] = -100  # the first transcript is shorter
    return waveform, labels


# -------------------------------------------------------------------- presets
# The model fields of fairseq's base_{10m,1h,10h,100h}.yaml (and Wav2Vec2AsrConfig's
# defaults where the yaml is silent), written out once more so the table is checked.
FAIRSEQ = {
    #        mask_prob, channel prob, layerdrop, freeze, updates, lr
    "10m": (0.65, 0.25, 0.1, 10_000, 13_000, 5e-5),
    "1h": (0.65, 0.25, 0.1, 10_000, 13_000, 5e-5),
    "10h": (0.65, 0.5, 0.05, 10_000, 20_000, 5e-5),
    "100h": (0.65, 0.5, 0.1, 0, 80_000, 3e-5),
}


@pytest.mark.parametrize("labels", sorted(FAIRSEQ))
def test_presets_are_fairseqs_base_recipes(labels):
    recipe = FineTuningConfig.preset(labels, ModelConfig.base())
    mask_prob, channel_prob, layerdrop, freeze, updates, lr = FAIRSEQ[labels]
    assert (recipe.mask_time_prob, recipe.mask_time_length) == (mask_prob, 10)
    assert (recipe.mask_channel_prob, recipe.mask_channel_length) == (channel_prob, 64)
    assert (recipe.layerdrop, recipe.freeze_finetune_updates) == (layerdrop, freeze)
    assert (recipe.max_updates, recipe.learning_rate) == (updates, lr)
    assert (recipe.dropout, recipe.attention_dropout, recipe.dropout_input, recipe.final_dropout) == (0, 0, 0, 0)
    assert recipe.activation_dropout == 0.1 and recipe.feature_grad_mult == 0.0
    assert recipe.phase_ratio == (0.1, 0.4, 0.5) and recipe.final_lr_scale == 0.05
    assert recipe.adam_betas == (0.9, 0.98) and recipe.adam_eps == 1e-8
    assert recipe.ctc_loss_reduction == "sentence"
    assert set(FINETUNING_RECIPES) == set(FAIRSEQ)


def test_channel_span_keeps_bases_share_of_the_channels():
    assert channel_span_for_width(768) == 64 and channel_span_for_width(1024) == 64  # fairseq, as published
    assert channel_span_for_width(192) == 16  # tiny: 1/12 of its channels, like BASE's 64/768
    assert channel_span_for_width(6) == 1
    tiny, base = ModelConfig.tiny(), ModelConfig.base()
    tiny_recipe = FineTuningConfig.preset("10m", tiny)
    base_recipe = FineTuningConfig.preset("10m", base)
    # The same number of spans, p*M * D / M, at either width.
    assert (tiny_recipe.mask_channel_prob * tiny.hidden_size / tiny_recipe.mask_channel_length
            == base_recipe.mask_channel_prob * base.hidden_size / base_recipe.mask_channel_length)


def test_a_shorter_run_keeps_the_head_only_share():
    recipe = FineTuningConfig.preset("10m", ModelConfig.tiny())
    short = recipe.with_updates(1300)
    assert (short.max_updates, short.freeze_finetune_updates) == (1300, 1000)
    assert short.learning_rate == recipe.learning_rate and short.mask_channel_length == 16
    assert FineTuningConfig.preset("100h", ModelConfig.tiny()).with_updates(500).freeze_finetune_updates == 0
    with pytest.raises(ValueError, match="max_updates=0"):
        recipe.with_updates(0)


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match=r"no fine-tuning recipe '5m'.*'10m'"):
        FineTuningConfig.preset("5m", ModelConfig.tiny())


def test_apply_keeps_the_architecture_and_sets_the_regularisation():
    pretrained = ModelConfig.tiny()
    tuned = FineTuningConfig.preset("10h", pretrained).apply(pretrained, final_dropout=0.05)
    for name in ("conv_layers", "hidden_size", "num_layers", "num_code_groups", "extractor_mode"):
        assert getattr(tuned, name) == getattr(pretrained, name), name
    assert (tuned.dropout, tuned.activation_dropout, tuned.layerdrop) == (0.0, 0.1, 0.05)
    assert (tuned.mask_channel_prob, tuned.mask_channel_length) == (0.5, 16)
    assert tuned.feature_grad_mult == 0.0 and tuned.final_dropout == 0.05


def test_from_pretraining_applies_the_10_minute_recipe_by_default():
    pretrained = Wav2Vec2ForPreTraining(_tiny())
    assert pretrained.config.dropout == 0.1 and pretrained.config.mask_channel_prob == 0.0
    model = Wav2Vec2ForCTC.from_pretraining(pretrained, vocab_size=12)
    expected = FineTuningConfig.preset("10m", pretrained.config)
    for name in FineTuningConfig.MODEL_FIELDS:
        assert getattr(model.config, name) == getattr(expected, name), name
    assert model.config.mask_channel_length == 16 and model.config.freeze_finetune_updates == 10_000
    # The modules are built with those values, not the pretraining ones.
    assert model.wav2vec2.encoder.layers[0].feed_forward.activation_dropout.p == 0.1

    one_hour = Wav2Vec2ForCTC.from_pretraining(pretrained, vocab_size=12, recipe="1h", layerdrop=0.0)
    assert one_hour.config.mask_channel_prob == 0.25 and one_hour.config.layerdrop == 0.0  # override wins
    as_pretrained = Wav2Vec2ForCTC.from_pretraining(pretrained, vocab_size=12, recipe=None)
    assert as_pretrained.config.dropout == 0.1 and as_pretrained.config.freeze_finetune_updates == 0


# ---------------------------------------------------------- CTC normalisation
def _ctc_losses(reduction: str, waveform: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(_tiny(vocab_size=12, ctc_loss_reduction=reduction)).eval()
    return model(waveform, labels=labels).loss


def test_ctc_normalisation_follows_its_setting():
    waveform, labels = _batch(3)
    total = _ctc_losses("sum", waveform, labels)
    target_lengths = (labels >= 0).sum(-1)
    torch.testing.assert_close(_ctc_losses("sentence", waveform, labels), total / 3)
    torch.testing.assert_close(_ctc_losses("token", waveform, labels), total / target_lengths.sum())
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(_tiny(vocab_size=12, ctc_loss_reduction="sum")).eval()
    out = model(waveform, labels=labels)
    per_utterance = torch.nn.functional.ctc_loss(
        out.logits.log_softmax(-1).transpose(0, 1), labels[labels >= 0], out.output_lengths, target_lengths,
        reduction="none", zero_infinity=True)
    torch.testing.assert_close(_ctc_losses("mean", waveform, labels), (per_utterance / target_lengths).mean())


def test_sentence_average_does_not_grow_with_the_batch():
    """fairseq's normalisation: the same utterances twice give the same loss, so a
    learning rate and a clipping threshold mean the same at any batch size."""
    waveform, labels = _batch(2)
    doubled = torch.cat([waveform, waveform]), torch.cat([labels, labels])
    torch.testing.assert_close(_ctc_losses("sentence", *doubled), _ctc_losses("sentence", waveform, labels))
    torch.testing.assert_close(_ctc_losses("sum", *doubled), 2 * _ctc_losses("sum", waveform, labels))


def test_default_ctc_normalisation_is_fairseqs():
    assert ModelConfig().ctc_loss_reduction == "sentence"
    with pytest.raises(ValueError, match="ctc_loss_reduction"):
        ModelConfig.tiny(ctc_loss_reduction="batch")


# ------------------------------------------------------------------------ head
def test_ctc_head_is_xavier_uniform_with_zero_bias():
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(ModelConfig.tiny(vocab_size=32))
    weight = model.lm_head.weight  # (32, 192)
    bound = math.sqrt(6.0 / (weight.shape[0] + weight.shape[1]))
    assert weight.abs().max() <= bound
    assert weight.std().item() == pytest.approx(bound / math.sqrt(3.0), rel=0.05)  # uniform on [-b, b]
    assert torch.count_nonzero(model.lm_head.bias) == 0


# ------------------------------------------------------------- frozen body
def test_only_the_head_trains_before_freeze_finetune_updates():
    torch.manual_seed(0)
    model = Wav2Vec2ForCTC(_tiny(vocab_size=12, freeze_finetune_updates=2, mask_time_prob=0.0)).train()
    waveform, labels = _batch(2)
    body = [p for p in model.wav2vec2.parameters() if p.requires_grad]
    for update in range(3):
        model.zero_grad(set_to_none=True)
        model.set_num_updates(update)
        model(waveform, labels=labels).loss.backward()
        assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0
        body_learns = any(p.grad is not None and p.grad.abs().sum() > 0 for p in body)
        assert body_learns == (update >= 2), update
        assert model.body_frozen == (update < 2)


# --------------------------------------------------- fairseq fine-tuned configs
PRETRAINING_ARGS = dict(
    arch="wav2vec2", extractor_mode="default", conv_feature_layers="[(64, 10, 5)] + [(64, 3, 2)] * 4 + [(64,2,2)] * 2",
    encoder_embed_dim=96, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_embed_dim=192,
    conv_pos=16, conv_pos_groups=4, latent_vars=8, latent_groups=2, latent_dim=32, final_dim=32,
    dropout=0.1, attention_dropout=0.1, activation_dropout=0.0, dropout_input=0.1, dropout_features=0.1,
    encoder_layerdrop=0.05, mask_prob=0.65, mask_length=10, mask_channel_prob=0.0, feature_grad_mult=0.1,
)
FINETUNING_ARGS = dict(  # base_10m.yaml
    _name="wav2vec_ctc", apply_mask=True, mask_prob=0.65, mask_channel_prob=0.25, mask_channel_length=64,
    layerdrop=0.1, activation_dropout=0.1, feature_grad_mult=0.0, freeze_finetune_updates=10_000,
    final_dropout=0.0,
)


def test_fine_tuned_fairseq_config_takes_the_fine_tuning_values():
    config = config_from_fairseq(FINETUNING_ARGS | {"w2v_args": {"model": PRETRAINING_ARGS}})
    assert (config.hidden_size, config.num_layers) == (96, 2)  # the architecture: pretraining's
    assert (config.dropout, config.attention_dropout, config.dropout_input) == (0.0, 0.0, 0.0)  # AsrConfig defaults
    assert (config.activation_dropout, config.layerdrop, config.feature_grad_mult) == (0.1, 0.1, 0.0)
    assert (config.mask_time_prob, config.mask_channel_prob, config.mask_channel_length) == (0.65, 0.25, 64)
    assert config.freeze_finetune_updates == 10_000 and config.ctc_loss_reduction == "sentence"


def test_fine_tuning_without_apply_mask_masks_nothing():
    config = config_from_fairseq(FINETUNING_ARGS | {"apply_mask": False, "w2v_args": {"model": PRETRAINING_ARGS}})
    assert config.mask_time_prob == 0.0 and config.mask_channel_prob == 0.0
    token_avg = config_from_fairseq(FINETUNING_ARGS | {"w2v_args": PRETRAINING_ARGS}, sentence_avg=False)
    assert token_avg.ctc_loss_reduction == "token"


def test_pretrained_fairseq_config_keeps_its_own_values():
    config = config_from_fairseq(PRETRAINING_ARGS)
    assert (config.dropout, config.layerdrop, config.feature_grad_mult) == (0.1, 0.05, 0.1)
    assert config.mask_channel_prob == 0.0 and config.freeze_finetune_updates == 0


@torch.no_grad()
def test_fine_tuned_fairseq_checkpoint_loads_with_its_fine_tuning_values(tmp_path):
    """A legacy (argparse) CTC checkpoint written from a w2v2_lite model under fairseq's names."""
    from w2v2_lite.interop import _FAIRSEQ_RULES  # the renames, run backwards to write fairseq keys
    torch.manual_seed(0)
    pretraining = config_from_fairseq(PRETRAINING_ARGS)
    source = Wav2Vec2ForCTC(ModelConfig.from_dict(pretraining.to_dict() | {"vocab_size": 10})).eval()
    state = {}
    for key, value in source.wav2vec2.state_dict().items():
        fairseq_key = _fairseq_name(key, _FAIRSEQ_RULES)
        state[f"w2v_encoder.w2v_model.{fairseq_key}"] = value
    state["w2v_encoder.proj.weight"], state["w2v_encoder.proj.bias"] = source.lm_head.weight, source.lm_head.bias
    args = argparse.Namespace(**FINETUNING_ARGS, w2v_args=argparse.Namespace(**PRETRAINING_ARGS), sentence_avg=True)
    path = tmp_path / "wav2vec_ctc.pt"
    torch.save({"args": args, "cfg": None, "model": state}, path)

    model = load_fairseq_checkpoint(path, trust_checkpoint=True)
    assert isinstance(model, Wav2Vec2ForCTC)
    assert (model.config.dropout, model.config.activation_dropout, model.config.layerdrop) == (0.0, 0.1, 0.1)
    assert (model.config.mask_channel_prob, model.config.mask_channel_length) == (0.25, 64)
    assert model.config.freeze_finetune_updates == 10_000 and model.config.feature_grad_mult == 0.0
    waveform, _ = _batch(2)
    assert_close_to_scale(model(waveform).logits, source(waveform).logits, 1e-5)


def _fairseq_name(key: str, rules) -> str:
    """w2v2_lite body key -> fairseq key: the first rule whose replacement matches, inverted."""
    import re
    for pattern, replacement in rules:
        fairseq_prefix = pattern.replace("\\.", ".").replace("(\\d+)", "{}").replace("(\\w+_proj)", "{}")
        fairseq_prefix = fairseq_prefix.rstrip("$")
        ours = replacement.replace("\\1", "{}").replace("\\2", "{}")
        ours_pattern = "^" + re.escape(ours).replace(r"\{\}", r"(\w+)")
        match = re.match(ours_pattern, key)
        if match and "2.1." not in fairseq_prefix:  # group_norm layout: norm under '.2.'
            return fairseq_prefix.format(*match.groups()) + key[match.end():]
    raise AssertionError(f"no fairseq name for {key}")
