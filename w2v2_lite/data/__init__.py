"""Speech data: audio I/O, synthetic speech, real corpora, tokenizer, batching.

- `audio`: `load_audio` (any file -> mono 16 kHz X), `resample`, `save_audio`, `AudioError`
- `espeak`: `speak` (text -> 16 kHz speech with espeak-ng)
- `text`: `SentenceGenerator`, the grammar the synthetic corpus speaks
- `augment`: `add_noise`, `reverberate`, `change_speed`
- `corpus`: `make_corpus`, `CorpusConfig` (presets `notebooks`, `experiment`)
- `real`: `make_real_speech` (a few real recordings with transcripts, from PyPI packages)
- `corpora`: `Utterance`, `read_manifest`, `write_manifest`, `read_librispeech`, `read_librilight`
- `tokenizer`: `CharTokenizer` (32 symbols, blank at 0)
- `dataset`: `SpeechDataset`, `LengthBucketSampler`, `Collator`, `Batch`, `speech_dataloader`

Names are loaded from their modules on first use, so `import w2v2_lite.data` is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "AudioError": "audio",
    "load_audio": "audio",
    "resample": "audio",
    "save_audio": "audio",
    "speak": "espeak",
    "SentenceGenerator": "text",
    "add_noise": "augment",
    "reverberate": "augment",
    "change_speed": "augment",
    "CorpusConfig": "corpus",
    "AugmentConfig": "corpus",
    "make_corpus": "corpus",
    "make_real_speech": "real",
    "Utterance": "corpora",
    "read_manifest": "corpora",
    "write_manifest": "corpora",
    "read_librispeech": "corpora",
    "read_librilight": "corpora",
    "CharTokenizer": "tokenizer",
    "SpeechDataset": "dataset",
    "LengthBucketSampler": "dataset",
    "Collator": "dataset",
    "Batch": "dataset",
    "speech_dataloader": "dataset",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .audio import AudioError, load_audio, resample, save_audio
    from .augment import add_noise, change_speed, reverberate
    from .corpora import Utterance, read_librilight, read_librispeech, read_manifest, write_manifest
    from .corpus import AugmentConfig, CorpusConfig, make_corpus
    from .dataset import Batch, Collator, LengthBucketSampler, SpeechDataset, speech_dataloader
    from .espeak import speak
    from .real import make_real_speech
    from .text import SentenceGenerator
    from .tokenizer import CharTokenizer


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
