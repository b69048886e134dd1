"""The project's metadata agrees with itself: pyproject.toml, environment.yml, requirements.lock."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements |= set(extra)
    return {r.replace(" ", "") for r in requirements}


def _environment_pip_requirements() -> set[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    pip_lines = []
    for line in lines[start + 1:]:
        if not line.startswith("      - "):
            break
        pip_lines.append(line.strip()[2:].replace(" ", ""))
    return set(pip_lines)


def test_environment_yml_matches_pyproject():
    assert _environment_pip_requirements() == _pyproject_requirements()


def test_extras_are_the_documented_ones():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert {_name(r) for r in project["dependencies"]} == {"torch", "numpy", "soundfile", "tqdm", "safetensors"}
    assert {_name(r) for r in extras["notebooks"]} == {"jupyterlab", "ipywidgets", "anywidget", "matplotlib", "librosa",
                                                        "jupyter-book"}
    assert {_name(r) for r in extras["audio"]} == {"torchaudio", "flashlight-text"}
    assert {_name(r) for r in extras["dev"]} == {"pytest", "nbval", "transformers", "tensorboard", "playwright"}
    assert project["requires-python"] == ">=3.10"


def test_lock_pins_every_dependency_within_its_range():
    from packaging.requirements import Requirement

    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[_name(name)] = version
    assert pins["torch"] == "2.11.0" and pins["torchaudio"] == "2.11.0"
    for requirement in map(Requirement, _pyproject_requirements()):
        name = _name(requirement.name)
        assert name in pins, f"{name} is not pinned in requirements.lock"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {requirement.specifier}"


def test_import_is_cheap():
    """`import w2v2_lite` must not import torch or build anything."""
    code = "import sys, w2v2_lite; assert 'torch' not in sys.modules, 'torch imported at import time'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
