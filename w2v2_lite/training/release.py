"""Releases: a run's checkpoint as a folder that `load_pretrained` reads, and the releases
the repository builds from a recipe instead of storing their weights in git.

    w2v2-lite release tiny                  # = make pretrained: corpus, pretraining, export
    export_release("runs/pretrain-tiny", "my-release", checkpoint="last")

A release folder holds model.safetensors, config.json (the model config, the seed, the
command, the dev metrics at the exported update, the wall time) and the run's log as
train_log.jsonl. `build_release(name)` makes the corpus its recipe names (a no-op once
made), pretrains on it (resuming the run's checkpoints after an interruption) and exports
the result, into data/generated/pretrained/NAME in a checkout of the repository, else into
~/.cache/w2v2-lite/pretrained/NAME.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any, Callable

RELEASE_LOG = "train_log.jsonl"

# The precision every release trains in, whatever precision="auto" would pick on the CPU
# that builds it. The reference runs in data/pretrained/ trained in fp32; a build in bf16
# (what auto picks where bf16 pays) differs from them from the first update. To build in
# another precision, pass overrides={"precision": ...}: the release then records it as
# not the recipe's.
RELEASE_PRECISION = "fp32"

# What each release is trained from. "train" holds the same values as
# configs/<config>.json (tests/test_shipped_model.py checks that they agree); the corpus
# and the run folder are filled in where it is built. The paths of configs/ are not used,
# so that a package installed without the repository (Colab) can build it too.
RECIPES: dict[str, dict[str, Any]] = {
    "tiny": {
        "description": "the tiny model (2.3 M parameters) pretrained for 4,800 updates on the 2 hours "
                       "of the experiment corpus; about 25 minutes on a 2-core CPU",
        "config": "pretrain-tiny",
        "corpus": {"preset": "experiment"},  # a CorpusConfig preset, and "set": {field: value} to change
        "checkpoint": "last",
        "train": {
            "task": "pretrain",
            "model_preset": "tiny",
            "model": {},
            "max_updates": 4800,
            "learning_rate": 0.0005,
            "warmup_fraction": 0.08,
            "weight_decay": 0.01,
            "max_batch_samples": 256000,
            "max_batch_size": 4,
            "crop_samples": 64000,
            "update_freq": 1,
            "clip_norm": 10.0,
            "gumbel_anneal_fraction": 0.7,
            "eval_every": 400,
            "save_every": 400,
            "seed": 1,
        },
    },
}


def recipe_hash(name: str) -> str:
    """sha256 of release `name`'s recipe: what decides its weights (not where it was built)."""
    return hashlib.sha256(json.dumps(recipe(name), sort_keys=True).encode()).hexdigest()


def recipe(name: str) -> dict[str, Any]:
    if name not in RECIPES:
        raise ValueError(f"no release {name!r}: the repository builds {sorted(RECIPES)}")
    return RECIPES[name]


def checkout_root() -> Path | None:
    """The repository this package runs from (an editable install, as after `make setup`), or None."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "configs").is_dir() else None


def cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "w2v2-lite"


def default_release_folder(name: str) -> Path:
    """Where `build_release(name)` writes: the checkout's data/generated/pretrained/NAME, else the cache."""
    root = checkout_root()
    return (root / "data" / "generated" / "pretrained" if root else cache_home() / "pretrained") / name


def default_corpus_folder(preset: str) -> Path:
    root = checkout_root()
    return (root / "data" / "generated" if root else cache_home() / "corpora") / preset


def is_release(folder: Path) -> bool:
    from ..pretrained import CONFIG_FILE, WEIGHTS_FILE

    return (folder / WEIGHTS_FILE).is_file() and (folder / CONFIG_FILE).is_file()


