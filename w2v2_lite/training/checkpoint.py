"""Training checkpoints: everything needed to resume a run exactly, written atomically.

A checkpoint holds the model, the optimiser, the update count (the learning rate and
the Gumbel temperature are functions of it), the data position (epoch and batch), the
RNG states (the global one, which dropout and the Gumbel noise use, and the trainer's
generator, which draws masks and negatives) and the best validation score so far.

Files are `checkpoint_{update:07d}.pt`, plus `checkpoint_best.pt` and
`checkpoint_last.pt` (copies). Each is written under a temporary name and renamed, so an
interrupted write never leaves a broken checkpoint; the oldest beyond `keep_last` are
removed. Everything in them is tensors and plain Python values, so they load with
`torch.load(weights_only=True)`: loading runs no code.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = re.compile(r"checkpoint_(\d{7})\.pt$")


def rng_states(generator: torch.Generator) -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    generator.set_state(states["generator"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def atomic_save(payload: dict[str, Any], path: Path) -> None:
    """torch.save to a temporary file in the same folder, flushed, then renamed over `path`."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def save_checkpoint(folder: Path, payload: dict[str, Any], update: int, keep_last: int,
                    is_best: bool = False) -> Path:
    """Write checkpoint_{update}.pt (and _last, _best), keep the newest `keep_last`; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"checkpoint_{update:07d}.pt"
    atomic_save(payload, path)
    for alias, wanted in (("checkpoint_last.pt", True), ("checkpoint_best.pt", is_best)):
        if wanted:
            temporary = folder / (alias + ".tmp")
            shutil.copyfile(path, temporary)
            os.replace(temporary, folder / alias)
    numbered = sorted(p for p in folder.iterdir() if CHECKPOINT.match(p.name))
    for old in numbered[:-keep_last] if keep_last > 0 else []:
        old.unlink()
    return path


def latest_checkpoint(folder: Path) -> Path | None:
    """checkpoint_last.pt of `folder`, or None when the run has none yet."""
    path = Path(folder) / "checkpoint_last.pt"
    return path if path.is_file() else None


def load_checkpoint(path: Path, trust_checkpoint: bool = False) -> dict[str, Any]:
    """Read a checkpoint; `weights_only=True` unless the caller trusts the file's source."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except Exception as error:  # a truncated or foreign file: say which and what to do
        raise ValueError(f"{path} is not a readable w2v2_lite checkpoint ({error}); delete it to start "
                         "over, or point at another checkpoint") from error
