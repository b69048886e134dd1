"""Equal weights give equal numbers: w2v2_lite against transformers and torchaudio.

Every reference model is randomly initialised, imported with `w2v2_lite.interop`, and
compared in fp32 within 1e-5 of each tensor's scale: at a tiny size and at the full BASE architecture, for
the group_norm / post-LN (BASE) and layer_norm / pre-LN (LARGE) designs.
"""

from __future__ import annotations

import argparse

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")
torchaudio = pytest.importorskip("torchaudio")

from w2v2_lite.interop import from_torchaudio, from_transformers, load_fairseq_checkpoint  # noqa: E402
from w2v2_lite.masking import span_mask  # noqa: E402
from w2v2_lite.negatives import sample_negatives  # noqa: E402

from tolerances import assert_close_to_scale  # noqa: E402

PARITY = 1e-5  # max |ours - reference| <= 1e-5 * max |reference|, for every compared tensor (fp32)
NO_DROPOUT = dict(hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
                  feat_quantizer_dropout=0.0, final_dropout=0.0, layerdrop=0.0, mask_feature_prob=0.0)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, conv_dim=(32,) * 7,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, num_codevectors_per_group=16,
            codevector_dim=32, proj_codevector_dim=24, num_negatives=10, vocab_size=12)
POST_LN = dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False)
PRE_LN = dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)

CONFIGS = {
    "tiny-group-postln": TINY | POST_LN,
    "tiny-layer-preln": TINY | PRE_LN,
    "base-group-postln": POST_LN,
    "base-layer-preln": PRE_LN,
}
FAST = ["tiny-group-postln", "tiny-layer-preln"]
ALL = [pytest.param(name, marks=pytest.mark.slow) if name.startswith("base") else name for name in CONFIGS]


def hf_config(name: str, **extra):
    return transformers.Wav2Vec2Config(**(CONFIGS[name] | NO_DROPOUT | extra))


def waveforms(batch: int = 2, samples: int = 16000, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, samples, generator=generator)


def mask_and_negatives(batch: int, steps: int, num_negatives: int, lengths=None):
    generator = torch.Generator().manual_seed(1)
    mask = span_mask((batch, steps), 0.65, 10, min_spans=2, lengths=lengths, generator=generator)
    return mask, sample_negatives(mask, num_negatives, generator=generator)


@pytest.fixture(scope="module", params=ALL)
def pretraining_pair(request):
    torch.manual_seed(0)
    reference = transformers.Wav2Vec2ForPreTraining(hf_config(request.param)).eval()
    return request.param, reference, from_transformers(reference)


@torch.no_grad()
def test_feature_encoder_and_every_hidden_state(pretraining_pair):
    _, reference, ours = pretraining_pair
    x = waveforms()
    assert_close_to_scale(ours.wav2vec2.feature_encoder(x), reference.wav2vec2.feature_extractor(x).transpose(1, 2),
                          PARITY)
    expected = reference.wav2vec2(x, output_hidden_states=True)
    got = ours.wav2vec2(x, output_hidden_states=True)
    assert_close_to_scale(got.extract_features, expected.extract_features, PARITY)
    assert_close_to_scale(got.last_hidden_state, expected.last_hidden_state, PARITY)
    # The input of the first layer, then the output of every layer.
    assert len(got.hidden_states) == len(expected.hidden_states) == reference.config.num_hidden_layers + 1
    for ours_layer, reference_layer in zip(got.hidden_states, expected.hidden_states):
        assert_close_to_scale(ours_layer, reference_layer, PARITY)


