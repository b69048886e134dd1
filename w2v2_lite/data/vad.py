"""Energy-based voice activity detection: cut a stream of audio into speech chunks at pauses.

Each frame of 20 ms gets its energy in dB (relative to full scale, dBFS),

    E = 10 log10(mean(x^2) + eps)

and a noise floor follows the quiet frames: it starts at the quietest frame of the first
`floor_init_s` (so a stream may open with speech or with loud background noise), drops at
once to any frame quieter than itself and creeps up towards louder ones with a time
constant of `floor_rise_s`, so it tracks a changing background but not a word. A frame
is speech when

    E > floor + threshold_db  and  E > min_speech_db.

A chunk opens at the first speech frame (with `pad_s` of audio before it) and closes once
`min_silence_s` of non-speech has followed the last speech frame (with `pad_s` after it),
or, when it reaches `max_chunk_s`, at its quietest frame of the last `cut_search_s`.
Chunks with less than `min_speech_s` of speech (clicks) are dropped.

`SpeechChunker` takes the audio in blocks of any size and returns each chunk as soon as
it is closed; `split_on_silence` runs it over a whole waveform, so the offline and the
streaming cuts are the same by construction.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from .audio import SAMPLE_RATE

ENERGY_EPS = 1e-10  # -100 dBFS: the energy of digital silence


@dataclass(frozen=True)
class VadConfig:
    """Settings of the energy detector and the chunker; durations in seconds, levels in dB."""

    sample_rate: int = SAMPLE_RATE
    frame_s: float = 0.02  # one frame of the model's feature encoder (320 samples)
    threshold_db: float = 12.0  # speech is this far above the noise floor
    min_speech_db: float = -55.0  # and at least this loud (dBFS), so that hiss over digital silence is not speech
    floor_init_s: float = 0.5  # the floor starts at the quietest frame of this much audio
    floor_rise_s: float = 2.0  # time constant of the floor's rise towards louder frames
    min_silence_s: float = 0.3  # a pause this long ends a chunk
    min_speech_s: float = 0.1  # chunks with less speech than this are dropped
    max_chunk_s: float = 10.0  # a chunk this long is cut at its quietest recent frame
    cut_search_s: float = 1.0  # how far back from max_chunk_s that cut may go
    pad_s: float = 0.1  # audio kept before the first and after the last speech frame

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.frame_length < 1:
            raise ValueError(f"frame_s * sample_rate must give at least one sample per frame, got {self.frame_s} "
                             f"* {self.sample_rate}")
        if self.floor_rise_s <= 0:
            raise ValueError(f"floor_rise_s must be positive, got {self.floor_rise_s}")
        if not 0 <= self.pad_s <= self.min_silence_s:
            raise ValueError(f"pad_s ({self.pad_s}) must be between 0 and min_silence_s ({self.min_silence_s}): the "
                             "padding after a chunk is taken from the pause that ends it")
        if not 0 < self.cut_search_s < self.max_chunk_s:
            raise ValueError(f"cut_search_s ({self.cut_search_s}) must be positive and below max_chunk_s "
                             f"({self.max_chunk_s})")

    @property
    def frame_length(self) -> int:
        """Samples per frame (320 at 16 kHz)."""
        return round(self.frame_s * self.sample_rate)

    def frames(self, seconds: float) -> int:
        """A duration in whole frames (at least one)."""
        return max(1, round(seconds / self.frame_s))


@dataclass(frozen=True)
class SpeechChunk:
    """Samples [start, end) of the stream, their audio (end - start,) float32, and the rate."""

    start: int
    end: int
    audio: np.ndarray
    sample_rate: int = SAMPLE_RATE

    @property
    def start_s(self) -> float:
        return self.start / self.sample_rate

    @property
    def end_s(self) -> float:
        return self.end / self.sample_rate


def frame_energy_db(samples: np.ndarray | Tensor, frame_length: int) -> np.ndarray:
    """Energy of each whole frame in dBFS: samples (L,) in [-1, 1] -> (L // frame_length,).

    E = 10 log10(mean(x^2) + 1e-10); a trailing partial frame is left out.
    """
    samples = samples.detach().cpu().numpy() if isinstance(samples, Tensor) else np.asarray(samples)
    frames = samples[:len(samples) // frame_length * frame_length].astype(np.float64).reshape(-1, frame_length)
    return 10 * np.log10((frames ** 2).mean(axis=1) + ENERGY_EPS)


def update_noise_floor(floor_db: float, energy_db: float, rise: float) -> float:
    """One frame of the floor: down to a quieter frame at once, else up by a fraction `rise` of the gap.

    rise = 1 - exp(-frame_s / floor_rise_s), so the floor follows a lasting louder
    background with that time constant.
    """
    return energy_db if energy_db < floor_db else floor_db + rise * (energy_db - floor_db)


class SpeechChunker:
    """Streaming voice activity detection: `push` blocks of samples, get back finished chunks.

    Samples are floats in [-1, 1] (not normalised: the thresholds are in dBFS) at
    `config.sample_rate`. Block sizes need not be whole frames; the frames are counted
    from the first sample, so any blocking of the same audio gives the same chunks.
    """

    def __init__(self, config: VadConfig | None = None) -> None:
        self.config = config or VadConfig()
        c = self.config
        self._rise = 1 - math.exp(-c.frame_s / c.floor_rise_s)
        self._min_silence, self._pad = c.frames(c.min_silence_s), round(c.pad_s / c.frame_s)
        self._min_speech, self._max_chunk = c.frames(c.min_speech_s), c.frames(c.max_chunk_s)
        self._cut_search = c.frames(c.cut_search_s)
        self._floor_init = c.frames(c.floor_init_s)
        self.floor_db: float | None = None  # set from the first floor_init_s of audio
        self._unanalysed: list[float] = []  # energies measured before the floor was set
        self._frames_measured = 0
        self._buffer = np.zeros(0, dtype=np.float32)  # samples from self._offset on
        self._offset = 0  # stream index of self._buffer[0]
        self._next_frame = 0  # the first frame not yet analysed
        self._last_end = 0  # frame where the last chunk ended: the next one cannot start earlier
        self._chunk_start: int | None = None  # frame where the open chunk starts (None: in a pause)
        self._last_speech = -1  # last speech frame of the open chunk
        self._energies: list[float] = []  # per frame of the open chunk, from _chunk_start
        self._speech: list[bool] = []
        self._recent: deque[float] = deque(maxlen=self._pad)  # energies of the last frames of a pause (pre-roll)

    @property
    def samples_seen(self) -> int:
        return self._offset + len(self._buffer)

    def push(self, samples: np.ndarray | Tensor) -> list[SpeechChunk]:
        """Add a block (n,) of samples; returns the chunks that this block closed, in order."""
        samples = samples.detach().cpu().numpy() if isinstance(samples, Tensor) else np.asarray(samples)
        self._buffer = np.concatenate([self._buffer, samples.astype(np.float32, copy=False).reshape(-1)])
        length = self.config.frame_length
        first = self._frames_measured * length - self._offset
        count = (len(self._buffer) - first) // length
        self._unanalysed += frame_energy_db(self._buffer[first:first + count * length], length).tolist()
        self._frames_measured += count
        if self.floor_db is None and len(self._unanalysed) < self._floor_init:
            return []  # the floor is not known yet
        return self._analyse_unanalysed()

    def flush(self) -> list[SpeechChunk]:
        """End of the stream: close the open chunk (its padding cut at the last sample)."""
        chunks = self._analyse_unanalysed() if self._unanalysed else []
        if self._chunk_start is not None:
            chunk = self._close(min(self._last_speech + 1 + self._pad, self._next_frame), to_stream_end=True)
            chunks += [chunk] if chunk is not None else []
        self._trim()
        return chunks

    def _analyse_unanalysed(self) -> list[SpeechChunk]:
        """Run the detector over the frames measured so far; returns the chunks they closed."""
        if self.floor_db is None:
            self.floor_db = min(self._unanalysed[:self._floor_init])
        chunks = [self._analyse_frame(energy) for energy in self._unanalysed]
        self._unanalysed = []
        self._trim()
        return [chunk for chunk in chunks if chunk is not None]

    def _analyse_frame(self, energy: float) -> SpeechChunk | None:
        """Classify the next frame and update the chunk; returns a chunk this frame closed."""
        c, frame = self.config, self._next_frame
        is_speech = energy > self.floor_db + c.threshold_db and energy > c.min_speech_db
        self.floor_db = update_noise_floor(self.floor_db, energy, self._rise)
        self._next_frame += 1
        if self._chunk_start is None:
            if not is_speech:
                self._recent.append(energy)
                return None
            self._chunk_start = max(frame - self._pad, self._last_end)
            pre_roll = frame - self._chunk_start  # frames of the pause kept before the first speech frame
            self._energies = list(self._recent)[len(self._recent) - pre_roll:] if pre_roll else []
            self._speech = [False] * pre_roll
            self._recent.clear()
        self._energies.append(energy)
        self._speech.append(is_speech)
        if is_speech:
            self._last_speech = frame
        if frame - self._last_speech >= self._min_silence:
            return self._close(self._last_speech + 1 + self._pad)
        if len(self._energies) >= self._max_chunk:  # cut a long chunk at its quietest recent frame
            search_from = len(self._energies) - self._cut_search
            cut = max(search_from + int(np.argmin(self._energies[search_from:])), 1)
            return self._close(self._chunk_start + cut, keep_open=True)
        return None

    def _close(self, end: int, keep_open: bool = False, to_stream_end: bool = False) -> SpeechChunk | None:
        """Emit frames [chunk start, end) as a chunk (None if it has too little speech).

        keep_open: the frames from `end` on start the next chunk (a cut in running speech).
        """
        start = self._chunk_start
        end = max(end, start)  # after a cut in running speech the new part may hold no speech at all
        cut = end - start
        speech_frames = sum(self._speech[:cut])
        end_sample = self.samples_seen if to_stream_end and end >= self._next_frame else end * self.config.frame_length
        audio = self._buffer[start * self.config.frame_length - self._offset:end_sample - self._offset].copy()
        self._last_end = end
        if keep_open:
            self._chunk_start, self._energies, self._speech = end, self._energies[cut:], self._speech[cut:]
        else:
            self._recent.extend(self._energies[cut:])  # the pause after the chunk, a possible pre-roll of the next
            self._chunk_start, self._energies, self._speech = None, [], []
        if speech_frames < self._min_speech:
            return None
        return SpeechChunk(start * self.config.frame_length, end_sample, audio, self.config.sample_rate)

    def _trim(self) -> None:
        """Drop the samples no chunk can still need: before the open chunk, or before the pre-roll."""
        if self._chunk_start is not None:
            keep = self._chunk_start
        else:
            keep = max(self._next_frame - self._pad, self._last_end)
        drop = keep * self.config.frame_length - self._offset
        if drop > 0:
            self._buffer = self._buffer[drop:]
            self._offset += drop


def split_on_silence(waveform: np.ndarray | Tensor, config: VadConfig | None = None) -> list[SpeechChunk]:
    """Offline voice activity detection: waveform (L,) in [-1, 1] -> its speech chunks, in order."""
    chunker = SpeechChunker(config)
    return chunker.push(waveform) + chunker.flush()
