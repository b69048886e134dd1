"""Audio in and out: one loader for every corpus, through soundfile.

`load_audio` turns a wav, flac or ogg file (or raw 16-bit PCM, given its rate) into the
model's input X: a mono float32 waveform (L,) at 16 kHz, normalised per utterance to
zero mean and unit variance as in the paper (section 4.2, following fairseq's
`normalize=True` for LARGE models). `resample` is our own windowed-sinc resampler.
Every failure is an `AudioError` (a `ValueError`) that names the file, the bad value
and the fix.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile
import torch
from torch import Tensor

from .corpora import AUDIO_EXTENSIONS  # wav, flac, ogg; defined there so that listing corpora needs no torch

SAMPLE_RATE = 16_000  # the paper's (and LibriSpeech's) sampling rate
RECEPTIVE_FIELD = 400  # samples one frame of the feature encoder sees (ModelConfig.receptive_field)
RAW_EXTENSIONS = (".raw", ".pcm")

# Kaiser-windowed sinc, the parameters of resampy's "kaiser_best" (also offered by
# torchaudio as resampling_method="sinc_interp_kaiser"): 16 zero crossings each side,
# pass band up to 94.8% of the lower Nyquist frequency, stop band attenuation ~ 100 dB.
LOWPASS_FILTER_WIDTH = 16
ROLLOFF = 0.9475937167399596
KAISER_BETA = 14.769656459379492


class AudioError(ValueError):
    """An audio file that cannot become a model input; the message says why and what to do."""


# ---------------------------------------------------------------- resampling
@lru_cache(maxsize=16)  # one bank per rate pair: building it costs more than filtering a sentence
def sinc_resample_kernel(orig_freq: int, new_freq: int, lowpass_filter_width: int = LOWPASS_FILTER_WIDTH,
                         rolloff: float = ROLLOFF, beta: float = KAISER_BETA,
                         dtype: torch.dtype = torch.float32) -> tuple[Tensor, int]:
    """Polyphase filter bank of a Kaiser-windowed sinc low-pass: ((new, 1, K), half width).

    With the rates reduced by their gcd, output sample n * orig + p (phase p < new) is
    the dot product of input samples around n * orig with row p of the bank:
        h_p(k) = s * sinc(s * (k / orig - p / new)) * kaiser(...), s = rolloff * min(orig, new)
    i.e. the ideal band-limited interpolator, cut at the lower of the two Nyquist
    frequencies (anti-aliasing when going down) and truncated by a Kaiser window.
    """
    cutoff = min(orig_freq, new_freq) * rolloff  # in units of the gcd rate
    half_width = math.ceil(lowpass_filter_width * orig_freq / cutoff)  # input samples each side
    taps = torch.arange(-half_width, half_width + orig_freq, dtype=torch.float64) / orig_freq  # (K,)
    phases = -torch.arange(new_freq, dtype=torch.float64)[:, None] / new_freq  # (new, 1)
    t = ((phases + taps) * cutoff).clamp(-lowpass_filter_width, lowpass_filter_width)  # (new, K) in zero crossings
    window = torch.i0(beta * torch.sqrt(1 - (t / lowpass_filter_width) ** 2)) / torch.i0(torch.tensor(beta, dtype=torch.float64))
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(math.pi * t) / (math.pi * t))
    kernel = sinc * window * (cutoff / orig_freq)  # (new, K), unit DC gain per phase
    return kernel[:, None, :].to(dtype), half_width


def resample(waveform: Tensor, orig_freq: int, new_freq: int = SAMPLE_RATE) -> Tensor:
    """Resample (..., L) from `orig_freq` to `new_freq` Hz -> (..., ceil(L * new / orig)).

    Kaiser-windowed sinc interpolation in polyphase form (one strided conv1d), the
    method of torchaudio's `resample(..., resampling_method="sinc_interp_kaiser")`; the
    tests check that the two agree.
    """
    if orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"sample rates must be positive, got orig_freq={orig_freq}, new_freq={new_freq}")
    if orig_freq == new_freq:
        return waveform
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    kernel, half_width = sinc_resample_kernel(orig, new, dtype=waveform.dtype)
    shape = waveform.shape
    flat = waveform.reshape(-1, 1, shape[-1])  # (N, 1, L)
    padded = torch.nn.functional.pad(flat, (half_width, half_width + orig))
    phases = torch.nn.functional.conv1d(padded, kernel.to(waveform.device), stride=orig)  # (N, new, L / orig + 1)
    out = phases.transpose(1, 2).reshape(flat.shape[0], -1)  # interleave the phases in time
    target_length = math.ceil(new * shape[-1] / orig)
    return out[:, :target_length].reshape(*shape[:-1], target_length)


# ------------------------------------------------------------------ loading
def normalize(waveform: Tensor, eps: float = 1e-5) -> Tensor:
    """Zero mean, unit variance over the whole utterance (L,) -> (L,), as the paper's input."""
    return (waveform - waveform.mean()) / torch.sqrt(waveform.var(unbiased=False) + eps)