@torch.no_grad()
def test_pretraining_outputs_and_loss_for_a_given_mask_and_negatives(pretraining_pair):
    _, reference, ours = pretraining_pair
    config = reference.config
    x = waveforms()
    steps = ours.config.num_frames(x.shape[1])
    mask, negatives = mask_and_negatives(x.shape[0], steps, config.num_negatives)
    expected = reference(x, mask_time_indices=mask, sampled_negative_indices=negatives)
    got = ours(x, time_mask=mask, negative_indices=negatives)

    assert_close_to_scale(got.projected_context, expected.projected_states, PARITY)
    assert_close_to_scale(got.projected_quantized, expected.projected_quantized_states, PARITY)
    assert_close_to_scale(got.code_perplexity, expected.codevector_perplexity, PARITY)
    num_masked = int(mask.sum())
    assert got.num_masked == num_masked
    assert_close_to_scale(got.contrastive_loss * num_masked, expected.contrastive_loss, PARITY)
    # In eval mode transformers measures diversity on the hard codes; w2v2_lite always uses the
    # softmax (the paper's definition) and reports the hard-code perplexity beside it.
    entries = config.num_codevector_groups * config.num_codevectors_per_group
    hard_diversity = (entries - got.code_perplexity) / entries
    total = got.contrastive_loss * num_masked + config.diversity_loss_weight * hard_diversity * num_masked
    assert_close_to_scale(total, expected.loss, PARITY)


def test_training_mode_loss_and_gradients_match(pretraining_pair, monkeypatch):
    """With dropout off and the same Gumbel noise, the training loss and every gradient agree."""
    name, reference, ours = pretraining_pair
    if name.startswith("base"):
        pytest.skip("gradients are compared at the tiny size; BASE is covered in eval mode")
    config = reference.config
    x = waveforms()
    steps = ours.config.num_frames(x.shape[1])
    mask, negatives = mask_and_negatives(x.shape[0], steps, config.num_negatives)
    noise = -torch.empty(x.shape[0] * steps * config.num_codevector_groups,
                         config.num_codevectors_per_group).exponential_(generator=torch.Generator().manual_seed(2)).log()

    def gumbel_softmax_with_fixed_noise(logits, tau=1.0, hard=False, eps=1e-10, dim=-1):
        soft = ((logits + noise) / tau).softmax(dim)
        index = soft.argmax(dim, keepdim=True)
        hard_codes = torch.zeros_like(logits).scatter_(dim, index, 1.0)
        return hard_codes - soft.detach() + soft if hard else soft

    monkeypatch.setattr(F, "gumbel_softmax", gumbel_softmax_with_fixed_noise)
    reference.train()
    ours.train()
    try:
        expected = reference(x, mask_time_indices=mask, sampled_negative_indices=negatives)
        got = ours(x, time_mask=mask, negative_indices=negatives)
        assert_close_to_scale(got.loss * got.num_masked, expected.loss, PARITY)
        expected.loss.backward()
        (got.loss * got.num_masked).backward()
    finally:
        reference.eval()
        ours.eval()
    pairs = {
        "first conv": (ours.wav2vec2.feature_encoder.conv_layers[0].conv.weight,
                       reference.wav2vec2.feature_extractor.conv_layers[0].conv.weight),
        "quantizer logits": (ours.quantizer.logits.weight, reference.quantizer.weight_proj.weight),
        "codevectors": (ours.quantizer.codevectors, reference.quantizer.codevectors),
        "last attention q": (ours.wav2vec2.encoder.layers[-1].attention.q_proj.weight,
                             reference.wav2vec2.encoder.layers[-1].attention.q_proj.weight),
        "mask embedding": (ours.wav2vec2.mask_embedding, reference.wav2vec2.masked_spec_embed),
    }
    for label, (mine, theirs) in pairs.items():
        assert mine.grad is not None, label
        assert_close_to_scale(mine.grad, theirs.grad.reshape(mine.grad.shape), PARITY, label)
    ours.zero_grad()
    reference.zero_grad()


