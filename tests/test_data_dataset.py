"""Datasets and batching: crops, length buckets, workers, and padding that leaves the model unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from w2v2_lite import ModelConfig, Wav2Vec2ForCTC, Wav2Vec2Model
from w2v2_lite.data import (CharTokenizer, Collator, CorpusConfig, LengthBucketSampler, SpeechDataset, make_corpus,
                            read_manifest, speech_dataloader)
from w2v2_lite.data.dataset import IGNORE_LABEL, SpeechItem

from tolerances import assert_close_to_scale


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("batching")
    config = CorpusConfig.notebooks(pretrain_minutes=0.4, labelled_minutes=(0.3,), dev_minutes=0.05,
                                    test_minutes=0.05, train_speakers=4, eval_speakers=1)
    make_corpus(root, config, workers=2, progress=False)
    return root


def test_random_crop_is_deterministic_and_changes_with_the_epoch(corpus):
    utterances = read_manifest(corpus / "pretrain.tsv")
    dataset = SpeechDataset(utterances, max_samples=8000, seed=1)
    first = dataset[0].waveform
    assert first.shape == (8000,) and all(length <= 8000 for length in dataset.lengths)
    torch.testing.assert_close(SpeechDataset(utterances, max_samples=8000, seed=1)[0].waveform, first)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[0].waveform, first)


def test_length_buckets_respect_the_budget_cover_everything_and_are_seeded():
    lengths = [100 * (i % 17 + 1) for i in range(200)]
    sampler = LengthBucketSampler(lengths, max_batch_samples=4000, max_batch_size=8, seed=3)
    batches = sampler.batches()
    assert sorted(i for batch in batches for i in batch) == list(range(200))
    for batch in batches:
        assert len(batch) * max(lengths[i] for i in batch) <= 4000 and len(batch) <= 8
    assert LengthBucketSampler(lengths, 4000, 8, seed=3).batches() == batches
    sampler.set_epoch(1)
    assert sampler.batches() != batches
    padding = sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)
    assert padding < 0.05 * sum(lengths)  # bucketing keeps padding small
    with pytest.raises(ValueError, match="longest item"):
        LengthBucketSampler([5000], max_batch_samples=4000)


def test_dataloader_with_two_workers_gives_the_same_batches(corpus):
    dataset = SpeechDataset(read_manifest(corpus / "train-0.3min.tsv"), CharTokenizer(), seed=0)
    config = ModelConfig.tiny(extractor_mode="layer_norm", layer_norm_first=True)
    single = list(speech_dataloader(dataset, config, max_batch_samples=200_000, seed=5))
    parallel = list(speech_dataloader(dataset, config, max_batch_samples=200_000, seed=5, num_workers=2))
    assert len(single) == len(parallel) > 1
    for a, b in zip(single, parallel):
        assert torch.equal(a.indices, b.indices) and torch.equal(a.waveform, b.waveform)
        assert torch.equal(a.labels, b.labels) and torch.equal(a.attention_mask, b.attention_mask)
    batch = single[0]
    assert batch.attention_mask.sum(dim=1).tolist() == batch.lengths.tolist()
    assert (batch.labels == IGNORE_LABEL).sum() == (batch.label_lengths.max() - batch.label_lengths).sum()
    model = Wav2Vec2ForCTC(config)
    loss = model(**batch.model_inputs()).loss
    assert torch.isfinite(loss)


def test_collator_follows_the_feature_encoder_norm():
    items = [SpeechItem(0, torch.randn(5000)), SpeechItem(1, torch.randn(3000))]
    group_norm, layer_norm = ModelConfig.tiny(), ModelConfig.tiny(extractor_mode="layer_norm")
    unlabelled = Collator.for_model(group_norm, labelled=False)(items)  # fairseq: crop, never pad
    assert unlabelled.waveform.shape == (2, 3000) and unlabelled.attention_mask is None
    labelled_items = [SpeechItem(i.index, i.waveform, torch.tensor([5, 6])) for i in items]
    labelled = Collator.for_model(group_norm, labelled=True)(labelled_items)
    assert labelled.waveform.shape == (2, 5000) and labelled.attention_mask is None
    padded = Collator.for_model(layer_norm, labelled=False)(items)
    assert padded.attention_mask.tolist()[1] == [1] * 3000 + [0] * 2000
    assert torch.equal(padded.waveform[1, 3000:], torch.zeros(2000))
    with pytest.raises(ValueError, match="unlabelled"):
        Collator(crop_to_shortest=True)(labelled_items)


def test_layer_norm_model_output_is_the_same_alone_and_padded_in_a_batch():
    torch.manual_seed(0)
    config = ModelConfig.tiny(extractor_mode="layer_norm", layer_norm_first=True)
    model = Wav2Vec2Model(config).eval()
    short, long = torch.randn(6000), torch.randn(16000)
    batch = Collator(return_attention_mask=True)([SpeechItem(0, long), SpeechItem(1, short)])
    with torch.no_grad():
        alone = model(short[None]).last_hidden_state[0]  # (T, D)
        padded = model(batch.waveform, batch.attention_mask).last_hidden_state[1]
    frames = config.num_frames(6000)
    assert alone.shape[0] == frames
    assert_close_to_scale(padded[:frames], alone, 1e-5)
