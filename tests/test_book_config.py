"""The book's configuration: everything a page loads is served from the book itself.

Fast checks on book/_config.yml and book/_toc.yml; the book is not built here (`make book`
builds it and runs book/check_offline.py on the result).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

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
    config = _sphinx_config()
    assert config["html_static_path"] == ["assets/vendor", "assets/css"]
    assert not (BOOK / "_static").exists()
    assert "book/assets/vendor/" in (ROOT / ".gitignore").read_text().splitlines()
    # The one stylesheet of our own is tracked and named in the config.
    assert config["html_css_files"] == ["w2v2-lite.css"]
    assert (BOOK / "assets" / "css" / "w2v2-lite.css").is_file()
    assert not list((BOOK / "assets" / "css").glob("*.js"))


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
    # Launch buttons are plain links; the only one on is Colab's, which fetches nothing until clicked.
    for key in ("binderhub_url", "jupyterhub_url", "deepnote_url"):
        assert not config["launch_buttons"].get(key)
    assert not any(config["html"]["comments"].values())
    analytics = config["html"].get("analytics", {})
    assert not analytics.get("google_analytics_id") and not analytics.get("plausible_analytics_domain")


def test_launch_buttons_open_the_notebooks_in_colab():
    config = _config()
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    repository = config["repository"]
    # The launch link is {colab}/github/OWNER/REPO/blob/BRANCH/{path_to_book}/{page}.ipynb: the
    # pages are notebooks/NAME, which is where the notebooks lie in the repository.
    assert repository["path_to_book"] == "" and repository["branch"] == "main"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert repository["url"] == pyproject["project"]["urls"]["Repository"]


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


def test_no_thebe_extension_and_otherwise_jupyter_books_defaults():
    # sphinx-thebe puts `const THEBE_JS_URL = ...` on every page twice under Sphinx 7.4, a
    # SyntaxError in every page's console; the book has no Thebe, so the extension is left out.
    extensions = _sphinx_config()["extensions"]
    assert "sphinx_thebe" not in extensions
    jupyter_book_config = pytest.importorskip("jupyter_book.config")
    defaults = jupyter_book_config.get_default_sphinx_config()["extensions"]
    # plus the book's own extension (book/_ext), which must be named in this list to load
    assert extensions == [name for name in defaults if name != "sphinx_thebe"] + ["widget_state"]
    assert _config()["sphinx"]["local_extensions"] == {"widget_state": "_ext"}
    assert (BOOK / "_ext" / "widget_state.py").is_file()


def test_pages_need_nothing_that_logs_a_console_error():
    config = _sphinx_config()
    assert config["nb_merge_streams"] is True  # one output box per stream of a cell
    assert config["html_context"]["default_mode"] in ("auto", "light", "dark")
    icon = BOOK / _config()["html"]["favicon"]
    assert icon.is_file() and icon.name == "favicon.ico"
    # html_extra_path copies the icon to the site's root, where browsers look for it
    assert any((BOOK / folder / "favicon.ico").is_file() for folder in config["html_extra_path"])


def test_check_offline_counts_console_errors():
    # book/check_offline.py --browser fails on these; the events are what Chromium sends
    sys.path.insert(0, str(BOOK))
    try:
        import check_offline
    finally:
        sys.path.remove(str(BOOK))
    events = [
        {"method": "Runtime.exceptionThrown", "params": {"exceptionDetails": {
            "text": "Uncaught", "url": "http://127.0.0.1/intro.html", "lineNumber": 61, "exception": {
                "description": "SyntaxError: Identifier 'THEBE_JS_URL' has already been declared"}}}},
        {"method": "Runtime.consoleAPICalled", "params": {"type": "error", "args": [{"value": "bad mode"}]}},
        {"method": "Runtime.consoleAPICalled", "params": {"type": "log", "args": [{"value": "fine"}]}},
        {"method": "Log.entryAdded", "params": {"entry": {"level": "error", "source": "network",
                                                          "text": "Failed to load resource: 404",
                                                          "url": "http://127.0.0.1/favicon.ico"}}},
        {"method": "Log.entryAdded", "params": {"entry": {"level": "warning", "text": "a warning"}}},
    ]
    errors = check_offline.console_errors(events)
    assert errors == [
        "uncaught SyntaxError: Identifier 'THEBE_JS_URL' has already been declared "
        "(http://127.0.0.1/intro.html:62)",
        "console.error: bad mode",
        "network: Failed to load resource: 404 http://127.0.0.1/favicon.ico",
    ]


def test_the_toc_lists_every_chapter_in_order():
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    chapters = _toc_files(toc.get("chapters", []))
    notebooks = sorted(f"notebooks/{path.stem}" for path in (ROOT / "notebooks").glob("*.ipynb"))
    assert chapters == notebooks, "book/_toc.yml should list notebooks/NN_*.ipynb, in order"
