"""Speech data: audio I/O, synthetic speech, real corpora, tokenizer, batching.

- `audio`: `load_audio` (any file -> mono 16 kHz X), `resample`, `save_audio`, `AudioError`
- `espeak`: `speak` (text -> 16 kHz speech with espeak-ng)

Names are loaded from their modules on first use, so `import w2v2_lite.data` is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AudioError": "audio",
    "load_audio": "audio",
    "resample": "audio",
    "save_audio": "audio",
    "speak": "espeak",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .audio import AudioError, load_audio, resample, save_audio
    from .espeak import speak


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'w2v2_lite.data' has no attribute {name!r}")
