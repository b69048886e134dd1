"""The paper's continuous-target ablation (section 5, Table 4): `quantize_targets=False`.

The context network still reads the masked latents, but the targets and distractors of
the contrastive loss are the unquantized latents Z, projected by `project_q`
(conv_dim -> final_dim), as in fairseq's `Wav2Vec2Model` with `quantize_targets: false`.
No quantizer, no diversity loss, no perplexity, no Gumbel temperature.
"""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from w2v2_lite.config import ModelConfig
from w2v2_lite.interop import _FAIRSEQ_RULES, config_from_fairseq, load_fairseq_checkpoint
from w2v2_lite.losses import contrastive_logits, contrastive_loss
from w2v2_lite.models import Wav2Vec2ForPreTraining
from w2v2_lite.negatives import sample_negatives
from w2v2_lite.plots import plot_run
from w2v2_lite.training.loop import TrainConfig, Trainer
from w2v2_lite.training.monitors import HealthMonitor

from conftest import SMALL_MODEL
from test_finetuning import PRETRAINING_ARGS, _fairseq_name
from tolerances import assert_close_to_scale

SAMPLES = 16_000
QUIET = dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, dropout_input=0.0, dropout_features=0.0,
             layerdrop=0.0)


def _config(**overrides) -> ModelConfig:
    return ModelConfig.tiny(**(SMALL_MODEL | {"quantize_targets": False} | overrides))


