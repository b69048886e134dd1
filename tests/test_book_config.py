"""The book's configuration: everything a page loads is served from the book itself.

Fast checks on book/_config.yml and book/_toc.yml; the book is not built here (`make book`
builds it and runs book/check_offline.py on the result).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
REMOTE = re.compile(r"^(https?:)?//", re.IGNORECASE)


def _config() -> dict:
    return yaml.safe_load((BOOK / "_config.yml").read_text())


def _sphinx_config() -> dict:
    return _config()["sphinx"]["config"]


def test_static_path_is_the_vendor_folder_and_not_underscore_static():
    # jupyter-book adds every .js and .css under book/_static to every page, so the
    # vendored libraries must live elsewhere.
    static = _sphinx_config()["html_static_path"]
    assert static == ["assets/vendor"]
    assert not (BOOK / "_static").exists()
    assert "book/assets/vendor/" in (ROOT / ".gitignore").read_text().splitlines()


def test_mathjax_is_served_locally():
    path = _sphinx_config()["mathjax_path"]
    assert not REMOTE.match(path), f"mathjax_path {path!r} points at the internet"
    assert path.startswith("mathjax/") and path.endswith(".js")


def test_ipywidgets_scripts_are_served_locally():
    scripts = _sphinx_config()["nb_ipywidgets_js"]
    assert scripts, "nb_ipywidgets_js must be set, or myst-nb falls back to its CDN defaults"
    for path, attributes in scripts.items():
        assert not REMOTE.match(path), f"widget script {path!r} points at the internet"
        for name, value in (attributes or {}).items():
            assert not REMOTE.match(str(value)), f"{path}: attribute {name}={value!r} points at the internet"
    assert any(path.endswith("require.js") for path in scripts)
    assert any(path.endswith("embed-amd.js") for path in scripts)


def test_vendored_files_come_from_the_assets_target():
    # Every local path above must be one that `make assets` creates under book/assets/vendor.
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^assets:", makefile, re.MULTILINE)
    assert re.search(r"^book:.*\bassets\b", makefile, re.MULTILINE)
    for directory in ("mathjax", "html-manager", "requirejs"):
        assert f"$(VENDOR)/{directory}" in makefile


def test_features_that_call_out_are_off():
    config = _config()
    assert config["launch_buttons"]["thebe"] is False
    for key in ("binderhub_url", "jupyterhub_url", "colab_url", "deepnote_url"):
        assert not config["launch_buttons"].get(key)
    assert not any(config["html"]["comments"].values())
    analytics = config["html"].get("analytics", {})
    assert not analytics.get("google_analytics_id") and not analytics.get("plausible_analytics_domain")


def test_notebooks_run_at_build_time_on_cpu_budget():
    execute = _config()["execute"]
    assert execute["execute_notebooks"] in ("cache", "force")
    assert execute["timeout"] >= 300
    assert execute["allow_errors"] is False


def _toc_files(entries: list[dict]) -> list[str]:
    files = []
    for entry in entries:
        if "file" in entry:
            files.append(entry["file"])
        files += _toc_files(entry.get("sections", []))
        for part in entry.get("parts", []):
            files += _toc_files(part.get("chapters", []))
    return files


def test_every_toc_entry_exists():
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    files = [toc["root"]] + _toc_files(toc.get("chapters", [])) + _toc_files(toc.get("parts", []))
    assert files[0] == "intro"
    assert "notebooks/01_feature_encoder" in files
    for name in files:
        candidates = [BOOK / f"{name}{suffix}" for suffix in (".md", ".ipynb", ".rst")]
        assert any(path.is_file() for path in candidates), f"_toc.yml names {name!r}, but no such file in book/"


def test_notebooks_folder_is_linked_into_the_book():
    link = BOOK / "notebooks"
    assert link.is_symlink() and link.resolve() == (ROOT / "notebooks").resolve()
