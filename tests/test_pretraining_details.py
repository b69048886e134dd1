"""Pretraining details: accuracy with ties, the Gumbel temperature in the state dict,
utterances too short to mask, and the LARGE preset's source."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

from w2v2_lite.config import ModelConfig
from w2v2_lite.data.corpora import Utterance
from w2v2_lite.data.dataset import PRETRAINING_MIN_SAMPLES, SpeechDataset
from w2v2_lite.data.tokenizer import CharTokenizer
from w2v2_lite.losses import contrastive_accuracy
from w2v2_lite.masking import span_mask
from w2v2_lite.models import Wav2Vec2ForPreTraining


def _tiny(**overrides) -> ModelConfig:
    return ModelConfig.tiny(num_layers=2, **overrides)


# ------------------------------------------------------------------- accuracy
def test_ties_count_as_wrong():
    logits = torch.tensor([
        [2.0, 1.0, 0.5],  # right
        [1.0, 1.0, 1.0],  # every candidate the same score: a collapsed model
        [1.0, 1.0, 0.0],  # the positive ties with one distractor
        [0.0, 1.0, -1.0],  # wrong
        [0.3, float("-inf"), float("-inf")],  # every distractor equal to the positive: out of the task
    ])
    assert contrastive_accuracy(logits).item() == pytest.approx(2 / 5)
    assert (logits.argmax(dim=-1) == 0).float().mean().item() == pytest.approx(4 / 5)  # what argmax would say


def test_a_collapsed_model_scores_zero_accuracy():
    """Context vectors of zeros give every candidate the same cosine similarity (0)."""
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(_tiny()).eval()
    with torch.no_grad():
        model.project_hid.weight.zero_()
        model.project_hid.bias.zero_()
    mask = torch.zeros(2, 49, dtype=torch.bool)
    mask[:, 10:30] = True
    out = model(torch.randn(2, 16000), time_mask=mask)
    finite = out.logits.isfinite()  # distractors equal to their positive are -inf (left out)
    assert torch.all(out.logits[finite] == 0.0)
    assert finite[:, 1:].any(dim=-1).all()  # every step still has a distractor that ties
    assert out.accuracy.item() == 0.0


# ------------------------------------------------------------ Gumbel temperature
def test_gumbel_temperature_is_saved_and_restored():
    model = Wav2Vec2ForPreTraining(_tiny())
    model.set_gumbel_temperature(0.7)
    assert "quantizer.gumbel_temperature" in model.state_dict()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    resumed = Wav2Vec2ForPreTraining(_tiny())
    assert resumed.quantizer.temperature == 2.0
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.quantizer.temperature == pytest.approx(0.7)
    mask = torch.zeros(1, 49, dtype=torch.bool)
    mask[:, 5:25] = True
    resumed.train()
    assert resumed(torch.randn(1, 16000), time_mask=mask).temperature == pytest.approx(0.7)


def test_gumbel_temperature_must_be_positive():
    model = Wav2Vec2ForPreTraining(_tiny())
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="must be > 0"):
            model.set_gumbel_temperature(bad)
    assert model.quantizer.temperature == 2.0


# ------------------------------------------------------------ short utterances
def _can_mask_everything(frames: int, config: ModelConfig, draws: int = 500) -> bool:
    mask = span_mask((draws, frames), config.mask_time_prob, config.mask_time_length, config.mask_time_min_masks,
                     generator=torch.Generator().manual_seed(frames))
    return bool(mask.all(dim=1).any())


@pytest.mark.parametrize("config", [ModelConfig.tiny(), ModelConfig.tiny(mask_time_prob=0.3, mask_time_length=5,
                                                                          mask_time_min_masks=1)],
                         ids=["paper", "p0.06-M5"])
def test_min_pretraining_frames_is_where_a_full_mask_stops_being_possible(config):
    shortest = config.min_pretraining_frames
    assert not any(_can_mask_everything(frames, config) for frames in range(shortest, shortest + 25))
    assert _can_mask_everything(shortest - 1, config)  # one frame fewer, and some draws hide them all
    assert config.num_frames(config.min_pretraining_samples) == shortest
    assert config.num_frames(config.min_pretraining_samples - 1) == shortest - 1


def test_paper_masking_hides_a_third_of_12_frame_utterances():
    config = ModelConfig.tiny()
    mask = span_mask((3000, 12), config.mask_time_prob, config.mask_time_length, config.mask_time_min_masks,
                     generator=torch.Generator().manual_seed(0))
    assert mask.all(dim=1).float().mean().item() == pytest.approx(1 / 3, abs=0.03)
    assert config.min_pretraining_frames == 13


def test_pretraining_refuses_utterances_too_short_to_mask():
    model = Wav2Vec2ForPreTraining(_tiny())
    samples = model.config.min_pretraining_samples
    with pytest.raises(ValueError, match=rf"{samples - 320} samples gives 12 frames.*at least {samples} samples"):
        model(torch.randn(2, samples - 320))
    out = model(torch.randn(2, samples), generator=torch.Generator().manual_seed(0))
    assert out.num_masked < 2 * model.config.min_pretraining_frames
    # In a padded batch, the shortest real utterance counts.
    lengths = torch.tensor([16000, samples - 320])
    attention_mask = (torch.arange(16000)[None, :] < lengths[:, None]).long()
    with pytest.raises(ValueError, match="12 frames"):
        model(torch.randn(2, 16000), attention_mask=attention_mask)
    # A mask the caller draws is the caller's choice.
    explicit = torch.zeros(1, 10, dtype=torch.bool)
    explicit[0, 2:6] = True
    assert model(torch.randn(1, 10 * 320 + 80), time_mask=explicit).num_masked == 4


def _utterances(seconds: list[float]) -> list[Utterance]:
    return [Utterance(path=f"u{i}.wav", num_samples=int(s * 16000), transcript="a b")
            for i, s in enumerate(seconds)]


def test_unlabelled_datasets_leave_out_utterances_under_two_seconds():
    utterances = _utterances([0.3, 1.5, 2.0, 4.0])
    with pytest.warns(UserWarning, match=f"left out 2 of 4 utterances shorter than {PRETRAINING_MIN_SAMPLES}"):
        pretraining = SpeechDataset(utterances)
    assert [u.path for u in pretraining.utterances] == ["u2.wav", "u3.wav"]
    assert PRETRAINING_MIN_SAMPLES >= ModelConfig.base().min_pretraining_samples
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labelled = SpeechDataset(utterances, CharTokenizer())  # every transcript counts
        assert len(labelled) == 4
    with pytest.warns(UserWarning, match="left out 1 of 4"):
        assert len(SpeechDataset(utterances, min_samples=16000)) == 3


# --------------------------------------------------------------------- LARGE
def test_large_takes_every_regularisation_value_from_lv60k():
    """examples/wav2vec/config/pretraining/wav2vec2_large_librivox.yaml"""
    cfg = ModelConfig.large()
    assert (cfg.dropout, cfg.attention_dropout, cfg.activation_dropout) == (0.0, 0.0, 0.0)
    assert (cfg.dropout_input, cfg.dropout_features, cfg.layerdrop) == (0.0, 0.0, 0.0)
    assert (cfg.feature_grad_mult, cfg.diversity_weight, cfg.feature_penalty_weight) == (1.0, 0.1, 0.0)
    assert cfg.gumbel_temperature == (2.0, 0.1, 0.999995)
    assert (cfg.mask_time_prob, cfg.mask_time_length) == (0.65, 10)
    assert (cfg.final_dim, cfg.codevector_dim, cfg.num_negatives) == (768, 768, 100)
    assert "wav2vec2_large_librivox" in ModelConfig.large.__doc__
