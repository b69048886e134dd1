"""From utterances to model batches: dataset, length-bucketed sampler, padding and masks.

    dataset = SpeechDataset(read_manifest("data/generated/notebooks/train-3min.tsv"), CharTokenizer())
    loader = speech_dataloader(dataset, ModelConfig.tiny(), max_batch_samples=16 * 16_000)
    for batch in loader:
        loss = model(**batch.model_inputs()).loss

Padding and the two feature-encoder norms (fairseq issue #3227). A `layer_norm`
encoder normalises each frame on its own, so zero padding does not change the real
frames, and the attention mask keeps the transformer from attending to padding: an
utterance gives the same output alone and padded in a batch (a test checks it). A
`group_norm` encoder (BASE) normalises each channel over *all* time steps, padding
included, so padding changes every frame of the utterance, and BASE checkpoints were
trained without an attention mask. `Collator.for_model` therefore does what fairseq
does: for `group_norm` models it crops unlabelled batches to their shortest
utterance (no padding at all), pads labelled batches without an attention mask, and
relies on `LengthBucketSampler` grouping similar lengths to keep the padding small.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from .audio import RECEPTIVE_FIELD, load_audio
from .corpora import Utterance
from .tokenizer import CharTokenizer

if TYPE_CHECKING:
    from ..config import ModelConfig

IGNORE_LABEL = -100  # padding of the label matrix; CTC and cross-entropy skip it
# The shortest utterance to pretrain on: fairseq's `min_sample_size` in its pretraining
# recipes, 2 s. It lies far above the length below which span masking can hide every
# frame (`ModelConfig.min_pretraining_samples`, 0.27 s for the paper's masking), and a
# short utterance would also shorten its whole batch, which `Collator` crops to the
# shortest utterance for group_norm models.
PRETRAINING_MIN_SAMPLES = 32_000


def crop_offset(num_samples: int, max_samples: int, seed: int, epoch: int, index: int) -> int:
    """Start of a random window of `max_samples` in an utterance, fixed by (seed, epoch, index).

    Seeded per item rather than by a shared generator, so the crop does not depend on
    which DataLoader worker loads the item or in which order.
    """
    excess = num_samples - max_samples
    return int(np.random.default_rng([seed, epoch, index]).integers(0, excess + 1)) if excess > 0 else 0


@dataclass
class SpeechItem:
    """One utterance: waveform X (L,), CTC targets (S,) or None, and its index in the dataset."""

    index: int
    waveform: Tensor
    labels: Tensor | None = None


class SpeechDataset(Dataset):
    """Utterances -> `SpeechItem`s: load, normalise, randomly crop to `max_samples`, tokenise.

    utterances: from `read_manifest`, `read_librispeech` or `read_librilight`.
    tokenizer: give one for labelled data (fine-tuning); None for pretraining.
    max_samples: longer utterances are cropped to a random window (pretraining; the
        paper crops to 250k samples = 15.6 s); None keeps them whole.
    min_samples: utterances shorter than this are left out, with a warning. By default
        `PRETRAINING_MIN_SAMPLES` (2 s, fairseq's) without a tokenizer, and the feature
        encoder's receptive field (400 samples) with one, where every transcript counts.
    """

    def __init__(self, utterances: Sequence[Utterance], tokenizer: CharTokenizer | None = None,
                 max_samples: int | None = None, min_samples: int | None = None, normalize: bool = True,
                 seed: int = 0) -> None:
        if min_samples is None:
            min_samples = RECEPTIVE_FIELD if tokenizer is not None else PRETRAINING_MIN_SAMPLES
        kept = [u for u in utterances if u.num_samples >= min_samples]
        if len(kept) < len(utterances):
            why = {RECEPTIVE_FIELD: "the feature encoder's receptive field",
                   PRETRAINING_MIN_SAMPLES: "2 s, the shortest utterance to pretrain on"}.get(min_samples, "min_samples")
            warnings.warn(f"left out {len(utterances) - len(kept)} of {len(utterances)} utterances shorter than "
                          f"{min_samples} samples ({why}); pass min_samples to keep more", stacklevel=2)
        if tokenizer is not None:
            missing = [u.path for u in kept if u.transcript is None]
            if missing:
                raise ValueError(f"{len(missing)} utterances have no transcript (first: {missing[0]}); labelled "
                                 "training needs a .wrd file beside the manifest, or pass tokenizer=None")
        self.utterances = kept
        self.tokenizer, self.max_samples, self.normalize, self.seed = tokenizer, max_samples, normalize, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """New random crops each epoch (call it before iterating; the sampler has the same method)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def lengths(self) -> list[int]:
        """Samples of each item after cropping, for the length-bucketed sampler."""
        cap = self.max_samples or max((u.num_samples for u in self.utterances), default=0)
        return [min(u.num_samples, cap) for u in self.utterances]

    def __getitem__(self, index: int) -> SpeechItem:
        utterance = self.utterances[index]
        waveform = load_audio(utterance.path, normalize_audio=self.normalize)  # (L,)
        if self.max_samples is not None and waveform.numel() > self.max_samples:
            start = crop_offset(waveform.numel(), self.max_samples, self.seed, self.epoch, index)
            waveform = waveform[start:start + self.max_samples]
        labels = None
        if self.tokenizer is not None:
            labels = self.tokenizer.encode(utterance.transcript)  # type: ignore[arg-type]
        return SpeechItem(index, waveform, labels)


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of similar lengths, so that little of each batch is padding.

    Items are sorted by length (ties broken at random), cut into batches whose padded
    size `batch size x longest item` stays within `max_batch_samples` (and at most
    `max_batch_size` items), and the batches are shuffled. Deterministic given `seed`
    and the epoch (`set_epoch`), like fairseq's length-ordered batching.
    """

    def __init__(self, lengths: Sequence[int], max_batch_samples: int, max_batch_size: int | None = None,
                 shuffle: bool = True, seed: int = 0) -> None:
        if max_batch_samples < max(lengths, default=0):
            raise ValueError(f"max_batch_samples={max_batch_samples} is less than the longest item "
                             f"({max(lengths)} samples); raise it or crop with SpeechDataset(max_samples=...)")
        self.lengths = list(lengths)
        self.max_batch_samples, self.max_batch_size = max_batch_samples, max_batch_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        tie_break = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        order = np.lexsort((tie_break, np.asarray(self.lengths)))  # by length, then by the random key
        batches: list[list[int]] = []
        current: list[int] = []
        for index in order.tolist():  # ascending length: the newest item is the longest so far
            too_many = self.max_batch_size is not None and len(current) >= self.max_batch_size
            if current and (too_many or (len(current) + 1) * self.lengths[index] > self.max_batch_samples):
                batches.append(current)
                current = []
            current.append(index)
        if current:
            batches.append(current)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


@dataclass
class Batch:
    """waveform X (B, L); attention_mask (B, L) long, 1 at real samples (None: not passed to the
    model); lengths (B,) real samples; labels (B, S) padded with -100 (None if unlabelled);
    label_lengths (B,); indices (B,) into the dataset."""

    waveform: Tensor
    lengths: Tensor
    indices: Tensor
    attention_mask: Tensor | None = None
    labels: Tensor | None = None
    label_lengths: Tensor | None = None

    def model_inputs(self) -> dict[str, Tensor]:
        """Keyword arguments for the models' forward: waveform, and attention_mask / labels when set."""
        inputs = {"waveform": self.waveform}
        if self.attention_mask is not None:
            inputs["attention_mask"] = self.attention_mask
        if self.labels is not None:
            inputs["labels"] = self.labels
        return inputs

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(*(None if value is None else value.to(device) for value in
                       (self.waveform, self.lengths, self.indices, self.attention_mask, self.labels,
                        self.label_lengths)))


@dataclass
class Collator:
    """Turns `SpeechItem`s into a `Batch`.

    return_attention_mask: pass a (B, L) mask to the model (layer_norm models).
    crop_to_shortest: crop every item to the shortest one at a random offset instead
        of padding (fairseq's default for unlabelled BASE pretraining); only without labels.
    seed: makes those crops reproducible.
    """

    return_attention_mask: bool = True
    crop_to_shortest: bool = False
    seed: int = 0
    epoch: int = field(default=0)

    @classmethod
    def for_model(cls, config: "ModelConfig", labelled: bool, seed: int = 0) -> "Collator":
        """The right padding for the model's feature encoder (see the module docstring)."""
        if config.extractor_mode == "layer_norm":
            return cls(return_attention_mask=True, crop_to_shortest=False, seed=seed)
        return cls(return_attention_mask=False, crop_to_shortest=not labelled, seed=seed)

    def __call__(self, items: list[SpeechItem]) -> Batch:
        lengths = torch.tensor([item.waveform.numel() for item in items])
        indices = torch.tensor([item.index for item in items])
        if self.crop_to_shortest:
            if any(item.labels is not None for item in items):
                raise ValueError("crop_to_shortest would cut labelled audio away from its transcript; "
                                 "use it for unlabelled (pretraining) batches only")
            shortest = int(lengths.min())
            starts = [crop_offset(int(n), shortest, self.seed, self.epoch, int(i)) for n, i in zip(lengths, indices)]
            waveform = torch.stack([item.waveform[s:s + shortest] for item, s in zip(items, starts)])
            return Batch(waveform, torch.full_like(lengths, shortest), indices)
        waveform = torch.zeros(len(items), int(lengths.max()))
        for row, item in enumerate(items):
            waveform[row, : item.waveform.numel()] = item.waveform
        attention_mask = None
        if self.return_attention_mask:
            attention_mask = (torch.arange(waveform.shape[1])[None, :] < lengths[:, None]).long()  # (B, L)
        labels = label_lengths = None
        if items[0].labels is not None:
            label_lengths = torch.tensor([item.labels.numel() for item in items])  # type: ignore[union-attr]
            labels = torch.full((len(items), int(label_lengths.max())), IGNORE_LABEL, dtype=torch.long)
            for row, item in enumerate(items):
                labels[row, : item.labels.numel()] = item.labels  # type: ignore[union-attr]
        return Batch(waveform, lengths, indices, attention_mask, labels, label_lengths)


def speech_dataloader(dataset: SpeechDataset, config: "ModelConfig", max_batch_samples: int,
                      max_batch_size: int | None = None, shuffle: bool = True, num_workers: int = 0,
                      seed: int = 0, **loader_options: Any) -> DataLoader:
    """A DataLoader of length-bucketed `Batch`es, padded the way `config`'s encoder needs.

    For a new epoch, call `loader.batch_sampler.set_epoch(e)` and `dataset.set_epoch(e)`.
    """
    sampler = LengthBucketSampler(dataset.lengths, max_batch_samples, max_batch_size, shuffle, seed)
    collate = Collator.for_model(config, labelled=dataset.tokenizer is not None, seed=seed)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
                      persistent_workers=False, **loader_options)
