"""Older espeak-ng versions: the corpus falls back to voices they have, held-out speakers stay unseen."""

from __future__ import annotations

import shutil
import warnings

import pytest

from w2v2_lite.data import espeak
from w2v2_lite.data.corpus import (DEV_VARIANTS, HELDOUT_ACCENTS, TEST_VARIANTS, TRAIN_ACCENTS, TRAIN_VARIANTS,
                                   CorpusConfig, corpus_voices, plan_speakers)

DESIGNED = {"train accents": TRAIN_ACCENTS, "held-out accents": HELDOUT_ACCENTS, "train variants": TRAIN_VARIANTS,
            "dev variants": DEV_VARIANTS, "test variants": TEST_VARIANTS}

# What `available_voices` reads from espeak-ng 1.50 and 1.49.2: the voice files at those tags of
# github.com/espeak-ng/espeak-ng (espeak-ng-data/lang/gmw/en*, espeak-ng-data/voices/!v/*).
ACCENTS_1_50 = frozenset({"en-gb", "en-us", "en-029", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                          "en-gb-x-rp"})
VARIANTS_1_49_2 = frozenset("""
    Andy Annie AnxiousAndy Denis Gene Gene2 Jacky Lee Mario Michael Mr Storm Tweaky aunty boris croak f1 f2 f3 f4
    f5 iven iven2 iven3 john kaukovalta klatt klatt2 klatt3 klatt4 linda m1 m2 m3 m4 m5 m6 m7 max michel norbert
    quincy rob robert steph steph2 steph3 travis whisper whisperf zac""".split())
VARIANTS_1_50 = VARIANTS_1_49_2 | frozenset("""
    Andrea Diogo Henrique Hugo Nguyen RicishayMax RicishayMax2 RicishayMax3 anika anikaRobot antonio belinda ed
    fast grandma grandpa gustave m8 marcelo miguel pablo pablo2 paul pedro robosoft3 robosoft4 robosoft5 robosoft6
    robosoft7 robosoft8 sandro shelby victor""".split())


def fake_espeak(monkeypatch, version: str, accents: frozenset[str], variants: frozenset[str]) -> None:
    monkeypatch.setattr(espeak, "installed_version", lambda: version)
    monkeypatch.setattr(espeak, "available_voices", lambda: (accents, variants))


def assert_held_out_unseen(voices: dict[str, tuple[str, ...]]) -> None:
    assert not set(voices["train accents"]) & set(voices["held-out accents"])
    roles = ("train variants", "dev variants", "test variants")
    for role in roles:
        for other in roles[roles.index(role) + 1:]:
            assert not set(voices[role]) & set(voices[other]), (role, other)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_installed_espeak_needs_no_fallback():
    if tuple(map(int, espeak.installed_version().split("."))) < (1, 51):
        pytest.skip(f"espeak-ng {espeak.installed_version()} lacks voices of the corpus (before 1.51)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert corpus_voices() == DESIGNED


def test_espeak_1_50_falls_back_with_a_warning(monkeypatch):
    fake_espeak(monkeypatch, "1.50", ACCENTS_1_50, VARIANTS_1_50)
    with pytest.warns(UserWarning) as caught:
        voices = corpus_voices()
    first, second = (str(w.message) for w in caught)
    assert first.startswith("espeak-ng 1.50 has no accent 'en-us-nyc'; the train accents use 'en-us' instead, "
                            "which they already have. Corpora made with different espeak-ng versions differ")
    assert second.startswith("espeak-ng 1.50 has no variant 'david'; the train variants use 'm8' instead.")
    assert voices["train accents"] == ("en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-029")
    assert voices["train variants"] == tuple("m8" if v == "david" else v for v in TRAIN_VARIANTS)
    for role in ("held-out accents", "dev variants", "test variants"):
        assert voices[role] == DESIGNED[role]
    assert_held_out_unseen(voices)


def test_espeak_1_49_2_takes_the_next_stand_in(monkeypatch):
    fake_espeak(monkeypatch, "1.49.2", ACCENTS_1_50, VARIANTS_1_49_2)
    with pytest.warns(UserWarning) as caught:
        voices = corpus_voices()
    assert [str(w.message).split(";")[0] for w in caught] == ["espeak-ng 1.49.2 has no accent 'en-us-nyc'",
                                                              "espeak-ng 1.49.2 has no variant 'david'"]
    assert "the train variants use 'Michael' instead" in str(caught[1].message)  # m8 came in 1.50
    assert voices["train variants"] == tuple("Michael" if v == "david" else v for v in TRAIN_VARIANTS)
    assert_held_out_unseen(voices)


def test_fallback_plan_is_deterministic_and_keeps_dev_and_test_unseen(monkeypatch):
    fake_espeak(monkeypatch, "1.50", ACCENTS_1_50, VARIANTS_1_50)
    with pytest.warns(UserWarning):
        speakers = plan_speakers(CorpusConfig.experiment())
    with pytest.warns(UserWarning):
        assert plan_speakers(CorpusConfig.experiment()) == speakers
    train = speakers["pretrain"]
    assert {s.accent for s in train} <= ACCENTS_1_50 and {s.variant for s in train} <= VARIANTS_1_50
    for held_out in ("dev", "test"):
        assert not {s.accent for s in speakers[held_out]} & {s.accent for s in train}
        assert not {s.variant for s in speakers[held_out]} & {s.variant for s in train}
    assert not {s.variant for s in speakers["dev"]} & {s.variant for s in speakers["test"]}


def test_a_stand_in_never_crosses_between_training_and_held_out(monkeypatch):
    # Stand-ins that another role uses are passed over; with no stand-in left the voice goes.
    monkeypatch.setattr("w2v2_lite.data.corpus.VOICE_SUBSTITUTES",
                        {"david": ("m6", "m8"), "en-gb-x-gbcwmd": ("en-gb",)})
    fake_espeak(monkeypatch, "1.50", ACCENTS_1_50 - {"en-gb-x-gbcwmd"}, VARIANTS_1_50 - {"david"})
    with pytest.warns(UserWarning) as caught:
        voices = corpus_voices()
    assert "m8" in voices["train variants"] and "m6" not in voices["train variants"]
    assert voices["held-out accents"] == ("en-gb-scotland",)
    assert any("has no accent 'en-gb-x-gbcwmd'; no stand-in is free" in str(w.message) for w in caught)
    assert_held_out_unseen(voices)


def test_no_voice_left_for_a_role_is_an_error(monkeypatch):
    fake_espeak(monkeypatch, "1.40", ACCENTS_1_50 - set(HELDOUT_ACCENTS), VARIANTS_1_50)
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="has none of the held-out accents"):
        corpus_voices()


def test_a_corpus_begun_under_one_espeak_is_not_finished_under_another(monkeypatch):
    """Swapped voices change the fingerprint; the designed ones leave it as it always was."""
    config = CorpusConfig.notebooks()
    fake_espeak(monkeypatch, "1.52", ACCENTS_1_50 | {"en-us-nyc"}, VARIANTS_1_50 | {"david"})
    designed = config.fingerprint()
    fake_espeak(monkeypatch, "1.50", ACCENTS_1_50, VARIANTS_1_50)
    with pytest.warns(UserWarning, match="has no"):
        assert config.fingerprint() != designed