@pytest.mark.parametrize("name", ALL)
@torch.no_grad()
def test_ctc_logits_and_loss_with_padding(name):
    torch.manual_seed(0)
    reference = transformers.Wav2Vec2ForCTC(hf_config(name, vocab_size=12, ctc_loss_reduction="sum")).eval()
    ours = from_transformers(reference)
    x = waveforms(batch=3, samples=12000)
    attention_mask = torch.ones_like(x, dtype=torch.long)
    attention_mask[1, 9000:] = 0
    attention_mask[2, 5000:] = 0
    x = x * attention_mask
    labels = torch.tensor([[3, 4, 5, 6, 5], [7, 8, 2, -100, -100], [1, 1, 9, 10, -100]])
    expected = reference(x, attention_mask=attention_mask, labels=labels)
    got = ours(x, attention_mask=attention_mask, labels=labels)
    assert_close_to_scale(got.logits, expected.logits, PARITY)
    assert_close_to_scale(got.loss, expected.loss, PARITY)
    assert got.output_lengths.tolist() == [ours.config.num_frames(n) for n in attention_mask.sum(-1).tolist()]


TORCHAUDIO_CONFIGS = {
    "tiny-group-postln": dict(extractor_mode="group_norm", extractor_conv_bias=False, encoder_layer_norm_first=False),
    "tiny-layer-preln": dict(extractor_mode="layer_norm", extractor_conv_bias=True, encoder_layer_norm_first=True),
    "base-group-postln": dict(extractor_mode="group_norm", extractor_conv_bias=False, encoder_layer_norm_first=False),
    "base-layer-preln": dict(extractor_mode="layer_norm", extractor_conv_bias=True, encoder_layer_norm_first=True),
}


def torchaudio_model(name: str):
    tiny = name.startswith("tiny")
    conv = [(32 if tiny else 512, 10, 5)] + [(32 if tiny else 512, 3, 2)] * 4 + [(32 if tiny else 512, 2, 2)] * 2
    return torchaudio.models.wav2vec2_model(
        extractor_conv_layer_config=conv, encoder_embed_dim=64 if tiny else 768, encoder_projection_dropout=0.0,
        encoder_pos_conv_kernel=16 if tiny else 128, encoder_pos_conv_groups=4 if tiny else 16,
        encoder_num_layers=2 if tiny else 12, encoder_num_heads=4 if tiny else 12, encoder_attention_dropout=0.0,
        encoder_ff_interm_features=128 if tiny else 3072, encoder_ff_interm_dropout=0.0, encoder_dropout=0.0,
        encoder_layer_drop=0.0, aux_num_out=12, **TORCHAUDIO_CONFIGS[name])


@pytest.mark.parametrize("name", ALL)
@torch.no_grad()
def test_torchaudio_encoder_outputs(name):
    torch.manual_seed(0)
    reference = torchaudio_model(name).eval()
    ours = from_torchaudio(reference)
    x = waveforms(batch=2, samples=12000)
    lengths = torch.tensor([12000, 8000])
    attention_mask = (torch.arange(x.shape[1])[None, :] < lengths[:, None]).long()
    x = x * attention_mask

    features, _ = reference.feature_extractor(x, None)
    assert_close_to_scale(ours.wav2vec2.feature_encoder(x), features, PARITY)

    expected_logits, expected_lengths = reference(x, lengths)
    got = ours(x, attention_mask=attention_mask, output_hidden_states=True)
    assert got.output_lengths.tolist() == expected_lengths.tolist()
    real = torch.arange(got.logits.shape[1])[None, :] < expected_lengths[:, None]  # padding differs by design
    assert_close_to_scale(got.logits[real], expected_logits[real], PARITY)

    layers = reference.extract_features(x, lengths)[0]  # the output of every layer
    assert len(layers) == len(got.hidden_states) - 1
    for ours_layer, reference_layer in zip(got.hidden_states[1:], layers):
        assert_close_to_scale(ours_layer[real], reference_layer[real], PARITY)