def _mask_and_negatives(config: ModelConfig, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    frames = config.num_frames(SAMPLES)
    time_mask = torch.zeros(batch, frames, dtype=torch.bool)
    time_mask[:, 5:20] = True
    time_mask[1, 30:36] = True
    negatives = sample_negatives(time_mask, config.num_negatives, generator=torch.Generator().manual_seed(0))
    return time_mask, negatives


# ---------------------------------------------------------------------- config
def test_quantize_targets_defaults_to_true_and_round_trips():
    assert all(preset().quantize_targets for preset in (ModelConfig.base, ModelConfig.tiny, ModelConfig.large))
    config = _config()
    assert ModelConfig.from_dict(json.loads(config.to_json())) == config
    older = ModelConfig.tiny().to_dict()
    del older["quantize_targets"]  # a config saved before the field existed
    assert ModelConfig.from_dict(older).quantize_targets is True
    with pytest.raises(ValueError, match="quantize_targets"):
        ModelConfig.tiny(quantize_targets="false")  # a truthy string would silently quantize


# ------------------------------------------------------------------- the model
def test_no_quantizer_is_built_and_project_q_reads_the_latents():
    config = _config()
    model = Wav2Vec2ForPreTraining(config)
    assert model.quantizer is None
    assert not any(key.startswith("quantizer.") for key in model.state_dict())
    assert model.project_q.weight.shape == (config.final_dim, config.conv_dim)  # fairseq: Linear(embed, final_dim)
    model.set_gumbel_temperature(0.5)  # the training loop anneals every update: nothing to anneal here
    quantized = Wav2Vec2ForPreTraining(ModelConfig.tiny(**SMALL_MODEL))
    assert quantized.project_q.weight.shape == (config.final_dim, config.codevector_dim)


def test_targets_are_the_projected_latents_at_the_masked_steps():
    torch.manual_seed(0)
    config = _config(**QUIET)
    model = Wav2Vec2ForPreTraining(config).eval()
    waveform = torch.randn(2, SAMPLES)
    time_mask, negatives = _mask_and_negatives(config)
    with torch.no_grad():
        out = model(waveform, time_mask=time_mask, negative_indices=negatives)
        encoded = model.wav2vec2(waveform, time_mask=time_mask)
        targets = model.project_q(encoded.extract_features)  # (B, T, F): Z after its LayerNorm, unmasked
        context = model.project_hid(encoded.last_hidden_state)
    assert_close_to_scale(out.projected_quantized, targets, 1e-6)
    rows = time_mask.reshape(-1).nonzero().squeeze(-1)
    flat_targets, flat_context = targets.reshape(-1, config.final_dim), context.reshape(-1, config.final_dim)
    distractors = flat_targets[negatives.reshape(time_mask.numel(), -1)[rows]]  # (N, K, F)
    expected = contrastive_logits(flat_context[rows], flat_targets[rows], distractors, config.logit_temperature)
    assert_close_to_scale(out.logits, expected, 1e-5)
    assert_close_to_scale(out.contrastive_loss, contrastive_loss(expected) / len(rows), 1e-5)


def test_targets_read_the_latents_after_dropout_features():
    """fairseq quantizes, or here projects, `dropout_features(unmasked_features)`."""
    torch.manual_seed(0)
    config = _config(**(QUIET | {"dropout_features": 0.5}))
    model = Wav2Vec2ForPreTraining(config).train()
    seen = {}
    model.dropout_features.register_forward_hook(lambda module, inputs, output: seen.update(z=inputs[0], out=output))
    time_mask, negatives = _mask_and_negatives(config)
    waveform = torch.randn(2, SAMPLES)
    out = model(waveform, time_mask=time_mask, negative_indices=negatives)
    assert_close_to_scale(seen["z"], model.wav2vec2(waveform, time_mask=time_mask).extract_features, 1e-6)
    assert (seen["out"] == 0).float().mean().item() == pytest.approx(0.5, abs=0.05)
    assert_close_to_scale(out.projected_quantized, model.project_q(seen["out"]), 1e-6)


def test_loss_has_no_diversity_term_and_trains_end_to_end():
    torch.manual_seed(0)
    config = _config(feature_grad_mult=1.0)
    model = Wav2Vec2ForPreTraining(config).train()
    out = model(torch.randn(2, SAMPLES), generator=torch.Generator().manual_seed(0))
    assert out.diversity_loss is None and out.code_perplexity is None and out.softmax_perplexity is None
    assert out.temperature is None and out.codes is None
    assert torch.equal(out.loss, out.contrastive_loss + config.feature_penalty_weight * out.feature_penalty)
    assert math.isfinite(out.loss.item()) and 0.0 <= out.accuracy.item() <= 1.0
    out.loss.backward()
    for name in ("project_q.weight", "project_hid.weight", "wav2vec2.mask_embedding",
                 "wav2vec2.feature_encoder.conv_layers.0.conv.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


# -------------------------------------------------------------------- training
def test_health_monitor_takes_records_without_code_perplexity():
    monitor = HealthMonitor(num_entries=16, num_negatives=5, window=2, warmup=0)
    for update in range(1, 4):
        assert monitor.check(update, {"loss": 3.0, "accuracy": 0.5}) == []


def test_trainer_pretrains_with_continuous_targets(corpus, tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(train_manifest=str(corpus / "pretrain.tsv"), valid_manifest=str(corpus / "dev.tsv"),
                         output_dir=str(out), model=SMALL_MODEL | {"quantize_targets": False}, max_updates=2,
                         eval_every=2, save_every=2, max_batch_samples=4 * 32_000, max_batch_size=4,
                         crop_samples=32_000, precision="fp32", progress=False, warmup_fraction=0.5)
    trainer = Trainer(config)
    assert trainer.model.quantizer is None
    history = trainer.train()
    assert [r["update"] for r in history] == [1, 2]
    for record in history:
        assert {"loss", "contrastive_loss", "feature_penalty", "accuracy", "mask_fraction"} <= set(record)
        assert not {"diversity_loss", "code_perplexity", "softmax_perplexity", "temperature"} & set(record)
        assert math.isfinite(record["loss"])
    assert {"dev_contrastive_loss", "dev_accuracy"} <= set(history[-1])
    assert "dev_code_perplexity" not in history[-1]
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["update"] for r in logged] == [1, 2]
    state = torch.load(out / "checkpoint_last.pt", weights_only=False)
    assert state["model_config"]["quantize_targets"] is False
    assert not any(key.startswith("quantizer.") for key in state["model"])
    assert plot_run(out).axes  # the perplexity and temperature panels say "not in this log"


# ------------------------------------------------------------ fairseq checkpoint
@torch.no_grad()
@pytest.mark.parametrize("config_says", [False, None], ids=["quantize_targets-false", "key-absent"])
def test_fairseq_checkpoint_with_continuous_targets_loads(tmp_path, config_says):
    """fairseq saves no quantizer and a project_q of shape (final_dim, embed); the weights decide."""
    torch.manual_seed(0)
    args = dict(PRETRAINING_ARGS)
    if config_says is not None:
        args["quantize_targets"] = config_says
    config = ModelConfig.from_dict(config_from_fairseq(PRETRAINING_ARGS).to_dict() | {"quantize_targets": False})
    source = Wav2Vec2ForPreTraining(config).eval()
    state = {_fairseq_name(key, _FAIRSEQ_RULES): value for key, value in source.wav2vec2.state_dict().items()}
    heads = {"project_q": source.project_q, "final_proj": source.project_hid}
    state |= {f"{name}.{p}": getattr(module, p) for name, module in heads.items() for p in ("weight", "bias")}
    path = tmp_path / "continuous.pt"
    torch.save({"args": argparse.Namespace(**args), "cfg": None, "model": state}, path)

    model = load_fairseq_checkpoint(path, trust_checkpoint=True)
    assert isinstance(model, Wav2Vec2ForPreTraining) and model.quantizer is None
    assert model.config.quantize_targets is False
    time_mask, negatives = _mask_and_negatives(config)
    waveform = torch.randn(2, SAMPLES)
    got = model(waveform, time_mask=time_mask, negative_indices=negatives)
    expected = source(waveform, time_mask=time_mask, negative_indices=negatives)
    assert_close_to_scale(got.logits, expected.logits, 1e-6)


def test_quantizer_weights_do_not_fit_a_continuous_model():
    """Loading a quantized model's weights into a continuous one is an error, not a silent drop."""
    quantized = Wav2Vec2ForPreTraining(ModelConfig.tiny(**SMALL_MODEL))
    with pytest.raises(RuntimeError, match="quantizer"):
        Wav2Vec2ForPreTraining(_config()).load_state_dict(quantized.state_dict())
