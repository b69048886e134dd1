"""MaskingWidget: span masking (paper section 3.1) over a waveform and its spectrogram.

Controls p (the probability that a step starts a span; fairseq's mask_prob = p * M),
M (`span`, steps per span), `seconds` (how much of the waveform to mask) and `seed`.
The mask is drawn by `seeded_span_mask`, fairseq's algorithm with a generator the
browser reproduces, so the page redraws it from the controls with no kernel.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import traitlets

from ..config import ModelConfig
from ._widget import BookWidget, WidgetValueError, decode_bytes, encode_bytes, es_module, synced, to_numpy
from .seeded_masking import seeded_span_mask

ENVELOPE_BLOCK = 32  # samples per (min, max) pair of the embedded waveform outline (2 ms at 16 kHz)
SPECTROGRAM_WINDOW = 400  # 25 ms analysis window at 16 kHz, as the feature encoder's receptive field
SPECTROGRAM_HOP = 160  # 10 ms: two spectrogram columns per 20 ms step
SPECTROGRAM_FFT = 512
SPECTROGRAM_BINS = 128  # pairs of FFT bins averaged: 0 .. sample_rate / 2 in 128 rows
SPECTROGRAM_RANGE_DB = 80.0  # the image spans the loudest 80 dB
SEED_LIMIT = 2 ** 32  # mulberry32 takes a 32-bit seed


def waveform_envelope(waveform: np.ndarray, block: int = ENVELOPE_BLOCK) -> np.ndarray:
    """(L,) samples -> (ceil(L / block), 2) uint8: min and max of each block, 128 = silence.

    Scaled by the peak magnitude, so the outline fills its panel whatever the level.
    """
    blocks = math.ceil(len(waveform) / block)
    padded = np.zeros(blocks * block)
    padded[: len(waveform)] = waveform
    padded = padded.reshape(blocks, block)
    peak = max(float(np.abs(waveform).max()), 1e-9)
    pairs = np.stack([padded.min(axis=1), padded.max(axis=1)], axis=1) / peak  # (blocks, 2) in [-1, 1]
    return np.clip(np.round(pairs * 127 + 128), 0, 255).astype(np.uint8)


def log_spectrogram_image(waveform: np.ndarray) -> np.ndarray:
    """(L,) samples -> (SPECTROGRAM_BINS, hops) uint8 log power, row 0 = 0 Hz, 255 = loudest.

    Column c is a Hann-windowed 25 ms frame centred on samples c * 160 + 80, the middle
    of the c-th 10 ms cell, so that two columns sit over each 20 ms step of the mask.
    """
    hops = len(waveform) // SPECTROGRAM_HOP
    left = SPECTROGRAM_WINDOW // 2 - SPECTROGRAM_HOP // 2
    padded = np.pad(waveform, (left, SPECTROGRAM_WINDOW))
    starts = np.arange(hops) * SPECTROGRAM_HOP
    frames = padded[starts[:, None] + np.arange(SPECTROGRAM_WINDOW)] * np.hanning(SPECTROGRAM_WINDOW)
    power = np.abs(np.fft.rfft(frames, n=SPECTROGRAM_FFT, axis=1)) ** 2  # (hops, FFT / 2 + 1)
    power = power[:, : 2 * SPECTROGRAM_BINS].reshape(hops, SPECTROGRAM_BINS, 2).mean(axis=2)
    decibels = 10 * np.log10(power + 1e-12)
    top = decibels.max() if decibels.size else 0.0
    scaled = (decibels - (top - SPECTROGRAM_RANGE_DB)) / SPECTROGRAM_RANGE_DB
    return np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8).T


class MaskingWidget(BookWidget):
    """Span masking over a waveform: the masked 20 ms steps over the waveform and its spectrogram.

    Args:
        waveform: (L,) or (1, L) samples X, a Tensor or an array (longer than
            `max_seconds` is cut to its first `max_seconds`).
        sample_rate: samples per second of `waveform`.
        p: probability that a step starts a span (the paper's 0.065); mask_prob = p * M.
        span: M, steps per span (the paper's 10).
        seconds: how much of the waveform, from its start, to mask; None for all of it.
        seed: seeds the mask's generator (0 <= seed < 2**32).
        min_spans: at least this many spans (fairseq's `min_masks`; the tiny preset uses 2).
        config: the model whose feature encoder sets the steps (its conv kernels and
            strides); the paper's geometry (400-sample frames every 320) by default.
        title: shown above the controls.

    Traits p, span, seconds, seed are the controls; `picture()` returns what is drawn.
    """

    kind = "masking"
    _esm = es_module("masking")

    p = synced(traitlets.Float(0.065))
    span = synced(traitlets.Int(10))
    seconds = synced(traitlets.Float(1.0))
    seed = synced(traitlets.Int(0))
    min_spans = synced(traitlets.Int(0))

    def __init__(self, waveform: Any, sample_rate: int = 16000, p: float = 0.065, span: int = 10,
                 seconds: float | None = None, seed: int = 0, min_spans: int = 0,
                 config: ModelConfig | None = None, title: str | None = None, max_seconds: float = 10.0) -> None:
        samples = to_numpy(waveform, "waveform")
        if samples.ndim == 2 and samples.shape[0] == 1:
            samples = samples[0]
        if samples.ndim != 1:
            raise WidgetValueError(
                f"waveform has shape {tuple(samples.shape)}; MaskingWidget shows one utterance: pass "
                "(L,) or (1, L) samples, e.g. waveform[0] of a batch")
        if not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
            raise WidgetValueError(f"sample_rate={sample_rate!r} must be a positive whole number of Hz, e.g. 16000")
        config = config or ModelConfig.tiny()
        samples = samples[: int(max_seconds * sample_rate)]
        if config.num_frames(len(samples)) < 1:
            raise WidgetValueError(
                f"the waveform has {len(samples)} samples, fewer than the {config.receptive_field} that make "
                f"one step of the feature encoder; pass at least {config.receptive_field / sample_rate:.3f} s")
        duration = len(samples) / sample_rate
        spectrogram = log_spectrogram_image(samples)
        data = {
            "sample_rate": int(sample_rate),
            "num_samples": len(samples),
            "duration": duration,
            "min_seconds": math.ceil(config.receptive_field / sample_rate * 100) / 100,
            "envelope": encode_bytes(waveform_envelope(samples)),
            "envelope_block": ENVELOPE_BLOCK,
            "spectrogram": encode_bytes(spectrogram),
            "spectrogram_bins": spectrogram.shape[0],
            "spectrogram_hops": spectrogram.shape[1],
            "spectrogram_hop": SPECTROGRAM_HOP,
            "max_hz": sample_rate / 2,
            "conv": [[kernel, stride] for _, kernel, stride in config.conv_layers],
            "frame_stride": config.frame_stride,
        }
        if title is None:
            title = f"Span masking of {duration:.2f} s of speech"
        super().__init__(data=data, title=title)
        self.min_spans, self.span, self.p, self.seed = min_spans, span, p, seed
        self.seconds = duration if seconds is None else seconds

    @classmethod
    def control_names(cls) -> tuple[str, ...]:
        return ("p", "span", "seconds", "seed")

    # ------------------------------------------------------------ validation
    @traitlets.validate("p")
    def _check_p(self, proposal: Any) -> float:
        p = float(proposal["value"])
        if not 0.0 <= p <= 1.0:
            raise WidgetValueError(f"p={p} is outside [0, 1]: it is the probability that a step starts a "
                                   "span (the paper's 0.065, i.e. fairseq's mask_prob = p * M = 0.65)")
        return p

    @traitlets.validate("span")
    def _check_span(self, proposal: Any) -> int:
        span = int(proposal["value"])
        if span < 1:
            raise WidgetValueError(f"span={span}: M, the steps each span covers, must be at least 1 (the paper's 10)")
        return span

    @traitlets.validate("seconds")
    def _check_seconds(self, proposal: Any) -> float:
        seconds = float(proposal["value"])
        low, high = self.data["min_seconds"], self.data["duration"]
        if not low - 1e-9 <= seconds <= high + 1e-9:
            raise WidgetValueError(f"seconds={seconds} is outside [{low}, {high:.3f}], the lengths this waveform "
                                   f"can give; pick one in that range (or None for all {high:.3f} s)")
        return seconds

    @traitlets.validate("seed")
    def _check_seed(self, proposal: Any) -> int:
        seed = int(proposal["value"])
        if not 0 <= seed < SEED_LIMIT:
            raise WidgetValueError(f"seed={seed} must lie in [0, 2**32): the mask's generator takes a 32-bit seed")
        return seed

    @traitlets.validate("min_spans")
    def _check_min_spans(self, proposal: Any) -> int:
        min_spans = int(proposal["value"])
        if min_spans < 0:
            raise WidgetValueError(f"min_spans={min_spans} must be 0 or more")
        return min_spans

    # ------------------------------------------------------------ what is drawn
    def steps_of(self, samples: int) -> int:
        """Frames T that `samples` samples give (ModelConfig.num_frames, from the embedded geometry)."""
        length = samples
        for kernel, stride in self.data["conv"]:
            length = (length - kernel) // stride + 1
            if length <= 0:
                return 0
        return length

    def picture(self) -> dict[str, Any]:
        """What is drawn now, computed as the browser computes it.

        Returns samples and steps T of the cropped waveform, mask (T,) bool, starts (the
        drawn span starts), mask_prob p * M, masked (steps), fraction (masked / T), runs
        (merged masked runs) and mean_span (masked / runs, as `masking.span_statistics`),
        and masked_seconds: (start, end) in seconds of each run.
        """
        data = self.data
        samples = min(math.floor(self.seconds * data["sample_rate"]), data["num_samples"])
        steps = self.steps_of(samples)
        mask_prob = self.p * self.span
        mask, starts = seeded_span_mask(steps, mask_prob, self.span, self.seed, self.min_spans)
        edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
        run_starts, run_ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        masked = int(mask.sum())
        step_seconds = data["frame_stride"] / data["sample_rate"]
        return {
            "samples": samples,
            "steps": steps,
            "mask": mask,
            "starts": starts,
            "mask_prob": mask_prob,
            "masked": masked,
            "fraction": masked / max(steps, 1),
            "runs": len(run_starts),
            "mean_span": masked / max(len(run_starts), 1),
            "masked_seconds": [(float(a * step_seconds), float(b * step_seconds)) for a, b in zip(run_starts, run_ends)],
        }

    def figure(self) -> Any:
        """A matplotlib Figure: waveform outline, log spectrogram and mask strip, masked steps shaded."""
        import matplotlib.pyplot as plt

        data, picture = self.data, self.picture()
        duration = picture["samples"] / data["sample_rate"]
        envelope = decode_bytes(data["envelope"], (-1, 2)).astype(float) - 128
        blocks = math.ceil(picture["samples"] / data["envelope_block"])
        times = np.arange(blocks) * data["envelope_block"] / data["sample_rate"]
        spectrogram = decode_bytes(data["spectrogram"], (data["spectrogram_bins"], data["spectrogram_hops"]))
        columns = min(data["spectrogram_hops"], int(picture["samples"] / data["spectrogram_hop"]))

        figure, (wave_ax, spec_ax, strip_ax) = plt.subplots(
            3, 1, figsize=(9, 4.2), sharex=True, gridspec_kw={"height_ratios": [3, 3, 0.6]}, dpi=80)
        wave_ax.fill_between(times, envelope[:blocks, 0] / 127, envelope[:blocks, 1] / 127, color="#1f5fa8", lw=0)
        wave_ax.set(ylabel="X (scaled)", ylim=(-1.05, 1.05),
                    title=f"{self.title}: p = {self.p:g}, M = {self.span}, seed = {self.seed}")
        spec_ax.imshow(spectrogram[:, :columns], origin="lower", aspect="auto", cmap="viridis",
                       extent=(0, columns * data["spectrogram_hop"] / data["sample_rate"], 0, data["max_hz"] / 1000))
        spec_ax.set(ylabel="kHz")
        step_seconds = data["frame_stride"] / data["sample_rate"]
        strip_ax.imshow(picture["mask"][None, :], aspect="auto", cmap="Oranges", vmin=0, vmax=1.4,
                        extent=(0, picture["steps"] * step_seconds, 0, 1))
        strip_ax.set(yticks=[], xlabel="time (s)", xlim=(0, duration))
        for start, end in picture["masked_seconds"]:
            for ax in (wave_ax, spec_ax):
                ax.axvspan(start, end, color="orange", alpha=0.4, lw=0)
        strip_ax.set_title(f"masked {picture['masked']} of {picture['steps']} steps: {picture['fraction']:.1%} "
                           f"(p·M = {picture['mask_prob']:.3f}), {picture['runs']} runs of "
                           f"{picture['mean_span']:.1f} steps on average", fontsize=9)
        figure.tight_layout()
        return figure
