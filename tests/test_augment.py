"""Degradations (w2v2_lite/data/augment.py) against direct computations of what they promise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from w2v2_lite.data import resample
from w2v2_lite.data.augment import add_noise, change_speed, reverberate, room_impulse_response

from tolerances import assert_close_to_scale

RATE = 16000


def _speech(samples: int = 8000, seed: int = 0) -> torch.Tensor:
    """Two tones and a little noise, ending on a loud sample (so a wrapped convolution shows)."""
    time = torch.arange(samples) / RATE
    noise = torch.randn(samples, generator=torch.Generator().manual_seed(seed))
    waveform = 0.5 * torch.sin(2 * math.pi * 220 * time) + 0.3 * torch.sin(2 * math.pi * 1330 * time) + 0.05 * noise
    waveform[-1] = 1.0
    return waveform


def _snr_db(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    return 10 * math.log10(clean.pow(2).mean().item() / (noisy - clean).pow(2).mean().item())


# ------------------------------------------------------------------------- noise
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_add_noise_reaches_the_requested_snr(snr_db):
    speech = _speech(32000)
    noisy = add_noise(speech, snr_db, generator=torch.Generator().manual_seed(1))
    assert noisy.shape == speech.shape and noisy.dtype == speech.dtype
    assert _snr_db(speech, noisy) == pytest.approx(snr_db, abs=0.2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_add_noise_is_the_generators_gaussian_draw_at_the_speech_power(dtype):
    # The exact draw is part of the contract: the same seed must give a byte-identical corpus.
    speech = _speech().to(dtype)
    noisy = add_noise(speech, 10.0, generator=torch.Generator().manual_seed(2))
    draw = torch.randn(speech.shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    expected = speech + draw * torch.sqrt(speech.pow(2).mean() / 10.0)
    assert noisy.dtype == dtype
    assert_close_to_scale(noisy, expected, 1e-6)
    other = add_noise(speech, 10.0, generator=torch.Generator().manual_seed(3))
    assert not torch.equal(noisy, other)


def test_add_noise_to_silence_stays_finite_and_quiet():
    noisy = add_noise(torch.zeros(4000), 10.0, generator=torch.Generator().manual_seed(4))
    assert torch.isfinite(noisy).all() and 0 < noisy.pow(2).mean().item() < 1e-10


# ------------------------------------------------------------------------ rooms
def _schroeder_decay_time(response: torch.Tensor, drop_db: float) -> float:
    """Seconds until the energy still to come (Schroeder's backward integral) falls by drop_db."""
    energy = response[1:].double().pow(2)
    remaining = energy.flip(0).cumsum(0).flip(0)
    level_db = 10 * torch.log10(remaining / remaining[0])
    return (level_db > -drop_db).sum().item() / RATE


@pytest.mark.parametrize("rt60", [0.2, 0.5])
def test_room_response_decays_60_db_in_rt60(rt60):
    response = room_impulse_response(rt60, generator=torch.Generator().manual_seed(5))
    assert response.shape == (int(rt60 * RATE),) and response.dtype == torch.float32
    # The energy envelope is 10^(-6 t / rt60): 20 dB gone after rt60 / 3, 40 dB after 2 rt60 / 3.
    assert _schroeder_decay_time(response, 20) == pytest.approx(rt60 / 3, rel=0.05)
    assert _schroeder_decay_time(response, 40) == pytest.approx(2 * rt60 / 3, rel=0.05)


def test_room_response_is_a_direct_path_then_a_tail_of_equal_energy():
    response = room_impulse_response(0.3, generator=torch.Generator().manual_seed(6))
    assert response[0].item() == 1.0
    assert 0.95 < response[1:].pow(2).sum().item() <= 1.0  # the tail minus its first tap's share


@pytest.mark.parametrize("rt60,seed", [(0.05, 7), (2 / RATE, 8)], ids=["800-taps", "2-taps"])
def test_room_response_follows_its_formula(rt60, seed):
    """Gaussian noise from the generator under exp(-3 ln(10) t / rt60), scaled to unit energy, first tap 1."""
    response = room_impulse_response(rt60, generator=torch.Generator().manual_seed(seed))
    length = int(rt60 * RATE)
    time = torch.arange(length, dtype=torch.float64) / RATE
    tail = torch.randn(length, generator=torch.Generator().manual_seed(seed)).double() * 10 ** (-3 * time / rt60)
    expected = tail / tail.norm()
    expected[0] = 1.0
    assert_close_to_scale(response, expected, 1e-6)
    if length == 2:
        assert tail.norm() < 1  # the case where scaling up to unit energy shows


def test_room_response_of_a_very_dry_room_is_the_direct_path_alone():
    assert torch.equal(room_impulse_response(1 / RATE, generator=torch.Generator().manual_seed(9)), torch.ones(1))
    assert room_impulse_response(0.1, sample_rate=8000, generator=torch.Generator().manual_seed(9)).shape == (800,)


# ------------------------------------------------------------------ reverberation
@pytest.mark.parametrize("samples,rt60", [(3000, 0.05), (3001, 0.05), (500, 0.05)],
                         ids=["even-size", "odd-size", "shorter-than-the-room"])
def test_reverberate_is_the_direct_convolution_with_the_room_response(samples, rt60):
    speech = _speech(samples)
    wet = reverberate(speech, rt60, generator=torch.Generator().manual_seed(10))
    response = room_impulse_response(rt60, generator=torch.Generator().manual_seed(10))
    direct = np.convolve(speech.double().numpy(), response.double().numpy())[:samples]  # sum_k x[n-k] h[k]
    assert wet.shape == speech.shape and wet.dtype == speech.dtype
    assert_close_to_scale(wet, torch.from_numpy(direct), 1e-5)


def test_reverberate_keeps_float64_and_other_sample_rates():
    speech = _speech(2000).double()
    wet = reverberate(speech, 0.1, sample_rate=8000, generator=torch.Generator().manual_seed(11))
    response = room_impulse_response(0.1, sample_rate=8000, generator=torch.Generator().manual_seed(11))
    assert wet.dtype == torch.float64 and response.numel() == 800
    direct = np.convolve(speech.numpy(), response.double().numpy())[:2000]
    assert_close_to_scale(wet, torch.from_numpy(direct), 1e-9)  # the FFT runs in float64 too


# ------------------------------------------------------------------------- speed
@pytest.mark.parametrize("factor,sample_rate,recorded_rate", [(1.25, RATE, 20000), (0.9, RATE, 14400),
                                                              (1.25, 8000, 10000), (1.004, 8000, 8000),
                                                              (1.006, RATE, 16160), (1.006, 8000, 8080)])
def test_change_speed_resamples_as_if_recorded_at_factor_times_the_rate(factor, sample_rate, recorded_rate):
    speech = _speech()
    assert torch.equal(change_speed(speech, factor, sample_rate), resample(speech, recorded_rate, sample_rate))


def test_change_speed_moves_the_pitch_and_the_duration():
    time = torch.arange(RATE) / RATE
    tone = torch.sin(2 * math.pi * 440 * time)
    faster = change_speed(tone, 1.25)
    assert faster.numel() == pytest.approx(RATE / 1.25, abs=1)
    spectrum = torch.fft.rfft(faster * torch.hann_window(faster.numel())).abs()
    peak_hz = spectrum.argmax().item() * RATE / faster.numel()
    assert peak_hz == pytest.approx(550, abs=2)


@pytest.mark.parametrize("factor", [0.0, -1.0])
def test_change_speed_rejects_a_factor_that_is_not_positive(factor):
    with pytest.raises(ValueError, match=r"speed factor must be > 0, got .*; use e.g. 0.9 or 1.1"):
        change_speed(_speech(), factor)
