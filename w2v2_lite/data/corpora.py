"""Lists of utterances from the corpora a user brings, and from manifests.

Three layouts, one result (a list of `Utterance`):

- a fairseq manifest: `<split>.tsv` (first line the root folder, then
  `relative/path.flac<TAB>num_samples`), with optional transcripts `<split>.wrd`
  (one line per utterance, words) and speakers `<split>.spk` (this project's addition);
- LibriSpeech: `<root>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt` next to
  `<speaker>-<chapter>-<utterance>.flac`;
- Libri-light's limited-resource fine-tuning sets: `librispeech_finetuning/1h/{0..5}/
  {clean,other}/...` and `9h/{clean,other}/...` in the LibriSpeech layout; each of
  the six 1h folds is a 10-minute set, and 10h = all of 1h + 9h.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")  # what `audio.load_audio` reads (audio imports torch, so lazily)


@dataclass(frozen=True)
class Utterance:
    """One audio file: absolute path, length in samples at 16 kHz, and what we know about it."""

    path: str
    num_samples: int
    transcript: str | None = None
    speaker: str | None = None


# ---------------------------------------------------------------- manifests
def write_lines(path: str | os.PathLike, lines: list[str]) -> None:
    """Write text lines atomically (temporary name, then `os.replace`)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(temporary, path)


def write_manifest(tsv_path: str | os.PathLike, root: str | os.PathLike, utterances: list[Utterance]) -> None:
    """Write `<split>.tsv` (fairseq) and, where known, `<split>.wrd`, `<split>.ltr`, `<split>.spk`.

    `.ltr` is fairseq's letter target: `H E L L O | W O R L D |`.
    """
    tsv_path, root = Path(tsv_path), Path(root).resolve()
    write_lines(tsv_path, [str(root)] + [f"{Path(u.path).resolve().relative_to(root)}\t{u.num_samples}"
                                         for u in utterances])
    if utterances and all(u.transcript is not None for u in utterances):
        write_lines(tsv_path.with_suffix(".wrd"), [u.transcript for u in utterances])  # type: ignore[misc]
        write_lines(tsv_path.with_suffix(".ltr"), [" ".join(u.transcript.replace(" ", "|")) + " |"  # type: ignore[union-attr]
                                                   for u in utterances])
    if utterances and all(u.speaker is not None for u in utterances):
        write_lines(tsv_path.with_suffix(".spk"), [u.speaker for u in utterances])  # type: ignore[misc]


def read_manifest(tsv_path: str | os.PathLike) -> list[Utterance]:
    """Read a fairseq manifest, with the transcripts (`.wrd`) and speakers (`.spk`) beside it.

    A relative root on the first line is taken relative to the manifest's folder.
    """
    tsv_path = Path(tsv_path)
    if not tsv_path.is_file():
        raise FileNotFoundError(f"{tsv_path}: no such manifest; make one with `w2v2-lite make-corpus` "
                                "or write it (first line: root folder; then path<TAB>num_samples)")
    lines = tsv_path.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise ValueError(f"{tsv_path}: the manifest is empty; its first line must be the root folder")
    root = Path(lines[0].strip())
    if not root.is_absolute():
        root = tsv_path.parent / root
    entries = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 2 or not fields[1].strip().isdigit():
            raise ValueError(f"{tsv_path}, line {number}: expected 'relative_path<TAB>num_samples', got {line!r}")
        entries.append((str(root / fields[0]), int(fields[1])))
    columns = {}
    for suffix in (".wrd", ".spk"):
        side = tsv_path.with_suffix(suffix)
        if side.is_file():
            values = side.read_text(encoding="utf-8").splitlines()
            if len(values) != len(entries):
                raise ValueError(f"{side}: {len(values)} lines but {tsv_path} lists {len(entries)} files; "
                                 "they must correspond line by line: re-create them together")
            columns[suffix] = values
    return [Utterance(path, samples, columns[".wrd"][i] if ".wrd" in columns else None,
                      columns[".spk"][i] if ".spk" in columns else None)
            for i, (path, samples) in enumerate(entries)]


# --------------------------------------------------------------- LibriSpeech
def read_librispeech(root: str | os.PathLike) -> list[Utterance]:
    """Every utterance under a LibriSpeech-layout folder, sorted by id, with transcripts and speakers."""
    from .audio import AudioError, audio_num_samples

    root = Path(root)
    transcript_files = sorted(root.glob("*/*/*.trans.txt"))
    if not transcript_files:
        raise FileNotFoundError(f"{root}: no <speaker>/<chapter>/<speaker>-<chapter>.trans.txt files; "
                                "point to a LibriSpeech split folder such as LibriSpeech/dev-clean")
    utterances = []
    for transcript_file in transcript_files:
        for number, line in enumerate(transcript_file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            utterance_id, _, transcript = line.strip().partition(" ")
            audio = next((transcript_file.parent / f"{utterance_id}{ext}" for ext in AUDIO_EXTENSIONS
                          if (transcript_file.parent / f"{utterance_id}{ext}").is_file()), None)
            if audio is None:
                raise AudioError(f"{transcript_file}, line {number}: no audio file {utterance_id}.flac beside it; "
                                 "the download is incomplete: extract the archive again")
            utterances.append(Utterance(str(audio.resolve()), audio_num_samples(audio), transcript,
                                        utterance_id.split("-")[0]))
    return utterances


LIBRILIGHT_SUBSETS = ("10min", "1h", "9h", "10h")


def read_librilight(root: str | os.PathLike, subset: str = "10min", fold: int = 0) -> list[Utterance]:
    """A Libri-light limited-resource set: "10min" (1h fold `fold`, 0-5), "1h", "9h" or "10h".

    root: the `librispeech_finetuning` folder. Clean and other speakers are both included.
    """
    root = Path(root)
    if subset not in LIBRILIGHT_SUBSETS:
        raise ValueError(f"subset={subset!r}: Libri-light has {LIBRILIGHT_SUBSETS}")
    if not 0 <= fold <= 5:
        raise ValueError(f"fold={fold}: the 1h set has six 10-minute folds, 0 to 5")
    parts = {"10min": [f"1h/{fold}"], "1h": [f"1h/{k}" for k in range(6)], "9h": ["9h"],
             "10h": [f"1h/{k}" for k in range(6)] + ["9h"]}[subset]
    folders = [root / part / kind for part in parts for kind in ("clean", "other") if (root / part / kind).is_dir()]
    if not folders:
        raise FileNotFoundError(f"{root}: no {parts[0]}/clean or {parts[0]}/other folder; point to the extracted "
                                "librispeech_finetuning folder of Libri-light")
    return [utterance for folder in folders for utterance in read_librispeech(folder)]
