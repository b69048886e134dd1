"""Speech from text with the espeak-ng synthesiser: the voice of the synthetic corpus.

espeak-ng is a formant synthesiser (Klatt-style): fast (~150x real time on one core),
deterministic, and offline. A speaker is an accent (`-v en-gb-scotland`), a voice
variant (`+m3`, `+f2`, `+klatt`, ...), a speed in words per minute (`-s`) and a pitch
(`-p`, 0-99).

Which voices exist depends on the version. The corpus's voices, from the voice files
(`espeak-ng-data/lang/gmw/en*`, `espeak-ng-data/voices/!v/*`) at espeak-ng's release tags:

    1.49.2 (2017)  accents en-us en-gb en-gb-x-rp en-gb-x-gbclan en-gb-x-gbcwmd en-gb-scotland
                   en-029; variants m1-m7 f1-f5 klatt-klatt4 Andy Annie linda john steph
    1.50   (2019)  adds variant m8 (unused); Ubuntu 22.04's, so Colab's
    1.51   (2022)  adds accent en-us-nyc, variant david; Debian 12's
    1.52.0 (2024)  adds none that the corpus uses

`corpus.corpus_voices` replaces what the installed version lacks.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from functools import lru_cache

import soundfile
import torch
from torch import Tensor

from .audio import SAMPLE_RATE, resample

ESPEAK_SAMPLE_RATE = 22_050
INSTALL_HINT = ("install it with 'sudo apt-get install espeak-ng' (Debian/Ubuntu), 'brew install espeak-ng' "
                "(macOS), or '!apt-get install -y espeak-ng' in Colab")


@lru_cache(maxsize=1)
def espeak_binary() -> str:
    """Path of the espeak-ng executable, or a `RuntimeError` that says how to install it."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise RuntimeError(f"espeak-ng is not installed; the synthetic speech needs it: {INSTALL_HINT}")
    return binary


@lru_cache(maxsize=1)
def installed_version() -> str:
    """The version of the installed espeak-ng, e.g. "1.51" (from `espeak-ng --version`)."""
    banner = subprocess.run([espeak_binary(), "--version"], capture_output=True, text=True, check=True).stdout
    version = re.search(r"\d+(\.\d+)+", banner)  # "eSpeak NG text-to-speech: 1.51  Data at: /usr/..."
    return version.group() if version else banner.strip()


@lru_cache(maxsize=1)
def available_voices() -> tuple[frozenset[str], frozenset[str]]:
    """(English accents, voice variants) that this espeak-ng knows.

    espeak-ng silently falls back to its default voice for an unknown name, so we check
    names ourselves against `espeak-ng --voices=en` and `--voices=variant`.
    """
    def rows(option: str) -> list[list[str]]:  # columns: Pty Language Age/Gender VoiceName File ...
        listing = subprocess.run([espeak_binary(), option], capture_output=True, text=True, check=True).stdout
        return [line.split() for line in listing.splitlines()[1:] if len(line.split()) >= 5]

    # mbrola voices ("mb/...") need the separate mbrola program, so they are left out.
    accents = frozenset(row[1] for row in rows("--voices=en") if row[1].startswith("en") and not row[4].startswith("mb/"))
    variants = frozenset(row[4].removeprefix("!v/") for row in rows("--voices=variant"))
    return accents, variants


def check_voice(voice: str, variant: str | None = None) -> None:
    """Raise `ValueError` for an accent or variant that espeak-ng does not have."""
    accents, variants = available_voices()
    if voice not in accents:
        raise ValueError(f"espeak-ng has no English voice {voice!r}; choose one of {sorted(accents)} "
                         "(`espeak-ng --voices=en`)")
    if variant is not None and variant not in variants:
        raise ValueError(f"espeak-ng has no voice variant {variant!r}; choose one of e.g. m1-m8, f1-f5, klatt, "
                         "croak, whisper (`espeak-ng --voices=variant` lists all)")


def espeak_command(text: str, voice: str = "en-us", variant: str | None = None, speed: int = 160,
                   pitch: int = 50) -> list[str]:
    """The espeak-ng command line that writes `text` as a 22.05 kHz wav on stdout."""
    voice_name = voice if variant is None else f"{voice}+{variant}"
    # "--" ends the options, so a sentence that starts with "-" is still text.
    return [espeak_binary(), "-v", voice_name, "-s", str(int(speed)), "-p", str(int(pitch)), "--stdout", "--", text]


def speak(text: str, voice: str = "en-us", variant: str | None = None, speed: int = 160,
          pitch: int = 50) -> Tensor:
    """Synthesise `text` -> waveform (L,) float32 at 16 kHz, amplitude in [-1, 1] (not normalised).

    voice: an espeak-ng English accent, e.g. "en-us", "en-gb-scotland" (`espeak-ng --voices=en`).
    variant: a voice variant such as "m3", "f2", "klatt" (`espeak-ng --voices=variant`), or None.
    speed: words per minute (espeak-ng's default is 175). pitch: 0-99 (default 50).
    """
    if not text.strip():
        raise ValueError("speak() got an empty text; give at least one word")
    check_voice(voice, variant)
    result = subprocess.run(espeak_command(text, voice, variant, speed, pitch), capture_output=True)
    message = result.stderr.decode(errors="replace").strip()
    if result.returncode != 0 or not result.stdout or message:
        raise ValueError(f"espeak-ng failed for voice={voice!r}, variant={variant!r}: {message or 'no audio'}; "
                         "list the accents with `espeak-ng --voices=en` and the variants with "
                         "`espeak-ng --voices=variant`")
    samples, rate = soundfile.read(io.BytesIO(result.stdout), dtype="float32")
    return resample(torch.from_numpy(samples), rate, SAMPLE_RATE)
