"""Write the repository URL from pyproject.toml into every notebook's Colab link and set-up cell.

    python tools/colab_links.py           # rewrite notebooks/*.ipynb where they differ (make colab-links)
    python tools/colab_links.py --check   # only report; exit 1 if a notebook is out of date

The URL lives in one place, `[project.urls] Repository` in pyproject.toml. From it each
notebook gets, in its first (markdown) cell, the line

    [Open in Colab](https://colab.research.google.com/github/OWNER/REPO/blob/main/notebooks/NAME.ipynb)

(a text link: the book loads no image from another host), and, in its set-up cell, the line

    REPO_URL = "https://github.com/OWNER/REPO"

from which Colab installs the package. The book's launch buttons (book/_config.yml,
`repository: url:`) take the same URL. A fork changes the URL in pyproject.toml and runs
`make colab-links`. Only those lines are touched; outputs and metadata are kept.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
BRANCH = "main"
BADGE_TEXT = "Open in Colab"
BADGE = re.compile(r"\[" + re.escape(BADGE_TEXT) + r"\]\(https://colab\.research\.google\.com/[^)\s]*\)")
REPO_URL_LINE = re.compile(r'^REPO_URL = "[^"\n]*"', re.MULTILINE)
BOOK_CONFIG = ROOT / "book" / "_config.yml"
# `  url: ...` inside the top-level `repository:` block of book/_config.yml
BOOK_REPO_LINE = re.compile(r"^(repository:\n(?:[ \t]+.*\n)*?[ \t]+url:[ \t]*)(\S*)$", re.MULTILINE)
GITHUB = re.compile(r"^https://github\.com/(?P<owner>[A-Za-z0-9-]+)/(?P<repo>[A-Za-z0-9._-]+?)(?:\.git)?/?$")


def repository_url(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """`[project.urls] Repository`, checked to be a GitHub repository (Colab opens those)."""
    urls = tomllib.loads(pyproject.read_text())["project"].get("urls", {})
    url = urls.get("Repository", "").strip()
    if not GITHUB.match(url):
        raise SystemExit(f"{pyproject.name}: [project.urls] Repository = {url!r} is not "
                         "https://github.com/OWNER/REPO; Colab can open notebooks only from GitHub")
    return url.removesuffix("/").removesuffix(".git")


def colab_url(repo_url: str, notebook: Path) -> str:
    """https://colab.research.google.com/github/OWNER/REPO/blob/main/notebooks/NAME.ipynb"""
    match = GITHUB.match(repo_url)
    assert match, repo_url
    return (f"https://colab.research.google.com/github/{match['owner']}/{match['repo']}/blob/{BRANCH}/"
            f"notebooks/{notebook.name}")


def badge(repo_url: str, notebook: Path) -> str:
    return f"[{BADGE_TEXT}]({colab_url(repo_url, notebook)})"


def setup_cell_index(cells: list[dict]) -> int | None:
    """The code cell that assigns REPO_URL, if any."""
    return next((i for i, cell in enumerate(cells)
                 if cell["cell_type"] == "code" and REPO_URL_LINE.search("".join(cell["source"]))), None)


def _set_source(cell: dict, text: str) -> None:
    cell["source"] = text.splitlines(keepends=True)


def rewrite(notebook: dict, path: Path, repo_url: str) -> list[str]:
    """Update the badge and REPO_URL of one notebook in place; returns what was wrong."""
    problems = []
    cells = notebook["cells"]
    first = cells[0]
    text = "".join(first["source"])
    wanted = badge(repo_url, path)
    if first["cell_type"] != "markdown":
        raise SystemExit(f"{path}: the first cell must be markdown (the title and the Colab link)")
    if BADGE.search(text):
        if BADGE.search(text)[0] != wanted:
            problems.append(f"Colab link is {BADGE.search(text)[0]}")
            _set_source(first, BADGE.sub(wanted, text, count=1))
    else:
        problems.append("no Colab link in the first cell")
        title, _, rest = text.partition("\n")  # the link goes right under the title
        _set_source(first, f"{title}\n\n{wanted}\n{rest}")

    index = setup_cell_index(cells)
    if index is None:
        problems.append('no set-up cell with a line REPO_URL = "..."')
    else:
        source = "".join(cells[index]["source"])
        line = f'REPO_URL = "{repo_url}"'
        if REPO_URL_LINE.search(source)[0] != line:
            problems.append(f"set-up cell has {REPO_URL_LINE.search(source)[0]}")
            _set_source(cells[index], REPO_URL_LINE.sub(line, source, count=1))
    return problems


def rewrite_book_config(text: str, repo_url: str) -> tuple[str, list[str]]:
    """book/_config.yml with its launch buttons' repository URL set; and what was wrong."""
    match = BOOK_REPO_LINE.search(text)
    if match is None:
        raise SystemExit(f"{BOOK_CONFIG}: no `repository:` block with a `url:` line for the launch buttons")
    if match[2] == repo_url:
        return text, []
    return text[:match.start(2)] + repo_url + text[match.end(2):], [f"repository url is {match[2]!r}"]


def write_notebook(path: Path, notebook: dict) -> None:
    # nbformat's own layout (indent 1, UTF-8 kept, final newline), so only edited lines show in a diff
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report out-of-date notebooks, change nothing")
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to update (default: notebooks/*.ipynb)")
    args = parser.parse_args()

    repo_url = repository_url()
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    stale = 0
    for path in paths:
        notebook = json.loads(path.read_text())
        problems = rewrite(notebook, path, repo_url)
        name = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
        if not problems:
            print(f"{name}: up to date")
            continue
        stale += 1
        if args.check:
            print(f"{name}: out of date: {'; '.join(problems)}")
        else:
            write_notebook(path, notebook)
            print(f"{name}: updated ({'; '.join(problems)})")
    if not args.notebooks:
        text, problems = rewrite_book_config(BOOK_CONFIG.read_text(), repo_url)
        if problems:
            stale += 1
            print(f"book/_config.yml: {'out of date' if args.check else 'updated'}: {'; '.join(problems)}")
            if not args.check:
                BOOK_CONFIG.write_text(text)
    if args.check and stale:
        print(f"run `make colab-links` to write {repo_url} into {stale} file(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
