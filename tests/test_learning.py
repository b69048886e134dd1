"""The tiny preset is small enough for a laptop CPU and still learns the contrastive task."""

from __future__ import annotations

import shutil
import time

import pytest
import torch

from w2v2_lite import ModelConfig, Wav2Vec2ForPreTraining

SENTENCES = [
    "the quick brown fox jumps over the lazy dog", "speech models learn from raw audio",
    "a small model can still learn", "she sells sea shells by the shore",
    "every cloud has a silver lining", "the rain in spain stays mainly in the plain",
    "how much wood would a woodchuck chuck", "pack my box with five dozen liquor jugs",
]
VOICES = ["m1", "f2", "m3", "f1", "m2", "f3", "m4", "f4"]


@pytest.fixture(scope="module")
def speech_batch() -> torch.Tensor:
    """8 x 2 s of espeak-ng speech, each utterance normalised to zero mean and unit variance."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make setup installs it)")
    from w2v2_lite.data import speak

    samples = 32000
    waves = [speak(text, variant=voice) for text, voice in zip(SENTENCES, VOICES)]
    batch = torch.stack([torch.nn.functional.pad(w, (0, max(0, samples - len(w))))[:samples] for w in waves])
    return (batch - batch.mean(dim=1, keepdim=True)) / batch.std(dim=1, keepdim=True)


@pytest.mark.slow
def test_tiny_model_learns_to_find_the_masked_targets(speech_batch):
    """Starting at chance (1 in 1 + K), 50 steps on one batch lift the contrastive accuracy."""
    torch.manual_seed(0)
    config = ModelConfig.tiny()
    model = Wav2Vec2ForPreTraining(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    history, durations = [], []
    for _ in range(50):
        start = time.perf_counter()
        out = model(speech_batch, generator=generator)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        durations.append(time.perf_counter() - start)
        history.append((out.contrastive_loss.item(), out.accuracy.item()))
    first_loss, first_accuracy = history[0]
    last_loss = sum(loss for loss, _ in history[-5:]) / 5
    last_accuracy = sum(accuracy for _, accuracy in history[-5:]) / 5
    assert first_accuracy < 0.1  # chance is 1 / (1 + K) = 0.02
    assert last_accuracy > 0.25, history
    assert last_loss < first_loss - 0.5, history
    print(f"median step {sorted(durations)[len(durations) // 2]:.2f} s; accuracy {first_accuracy:.2f} -> "
          f"{last_accuracy:.2f}; contrastive loss {first_loss:.2f} -> {last_loss:.2f}")
