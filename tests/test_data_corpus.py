"""The synthetic corpus: splits, unseen speakers, determinism, resuming, the sentence generator."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import soundfile

from w2v2_lite.data import CharTokenizer, CorpusConfig, SentenceGenerator, make_corpus, read_manifest
from w2v2_lite.data.corpus import plan_speakers
from w2v2_lite.data.text import vocabulary

TINY = CorpusConfig.notebooks(pretrain_minutes=0.3, labelled_minutes=(0.1, 0.3), dev_minutes=0.1,
                              test_minutes=0.1, train_speakers=4, eval_speakers=2)


def corpus_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus") / "tiny"
    make_corpus(root, TINY, workers=2, progress=False)
    return root


def test_splits_manifests_and_metadata(corpus):
    metadata = json.loads((corpus / "metadata.json").read_text())
    assert set(metadata["splits"]) == {"pretrain", "train-0.1min", "train-0.3min", "dev", "test"}
    assert metadata["seed"] == TINY.seed and metadata["config"]["train_speakers"] == 4
    tsv_lines = (corpus / "train-0.3min.tsv").read_text().splitlines()
    assert tsv_lines[0] == str(corpus.resolve())
    relative, samples = tsv_lines[1].split("\t")
    assert soundfile.info(str(corpus / relative)).frames == int(samples)
    assert soundfile.info(str(corpus / relative)).samplerate == 16000
    tokenizer = CharTokenizer()
    for name, split in metadata["splits"].items():
        utterances = read_manifest(corpus / split["manifest"])
        assert len(utterances) == split["utterances"] > 0
        assert sum(u.num_samples for u in utterances) / 16000 == pytest.approx(split["seconds"], abs=0.01)
        assert sorted({u.speaker for u in utterances}) == split["speakers"]
        if name != "pretrain":
            assert all(len(tokenizer.encode(u.transcript)) > 0 for u in utterances)
    ltr = (corpus / "dev.ltr").read_text().splitlines()[0]
    wrd = (corpus / "dev.wrd").read_text().splitlines()[0]
    assert ltr == " ".join(wrd.replace(" ", "|")) + " |"


def test_small_labelled_set_is_a_subset_of_the_large_one(corpus):
    small = read_manifest(corpus / "train-0.1min.tsv")
    large = read_manifest(corpus / "train-0.3min.tsv")
    assert small == large[: len(small)] and len(small) < len(large)
    assert sum(u.num_samples for u in small) <= 0.1 * 60 * 16000 or len(small) == 1
    assert sum(u.num_samples for u in large) / 16000 == pytest.approx(18, rel=0.35)


def test_dev_and_test_speakers_are_unseen_in_training():
    speakers = plan_speakers(CorpusConfig.experiment())
    train = speakers["pretrain"]
    for held_out in ("dev", "test"):
        assert not {s.accent for s in speakers[held_out]} & {s.accent for s in train}
        assert not {s.variant for s in speakers[held_out]} & {s.variant for s in train}
    assert not {s.variant for s in speakers["dev"]} & {s.variant for s in speakers["test"]}


def test_corpus_speakers_per_split_are_disjoint(corpus):
    metadata = json.loads((corpus / "metadata.json").read_text())
    info = metadata["speakers"]
    train = set(metadata["splits"]["pretrain"]["speakers"]) | set(metadata["splits"]["train-0.3min"]["speakers"])
    for held_out in ("dev", "test"):
        names = metadata["splits"][held_out]["speakers"]
        assert not {info[n]["accent"] for n in names} & {info[n]["accent"] for n in train}
        assert not {info[n]["variant"] for n in names} & {info[n]["variant"] for n in train}


def test_same_seed_gives_byte_identical_corpus(corpus, tmp_path):
    original = corpus_bytes(corpus)
    other = tmp_path / "again"
    make_corpus(other, TINY, workers=1, progress=False)
    again = corpus_bytes(other)
    assert again.keys() == original.keys()
    for name in original:
        if name.endswith(".tsv"):  # the first line is the (different) absolute root folder
            assert again[name].split(b"\n", 1)[1] == original[name].split(b"\n", 1)[1], name
        else:
            assert again[name] == original[name], name
    shutil.rmtree(other)
    make_corpus(other, TINY, workers=2, progress=False)
    assert corpus_bytes(other) == again  # and in the same folder, fully byte-identical


def test_another_seed_gives_another_corpus(tmp_path):
    small = dict(pretrain_minutes=0.05, labelled_minutes=(0.05,), dev_minutes=0.05, test_minutes=0.05,
                 train_speakers=2, eval_speakers=1)
    corpora = {}
    for seed in (1, 2):
        make_corpus(tmp_path / str(seed), CorpusConfig.notebooks(seed=seed, **small), workers=1, progress=False)
        corpora[seed] = corpus_bytes(tmp_path / str(seed))
    for split in ("train-0.05min", "dev", "test"):  # other sentences, and other audio
        assert corpora[1][f"{split}.wrd"] != corpora[2][f"{split}.wrd"] != b""
    audio = {seed: {data for name, data in files.items() if name.endswith(".flac")} for seed, files in corpora.items()}
    assert audio[1] and audio[2] and not audio[1] & audio[2]
    with pytest.raises(ValueError, match="another config"):
        make_corpus(tmp_path / "1", TINY, progress=False)


def test_resume_completes_an_interrupted_corpus_and_a_finished_one_is_checked_fast(corpus, tmp_path):
    root = tmp_path / "resumed"
    shutil.copytree(corpus, root)
    for tsv in root.glob("*.tsv"):  # the copy must point at itself
        lines = tsv.read_text().splitlines()
        tsv.write_text("\n".join([str(root.resolve())] + lines[1:]) + "\n")
    expected = corpus_bytes(root)
    audio = sorted((root / "audio").rglob("*.flac"))
    for path in audio[::3]:
        path.unlink()
    (root / "metadata.json").unlink()
    (audio[1].parent / f".{audio[1].name}.999.tmp").write_bytes(b"half a file")  # left by a killed worker
    make_corpus(root, TINY, workers=2, progress=False)
    assert corpus_bytes(root) == expected
    start = time.perf_counter()
    make_corpus(root, TINY, progress=False)
    assert time.perf_counter() - start < 1.0


def test_sentence_generator_has_a_real_vocabulary():
    words = vocabulary()
    assert len(words) > 500
    generator = SentenceGenerator(seed=3)
    sentences = [generator.sentence() for _ in range(500)]
    again = SentenceGenerator(seed=3)
    assert [again.sentence() for _ in range(500)] == sentences
    assert len(set(sentences)) > 490
    used = {word for sentence in sentences for word in sentence.split()}
    assert len(used) > 300 and used <= {w.upper() for w in words}
    tokenizer = CharTokenizer()
    assert all(tokenizer.encode(s).numel() > 0 for s in sentences)
    assert all(s == s.upper() and "  " not in s for s in sentences)


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="increasing"):
        make_corpus(tmp_path / "never", CorpusConfig(labelled_minutes=(60.0, 10.0)), progress=False)
    assert not (tmp_path / "never").exists()