# -------------------------------------------------------------------- fairseq
def _fairseq_state_dict(hf_model) -> dict[str, torch.Tensor]:
    """The keys fairseq's Wav2Vec2Model uses (fairseq/models/wav2vec/wav2vec2.py), from a transformers model."""
    layer_norm_mode = hf_model.config.feat_extract_norm == "layer"
    renames = [
        ("wav2vec2.feature_extractor.conv_layers.{i}.conv.", "feature_extractor.conv_layers.{i}.0."),
        ("wav2vec2.feature_extractor.conv_layers.{i}.layer_norm.",
         "feature_extractor.conv_layers.{i}.2.1." if layer_norm_mode else "feature_extractor.conv_layers.{i}.2."),
        ("wav2vec2.feature_projection.layer_norm.", "layer_norm."),
        ("wav2vec2.feature_projection.projection.", "post_extract_proj."),
        ("wav2vec2.masked_spec_embed", "mask_emb"),
        ("wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original0", "encoder.pos_conv.0.weight_g"),
        ("wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original1", "encoder.pos_conv.0.weight_v"),
        ("wav2vec2.encoder.pos_conv_embed.conv.bias", "encoder.pos_conv.0.bias"),
        ("wav2vec2.encoder.layer_norm.", "encoder.layer_norm."),
        ("wav2vec2.encoder.layers.{i}.attention.", "encoder.layers.{i}.self_attn."),
        ("wav2vec2.encoder.layers.{i}.layer_norm.", "encoder.layers.{i}.self_attn_layer_norm."),
        ("wav2vec2.encoder.layers.{i}.feed_forward.intermediate_dense.", "encoder.layers.{i}.fc1."),
        ("wav2vec2.encoder.layers.{i}.feed_forward.output_dense.", "encoder.layers.{i}.fc2."),
        ("wav2vec2.encoder.layers.{i}.final_layer_norm.", "encoder.layers.{i}.final_layer_norm."),
        ("quantizer.codevectors", "quantizer.vars"),
        ("quantizer.weight_proj.", "quantizer.weight_proj."),
        ("project_q.", "project_q."),
        ("project_hid.", "final_proj."),
    ]
    state = {}
    for key, value in hf_model.state_dict().items():
        if key.startswith("lm_head."):  # the CTC head lives outside the body (w2v_encoder.proj)
            continue
        for source, target in renames:
            for i in range(max(hf_model.config.num_hidden_layers, len(hf_model.config.conv_dim))):
                if key.startswith(source.format(i=i)):
                    state[target.format(i=i) + key[len(source.format(i=i)):]] = value.clone()
                    break
            else:
                continue
            break
        else:
            raise AssertionError(f"test mapping misses {key}")
    return state


def _fairseq_model_args(c) -> dict:
    """The fields of fairseq's Wav2Vec2Config that describe a transformers config `c`."""
    return dict(
        arch="wav2vec2", extractor_mode="layer_norm" if c.feat_extract_norm == "layer" else "default",
        conv_feature_layers=f"[({c.conv_dim[0]}, 10, 5)] + [({c.conv_dim[0]}, 3, 2)] * 4 + [({c.conv_dim[0]},2,2)] * 2",
        conv_bias=c.conv_bias, encoder_embed_dim=c.hidden_size, encoder_layers=c.num_hidden_layers,
        encoder_attention_heads=c.num_attention_heads, encoder_ffn_embed_dim=c.intermediate_size,
        layer_norm_first=c.do_stable_layer_norm, conv_pos=c.num_conv_pos_embeddings,
        conv_pos_groups=c.num_conv_pos_embedding_groups, latent_vars=c.num_codevectors_per_group,
        latent_groups=c.num_codevector_groups, latent_dim=c.codevector_dim, final_dim=c.proj_codevector_dim,
        num_negatives=c.num_negatives, latent_temp="(2, 0.5, 0.999995)", feature_grad_mult=0.1,
    )


