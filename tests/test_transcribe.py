"""Voice activity detection and the `transcribe` command: cut points, streaming, output, errors."""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import re
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from w2v2_lite.cli import main
from w2v2_lite.config import ModelConfig, paper_conv_layers
from w2v2_lite.data.vad import SpeechChunker, VadConfig, frame_energy_db, split_on_silence
from w2v2_lite.models import Wav2Vec2ForCTC
from w2v2_lite.pretrained import CONFIG_FILE, save_pretrained
from w2v2_lite.transcribe import pcm_blocks

ROOT = Path(__file__).resolve().parents[1]
RATE = 16_000
NOISE = 1e-3  # -60 dBFS of white noise under everything, as a quiet room


def tone(seconds: float, frequency: float = 440.0, amplitude: float = 0.3) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * frequency * np.arange(round(seconds * RATE)) / RATE)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE))


def with_noise(samples: np.ndarray, level: float = NOISE, seed: int = 0) -> np.ndarray:
    return (samples + np.random.default_rng(seed).normal(0, level, len(samples))).astype(np.float32)


# tones at 0.5-1.2 s, 1.8-2.8 s and 3.0-3.3 s: the 0.2 s gap is shorter than min_silence_s (0.3 s)
BURSTS = with_noise(np.concatenate([silence(0.5), tone(0.7), silence(0.6), tone(1.0, 300), silence(0.2), tone(0.3),
                                    silence(1.0)]))
BURST_CHUNKS = [(0.4, 1.3), (1.7, 3.4)]  # each padded by pad_s = 0.1 s


def spans(chunks) -> list[tuple[float, float]]:
    return [(round(c.start_s, 3), round(c.end_s, 3)) for c in chunks]


# ----------------------------------------------------------------------------- VAD
def test_frame_energy_in_dbfs():
    energies = frame_energy_db(np.concatenate([tone(0.1, 500, 0.5), silence(0.05)]), 320)
    assert len(energies) == 7  # 2400 samples: 7 whole frames, the last partial one left out
    assert energies[:5] == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.01)  # a sine's power is A^2 / 2
    assert energies[-2:] == pytest.approx(-100.0)


def test_chunks_are_cut_at_the_pauses():
    chunks = split_on_silence(BURSTS)
    assert spans(chunks) == BURST_CHUNKS
    for chunk in chunks:
        assert np.array_equal(chunk.audio, BURSTS[chunk.start:chunk.end])


def test_clicks_are_not_speech():
    audio = with_noise(np.concatenate([silence(0.6), tone(0.04), silence(0.6), tone(0.5), silence(0.5)]))
    assert spans(split_on_silence(audio)) == [(1.14, 1.84)]  # the tone at 1.24-1.74 s, padded


def test_the_noise_floor_adapts_to_a_loud_background():
    # white noise at -30 dBFS from the first sample, tones 20 dB above it at 2.0-2.8 s and 3.8-4.3 s
    audio = with_noise(np.concatenate([silence(2.0), tone(0.8, amplitude=0.5), silence(1.0),
                                       tone(0.5, amplitude=0.5), silence(0.5)]), level=10 ** (-30 / 20))
    assert spans(split_on_silence(audio)) == [(1.9, 2.9), (3.7, 4.4)]


def test_long_speech_is_cut_at_a_quiet_frame_before_max_chunk():
    syllables = np.concatenate([np.concatenate([tone(0.5), silence(0.1)]) for _ in range(12)])  # 7.2 s, no pause
    audio = with_noise(np.concatenate([silence(0.5), syllables, silence(0.5)]))
    chunks = split_on_silence(audio, VadConfig(max_chunk_s=3.0, cut_search_s=1.0))
    assert all(c.end_s - c.start_s <= 3.0 for c in chunks)
    assert [c.start for c in chunks[1:]] == [c.end for c in chunks[:-1]]  # nothing lost between the parts
    for chunk in chunks[:-1]:  # each cut falls in one of the 0.1 s gaps between the tones
        assert (chunk.end_s - 0.5) % 0.6 >= 0.5 - 1e-9


def test_speech_from_the_first_sample():
    # no pause in the first 0.5 s: the floor starts at its quietest sound, 24 dB under the loud ones
    audio = with_noise(np.concatenate([tone(0.2), tone(0.1, amplitude=0.02), tone(0.2), silence(0.6)]))
    assert spans(split_on_silence(audio)) == [(0.0, 0.6)]


@pytest.mark.parametrize("block", [7, 37, 320, 1000, 16_000, len(BURSTS)])
def test_streaming_in_any_blocks_gives_the_offline_chunks(block):
    chunker = SpeechChunker()
    chunks = [c for i in range(0, len(BURSTS), block) for c in chunker.push(BURSTS[i:i + block])] + chunker.flush()
    offline = split_on_silence(BURSTS)
    assert spans(chunks) == spans(offline)
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(chunks, offline))


