"""book/check_book.py, the book's browser test, on a small site written here.

Each page below is made to pass or to fail one check: a page that logs a console error, one
that asks another host for an image, one whose slider redraws the same picture, one whose
TeX was never typeset must each fail, and a page with a working widget-like canvas and
slider, an image, an audio player and typeset math must pass. Skipped without Chromium or
Playwright (`make setup` installs Playwright; `apt-get install chromium` the browser).
"""

from __future__ import annotations

import base64
import io
import struct
import sys
import wave
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
sys.path.insert(0, str(BOOK))
import check_book  # noqa: E402
import check_offline  # noqa: E402

sys.path.remove(str(BOOK))

# A 1x1 PNG and 0.1 s of 16 kHz silence, inline, so that the site needs nothing but itself.
PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
       "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def _wav() -> str:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(16000)
        file.writeframes(struct.pack("<1600h", *([0] * 1600)))
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode()


# A widget after WIDGETS.md's DOM contract (a slider and a seed box over a canvas). FROZEN
# draws the same picture whatever the controls say.
WIDGET = """
<div class="w2v2-widget" data-widget="masking">
  <input type="range" data-control="p" min="0" max="1" step="0.01" value="0.2">
  <input type="number" data-control="seed" min="0" value="0">
  <canvas class="w2v2-picture" width="200" height="60"></canvas>
  <div class="w2v2-readout"></div>
</div>
<script>
(() => {
  const root = document.currentScript.previousElementSibling;
  const slider = root.querySelector('[data-control=p]'), canvas = root.querySelector('canvas');
  const seed = root.querySelector('[data-control=seed]');
  let draws = 0;
  function draw() {
    const value = FROZEN ? 0.5 : Number(slider.value);
    const context = canvas.getContext('2d');
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.fillStyle = FROZEN || seed.value === '0' ? '#36c' : '#c63';
    context.fillRect(0, 0, Math.round(value * canvas.width), canvas.height);
    root.querySelector('.w2v2-readout').textContent = 'p = ' + slider.value;
    root.setAttribute('data-draws', String(++draws));
    root.setAttribute('data-ready', '1');
  }
  slider.addEventListener('input', draw);
  seed.addEventListener('change', draw);
  setTimeout(draw, 50);
})();
</script>
"""
# MathJax's result, without MathJax: each .math element gets the mjx-container it would get.
MATH_STUB = """
<p>The loss <span class="math notranslate nohighlight">\\(\\mathcal{L}_m\\)</span> is typeset.</p>
<script>
document.querySelectorAll('.math').forEach(node => {
  node.innerHTML = '<mjx-container class="MathJax">L</mjx-container>';
});
</script>
"""


def _page(body: str) -> str:
    return (f'<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="{PNG}">'
            f"<title>t</title></head><body><main>{body}</main></body></html>")


PAGES = {
    "good.html": _page(f'<img src="{PNG}" alt="a figure"><p><em>Figure 1: a figure.</em></p>'
                       f'<audio controls><source src="{_wav()}" type="audio/wav"></audio>'
                       + MATH_STUB + WIDGET.replace("FROZEN", "false")),
    "console_error.html": _page("<p>text</p><script>console.error('something broke');</script>"),
    "remote.html": _page('<p>text</p><img src="http://example.com/figure.png" alt="remote">'),
    "frozen_widget.html": _page(WIDGET.replace("FROZEN", "true")),
    "raw_math.html": _page('<p>Math that nothing typeset: <span class="math">\\(x^2\\)</span> and $$y$$.</p>'),
    "missing_figure.html": _page('<img src="_images/none.png" alt="gone"><p><em>Figure 2: gone.</em></p>'),
    # A code block of a notebook's cell and one of the prose (a fenced block), each with a line
    # too long for its width: both scroll sideways, and both are reported.
    "wide_code.html": _page(
        '<div class="cell"><div class="highlight"><pre style="width: 200px; overflow-x: auto">'
        "short\nprint('a code line far too long for a column two hundred pixels wide')</pre></div></div>"
        '<div class="highlight-bash"><div class="highlight"><pre style="width: 200px; overflow-x: auto">'
        "make test   # a comment far too long for a column two hundred pixels wide</pre></div></div>"
        '<div class="highlight"><pre style="width: 600px; overflow-x: auto">make book</pre></div>'),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, check_book.PageResult]:
    chromium = check_offline.find_chromium()
    if chromium is None:
        pytest.skip("no chromium on the PATH")
    pytest.importorskip("playwright.sync_api")
    site = tmp_path_factory.mktemp("site")
    for name, html in PAGES.items():
        (site / name).write_text(html)
    out = tmp_path_factory.mktemp("screenshots")
    found, log_problems = check_book.check_site(site, sorted(PAGES), out, chromium, verbose=False)
    assert log_problems == []
    return {result.page: result for result in found}


def test_a_page_with_a_working_widget_math_figure_and_audio_passes(results):
    result = results["good.html"]
    assert result.problems == []
    assert (result.images, result.audios, result.widgets, result.controls_moved) == (1, 1, 1, 2)
    assert result.typeset == 1
    # the whole page, and the widget before and after each of its controls moved
    names = [path.name for path in result.screenshots]
    assert names == ["good.png", "good__widget1-masking__before.png", "good__widget1-masking__after-p.png",
                     "good__widget1-masking__after-seed.png"]
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in result.screenshots)
    assert result.screenshots[1].read_bytes() != result.screenshots[2].read_bytes()


def test_a_console_error_fails(results):
    assert any("console.error: something broke" in problem for problem in results["console_error.html"].problems)


def test_a_request_to_another_host_fails_and_is_blocked(results):
    result = results["remote.html"]
    assert result.blocked == ["http://example.com/figure.png"]
    assert any("requested http://example.com/figure.png" in problem for problem in result.problems)


def test_a_slider_that_does_not_change_the_picture_fails(results):
    problems = results["frozen_widget.html"].problems
    assert any("moving 'p'" in problem and "did not change the picture" in problem for problem in problems)


def test_tex_that_was_not_typeset_fails(results):
    problems = results["raw_math.html"].problems
    assert any("math not typeset" in problem for problem in problems)
    assert any("TeX left raw" in problem and "$$y$$" in problem for problem in problems)


def test_a_missing_image_fails(results):
    problems = results["missing_figure.html"].problems
    assert any("image did not load" in problem for problem in problems)
    assert any("404" in problem for problem in problems)


def test_the_pages_are_those_of_the_toc():
    pages = check_book.toc_pages(BOOK / "_toc.yml")
    assert pages[0] == "intro.html"
    assert "notebooks/01_feature_encoder.html" in pages


def test_a_code_block_that_scrolls_sideways_fails_in_a_cell_and_in_the_prose(results):
    cut = [problem for problem in results["wide_code.html"].problems if "scrolls sideways" in problem]
    assert len(cut) == 2
    assert "print('a code line far too long" in cut[0]  # the longest line is the one named
    assert "make test   # a comment far too long" in cut[1]
