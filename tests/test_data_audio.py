"""Audio I/O: our resampler against torchaudio's, every format, every error message (augmentations: test_augment)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch

from w2v2_lite.data import AudioError, load_audio, resample, save_audio, speak
from w2v2_lite.data.audio import KAISER_BETA, LOWPASS_FILTER_WIDTH, ROLLOFF

from tolerances import assert_close_to_scale

RATE_PAIRS = [(22050, 16000), (44100, 16000), (48000, 16000), (8000, 16000), (16000, 22050), (32000, 16000)]


@pytest.mark.parametrize("orig_freq,new_freq", RATE_PAIRS)
def test_resample_matches_torchaudio_kaiser(orig_freq, new_freq):
    torchaudio = pytest.importorskip("torchaudio")
    waveform = torch.randn(2, orig_freq // 2, generator=torch.Generator().manual_seed(0))
    ours = resample(waveform, orig_freq, new_freq)
    reference = torchaudio.functional.resample(waveform, orig_freq, new_freq, lowpass_filter_width=LOWPASS_FILTER_WIDTH,
                                               rolloff=ROLLOFF, resampling_method="sinc_interp_kaiser",
                                               beta=KAISER_BETA)
    assert ours.shape == reference.shape == (2, math.ceil(orig_freq // 2 * new_freq / orig_freq))
    assert_close_to_scale(ours, reference, 1e-4)


def test_resample_keeps_a_tone_in_the_pass_band_and_matches_torchaudio_default():
    torchaudio = pytest.importorskip("torchaudio")
    time = torch.arange(44100) / 44100
    tone = 0.5 * torch.sin(2 * math.pi * 440 * time)
    ours = resample(tone, 44100, 16000)
    expected = 0.5 * torch.sin(2 * math.pi * 440 * torch.arange(16000) / 16000)
    interior = slice(200, -200)  # away from the zero-padded edges
    assert_close_to_scale(ours[interior], expected[interior], 2e-3)
    assert_close_to_scale(ours[interior], torchaudio.functional.resample(tone, 44100, 16000)[interior], 4e-3)


def test_resample_same_rate_is_identity():
    waveform = torch.randn(100)
    assert resample(waveform, 16000, 16000) is waveform


def _write(path, samples, rate, subtype="PCM_16"):
    soundfile.write(path, samples, rate, subtype=subtype)
    return path


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_load_audio_formats_mix_stereo_and_resample(tmp_path, suffix):
    rate = 44100
    time = np.arange(rate) / rate
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 300 * time), 0.1 * np.sin(2 * np.pi * 300 * time)], axis=1)
    path = _write(tmp_path / f"tone{suffix}", stereo, rate, subtype="VORBIS" if suffix == ".ogg" else "PCM_16")
    raw = load_audio(path, normalize_audio=False)
    assert raw.dtype == torch.float32 and raw.shape == (16000,)
    assert abs(raw.abs().max().item() - 0.2) < 0.02  # the mean of the two channels
    normalized = load_audio(path)
    assert abs(normalized.mean().item()) < 1e-4 and abs(normalized.std(unbiased=False).item() - 1) < 1e-3


def test_load_raw_pcm_needs_and_uses_its_rate(tmp_path):
    samples = (np.sin(np.arange(8000) / 10) * 10000).astype("<i2")
    path = tmp_path / "speech.raw"
    samples.tofile(path)
    with pytest.raises(AudioError, match="raw_sample_rate"):
        load_audio(path)
    waveform = load_audio(path, normalize_audio=False, raw_sample_rate=8000)
    assert waveform.shape == (16000,)


def test_errors_name_the_file_the_problem_and_the_fix(tmp_path):
    cases = {}
    cases["missing"] = (tmp_path / "missing.wav", "no such file")
    (tmp_path / "empty.flac").write_bytes(b"")
    cases["empty"] = (tmp_path / "empty.flac", "empty")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF not really a wave file" * 10)
    cases["corrupt"] = (tmp_path / "corrupt.wav", "corrupt")
    cases["format"] = (tmp_path / "song.mp3", "unsupported audio format '.mp3'")
    short = _write(tmp_path / "short.wav", np.zeros(300), 16000)
    cases["short"] = (short, "300 samples")
    nan = np.zeros(1000, dtype=np.float32)
    nan[17] = np.nan
    cases["nan"] = (_write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT"), "sample 17")
    header_only = tmp_path / "header.wav"
    _write(header_only, np.zeros(0), 16000)
    cases["no samples"] = (header_only, "no samples")
    for name, (path, problem) in cases.items():
        with pytest.raises(AudioError) as error:
            load_audio(path)
        message = str(error.value)
        assert str(path) in message and problem in message, (name, message)
        assert isinstance(error.value, ValueError)


def test_save_audio_is_atomic_and_round_trips(tmp_path):
    waveform = 0.5 * torch.sin(torch.arange(4000) / 5.0)
    save_audio(tmp_path / "x.flac", waveform)
    assert [p.name for p in tmp_path.iterdir()] == ["x.flac"]
    assert_close_to_scale(load_audio(tmp_path / "x.flac", normalize_audio=False), waveform, 1e-4)  # 16-bit PCM


def test_speak_gives_16khz_float_speech():
    waveform = speak("hello world", voice="en-gb-scotland", variant="f2", speed=170, pitch=60)
    assert waveform.dim() == 1 and waveform.dtype == torch.float32
    assert 0.3 * 16000 < waveform.numel() < 3 * 16000 and 0 < waveform.abs().max() <= 1
    with pytest.raises(ValueError, match="no voice variant 'nope'"):
        speak("hello", variant="nope")
    with pytest.raises(ValueError, match="no English voice"):
        speak("hello", voice="en-xx")