def read_audio(path: str | os.PathLike, raw_sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode a file into (samples (L, channels) float32, sample rate), or raise `AudioError`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in AUDIO_EXTENSIONS + RAW_EXTENSIONS:
        raise AudioError(f"{path}: unsupported audio format {suffix!r}; convert it to one of "
                         f"{AUDIO_EXTENSIONS} (e.g. `sox in.mp3 -r 16000 out.flac`), or give raw 16-bit PCM as .raw")
    if not path.is_file():
        raise AudioError(f"{path}: no such file; check the path or the manifest's root directory")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: the file is empty (0 bytes); re-create or re-download it")
    try:
        if suffix in RAW_EXTENSIONS:
            if raw_sample_rate is None:
                raise AudioError(f"{path}: raw PCM has no header, so its sample rate is unknown; "
                                 "pass raw_sample_rate=16000 (or the rate it was recorded at)")
            samples, rate = soundfile.read(path, samplerate=raw_sample_rate, channels=1, subtype="PCM_16",
                                           format="RAW", dtype="float32", always_2d=True)
        else:
            samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as error:
        raise AudioError(f"{path}: cannot decode the audio ({error}); the file is corrupt or not really "
                         f"{suffix}: re-create it, or check it with `soxi {path}`") from None
    return samples, rate


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, normalize_audio: bool = True,
               raw_sample_rate: int | None = None, min_samples: int = RECEPTIVE_FIELD) -> Tensor:
    """Read an audio file as the model's input X: mono float32 (L,) at `sample_rate` Hz.

    Channels are averaged to mono; any rate is resampled (see `resample`); with
    `normalize_audio` the utterance gets zero mean and unit variance. Raises
    `AudioError` for a missing, empty, corrupt or unsupported file, NaN or inf samples,
    or audio shorter than `min_samples` (the feature encoder's receptive field).
    """
    samples, rate = read_audio(path, raw_sample_rate)
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no samples (0 frames); re-create it")
    if not np.isfinite(samples).all():
        first = int(np.argwhere(~np.isfinite(samples))[0, 0])
        raise AudioError(f"{path}: sample {first} is {samples[first].tolist()} (NaN or inf); "
                         "the file is damaged: re-create it or drop it from the manifest")
    waveform = torch.from_numpy(samples).mean(dim=1)  # (L,) mono
    waveform = resample(waveform, rate, sample_rate)
    if waveform.numel() < min_samples:
        raise AudioError(f"{path}: {waveform.numel()} samples at {sample_rate} Hz, fewer than the "
                         f"{min_samples} the feature encoder needs (its receptive field); drop the file "
                         "from the manifest or pad it")
    return normalize(waveform) if normalize_audio else waveform


def audio_num_samples(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> int:
    """Samples the file will have at `sample_rate` after `load_audio`, read from the header only."""
    try:
        info = soundfile.info(str(path))
    except soundfile.LibsndfileError as error:
        raise AudioError(f"{path}: cannot read the audio header ({error}); the file is corrupt: re-create it") from None
    return math.ceil(info.frames * sample_rate / info.samplerate)


def save_audio(path: str | os.PathLike, waveform: Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a mono waveform (L,) in [-1, 1] as 16-bit PCM (format from the suffix), atomically.

    The data goes to a temporary name in the same folder and is then renamed with
    `os.replace`, so an interrupted write never leaves a half-written file behind.
    """
    path = Path(path)
    samples = waveform.detach().cpu().numpy() if isinstance(waveform, Tensor) else np.asarray(waveform)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        soundfile.write(temporary, samples, sample_rate, subtype="PCM_16", format=path.suffix[1:].upper())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
