"""ModelConfig: the paper's values in the presets, derived geometry, validation, serialisation."""

from __future__ import annotations

import json

import pytest

from w2v2_lite.config import ModelConfig, paper_conv_layers

PRESETS = {"tiny": ModelConfig.tiny, "base": ModelConfig.base, "large": ModelConfig.large}


def test_base_has_the_paper_values():
    cfg = ModelConfig.base()
    assert cfg.conv_layers == ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
    assert (cfg.num_layers, cfg.hidden_size, cfg.ffn_size, cfg.num_heads) == (12, 768, 3072, 12)
    assert (cfg.num_code_groups, cfg.num_codes_per_group) == (2, 320)
    assert cfg.num_negatives == 100
    assert (cfg.mask_time_prob, cfg.mask_time_length) == (0.65, 10)
    assert cfg.logit_temperature == 0.1
    assert cfg.diversity_weight == 0.1
    assert cfg.feature_penalty_weight == 10.0
    assert cfg.feature_grad_mult == 0.1
    assert cfg.extractor_mode == "group_norm"
    assert cfg.layer_norm_first is False
    assert (cfg.pos_conv_kernel, cfg.pos_conv_groups) == (128, 16)
    assert cfg.gumbel_temperature == (2.0, 0.5, 0.999995)
    assert (cfg.final_dim, cfg.codevector_dim) == (256, 256)
    assert (cfg.dropout, cfg.dropout_input, cfg.dropout_features, cfg.layerdrop) == (0.1, 0.1, 0.1, 0.05)
    assert cfg == ModelConfig()


def test_large_has_the_paper_values():
    cfg = ModelConfig.large()
    assert (cfg.num_layers, cfg.hidden_size, cfg.ffn_size, cfg.num_heads) == (24, 1024, 4096, 16)
    assert cfg.extractor_mode == "layer_norm"
    assert cfg.layer_norm_first is True
    assert cfg.conv_bias is True
    assert (cfg.num_code_groups, cfg.num_codes_per_group) == (2, 320)
    assert (cfg.final_dim, cfg.codevector_dim) == (768, 768)
    assert cfg.feature_penalty_weight == 0.0
    assert cfg.gumbel_temperature[1] == 0.1  # LV-60k floor


def test_tiny_is_small_but_keeps_the_geometry():
    tiny, base = ModelConfig.tiny(), ModelConfig.base()
    assert tiny.hidden_size < base.hidden_size and tiny.num_layers < base.num_layers
    assert tiny.ffn_size < base.ffn_size and tiny.conv_dim < base.conv_dim
    assert tiny.num_codes_per_group < base.num_codes_per_group
    assert [layer[1:] for layer in tiny.conv_layers] == [layer[1:] for layer in base.conv_layers]


def test_preset_overrides():
    cfg = ModelConfig.large(num_layers=2, dropout=0.2)
    assert cfg.num_layers == 2 and cfg.dropout == 0.2 and cfg.hidden_size == 1024
    assert ModelConfig.tiny(num_heads=8).num_heads == 8


@pytest.mark.parametrize("name", PRESETS)
def test_receptive_field_and_stride(name):
    cfg = PRESETS[name]()
    assert cfg.receptive_field == 400  # 25 ms at 16 kHz
    assert cfg.frame_stride == 320  # 20 ms
    assert cfg.num_frames(32000) == 99
    assert cfg.num_frames(400) == 1
    assert cfg.num_frames(399) == 0
    assert cfg.num_frames(719) == 1 and cfg.num_frames(720) == 2


@pytest.mark.parametrize("samples", [400, 401, 719, 720, 1000, 16000, 16319, 16320, 48000])
def test_num_frames_matches_the_closed_form(samples):
    # For the paper's stack, T = floor((L - 400) / 320) + 1 exactly (the floors line up).
    assert ModelConfig.tiny().num_frames(samples) == (samples - 400) // 320 + 1


def test_conv_dim_is_last_layer_channels():
    assert ModelConfig.base().conv_dim == 512
    assert ModelConfig(conv_layers=((64, 10, 5), (32, 3, 2))).conv_dim == 32
    assert ModelConfig(conv_layers=((64, 10, 5), (32, 3, 2))).receptive_field == 10 + 2 * 5
    assert ModelConfig(conv_layers=((64, 10, 5), (32, 3, 2))).frame_stride == 10


def test_paper_conv_layers():
    assert paper_conv_layers(8) == ((8, 10, 5), (8, 3, 2), (8, 3, 2), (8, 3, 2), (8, 3, 2), (8, 2, 2), (8, 2, 2))


