"""The notebooks as saved: what the book renders and what a Colab reader opens.

Fast checks on notebooks/*.ipynb and their saved outputs; nothing is executed here
(`make test` runs the notebooks under nbval, `make book` executes and renders them).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# The book's code blocks show 90 columns before they cut a line off; keep a margin.
MAX_COLUMNS = 88
# Paths of the machine that ran a notebook; a saved output must not show them.
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|usr|tmp|root|home)/|site-packages")
# Payloads of images and audio are base64, whose alphabet includes "/": not text to scan.
BASE64_PAYLOAD = re.compile(r"base64,[A-Za-z0-9+/=\s]+")


def _notebook(path: Path) -> dict:
    return json.loads(path.read_text())


def _code_cells(path: Path) -> list[dict]:
    return [cell for cell in _notebook(path)["cells"] if cell["cell_type"] == "code"]


def _outputs(path: Path):
    """(index of the code cell, output) for every saved output of a notebook."""
    for index, cell in enumerate(_code_cells(path)):
        for output in cell.get("outputs", []):
            yield index, output


def _text(value: str | list[str]) -> str:
    return value if isinstance(value, str) else "".join(value)


def _output_text(output: dict) -> str:
    """The text a reader sees of one output: stream text, plain-text results, tracebacks."""
    if output["output_type"] == "stream":
        return _text(output["text"])
    if output["output_type"] == "error":
        return "\n".join(output.get("traceback", []))
    data = output.get("data", {})
    rich = any(key.startswith(("image/", "text/html")) for key in data)
    return "" if rich else _text(data.get("text/plain", ""))


def _id(path: Path) -> str:
    return path.stem


def test_there_are_notebooks():
    assert [path.name for path in NOTEBOOKS][:2] == ["01_feature_encoder.ipynb", "02_speech_data.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_code_lines_fit_the_book(path):
    long = [f"cell {index}: {len(line.expandtabs())} columns: {line.strip()[:60]}"
            for index, cell in enumerate(_code_cells(path))
            for line in _text(cell["source"]).splitlines() if len(line.expandtabs()) > MAX_COLUMNS]
    assert not long, f"code lines over {MAX_COLUMNS} columns:\n" + "\n".join(long)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_output_lines_fit_the_book(path):
    long = [f"cell {index}: {len(line.expandtabs())} columns: {line.strip()[:60]}"
            for index, output in _outputs(path)
            for line in _output_text(output).splitlines() if len(line.expandtabs()) > MAX_COLUMNS]
    assert not long, f"saved output lines over {MAX_COLUMNS} columns:\n" + "\n".join(long)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_each_table_is_one_output(path):
    # Two stream outputs of the same name in a row render as two boxes: a table's header
    # in one and its rows in the next. Print a table with one print call.
    split = []
    for index, cell in enumerate(_code_cells(path)):
        outputs = cell.get("outputs", [])
        split += [f"cell {index}: outputs {i} and {i + 1} are both {before['name']}"
                  for i, (before, after) in enumerate(zip(outputs, outputs[1:]))
                  if before["output_type"] == after["output_type"] == "stream"
                  and before["name"] == after["name"]]
    assert not split, "\n".join(split)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_saved_outputs_are_clean(path):
    problems = []
    for index, output in _outputs(path):
        if output["output_type"] == "error":
            problems.append(f"cell {index}: an error: {output.get('ename')}")
        elif output["output_type"] == "stream" and output["name"] == "stderr":
            problems.append(f"cell {index}: writes to stderr: {_text(output['text'])[:120]!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_saved_outputs_show_no_machine_paths(path):
    found = []
    for index, output in _outputs(path):
        texts = [_text(output.get("text", "")), "\n".join(output.get("traceback", []))]
        texts += [_text(value) for key, value in output.get("data", {}).items()
                  if key.startswith("text/") or key.endswith(("json", "javascript"))]
        for text in texts:
            text = BASE64_PAYLOAD.sub("base64,", text)
            found += [f"cell {index}: ...{text[max(0, m.start() - 40):m.end() + 40]}..."
                      for m in MACHINE_PATH.finditer(text)]
    assert not found, "saved outputs show this machine's paths:\n" + "\n".join(found)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_saved_outputs_come_from_one_run_top_to_bottom(path):
    counts = [cell["execution_count"] for cell in _code_cells(path)]
    assert counts == list(range(1, len(counts) + 1)), f"execution counts {counts}: re-execute the notebook"


# ------------------------------------------------------------------------ Colab
def _repository_url() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


def _setup_cell(path: Path) -> dict:
    return _code_cells(path)[0]


def test_repository_url_is_a_github_repository():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", _repository_url())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_colab_link_and_repo_url_match_pyproject(path):
    url = _repository_url()
    owner_repo = url.removeprefix("https://github.com/")
    first = _notebook(path)["cells"][0]
    assert first["cell_type"] == "markdown"
    badge = f"[Open in Colab](https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/{path.name})"
    assert badge in _text(first["source"]), f"first cell lacks {badge}; run `make colab-links`"
    assert re.findall(r'^REPO_URL = "(.*)"$', _text(_setup_cell(path)["source"]), re.MULTILINE) == [url], \
        "the set-up cell's REPO_URL differs from pyproject.toml; run `make colab-links`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_no_image_from_another_host_in_markdown(path):
    # the built book makes no request to other hosts: no remote badge images
    for cell in _notebook(path)["cells"]:
        if cell["cell_type"] == "markdown":
            source = _text(cell["source"])
            assert not re.search(r"!\[[^\]]*\]\(\s*(https?:)?//", source)
            assert not re.search(r"<img[^>]+src=[\"']?(https?:)?//", source, re.IGNORECASE)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_setup_cell_is_colab_only_and_hidden_in_the_book(path):
    cell = _setup_cell(path)
    source = _text(cell["source"])
    assert "remove-cell" in cell["metadata"].get("tags", []), "hide the set-up cell in the book"
    # everything that installs runs under the Colab check
    body = source.split('if "google.colab" in sys.modules:', 1)
    assert len(body) == 2 and "subprocess.run" not in body[0]
    assert "SystemExit" in body[1], "a failed install should end with a message, not a traceback"
    assert not cell.get("outputs"), "outside Colab the set-up cell prints nothing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_setup_cell_does_nothing_outside_colab(path, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: calls.append(args))
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(_text(_setup_cell(path)["source"]), f"{path.name}[set-up]", "exec"), {})
    assert calls == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_setup_cell_explains_a_failed_install(path, monkeypatch):
    # In Colab, with a repository that cannot be reached: a short message naming the fix.
    def failing_run(command, **kwargs):
        return subprocess.CompletedProcess(command, 128, "", "fatal: repository not found")

    monkeypatch.setattr(subprocess, "run", failing_run)
    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    monkeypatch.setattr("shutil.which", lambda name, *args, **kwargs: f"/bin/{name}")  # espeak-ng there
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *args: None)  # w2v2_lite not yet
    with pytest.raises(SystemExit) as stopped:
        exec(compile(_text(_setup_cell(path)["source"]), f"{path.name}[set-up]", "exec"), {})
    message = str(stopped.value)
    assert "repository not found" in message
    assert "pyproject.toml" in message and "make colab-links" in message


def test_colab_links_tool_agrees():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "colab_links.py"), "--check"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_makefile_has_colab_links_target():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^colab-links:", makefile, re.MULTILINE)
    assert "tools/colab_links.py" in makefile


# ------------------------------------------------------------------------ nbval
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_some_outputs_are_compared_by_nbval(path):
    # `pytest --nbval-lax` compares only the outputs of cells tagged nbval-check-output (a
    # tag rather than nbval's comment, which the book would show); each notebook tags its
    # deterministic ones (no timings, no synthesised audio).
    marked = [cell for cell in _code_cells(path) if "nbval-check-output" in cell.get("metadata", {}).get("tags", [])]
    assert not any("NBVAL_CHECK_OUTPUT" in _text(cell["source"]) for cell in _code_cells(path))
    assert marked, "mark the cells whose output is the same on every machine"
    for cell in marked:
        source = _text(cell["source"])
        assert "perf_counter" not in source and "speak(" not in source
        assert cell.get("outputs"), "a compared cell needs its saved output"


# ------------------------------------------------------------- the chapter pattern
# Every chapter opens with what the reader will learn and what they need, numbers its figures
# and captions each one, and ends with a summary and exercises whose hints are hidden until
# asked for (<details>, which Jupyter, Colab and the book all fold).
def _markdown(path: Path) -> list[str]:
    return [_text(cell["source"]) for cell in _notebook(path)["cells"] if cell["cell_type"] == "markdown"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_chapter_opens_with_goals_and_prerequisites(path):
    first = _markdown(path)[0]
    number = int(path.name.split("_", 1)[0])
    assert re.match(rf"# {number}\. \S", first), f"the title should read '# {number}. ...'"
    assert "**In this chapter you will**" in first and "**What you need**" in first


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_chapter_ends_with_summary_and_exercises_with_hidden_hints(path):
    text = "\n".join(_markdown(path))
    assert "\n## Summary" in "\n" + text
    exercises = text.split("## Exercises", 1)
    assert len(exercises) == 2, "no '## Exercises' section"
    items = re.findall(r"^\d\. ", exercises[1], re.MULTILINE)
    hints = re.findall(r"<details><summary>Hint</summary>[\s\S]+?</details>", exercises[1])
    assert 3 <= len(items) <= 4, f"{len(items)} exercises; the pattern is 3 or 4"
    assert len(hints) == len(items), f"{len(items)} exercises but {len(hints)} hints"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_every_figure_is_numbered_and_captioned(path):
    cells = _notebook(path)["cells"]
    numbers = []
    for index, cell in enumerate(cells):
        images = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        following = _text(cells[index + 1]["source"]) if index + 1 < len(cells) else ""
        if images:
            assert cells[index + 1]["cell_type"] == "markdown" and following.startswith("*Figure "), \
                f"cell {index} draws a figure that the next cell does not caption ('*Figure N: ...*')"
        if cell["cell_type"] == "markdown":
            numbers += [int(n) for n in re.findall(r"^\*Figure (\d+):", _text(cell["source"]), re.MULTILINE)]
    assert numbers == list(range(1, len(numbers) + 1)), f"figure numbers {numbers}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_chapter_runs_on_any_device_and_reports_its_time(path):
    code = "\n".join(_text(cell["source"]) for cell in _code_cells(path))
    if re.search(r"\b(Wav2Vec2\w*|FeatureEncoder|Trainer|load_pretrained)\(", code):  # runs a model
        assert "torch.cuda.is_available()" in code, "choose the GPU when there is one"
    assert "notebook ran in" in _text(_code_cells(path)[-1]["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_quick_mode_is_read_from_one_variable(path):
    # make test sets W2V2_LITE_QUICK=1 to shorten live training; no chapter invents another switch
    code = "\n".join(_text(cell["source"]) for cell in _code_cells(path))
    names = set(re.findall(r"environ(?:\.get)?\(?\[?[\"'](W2V2\w*)", code))
    assert names <= {"W2V2_LITE_QUICK", "W2V2_LITE_FAIRSEQ_CKPT"}, names
    if "Trainer(" in code:
        assert "W2V2_LITE_QUICK" in names, "a chapter that trains live must honour quick mode"
