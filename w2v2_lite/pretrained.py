"""Released weights: a folder with `model.safetensors` and `config.json` beside it.

    save_pretrained(model, "my-release")                  # any of the three models
    model = load_pretrained("my-release")                 # the same class, in eval mode
    model = load_pretrained(shipped_release("tiny"))      # the pretrained tiny model

safetensors holds tensors only, so loading runs no code (unlike a pickled checkpoint);
`config.json` holds the `ModelConfig` and which model the weights are for. Training
checkpoints, which also carry the optimiser and the RNG states, are `training.checkpoint`'s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from .config import ModelConfig
from .models import Wav2Vec2ForCTC, Wav2Vec2ForPreTraining, Wav2Vec2Model

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MODEL_CLASSES = {cls.__name__: cls for cls in (Wav2Vec2Model, Wav2Vec2ForPreTraining, Wav2Vec2ForCTC)}


def save_pretrained(model: nn.Module, folder: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write `model`'s weights (fp32 safetensors) and config into `folder`; returns the folder.

    extra: more JSON-friendly facts to keep in config.json (the seed, the command that
    trained it, its final metrics). Files are written under temporary names and renamed,
    so a reader never sees half a release.
    """
    from safetensors.torch import save_file

    name = type(model).__name__
    if name not in MODEL_CLASSES:
        raise TypeError(f"save_pretrained takes one of {sorted(MODEL_CLASSES)}, not {name}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().float().contiguous().cpu() if value.is_floating_point() else value.cpu()
             for key, value in model.state_dict().items()}
    description = {"model_class": name, "config": model.config.to_dict(), **(extra or {})}
    weights_tmp, config_tmp = folder / (WEIGHTS_FILE + ".tmp"), folder / (CONFIG_FILE + ".tmp")
    save_file(state, str(weights_tmp), metadata={"format": "pt", "model_class": name})
    config_tmp.write_text(json.dumps(description, indent=2) + "\n")
    os.replace(weights_tmp, folder / WEIGHTS_FILE)
    os.replace(config_tmp, folder / CONFIG_FILE)
    return folder


def read_release_config(folder: str | os.PathLike) -> dict[str, Any]:
    """config.json of a release folder, with a clear error when it is not one."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{folder} is not a w2v2_lite release: it needs {WEIGHTS_FILE} and {CONFIG_FILE} "
                                "(written by w2v2_lite.pretrained.save_pretrained)")
    return json.loads(path.read_text())


def load_pretrained(folder: str | os.PathLike, device: str = "cpu") -> nn.Module:
    """The model saved by `save_pretrained`, on `device`, in eval mode."""
    from safetensors.torch import load_file

    description = read_release_config(folder)
    name = description.get("model_class")
    if name not in MODEL_CLASSES:
        raise ValueError(f"{Path(folder) / CONFIG_FILE}: model_class {name!r} is not one of {sorted(MODEL_CLASSES)}")
    model = MODEL_CLASSES[name](ModelConfig.from_dict(description["config"]))
    state = load_file(str(Path(folder) / WEIGHTS_FILE), device="cpu")
    model.load_state_dict(state)
    return model.to(device).eval()


def shipped_release(name: str = "tiny", build: bool = True) -> Path:
    """The folder of release `name` (`make pretrained` builds "tiny"), built first when missing.

    Looked for in data/generated/pretrained/NAME of the checkout the package runs from (an
    editable install, as after `make setup`), then of the current folder and its parents,
    then in ~/.cache/w2v2-lite/pretrained/NAME. Where none has it and `build` is true, it is
    built from its recipe (`w2v2_lite.training.release.build_release`: the corpus, then the
    pretraining, about 25 minutes on a 2-core CPU, resumable); with `build=False` a
    FileNotFoundError says which command builds it.
    """
    from .training.release import build_release, cache_home, default_release_folder, is_release, recipe

    recipe(name)  # an unknown name raises ValueError with the names there are
    relative = Path("data") / "generated" / "pretrained" / name
    here = Path.cwd().resolve()
    for folder in (default_release_folder(name), *(folder / relative for folder in (here, *here.parents)),
                   cache_home() / "pretrained" / name):
        if is_release(folder):
            return folder
    if not build:
        raise FileNotFoundError(f"the release {name!r} is not built yet ({relative} or {cache_home() / 'pretrained'}): "
                                f"run `make pretrained` (or `w2v2-lite release {name}`) in the repository, "
                                f"or call shipped_release({name!r}) to build it")
    return build_release(name)