@pytest.mark.parametrize("name", FAST)
@torch.no_grad()
def test_fairseq_checkpoint_import(name, tmp_path):
    torch.manual_seed(0)
    reference = transformers.Wav2Vec2ForPreTraining(hf_config(name)).eval()
    c = reference.config
    args = argparse.Namespace(**_fairseq_model_args(c))  # a legacy checkpoint pickles its argparse Namespace
    path = tmp_path / "checkpoint_best.pt"
    torch.save({"args": args, "cfg": None, "model": _fairseq_state_dict(reference)}, path)

    with pytest.raises(ValueError, match="trust_checkpoint=True"):
        load_fairseq_checkpoint(path)
    ours = load_fairseq_checkpoint(path, trust_checkpoint=True)
    assert ours.config.num_layers == c.num_hidden_layers and ours.config.conv_layers[1] == (c.conv_dim[0], 3, 2)
    x = waveforms()
    expected = reference.wav2vec2(x)
    got = ours.wav2vec2(x)
    assert_close_to_scale(got.last_hidden_state, expected.last_hidden_state, PARITY)
    mask, negatives = mask_and_negatives(2, ours.config.num_frames(x.shape[1]), c.num_negatives)
    expected = reference(x, mask_time_indices=mask, sampled_negative_indices=negatives)
    got = ours(x, time_mask=mask, negative_indices=negatives)
    assert_close_to_scale(got.contrastive_loss * got.num_masked, expected.contrastive_loss, PARITY)


class _FakeNode:
    """Pickles like omegaconf's nodes: a DictConfig keeps `_content`, a value node `_val`."""

    def __init__(self, **state):
        self.__dict__.update(state)


@torch.no_grad()
def test_fairseq_ctc_checkpoint_with_omegaconf_config_loads_without_omegaconf(tmp_path, monkeypatch):
    """A fine-tuned (CTC) checkpoint whose cfg pickles omegaconf objects, read with omegaconf absent."""
    import sys
    import types

    torch.manual_seed(0)
    reference = transformers.Wav2Vec2ForCTC(hf_config("tiny-layer-preln", vocab_size=12)).eval()
    fake = types.ModuleType("omegaconf_stand_in")
    fake.DictConfig, fake.AnyNode = type("DictConfig", (_FakeNode,), {}), type("AnyNode", (_FakeNode,), {})
    for cls in (fake.DictConfig, fake.AnyNode):
        cls.__module__ = "omegaconf_stand_in"
    monkeypatch.setitem(sys.modules, "omegaconf_stand_in", fake)

    def dict_config(values: dict):
        return fake.DictConfig(_content={k: fake.AnyNode(_val=v) for k, v in values.items()})

    body = {f"w2v_encoder.w2v_model.{k}": v for k, v in _fairseq_state_dict(reference).items()}
    body["w2v_encoder.proj.weight"] = reference.lm_head.weight.clone()
    body["w2v_encoder.proj.bias"] = reference.lm_head.bias.clone()
    pretraining_cfg = dict_config({"model": dict_config(_fairseq_model_args(reference.config))})
    cfg = {"model": dict_config({"_name": "wav2vec_ctc", "w2v_args": pretraining_cfg, "final_dropout": 0.0})}
    path = tmp_path / "wav2vec_ctc.pt"
    torch.save({"args": None, "cfg": cfg, "model": body}, path)
    monkeypatch.delitem(sys.modules, "omegaconf_stand_in")  # as on a machine without omegaconf

    ours = load_fairseq_checkpoint(path, trust_checkpoint=True)
    assert ours.config.vocab_size == 12 and ours.config.layer_norm_first
    x = waveforms()
    assert_close_to_scale(ours(x).logits, reference(x).logits, PARITY)


def test_fairseq_loader_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no fairseq checkpoint"):
        load_fairseq_checkpoint(tmp_path / "absent.pt", trust_checkpoint=True)
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="not a fairseq checkpoint"):
        load_fairseq_checkpoint(path, trust_checkpoint=True)