BAD_VALUES = [
    ("conv_layers", ()),
    ("conv_layers", ((512, 10, 0),)),
    ("conv_layers", ((512, 10),)),
    ("conv_layers", ((0, 10, 5),)),
    ("extractor_mode", "batch_norm"),
    ("feature_grad_mult", -0.1),
    ("hidden_size", 0),
    ("num_layers", 0),
    ("num_heads", 0),
    ("ffn_size", 0),
    ("pos_conv_kernel", 0),
    ("pos_conv_groups", 0),
    ("hidden_size", 190),  # not divisible by 4 heads
    ("dropout", 1.0),
    ("dropout", -0.1),
    ("attention_dropout", 1.5),
    ("activation_dropout", -0.01),
    ("dropout_input", 1.0),
    ("dropout_features", 2.0),
    ("final_dropout", -1.0),
    ("layerdrop", 1.0),
    ("mask_time_prob", 1.1),
    ("mask_time_prob", -0.1),
    ("mask_channel_prob", 2.0),
    ("mask_time_length", 0),
    ("mask_channel_length", 0),
    ("mask_time_min_masks", -1),
    ("mask_channel_min_masks", -1),
    ("cross_sample_negatives", -1),
    ("num_code_groups", 0),
    ("num_codes_per_group", 1),
    ("codevector_dim", 127),  # not divisible by G = 2
    ("gumbel_temperature", (0.5, 2.0, 0.999995)),  # start below floor
    ("gumbel_temperature", (2.0, 0.0, 0.999995)),
    ("gumbel_temperature", (2.0, 0.5, 1.5)),
    ("gumbel_temperature", (2.0, 0.5, 0.0)),
    ("final_dim", 0),
    ("num_negatives", -1),
    ("num_negatives", 0),  # and no cross-sample negatives either
    ("logit_temperature", 0.0),
    ("logit_temperature", -0.1),
    ("diversity_weight", -0.1),
    ("feature_penalty_weight", -1.0),
    ("vocab_size", 1),
    ("blank_id", 32),
    ("blank_id", -1),
    ("ctc_loss_reduction", "none"),
]


@pytest.mark.parametrize("field,value", BAD_VALUES, ids=[f"{f}={v!r}" for f, v in BAD_VALUES])
def test_invalid_field_raises_value_error_naming_it(field, value):
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        ModelConfig.tiny(**{field: value})


def test_pos_conv_groups_must_divide_hidden_size():
    with pytest.raises(ValueError, match="pos_conv_groups"):
        ModelConfig.tiny(pos_conv_groups=7)


def test_zero_own_negatives_allowed_with_cross_sample_negatives():
    cfg = ModelConfig.tiny(num_negatives=0, cross_sample_negatives=10)
    assert cfg.num_negatives == 0


@pytest.mark.parametrize("field,value", [("feature_grad_mult", 0.0), ("dropout", 0.0), ("mask_time_prob", 0.0),
                                         ("mask_time_prob", 1.0), ("layerdrop", 0.99), ("diversity_weight", 0.0),
                                         ("blank_id", 31), ("gumbel_temperature", (1.0, 1.0, 1.0))])
def test_boundary_values_are_accepted(field, value):
    ModelConfig.tiny(**{field: value})


def test_validate_catches_later_mutation():
    cfg = ModelConfig.tiny()
    cfg.num_heads = 5
    with pytest.raises(ValueError, match="hidden_size"):
        cfg.validate()


@pytest.mark.parametrize("name", PRESETS)
def test_dict_round_trip(name):
    cfg = PRESETS[name](dropout=0.05)
    restored = ModelConfig.from_dict(cfg.to_dict())
    assert restored == cfg
    assert restored is not cfg


@pytest.mark.parametrize("name", PRESETS)
def test_json_round_trip_restores_tuples(name):
    cfg = PRESETS[name]()
    restored = ModelConfig.from_dict(json.loads(cfg.to_json()))
    assert restored == cfg
    assert isinstance(restored.conv_layers, tuple) and isinstance(restored.conv_layers[0], tuple)
    assert isinstance(restored.gumbel_temperature, tuple)


def test_from_dict_rejects_unknown_keys():
    values = ModelConfig.tiny().to_dict() | {"hiden_size": 10}
    with pytest.raises(ValueError, match="hiden_size"):
        ModelConfig.from_dict(values)


def test_from_dict_validates_values():
    values = ModelConfig.tiny().to_dict() | {"num_heads": 7}
    with pytest.raises(ValueError, match="hidden_size"):
        ModelConfig.from_dict(values)


def test_from_dict_fills_defaults_for_missing_keys():
    assert ModelConfig.from_dict({"num_layers": 3}) == ModelConfig(num_layers=3)


@pytest.mark.parametrize("value", [0, -2])
def test_codevector_dim_must_be_positive(value):
    with pytest.raises(ValueError, match="codevector_dim"):
        ModelConfig.tiny(codevector_dim=value)


def test_layer_norm_eps_must_be_non_negative():
    with pytest.raises(ValueError, match="layer_norm_eps"):
        ModelConfig.tiny(layer_norm_eps=-1.0)


@pytest.mark.parametrize("field", ["num_layers", "mask_time_length", "num_negatives"])
def test_sizes_must_be_integers(field):
    with pytest.raises(ValueError, match=f"ModelConfig.{field}=2.5: must be an integer"):
        ModelConfig.tiny(**{field: 2.5})