def export_release(run_dir: str | os.PathLike, out: str | os.PathLike, checkpoint: str = "best",
                   command: str | None = None, extra: dict[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """Write run_dir's `checkpoint` (best, last or a file) as a release folder `out`.

    Only a checkpoint written at a dev evaluation can be exported, so that config.json's
    metrics are measured ones. Returns (the folder, its config.json facts). Raises
    ValueError or FileNotFoundError, naming the folder and the fix, on a bad run folder.
    """
    import torch

    from ..cli import ConfigError, load_for_evaluation
    from ..plots import read_log
    from ..pretrained import save_pretrained

    folder = Path(run_dir)
    if not (folder / "log.jsonl").is_file():
        raise FileNotFoundError(f"{folder} is no run folder: it has no log.jsonl (train with pretrain or finetune)")
    try:
        model, train_values, path, update = load_for_evaluation(str(folder), checkpoint)
    except ConfigError as error:
        raise ValueError(str(error)) from None
    records = read_log(folder)
    at_update = next((record for record in records if record["update"] == update), None)
    if at_update is None or not any(key.startswith("dev_") for key in at_update):
        raise ValueError(f"{path} is from update {update}, which has no dev evaluation in {folder}/log.jsonl; "
                         "export a checkpoint written at an evaluation (best, or one at eval_every)")
    facts = {
        "update": update,
        "seed": train_values["seed"],
        "command": command or f"w2v2-lite {train_values['task']} {folder / 'train_config.json'}",
        "metrics": {key: value for key, value in at_update.items() if key.startswith("dev_")},
        "train_config": train_values,
        "wall_s": round(sum(record.get("wall_s", 0.0) for record in records if record["update"] <= update), 1),
        "precision": at_update.get("precision"),
        "trained_with": {"torch": torch.__version__, "python": platform.python_version(),
                         "cpu_threads": torch.get_num_threads()},
        "log": RELEASE_LOG,
        **(extra or {}),
    }
    out = save_pretrained(model, out, extra=facts)
    shutil.copyfile(folder / "log.jsonl", out / RELEASE_LOG)
    return out, facts


def build_release(name: str = "tiny", folder: str | os.PathLike | None = None,
                  corpus: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None,
                  progress: bool = True, echo: Callable[[str], Any] = print) -> Path:
    """Make release `name` from its recipe, or find it made -> its folder.

    folder: where it goes (default `default_release_folder(name)`); the pretraining run's
    checkpoints go beside it, in NAME-run-<recipe hash>-<precision>, so that Ctrl-C loses at most
    eval_every updates and the same call resumes. corpus: the folder of the recipe's corpus
    preset (made there when missing). overrides: TrainConfig values to change (tests; a
    release built with any is recorded as such and is not the recipe's).
    """
    from ..data.corpus import CorpusConfig, make_corpus
    from ..pretrained import read_release_config
    from .loop import TrainConfig, Trainer

    wanted = recipe(name)
    folder = Path(folder) if folder is not None else default_release_folder(name)
    digest = recipe_hash(name)
    precision = (overrides or {}).get("precision", RELEASE_PRECISION)
    if is_release(folder):
        made = read_release_config(folder)
        # overrides as config.json holds them (tuples become lists)
        if made.get("recipe_sha256") == digest and made.get("overrides", {}) == json.loads(json.dumps(overrides or {})):
            if made.get("precision") == precision:
                return folder
            echo(f"{folder} trained in {made.get('precision')}, not {precision}; building it again")
        else:
            echo(f"{folder} was built from another recipe; building it again")
    preset = wanted["corpus"]["preset"]
    corpus = Path(corpus) if corpus is not None else default_corpus_folder(preset)
    echo(f"release {name}: {wanted['description']}")
    echo(f"release {name}: the {preset} corpus in {corpus}")
    make_corpus(corpus, getattr(CorpusConfig, preset)(**wanted["corpus"].get("set", {})), progress=progress)
    values = wanted["train"] | {"train_manifest": str(corpus / "pretrain.tsv"),
                                "valid_manifest": str(corpus / "dev.tsv"),
                                "precision": precision, "progress": progress} | (overrides or {})
    # The precision is in the name: a run begun in another precision is not resumed in this one.
    run_dir = folder.with_name(f"{folder.name}-run-{digest[:10]}-{precision}")
    values["output_dir"] = str(run_dir)
    echo(f"release {name}: pretraining in {run_dir} ({values['max_updates']} updates; "
         "Ctrl-C stops at the next update, the same command resumes)")
    trainer = Trainer(TrainConfig(**values))
    trainer.train()
    if trainer.stop_requested:
        raise KeyboardInterrupt(f"release {name}: stopped; the same command resumes from {run_dir}")
    command = f"w2v2-lite pretrain configs/{wanted['config']}.json"
    out, facts = export_release(run_dir, folder, checkpoint=wanted["checkpoint"], command=command,
                                extra={"recipe": name, "recipe_sha256": digest, "built_by": f"w2v2-lite release {name}",
                                       **({"overrides": overrides} if overrides else {})})
    shown = ", ".join(f"{key} {value:.3f}" for key, value in sorted(facts["metrics"].items()))
    echo(f"release {name}: {out} (update {facts['update']}, {facts['wall_s'] / 60:.1f} min; {shown})")
    return out
