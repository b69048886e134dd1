"""Released weights: a folder with `model.safetensors` and `config.json` beside it.

    save_pretrained(model, "data/pretrained/tiny")        # any of the three models
    model = load_pretrained("data/pretrained/tiny")       # the same class, in eval mode

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


# The releases that the repository ships under data/pretrained/, and the files of each.
SHIPPED = ("tiny",)
SHIPPED_FILES = (WEIGHTS_FILE, CONFIG_FILE, "train_log.jsonl", "README.md")


def repository_url() -> str | None:
    """[project.urls] Repository of the installed package (pyproject.toml), or None."""
    from importlib import metadata

    try:
        urls = metadata.metadata("w2v2-lite").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        return None
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "repository":
            return url.strip().rstrip("/")
    return None


def shipped_release(name: str = "tiny", download: bool = True) -> Path:
    """The folder of a release that the repository ships in data/pretrained/NAME.

    Looked for in the checkout the package runs from (an editable install, as after
    `make setup`), then in the current folder and its parents, then in
    ~/.cache/w2v2-lite/pretrained/NAME. Where none has it (a pip install from git, as in
    Colab) and `download` is true, its files are fetched from the repository's main branch
    into that cache. Raises FileNotFoundError, saying what to do, when it cannot be had.
    """
    if name not in SHIPPED:
        raise ValueError(f"no shipped release {name!r}: the repository ships {list(SHIPPED)}")
    relative = Path("data") / "pretrained" / name
    here = Path.cwd().resolve()
    candidates = [Path(__file__).resolve().parents[1] / relative,
                  *(folder / relative for folder in (here, *here.parents))]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "w2v2-lite" / "pretrained" / name
    for folder in [*candidates, cache]:
        if (folder / WEIGHTS_FILE).is_file() and (folder / CONFIG_FILE).is_file():
            return folder
    url = repository_url()
    if not download or url is None:
        raise FileNotFoundError(f"the shipped release {relative} is not on this machine: run from a clone "
                                "of the repository (it is committed there), or allow download=True")
    if not url.startswith("https://github.com/"):
        raise FileNotFoundError(f"{relative} is not here, and {url} is not a GitHub repository to fetch it "
                                f"from: copy the folder from a clone into {cache}")
    return _download_release(f"{url.replace('https://github.com/', 'https://raw.githubusercontent.com/')}"
                             f"/main/{relative.as_posix()}", cache)


def _download_release(base_url: str, folder: Path) -> Path:
    """Fetch SHIPPED_FILES from base_url into folder, all or none: a partial download is never left."""
    import shutil
    import urllib.error
    import urllib.request

    partial = folder.with_name(folder.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        for file in SHIPPED_FILES:
            url = f"{base_url}/{file}"
            try:
                with urllib.request.urlopen(url, timeout=60) as response, open(partial / file, "wb") as out:
                    shutil.copyfileobj(response, out, 1 << 20)
            except (urllib.error.URLError, OSError) as error:
                raise FileNotFoundError(f"could not fetch {url} ({error}): without a network, run from a "
                                        f"clone of the repository, or copy its data/pretrained/{folder.name} "
                                        f"folder to {folder}") from error
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder
