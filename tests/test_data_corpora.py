"""Real-corpus layouts (LibriSpeech, Libri-light, fairseq manifests), built here from synthetic audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from w2v2_lite.data import Utterance, read_librilight, read_librispeech, read_manifest, write_manifest


def make_librispeech(root: Path, speakers: dict[str, list[str]], utterances_per_chapter: int = 2,
                     seed: int = 0) -> int:
    """speaker -> chapters; writes flac + trans.txt in LibriSpeech's layout; returns the count."""
    rng = np.random.default_rng(seed)
    count = 0
    for speaker, chapters in speakers.items():
        for chapter in chapters:
            folder = root / speaker / chapter
            folder.mkdir(parents=True)
            lines = []
            for index in range(utterances_per_chapter):
                utterance_id = f"{speaker}-{chapter}-{index:04d}"
                soundfile.write(folder / f"{utterance_id}.flac", 0.1 * rng.standard_normal(800 + 100 * index),
                                16000, subtype="PCM_16")
                lines.append(f"{utterance_id} WORD{index} OF {speaker}")
                count += 1
            (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return count


def test_read_librispeech(tmp_path):
    count = make_librispeech(tmp_path / "dev-clean", {"84": ["121123", "121550"], "174": ["50561"]})
    utterances = read_librispeech(tmp_path / "dev-clean")
    assert len(utterances) == count == 6
    first = utterances[0]
    assert first.speaker in {"84", "174"} and first.transcript.startswith("WORD0 OF")
    assert first.num_samples == 800 and Path(first.path).is_file()
    assert {u.speaker for u in utterances} == {"84", "174"}


def test_read_librispeech_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="trans.txt"):
        read_librispeech(tmp_path)
    make_librispeech(tmp_path / "x", {"1": ["2"]})
    next((tmp_path / "x").rglob("*.flac")).unlink()
    with pytest.raises(ValueError, match=r"no audio file 1-2-000\d.flac"):
        read_librispeech(tmp_path / "x")


def test_read_librilight_limited_resource_sets(tmp_path):
    root = tmp_path / "librispeech_finetuning"
    for fold in range(6):
        make_librispeech(root / "1h" / str(fold) / "clean", {f"{100 + fold}": ["1"]}, seed=fold)
        make_librispeech(root / "1h" / str(fold) / "other", {f"{200 + fold}": ["1"]}, seed=10 + fold)
    make_librispeech(root / "9h" / "clean", {"300": ["1", "2"]})
    make_librispeech(root / "9h" / "other", {"400": ["1"]})
    ten_minutes = read_librilight(root, "10min", fold=2)
    assert {u.speaker for u in ten_minutes} == {"102", "202"}
    one_hour = read_librilight(root, "1h")
    assert len(one_hour) == 24 and {u.path for u in ten_minutes} <= {u.path for u in one_hour}
    assert len(read_librilight(root, "9h")) == 6
    assert len(read_librilight(root, "10h")) == 30
    with pytest.raises(ValueError, match="six 10-minute folds"):
        read_librilight(root, "10min", fold=6)
    with pytest.raises(FileNotFoundError, match="librispeech_finetuning"):
        read_librilight(tmp_path, "1h")


def test_manifest_round_trip_with_transcripts_and_speakers(tmp_path):
    make_librispeech(tmp_path / "ls", {"7": ["8"]}, utterances_per_chapter=3)
    utterances = read_librispeech(tmp_path / "ls")
    write_manifest(tmp_path / "train.tsv", tmp_path / "ls", utterances)
    assert (tmp_path / "train.tsv").read_text().splitlines()[1] == "7/8/7-8-0000.flac\t800"
    assert (tmp_path / "train.ltr").read_text().splitlines()[0] == "W O R D 0 | O F | 7 |"
    assert read_manifest(tmp_path / "train.tsv") == utterances
    unlabelled = [Utterance(u.path, u.num_samples) for u in utterances]
    write_manifest(tmp_path / "pretrain.tsv", tmp_path / "ls", unlabelled)
    assert not (tmp_path / "pretrain.wrd").exists()
    assert read_manifest(tmp_path / "pretrain.tsv") == unlabelled


def test_manifest_with_relative_root_and_errors(tmp_path):
    make_librispeech(tmp_path / "ls", {"7": ["8"]}, utterances_per_chapter=1)
    (tmp_path / "rel.tsv").write_text("ls\n7/8/7-8-0000.flac\t800\n")
    assert read_manifest(tmp_path / "rel.tsv")[0].path == str(tmp_path / "ls/7/8/7-8-0000.flac")
    (tmp_path / "bad.tsv").write_text("ls\n7/8/7-8-0000.flac 800\n")
    with pytest.raises(ValueError, match="line 2"):
        read_manifest(tmp_path / "bad.tsv")
    (tmp_path / "rel.wrd").write_text("A\nB\n")
    with pytest.raises(ValueError, match="2 lines but"):
        read_manifest(tmp_path / "rel.tsv")
    with pytest.raises(FileNotFoundError, match="make-corpus"):
        read_manifest(tmp_path / "none.tsv")
