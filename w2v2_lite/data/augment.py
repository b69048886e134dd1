"""Degradations that make clean synthetic speech a little more like recorded speech.

Pure functions on a waveform (L,) at 16 kHz, each drawing its randomness from an
explicit `torch.Generator` so that a corpus stays reproducible.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .audio import SAMPLE_RATE, resample


def add_noise(waveform: Tensor, snr_db: float, generator: torch.Generator | None = None) -> Tensor:
    """Add white Gaussian noise at a signal-to-noise ratio of `snr_db` dB: (L,) -> (L,).

    SNR = 10 log10(P_speech / P_noise), with powers averaged over the whole utterance.
    """
    noise = torch.randn(waveform.shape, generator=generator, dtype=waveform.dtype)
    speech_power = waveform.pow(2).mean().clamp_min(1e-10)
    noise_power = speech_power / 10 ** (snr_db / 10)
    return waveform + noise * torch.sqrt(noise_power)


def room_impulse_response(rt60: float, sample_rate: int = SAMPLE_RATE,
                          generator: torch.Generator | None = None) -> Tensor:
    """A synthetic room: Gaussian noise under an exponential decay of 60 dB in `rt60` s -> (N,).

    The tail, the diffuse reverberation, is scaled to unit energy, and then its first tap
    is set to 1.0, the direct path. The tail therefore keeps nearly the energy of the
    direct path in rooms of rt60 >= 0.2 s (0.95 to 1), and less in shorter ones, where
    the first tap held more of it.
    """
    length = max(int(rt60 * sample_rate), 1)
    time = torch.arange(length, dtype=torch.float32) / sample_rate
    decay = torch.exp(-3 * math.log(10) * time / rt60)  # amplitude falls 60 dB (10^-3) at rt60
    tail = torch.randn(length, generator=generator) * decay
    tail = tail / tail.norm().clamp_min(1e-8)
    tail[0] = 1.0
    return tail


def reverberate(waveform: Tensor, rt60: float, sample_rate: int = SAMPLE_RATE,
                generator: torch.Generator | None = None) -> Tensor:
    """Convolve with `room_impulse_response(rt60)` (FFT convolution), keeping the length (L,)."""
    response = room_impulse_response(rt60, sample_rate, generator).to(waveform.dtype)
    size = waveform.numel() + response.numel() - 1
    wet = torch.fft.irfft(torch.fft.rfft(waveform, size) * torch.fft.rfft(response, size), size)
    return wet[: waveform.numel()]


def change_speed(waveform: Tensor, factor: float, sample_rate: int = SAMPLE_RATE) -> Tensor:
    """Speed perturbation like `sox speed`: play `factor` times faster, pitch moves too.

    (L,) -> (~L / factor,): resample as if the audio had been recorded at
    `factor * sample_rate`. The factor is rounded to 1/100, which keeps the resampling
    filter bank small (at most 100 phases); 1.004 plays at 1.00, that is unchanged.
    """
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, got {factor}; use e.g. 0.9 or 1.1")
    scaled_rate = round(sample_rate * round(factor, 2))
    return resample(waveform, scaled_rate, sample_rate)