def test_chunks_come_out_when_their_pause_ends():
    chunker = SpeechChunker()
    assert chunker.push(BURSTS[:round(1.3 * RATE)]) == []  # the pause after the first tone is not over yet
    assert spans(chunker.push(BURSTS[round(1.3 * RATE):round(1.52 * RATE)])) == [BURST_CHUNKS[0]]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_speech_separated_by_silence():
    from w2v2_lite.data.espeak import speak

    first, second = speak("hello world, this is a test").numpy(), speak("good morning").numpy()
    audio = with_noise(np.concatenate([silence(0.3), first, silence(0.6), second, silence(0.3)]))
    chunks = split_on_silence(audio)
    assert len(chunks) == 2  # the comma's short pause does not cut
    gap_start, gap_end = 0.3 + len(first) / RATE, 0.9 + len(first) / RATE
    assert chunks[0].end_s <= gap_end and chunks[1].start_s >= gap_start


def test_vad_config_is_checked():
    with pytest.raises(ValueError, match="pad_s"):
        VadConfig(pad_s=0.5, min_silence_s=0.3)
    with pytest.raises(ValueError, match="cut_search_s"):
        VadConfig(max_chunk_s=1.0, cut_search_s=2.0)


# ------------------------------------------------------------------ the command
@pytest.fixture(scope="module")
def release(tmp_path_factory) -> str:
    torch.manual_seed(0)  # random weights, smaller than tiny (fast), with the paper's 320-sample stride
    config = ModelConfig.tiny(conv_layers=paper_conv_layers(32), hidden_size=64, num_layers=1, num_heads=2,
                              ffn_size=128, pos_conv_kernel=16, pos_conv_groups=4)
    return str(save_pretrained(Wav2Vec2ForCTC(config), tmp_path_factory.mktemp("release")))


@pytest.fixture(scope="module")
def bursts_wav(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("audio") / "bursts.wav"
    soundfile.write(path, BURSTS, RATE, subtype="PCM_16")
    return str(path)


def file_chunks(path: str) -> list[tuple[float, float]]:
    samples, _ = soundfile.read(path, dtype="float32")
    return spans(split_on_silence(samples))


WORD_LINE = re.compile(r"^ +\d+\.\d\d +\d+\.\d\d  \S+$")


def test_transcribe_prints_text_and_word_times(release, bursts_wav, capsys):
    assert main(["transcribe", "--model", release, bursts_wav]) == 0
    header, *word_lines = capsys.readouterr().out.splitlines()
    assert header.startswith(f"{bursts_wav}: ")
    text = header[len(bursts_wav) + 2:]
    assert len(word_lines) == len(text.split())
    assert all(WORD_LINE.match(line) for line in word_lines)
    assert [line.split()[2] for line in word_lines] == text.split()


def test_transcribe_json(release, bursts_wav, capsys):
    assert main(["transcribe", "--model", release, "--json", bursts_wav]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["file"] == bursts_wav and result["duration"] == pytest.approx(len(BURSTS) / RATE, abs=1e-3)
    assert [w["word"] for w in result["words"]] == result["text"].split()
    ends = [0.0] + [w["end"] for w in result["words"]]
    for previous_end, word in zip(ends, result["words"]):
        assert previous_end <= word["start"] < word["end"] <= result["duration"] and 0 <= word["score"] <= 1


def test_bad_files_are_named_with_the_fix(release, bursts_wav, tmp_path, capsys):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio")
    code = main(["transcribe", "--model", release, str(tmp_path / "missing.flac"), str(not_audio),
                 str(tmp_path / "song.mp3"), bursts_wav])
    assert code == 2
    out, err = capsys.readouterr()
    assert out.startswith(f"{bursts_wav}: ")  # the good file is still transcribed
    lines = err.splitlines()
    assert f"{tmp_path / 'missing.flac'}: no such file; check the path" in lines[0]
    assert f"{not_audio}: cannot decode the audio" in lines[1] and "re-create it" in lines[1]
    assert "unsupported audio format '.mp3'" in lines[2] and "sox" in lines[2]


def test_bad_model_folders(release, bursts_wav, tmp_path, capsys):
    assert main(["transcribe", "--model", str(tmp_path), bursts_wav]) == 2
    assert "is not a w2v2_lite release" in capsys.readouterr().err
    pretraining = tmp_path / "pretrained"
    shutil.copytree(release, pretraining)
    config = json.loads((pretraining / CONFIG_FILE).read_text())
    (pretraining / CONFIG_FILE).write_text(json.dumps(config | {"model_class": "Wav2Vec2ForPreTraining"}))
    assert main(["transcribe", "--model", str(pretraining), bursts_wav]) == 2
    assert "not a fine-tuned Wav2Vec2ForCTC" in capsys.readouterr().err
    assert main(["transcribe", "--model", release]) == 2
    assert "give audio files" in capsys.readouterr().err


def test_stream_gives_the_offline_chunks(release, bursts_wav, capsys):
    assert main(["transcribe", "--model", release, "--stream", "--json", bursts_wav]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["start"], r["end"]) for r in results] == file_chunks(bursts_wav) == BURST_CHUNKS
    for result in results:
        assert result["latency_ms"] >= result["model_ms"] > 0
        assert all(result["start"] <= w["start"] < w["end"] <= result["end"] for w in result["words"])


def test_stream_text_output(release, bursts_wav, capsys):
    assert main(["transcribe", "--model", release, "--stream", bursts_wav]) == 0
    chunk_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert [line[:19] for line in chunk_lines] == ["[   0.40 -    1.30]", "[   1.70 -    3.40]"]
    assert all(re.search(r"\(latency \d+ ms, model \d+ ms\)$", line) for line in chunk_lines)


def pcm16(wav_path: str) -> bytes:
    """The samples of a 16-bit WAV file as raw little-endian PCM."""
    return soundfile.read(wav_path, dtype="int16")[0].astype("<i2").tobytes()


def wav_header(data_bytes: int, rate: int = RATE, channels: int = 1) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"LIST" + struct.pack("<I", 4) + b"INFO" + b"data" + struct.pack("<I", data_bytes))


