"""A synthetic, labelled, multi-speaker English corpus that builds offline in minutes.

    make_corpus("data/generated/notebooks", CorpusConfig.notebooks())

A speaker is an espeak-ng accent x voice variant x speed x pitch. The splits mirror
the paper's setting: unlabelled audio for pretraining; labelled fine-tuning sets like
Libri-light's (the 10-minute set is a subset of the 1-hour set); dev and test sets
whose accents AND voice variants never occur in training, so they measure
generalisation to unseen speakers.

Layout of the output folder:

    audio/<group>/<speaker>/<utterance>.flac   16 kHz, 16-bit, mono
    pretrain.tsv                               fairseq manifests (root, then path<TAB>samples)
    train-10min.{tsv,wrd,ltr,spk}  train-1h.{...}  dev.{...}  test.{...}
    pretrain.spk
    metadata.json                              seed, config, espeak-ng version, speakers, durations; written last

Everything derives from `config.seed`: the same config and espeak-ng version give
byte-identical files. An espeak-ng older than 1.51 lacks two of the voices and gets
stand-ins (`corpus_voices`, with a warning), so its corpus differs.
Each file is written under a temporary name and renamed (`os.replace`), so Ctrl-C
never leaves a half-written file; running again skips finished files, and over a
finished corpus it only checks the manifests (well under a second).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import random
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .corpora import Utterance, read_manifest, write_lines, write_manifest

TRAIN_ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-029", "en-us-nyc")
HELDOUT_ACCENTS = ("en-gb-scotland", "en-gb-x-gbcwmd")  # dev and test only
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3", "klatt", "klatt2",
                  "Andy", "Annie", "david", "linda", "john", "steph")
DEV_VARIANTS = ("m6", "f4", "klatt3")
TEST_VARIANTS = ("m7", "f5", "klatt4")
# Stand-ins, best first, for the voices that espeak-ng before 1.51 lacks (the version
# table is in espeak.py): en-us-nyc by the US accent; david, a low male voice, by others.
VOICE_SUBSTITUTES = {"en-us-nyc": ("en-us",), "david": ("m8", "Michael")}
DESIGNED_VOICES: dict[str, tuple[str, ...]] = {
    "train accents": TRAIN_ACCENTS, "held-out accents": HELDOUT_ACCENTS,
    "train variants": TRAIN_VARIANTS, "dev variants": DEV_VARIANTS, "test variants": TEST_VARIANTS}

# Duration of espeak-ng speech ~ 9.6 * characters / speed (words per minute), within
# ~10% per sentence. (10.5 left whole corpora 9% short of the requested minutes: measured
# on the experiment preset, 109.7 of 120 min pretraining, 9.0 and 9.1 of 10 min dev/test.)
SECONDS_PER_CHARACTER_AT_1_WPM = 9.6
PEAK_LEVEL = 10 ** (-3 / 20)  # -3 dBFS: headroom for resampling ripple and added noise
GROUPS = ("pretrain", "labelled", "dev", "test")
METADATA = "metadata.json"


@dataclass(frozen=True)
class Speaker:
    """An espeak-ng voice: accent, variant, speed (words per minute) and pitch (0-99)."""

    accent: str
    variant: str
    speed: int
    pitch: int

    @property
    def name(self) -> str:
        return f"{self.accent}+{self.variant}-s{self.speed}-p{self.pitch}"


@dataclass(frozen=True)
class AugmentConfig:
    """Optional degradations of the training audio (dev and test stay clean unless listed).

    noise_snr_db: white noise at this SNR (dB); reverb_rt60: a synthetic room with this
    reverberation time (s); speed_factors: each utterance is played at one of these speeds.
    """

    noise_snr_db: float | None = None
    reverb_rt60: float | None = None
    speed_factors: tuple[float, ...] = ()
    groups: tuple[str, ...] = ("pretrain", "labelled")

    @property
    def enabled(self) -> bool:
        return self.noise_snr_db is not None or self.reverb_rt60 is not None or bool(self.speed_factors)


@dataclass(frozen=True)
class CorpusConfig:
    """Sizes (minutes of audio), speakers and seed of a synthetic corpus."""

    seed: int = 0
    pretrain_minutes: float = 120.0
    labelled_minutes: tuple[float, ...] = (10.0, 60.0)  # nested: each set contains the smaller ones
    dev_minutes: float = 10.0
    test_minutes: float = 10.0
    train_speakers: int = 48
    eval_speakers: int = 6  # per split, dev and test
    speed_range: tuple[int, int] = (130, 200)
    pitch_range: tuple[int, int] = (25, 75)
    max_sentences: int = 2  # sentences per utterance: 1 to max
    audio_format: str = "flac"
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @classmethod
    def notebooks(cls, **overrides: Any) -> "CorpusConfig":
        """Small: 5 min unlabelled, 1 min / 3 min labelled, 1 min dev and test; < 1 min on 2 cores."""
        values: dict[str, Any] = dict(pretrain_minutes=5.0, labelled_minutes=(1.0, 3.0), dev_minutes=1.0,
                                      test_minutes=1.0, train_speakers=16, eval_speakers=4)
        return dataclasses.replace(cls(), **{**values, **overrides})

    @classmethod
    def experiment(cls, **overrides: Any) -> "CorpusConfig":
        """2 h unlabelled, 1 min / 10 min / 1 h labelled, 10 min dev and test: a few minutes on 2 cores."""
        return dataclasses.replace(cls(), **{"labelled_minutes": (1.0, 10.0, 60.0), **overrides})

    def validate(self) -> None:
        minutes = [self.pretrain_minutes, *self.labelled_minutes, self.dev_minutes, self.test_minutes]
        if min(minutes) < 0:
            raise ValueError(f"CorpusConfig: split sizes must be >= 0 minutes, got {minutes}")
        if list(self.labelled_minutes) != sorted(set(self.labelled_minutes)):
            raise ValueError(f"CorpusConfig.labelled_minutes={self.labelled_minutes}: give increasing sizes, "
                             "e.g. (10, 60); each set is contained in the next")
        if self.train_speakers < 1 or self.eval_speakers < 1:
            raise ValueError("CorpusConfig: train_speakers and eval_speakers must be >= 1")
        if self.audio_format not in ("flac", "wav"):
            raise ValueError(f"CorpusConfig.audio_format={self.audio_format!r}: use 'flac' (smaller) or 'wav'")
        if self.max_sentences < 1:
            raise ValueError("CorpusConfig.max_sentences must be >= 1")

    def fingerprint(self) -> str:
        """Hash of everything that decides the plan: the config, the speaking-rate estimate,
        and the voices when an older espeak-ng made us swap some (see `corpus_voices`), so
        that a corpus begun under one espeak-ng is never finished under another."""
        planned_by = dataclasses.asdict(self) | {"seconds_per_character": SECONDS_PER_CHARACTER_AT_1_WPM}
        voices = corpus_voices()
        if voices != DESIGNED_VOICES:  # left out otherwise, so today's corpora keep their fingerprints
            planned_by["voices"] = voices
        return hashlib.sha256(json.dumps(planned_by, sort_keys=True).encode()).hexdigest()[:16]


PRESETS = {"notebooks": CorpusConfig.notebooks, "experiment": CorpusConfig.experiment}


def labelled_split_name(minutes: float) -> str:
    """10 -> 'train-10min', 60 -> 'train-1h' (Libri-light's names)."""
    return f"train-{minutes / 60:g}h" if minutes % 60 == 0 else f"train-{minutes:g}min"


# ----------------------------------------------------------------- planning
@dataclass(frozen=True)
class PlannedUtterance:
    """Everything needed to synthesise one file, decided before any audio exists."""

    group: str
    utterance_id: str
    speaker: Speaker
    sentences: tuple[str, ...]
    speed_factor: float
    augment_seed: int

    @property
    def transcript(self) -> str:
        return " ".join(self.sentences)

    @property
    def spoken_text(self) -> str:
        return " ".join(sentence.lower() + "." for sentence in self.sentences)

    def relative_path(self, audio_format: str) -> str:
        return f"audio/{self.group}/{self.speaker.name}/{self.utterance_id}.{audio_format}"

    @property
    def estimated_seconds(self) -> float:
        return SECONDS_PER_CHARACTER_AT_1_WPM * len(self.transcript) / self.speaker.speed / self.speed_factor


def choose_speakers(rng: random.Random, accents: tuple[str, ...], variants: tuple[str, ...], count: int,
                    config: CorpusConfig) -> list[Speaker]:
    """`count` speakers: distinct accent x variant pairs while they last, random speed and pitch."""
    pairs = [(accent, variant) for accent in accents for variant in variants]
    rng.shuffle(pairs)
    return [Speaker(*pairs[i % len(pairs)], rng.randint(*config.speed_range), rng.randint(*config.pitch_range))
            for i in range(count)]


def corpus_voices() -> dict[str, tuple[str, ...]]:
    """The accents and variants of each role that the installed espeak-ng has.

    -> {"train accents", "held-out accents", "train variants", "dev variants", "test variants"}
    A voice it lacks is replaced, with a warning, by its first stand-in in `VOICE_SUBSTITUTES`
    that it has and that no other role uses, so held-out voices stay held out (without one,
    the voice is left out). No randomness: one espeak-ng version always gives the same voices.
    """
    from . import espeak

    wanted = DESIGNED_VOICES
    try:
        installed = dict(zip(("accents", "variants"), espeak.available_voices()))
    except RuntimeError:  # no espeak-ng: plan the designed voices; synthesis then says how to install it
        return wanted
    chosen: dict[str, tuple[str, ...]] = {}
    for role, names in wanted.items():
        kind = role.split()[-1]
        taken = {name for other, voices in [*wanted.items(), *chosen.items()]
                 if other != role and other.endswith(kind) for name in voices}
        kept: list[str] = []
        for name in names:
            if name in installed[kind]:
                kept.append(name)
                continue
            stand_ins = VOICE_SUBSTITUTES.get(name, ())
            substitute = next((s for s in stand_ins if s in installed[kind] and s not in taken), None)
            if substitute is None:
                outcome = (f"no stand-in is free ({list(stand_ins)}: missing or another role's), "
                           f"so the {role} go without it")
            else:
                already = substitute in names or substitute in kept
                outcome = f"the {role} use {substitute!r} instead" + (", which they already have" if already else "")
                kept.append(substitute)
            warnings.warn(f"espeak-ng {espeak.installed_version()} has no {kind[:-1]} {name!r}; {outcome}. Corpora "
                          "made with different espeak-ng versions differ (metadata.json records the version and "
                          "the speakers); the version table is in w2v2_lite/data/espeak.py", stacklevel=2)
        if not kept:
            raise RuntimeError(f"espeak-ng {espeak.installed_version()} has none of the {role} {list(names)}; "
                               f"install a newer espeak-ng ({espeak.INSTALL_HINT})")
        chosen[role] = tuple(dict.fromkeys(kept))  # a stand-in the role already has counts once
    return chosen


def plan_speakers(config: CorpusConfig) -> dict[str, list[Speaker]]:
    """Speakers of each group; dev and test share no accent or variant with training."""
    rng = random.Random(f"speakers-{config.seed}")
    voices = corpus_voices()
    train = choose_speakers(rng, voices["train accents"], voices["train variants"], config.train_speakers, config)
    return {"pretrain": train, "labelled": train,
            "dev": choose_speakers(rng, voices["held-out accents"], voices["dev variants"], config.eval_speakers,
                                   config),
            "test": choose_speakers(rng, voices["held-out accents"], voices["test variants"], config.eval_speakers,
                                    config)}


def plan_group(group: str, minutes: float, speakers: list[Speaker], config: CorpusConfig) -> list[PlannedUtterance]:
    """Utterances of one group until their estimated duration reaches `minutes`.

    Each group has its own random streams, so resizing one group leaves the others unchanged.
    """
    from .text import SentenceGenerator

    rng = random.Random(f"{group}-{config.seed}")
    sentences = SentenceGenerator(seed=hash_seed(group, config.seed))
    augment = config.augment if group in config.augment.groups else AugmentConfig()
    planned: list[PlannedUtterance] = []
    total = 0.0
    order = list(speakers)
    while total < minutes * 60:
        if len(planned) % len(order) == 0:
            rng.shuffle(order)  # every speaker once per round, in a new order each round
        speaker = order[len(planned) % len(order)]
        count = rng.randint(1, config.max_sentences)
        factor = rng.choice(augment.speed_factors) if augment.speed_factors else 1.0
        utterance = PlannedUtterance(group, f"{group}-{len(planned):06d}", speaker,
                                     tuple(sentences.sentence() for _ in range(count)), factor,
                                     hash_seed(f"{group}-{len(planned)}", config.seed))
        planned.append(utterance)
        total += utterance.estimated_seconds
    return planned


def hash_seed(name: str, seed: int) -> int:
    """A stable 63-bit seed from a name and the corpus seed (Python's hash() is salted per run)."""
    return int.from_bytes(hashlib.sha256(f"{name}-{seed}".encode()).digest()[:8], "little") >> 1


def plan_corpus(config: CorpusConfig) -> list[PlannedUtterance]:
    """Every utterance of the corpus, in a fixed order."""
    config.validate()
    speakers = plan_speakers(config)
    minutes = {"pretrain": config.pretrain_minutes, "labelled": max(config.labelled_minutes, default=0.0),
               "dev": config.dev_minutes, "test": config.test_minutes}
    return [u for group in GROUPS for u in plan_group(group, minutes[group], speakers[group], config)]


# -------------------------------------------------------------- synthesis
def synthesize(utterance: PlannedUtterance, augment: AugmentConfig) -> "Any":
    """Speak one planned utterance, apply its augmentation, and level it -> waveform (L,) at 16 kHz."""
    import torch

    from . import augment as degrade
    from .espeak import speak

    speaker = utterance.speaker
    waveform = speak(utterance.spoken_text, speaker.accent, speaker.variant, speaker.speed, speaker.pitch)
    if utterance.group in augment.groups:
        generator = torch.Generator().manual_seed(utterance.augment_seed)
        if utterance.speed_factor != 1.0:
            waveform = degrade.change_speed(waveform, utterance.speed_factor)
        if augment.reverb_rt60 is not None:
            waveform = degrade.reverberate(waveform, augment.reverb_rt60, generator=generator)
        if augment.noise_snr_db is not None:
            waveform = degrade.add_noise(waveform, augment.noise_snr_db, generator=generator)
    return waveform * (PEAK_LEVEL / waveform.abs().max().clamp_min(1e-8))


def make_file(job: tuple[PlannedUtterance, str, AugmentConfig, str]) -> int:
    """Write one utterance unless it exists (then read its length) -> number of samples."""
    from .audio import audio_num_samples, save_audio

    utterance, root, augment, audio_format = job
    path = Path(root) / utterance.relative_path(audio_format)
    if path.is_file():
        return audio_num_samples(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    waveform = synthesize(utterance, augment)
    save_audio(path, waveform)
    return waveform.numel()


def ignore_interrupts_in_worker() -> None:
    """Ctrl-C goes to the main process only, which then stops the pool cleanly."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def remove_temporary_files(root: Path) -> None:
    """Delete the `.name.pid.tmp` files an interrupted run may have left."""
    for folder, _, names in os.walk(root):
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):
                os.remove(os.path.join(folder, name))


def synthesize_in_pool(jobs: list[Any], workers: int, num_samples: list[int], bar: Any) -> None:
    """`make_file` over `jobs` in `workers` processes; fills `num_samples` in order, ticks `bar`."""
    import torch  # noqa: F401  (imported once here, so that forked workers share it instead of each importing it)

    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    pool = context.Pool(workers, initializer=ignore_interrupts_in_worker)
    try:
        for index, samples in enumerate(pool.imap(make_file, jobs, chunksize=4)):
            num_samples[index] = samples
            bar.update()
        pool.close()
    except KeyboardInterrupt:
        pool.terminate()
        raise
    finally:
        pool.join()


# ---------------------------------------------------------------- manifests
def espeak_version() -> str:
    """What metadata.json records as the synthesiser, e.g. "espeak-ng 1.51"."""
    from .espeak import installed_version

    return f"espeak-ng {installed_version()}"


def is_complete(root: Path, config: CorpusConfig) -> bool:
    """True when `root` holds a finished corpus of this config: metadata, manifests and files."""
    metadata_path = root / METADATA
    if not metadata_path.is_file():
        return False
    metadata = json.loads(metadata_path.read_text())
    if metadata.get("fingerprint") != config.fingerprint():
        raise ValueError(f"{root} holds a corpus made with another config (seed {metadata.get('seed')}, "
                         f"fingerprint {metadata.get('fingerprint')}); choose another output folder or delete it")
    for split in metadata["splits"].values():
        manifest = root / split["manifest"]
        if not manifest.is_file():
            return False
        utterances = read_manifest(manifest)
        if len(utterances) != split["utterances"] or not all(os.path.exists(u.path) for u in utterances):
            return False
    return True


def write_corpus_manifests(root: Path, config: CorpusConfig, planned: list[PlannedUtterance],
                           num_samples: list[int]) -> dict[str, Any]:
    """Write the manifests of every split and `metadata.json` (last: it marks completion)."""
    from .audio import SAMPLE_RATE

    by_group: dict[str, list[Utterance]] = {group: [] for group in GROUPS}
    for utterance, samples in zip(planned, num_samples):
        transcript = None if utterance.group == "pretrain" else utterance.transcript
        by_group[utterance.group].append(Utterance(str(root / utterance.relative_path(config.audio_format)),
                                                   samples, transcript, utterance.speaker.name))
    splits = {"pretrain": by_group["pretrain"], "dev": by_group["dev"], "test": by_group["test"]}
    for minutes in config.labelled_minutes:  # nested prefixes of the labelled group, by true duration
        prefix, total = [], 0
        for utterance in by_group["labelled"]:
            if total + utterance.num_samples > minutes * 60 * SAMPLE_RATE and prefix:
                break
            prefix.append(utterance)
            total += utterance.num_samples
        splits[labelled_split_name(minutes)] = prefix
    summary = {}
    for name, utterances in splits.items():
        write_manifest(root / f"{name}.tsv", root, utterances)
        summary[name] = {"manifest": f"{name}.tsv", "utterances": len(utterances),
                         "seconds": round(sum(u.num_samples for u in utterances) / SAMPLE_RATE, 2),
                         "labelled": name != "pretrain",
                         "speakers": sorted({u.speaker for u in utterances})}  # type: ignore[type-var]
    speakers = {u.speaker.name: dataclasses.asdict(u.speaker) for u in planned}
    metadata = {"seed": config.seed, "fingerprint": config.fingerprint(), "sample_rate": SAMPLE_RATE,
                "synthesiser": espeak_version(), "config": dataclasses.asdict(config), "splits": summary,
                "speakers": dict(sorted(speakers.items()))}
    write_lines(root / METADATA, [json.dumps(metadata, indent=2)])
    return metadata


def make_corpus(out: str | os.PathLike, config: CorpusConfig | None = None, workers: int | None = None,
                progress: bool = True) -> dict[str, Any]:
    """Make (or finish, or just check) the corpus of `config` in folder `out` -> its metadata.

    workers: processes that synthesise in parallel (default: all cores). On Ctrl-C the
    finished files stay; run again to resume.
    """
    from tqdm.auto import tqdm  # a text bar in a terminal, a widget in a notebook

    config = config or CorpusConfig.notebooks()
    config.validate()
    root = Path(out).resolve()
    if is_complete(root, config):
        return json.loads((root / METADATA).read_text())
    root.mkdir(parents=True, exist_ok=True)
    remove_temporary_files(root)
    planned = plan_corpus(config)
    jobs = [(utterance, str(root), config.augment, config.audio_format) for utterance in planned]
    workers = workers or os.cpu_count() or 1
    num_samples = [0] * len(jobs)
    start = time.perf_counter()
    bar = tqdm(total=len(jobs), desc=f"make-corpus {root.name}", unit="utt", disable=not progress,
               dynamic_ncols=True)
    try:
        if workers == 1:
            for index, job in enumerate(jobs):
                num_samples[index] = make_file(job)
                bar.update()
        else:
            synthesize_in_pool(jobs, workers, num_samples, bar)
    except KeyboardInterrupt:
        bar.close()
        print("interrupted: finished files are kept; run the same command again to resume", file=sys.stderr)
        raise
    bar.close()
    metadata = write_corpus_manifests(root, config, planned, num_samples)
    seconds = sum(num_samples) / metadata["sample_rate"]
    if progress:
        wall = time.perf_counter() - start
        print(f"{out}: {seconds / 60:.1f} min of audio in {len(jobs)} files, {wall:.1f} s "
              f"({seconds / max(wall, 1e-9):.0f}x real time)", file=sys.stderr)
    return metadata