def run_stdin(monkeypatch, data: bytes, release: str, *options: str) -> int:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    return main(["transcribe", "--model", release, "--json", "--block-ms", "30", *options, "-"])


@pytest.mark.parametrize("stream", ["raw", "wav file", "wav of unknown length", "stereo wav with a chunk after"])
def test_pcm_blocks_read_raw_and_wav_streams(stream, bursts_wav):
    raw = pcm16(bursts_wav)
    stereo = np.repeat(np.frombuffer(raw, dtype="<i2"), 2).tobytes()  # both channels the same
    data = {"raw": raw, "wav file": Path(bursts_wav).read_bytes(), "wav of unknown length": wav_header(0xFFFFFFFF) + raw,
            "stereo wav with a chunk after": wav_header(len(stereo), channels=2) + stereo + b"LIST, not audio"}[stream]
    blocks = list(pcm_blocks(io.BytesIO(data), 999, stream))
    assert all(len(block) == 999 for block in blocks[:-1])
    assert np.array_equal(np.concatenate(blocks), soundfile.read(bursts_wav, dtype="float32")[0])


def test_standard_input_stream(release, bursts_wav, monkeypatch, capsys):
    assert run_stdin(monkeypatch, wav_header(0xFFFFFFFF) + pcm16(bursts_wav), release) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["start"], r["end"]) for r in results] == BURST_CHUNKS
    assert {r["file"] for r in results} == {"standard input"}


def test_stream_format_errors(release, tmp_path, monkeypatch, capsys):
    assert run_stdin(monkeypatch, wav_header(1000, rate=44_100) + bytes(1000), release) == 2
    assert "16-bit PCM at 16 kHz" in capsys.readouterr().err
    low_rate = tmp_path / "low.wav"
    soundfile.write(low_rate, BURSTS[:8000], 8000)
    assert main(["transcribe", "--model", release, "--stream", str(low_rate)]) == 2
    err = capsys.readouterr().err
    assert f"{low_rate}: 8000 Hz" in err and "without --stream" in err


def test_microphone_needs_sounddevice(release, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # importing it raises ImportError
    assert main(["transcribe", "--model", release, "--mic"]) == 2
    assert "pip install sounddevice" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("flashlight") is None, reason="beam search needs flashlight-text")
def test_beam_search_with_an_lm_from_transcripts(release, bursts_wav, tmp_path, capsys):
    transcripts = tmp_path / "train.wrd"
    transcripts.write_text("A CAT SAT\nTHE DOG SAT ON A MAT\n")
    assert main(["transcribe", "--model", release, "--lm-from", str(transcripts), "--json", bursts_wav]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["text"].split()) <= {"A", "CAT", "SAT", "THE", "DOG", "ON", "MAT"}
    assert [w["word"] for w in result["words"]] == result["text"].split()
    assert main(["transcribe", "--model", release, "--beam", "4", bursts_wav]) == 0
    assert main(["transcribe", "--model", release, "--lm-from", str(tmp_path / "none.wrd"), bursts_wav]) == 2
    assert "no such transcript file" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["decoding.py", "alignment.py", "data/vad.py", "transcribe.py"])
def test_modules_import_torchaudio_only_inside_functions(module):
    tree = ast.parse((ROOT / "w2v2_lite" / module).read_text())
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    names = [alias.name for node in top_level for alias in node.names] + [
        node.module or "" for node in top_level if isinstance(node, ast.ImportFrom)]
    assert not [name for name in names if name.startswith(("torchaudio", "sounddevice", "flashlight"))]
    if module == "transcribe.py":  # `w2v2-lite --help` imports it: no torch either
        assert not [name for name in names if name.startswith(("torch", "numpy"))]
