"""Open every page of the built book in headless Chromium, as a reader would, and check it.

    python book/check_book.py                       # book/_build/html, every page of book/_toc.yml
    python book/check_book.py SITE --pages a.html   # any folder of pages
    python book/check_book.py --out DIR             # where the screenshots go (book/_build/screenshots)

Debian's chromium (or any Chromium on the PATH) is driven by Playwright, with the browser
the machine already has: `playwright install` is never needed. The folder is served on
127.0.0.1, and each page is opened in a fresh browser context. On every page:

- no console error: no uncaught exception, console.error or console.assert, and no error
  entry of the browser's own (a resource that failed to load);
- no request leaves the machine: every request to another host is recorded and blocked
  (data: and blob: addresses are fine), and every local one must succeed; Chromium's
  network log, read after the run, must agree;
- math is typeset: once MathJax has finished, every `.math` element holds an
  `mjx-container`, none holds a MathJax error, and the prose (code left out) shows no
  TeX that escaped typesetting (`$$`, `\\(`, `\\[`, `$x$`, `\\frac`...);
- figures and audio are there: every <img> has loaded (naturalWidth > 0), every <audio>
  has a source whose metadata loads, and every "Figure N:" caption has a picture before it;
- no code is cut off: at 1280 px no code block (a cell's or the prose's) or printed output scrolls sideways;
- widgets work (the DOM contract of w2v2_lite.viz): each `.w2v2-widget` reports
  data-ready="1"; each of its range, number and select controls is moved as a reader
  would move it (a click on the slider's track, else the keyboard; a number typed in; an
  option chosen), and its picture (`.w2v2-picture`: canvas pixels or SVG markup) must
  change and its data-draws grow.

Screenshots (PNG, 1280 px wide) go to --out: the whole of each page, and each widget
before and after each control moves. Before the browser, the static scan of
check_offline.py (no page may name a resource on another host) runs on the whole folder.

Exit status 0 when every page passes, 1 with a list of problems, each naming its page,
otherwise; 2 when Chromium or Playwright is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_offline  # noqa: E402 (beside this file; its static scan, server and network log are reused)

BOOK = Path(__file__).resolve().parent
WIDTH = 1280  # a laptop screen: both sidebars show, and code must still fit beside them
HEIGHT = 900
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
                 "--disable-client-side-phishing-detection", "--metrics-recording-only",
                 # Chromium asks Google's autofill server about pages with form fields (the
                 # widgets' sliders): the browser's own request, made in the page's name
                 "--disable-features=AutofillServerCommunication"]
LOAD_TIMEOUT_MS = 60_000
WIDGET_TIMEOUT_MS = 15_000

# ------------------------------------------------------------------ what runs in the page
# Resolves when MathJax has typeset the page (or at once when the page loads no MathJax).
MATHJAX_DONE = """
async () => {
  const deadline = Date.now() + 30000;
  const hasMath = () => document.querySelector('.math, mjx-container') !== null;
  // MathJax is loaded deferred: until its script runs, window.MathJax is the page's settings
  while (hasMath() && !(window.MathJax && window.MathJax.startup && window.MathJax.startup.promise)) {
    if (Date.now() > deadline || !document.querySelector('script[src*="mathjax" i]')) break;
    await new Promise(resolve => setTimeout(resolve, 50));
  }
  if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    await window.MathJax.startup.promise;
  }
  return true;
}
"""

# TeX left in the prose (code blocks, printed outputs, typeset math and widgets left out).
TEX_COMMANDS = ("frac|mathbf|mathrm|mathcal|boldsymbol|operatorname|sum|prod|log|exp|sqrt|cdot|"
                "times|left|right|text|hat|tilde|bar|in|le|ge|tau|alpha|beta|gamma|lambda|sigma|mu|theta")
MATH_STATE = r"""
() => {
  const TEX_COMMANDS = 'TEX_COMMANDS';
  const blocks = [...document.querySelectorAll('span.math, div.math')];
  const untypeset = blocks.filter(block => !block.querySelector('mjx-container'))
    .map(block => block.textContent.trim().slice(0, 80));
  const errors = [...document.querySelectorAll('mjx-merror, mjx-container [data-mjx-error]')]
    .map(node => (node.getAttribute('data-mjx-error') || node.textContent).slice(0, 80));
  const prose = (document.querySelector('main, [role=main]') || document.body).cloneNode(true);
  prose.querySelectorAll('pre, code, kbd, samp, script, style, textarea, mjx-container, '
                         + '.highlight, .w2v2-widget, .math').forEach(node => node.remove());
  const text = prose.textContent.replace(/\s+/g, ' ');
  const patterns = [/\$\$[^]{0,40}/g, /\\\([^]{0,60}/g, /\\\[[^]{0,60}/g, /\\begin\{[^]{0,60}/g,
                    /(?<![\\$\w])\$[^\s$](?:[^$]{0,80}?[^\s$\\])?\$(?![\w$])/g,
                    new RegExp(String.raw`\\(?:${TEX_COMMANDS})(?![a-zA-Z])[^]{0,40}`, 'g')];
  const raw = [];
  for (const pattern of patterns) for (const match of text.matchAll(pattern)) raw.push(match[0]);
  return {typeset: document.querySelectorAll('mjx-container').length, blocks: blocks.length,
          untypeset, errors, raw: [...new Set(raw)].slice(0, 10)};
}
""".replace("'TEX_COMMANDS'", repr(TEX_COMMANDS))

# Every image decoded; every audio player's metadata loaded (or its error).
MEDIA_STATE = """
async () => {
  const images = [...document.images];
  await Promise.all(images.map(image => {
    if (image.loading === 'lazy') image.loading = 'eager';
    return image.complete ? null : image.decode().catch(() => null);
  }));
  const audios = [...document.querySelectorAll('audio')];
  await Promise.all(audios.map(audio => {
    if (audio.readyState >= 1 || audio.error) return null;
    return new Promise(resolve => {
      const done = () => resolve(null);
      audio.addEventListener('loadedmetadata', done, {once: true});
      audio.addEventListener('error', done, {once: true});
      (audio.querySelector('source') || audio).addEventListener('error', done, {once: true});
      setTimeout(done, 15000);
      if (audio.preload === 'none' || audio.networkState === HTMLMediaElement.NETWORK_EMPTY) {
        audio.preload = 'metadata';
        audio.load();
      }
    });
  }));
  return {
    images: images.map(image => ({src: image.currentSrc || image.src, width: image.naturalWidth,
                                  complete: image.complete})),
    audios: audios.map(audio => ({src: audio.currentSrc || audio.src
                                       || (audio.querySelector('source') || {}).src || '',
                                  ready: audio.readyState, duration: audio.duration,
                                  error: audio.error ? audio.error.code : null})),
  };
}
"""

# Each "Figure N: ..." caption needs a picture (image, canvas, svg, widget, player) between
# it and the caption before it.
FIGURE_CAPTIONS = r"""
() => {
  const root = document.querySelector('main, [role=main]') || document.body;
  const caption = /^\s*Figure(\s+\d+)?\s*[:.]/;
  const missing = [];
  let pictures = 0, captions = 0;
  const seen = 'img, canvas, svg.w2v2-picture, svg[role=img], .w2v2-widget, video, audio, ' +
               'p > em:first-child';
  for (const node of root.querySelectorAll(seen)) {
    if (!node.matches('em')) {
      pictures += 1;
    } else if (caption.test(node.textContent)
               && node.parentElement.textContent.trim().startsWith(node.textContent.trim())) {
      captions += 1;
      if (pictures === 0) missing.push(node.textContent.trim().slice(0, 60));
      pictures = 0;
    }
  }
  return {captions, missing};
}
"""

# A signature of what a widget draws now: canvas pixels, SVG markup, and its redraw count.
WIDGET_PICTURE = """
root => ({
  ready: root.getAttribute('data-ready'),
  draws: Number(root.getAttribute('data-draws') || 0),
  picture: [...root.querySelectorAll('.w2v2-picture')].map(node => {
    if (node instanceof HTMLCanvasElement) {
      try { return node.width + 'x' + node.height + ':' + node.toDataURL(); }
      catch (error) { return 'tainted canvas: ' + error; }
    }
    return node.outerHTML;
  }),
  readout: (root.querySelector('.w2v2-readout') || {}).textContent || '',
})
"""

CONTROLS = """
root => [...root.querySelectorAll('[data-control]')].map((node, index) => ({
  index, name: node.getAttribute('data-control'), tag: node.tagName.toLowerCase(),
  type: (node.getAttribute('type') || '').toLowerCase(), value: node.value,
  min: node.min, max: node.max, step: node.step, disabled: node.disabled,
  options: node.tagName === 'SELECT' ? [...node.options].map(option => option.value) : [],
}))
"""

# Set a control the way a script would, with the events a reader's move fires.
SET_BY_SCRIPT = """
(node, value) => {
  node.value = value;
  node.dispatchEvent(new Event('input', {bubbles: true}));
  node.dispatchEvent(new Event('change', {bubbles: true}));
  return node.value;
}
"""

NEXT_FRAMES = "() => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)))"


# ------------------------------------------------------------------ results
@dataclass
class PageResult:
    page: str
    problems: list[str] = field(default_factory=list)
    local_requests: int = 0
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    typeset: int = 0
    images: int = 0
    audios: int = 0
    widgets: int = 0
    controls_moved: int = 0
    screenshots: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def toc_pages(toc: Path) -> list[str]:
    """The HTML page of each file the book's table of contents names, in reading order."""
    data = yaml.safe_load(toc.read_text())

    def files(entries: list[dict]) -> list[str]:
        names = []
        for entry in entries or []:
            if "file" in entry:
                names.append(entry["file"])
            names += files(entry.get("sections", []))
            for part in entry.get("parts", []):
                names += files(part.get("chapters", []))
        return names

    names = [data["root"]] + files(data.get("chapters", []))
    for part in data.get("parts", []):
        names += files(part.get("chapters", []))
    return [f"{name.removesuffix('.md').removesuffix('.ipynb')}.html" for name in names]


def all_pages(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*.html")
                  if path.name not in ("genindex.html", "search.html", "index.html")
                  and not path.relative_to(root).parts[0].startswith("_"))


def is_local(url: str, base: str) -> bool:
    return url.startswith((base + "/", "data:", "blob:", "about:")) or url == base


def shot_name(page: str) -> str:
    return page.removesuffix(".html").replace("/", "_")


# ------------------------------------------------------------------ one page
def check_page(context_factory, base: str, page: str, out: Path | None) -> PageResult:
    """Open one page in a fresh browser context and run every check on it."""
    result = PageResult(page)
    started = time.monotonic()
    context = context_factory()
    failed_local: dict[str, str] = {}  # url -> why (the first reason: a 404 also aborts)

    def route(route_, request) -> None:
        if is_local(request.url, base):
            route_.continue_()
        else:  # recorded and blocked: nothing leaves the machine
            if request.url not in result.blocked:
                result.blocked.append(request.url)
            route_.abort("blockedbyclient")

    def on_console(message) -> None:
        if message.type in ("error", "assert"):
            location = message.location or {}
            where = (f" ({location['url']}:{location.get('lineNumber', 0) + 1})"
                     if location.get("url") else "")
            result.console_errors.append(f"console.{message.type}: {message.text}{where}")

    def on_response(response) -> None:
        if is_local(response.url, base) and response.status >= 400:
            failed_local.setdefault(response.url, str(response.status))

    def on_request_failed(request) -> None:
        if is_local(request.url, base) and not request.url.startswith(("data:", "blob:")):
            failed_local.setdefault(request.url, str(request.failure))

    def on_request(request) -> None:
        if request.url.startswith(base + "/"):
            result.local_requests += 1

    def route_socket(socket) -> None:
        if socket.url.startswith(("ws://127.0.0.1:", "wss://127.0.0.1:")):
            socket.connect_to_server()
        else:  # not connected to anything: the page talks to nobody
            if socket.url not in result.blocked:
                result.blocked.append(socket.url)
            socket.close()

    context.route("**/*", route)
    context.route_web_socket(re.compile(r".*"), route_socket)
    page_ = context.new_page()
    page_.on("console", on_console)
    page_.on("pageerror", lambda error: result.console_errors.append(f"uncaught {error}"))
    page_.on("response", on_response)
    page_.on("requestfailed", on_request_failed)
    page_.on("request", on_request)
    try:
        page_.goto(f"{base}/{page}", wait_until="load", timeout=LOAD_TIMEOUT_MS)
        page_.evaluate(MATHJAX_DONE)
        page_.wait_for_load_state("networkidle", timeout=LOAD_TIMEOUT_MS)
        check_math(page_, result)
        check_media(page_, result)
        check_cut_off_code(page_, result)
        if out is not None:
            path = out / f"{shot_name(page)}.png"
            page_.screenshot(path=str(path), full_page=True)
            result.screenshots.append(path)
        check_widgets(page_, result, out)
        page_.evaluate(NEXT_FRAMES)
        page_.wait_for_timeout(200)  # let late scripts log before the page is judged
    except Exception as error:  # noqa: BLE001 (a page that breaks the checks is a finding, not a crash)
        result.problems.append(f"the check stopped: {str(error).splitlines()[0]}")
    finally:
        context.close()
        result.seconds = time.monotonic() - started
    result.problems += [f"requested {url} (another host; blocked)" for url in result.blocked]
    result.problems += result.console_errors
    result.problems += [f"a local request failed: {why} {url}" for url, why in failed_local.items()]
    result.problems = list(dict.fromkeys(result.problems))  # once each, in the order found
    return result


def check_math(page, result: PageResult) -> None:
    state = page.evaluate(MATH_STATE)
    result.typeset = state["typeset"]
    result.problems += [f"math not typeset by MathJax: «{text}»" for text in state["untypeset"]]
    result.problems += [f"MathJax error: «{text}»" for text in state["errors"]]
    result.problems += [f"TeX left raw in the text: «{text}»" for text in state["raw"]]


def check_media(page, result: PageResult) -> None:
    media = page.evaluate(MEDIA_STATE)
    result.images, result.audios = len(media["images"]), len(media["audios"])
    for image in media["images"]:
        if not image["complete"] or image["width"] == 0:
            result.problems.append(f"image did not load: {image['src'][:100]}")
    for audio in media["audios"]:
        if not audio["src"]:
            result.problems.append("audio player without a source")
        elif audio["error"] is not None or audio["ready"] < 1 or not audio["duration"]:
            result.problems.append(f"audio did not load (readyState {audio['ready']}, "
                                   f"error {audio['error']}): {audio['src'][:60]}")
    figures = page.evaluate(FIGURE_CAPTIONS)
    result.problems += [f"no picture before the caption {caption!r}" for caption in figures["missing"]]


def check_cut_off_code(page, result: PageResult) -> None:
    for line in page.evaluate(check_offline.CUT_OFF_CODE):
        result.problems.append(f"at {WIDTH} px a code block scrolls sideways, its longest line cut: {line!r}")


# ------------------------------------------------------------------ widgets
def check_widgets(page, result: PageResult, out: Path | None) -> None:
    roots = page.locator(".w2v2-widget")
    result.widgets = roots.count()
    for index in range(result.widgets):
        root = roots.nth(index)
        kind = root.get_attribute("data-widget") or "widget"
        label = f"widget {index + 1} ({kind})"
        try:
            root.scroll_into_view_if_needed(timeout=5000)
            page.wait_for_function("root => root.getAttribute('data-ready') === '1'",
                                   arg=root.element_handle(), timeout=WIDGET_TIMEOUT_MS)
        except Exception:  # noqa: BLE001
            result.problems.append(f"{label}: no data-ready=\"1\" within {WIDGET_TIMEOUT_MS // 1000} s")
            continue
        state = root.evaluate(WIDGET_PICTURE)
        if not state["picture"]:
            result.problems.append(f"{label}: no .w2v2-picture (canvas or svg) inside")
            continue
        stem = f"{shot_name(result.page)}__widget{index + 1}-{kind}"
        if out is not None:
            result.screenshots.append(_element_shot(root, out / f"{stem}__before.png"))
        controls = [c for c in root.evaluate(CONTROLS) if not c["disabled"]
                    and (c["type"] in ("range", "number") or c["tag"] == "select")]
        if not controls:
            result.problems.append(f"{label}: no range, number or select control with data-control")
        for control in controls:
            problem = move_control(page, root, control, state)
            name = re.sub(r"[^A-Za-z0-9_-]+", "-", control["name"] or str(control["index"]))
            if problem:
                result.problems.append(f"{label}: {problem}")
            else:
                result.controls_moved += 1
            if out is not None:
                result.screenshots.append(_element_shot(root, out / f"{stem}__after-{name}.png"))
            # Put the control back, so that each control is tried from the widget's first picture
            # (after p at its maximum every step is masked, and no seed could change that).
            root.locator("[data-control]").nth(control["index"]).evaluate(RESTORE, control["value"])
            page.evaluate(NEXT_FRAMES)
            state = root.evaluate(WIDGET_PICTURE)


# Set a control back to a value by script, with the events a reader's change would fire.
RESTORE = r"""
(node, value) => {
  node.value = value;
  node.dispatchEvent(new Event("input", {bubbles: true}));
  node.dispatchEvent(new Event("change", {bubbles: true}));
}
"""


def _element_shot(locator, path: Path) -> Path:
    locator.screenshot(path=str(path))
    return path


def _targets(control: dict) -> list[str]:
    """Values to move a control to: far from where it is, then the other end."""
    if control["tag"] == "select":
        options = [o for o in control["options"] if o != control["value"]]
        return options[-1:] + options[:1]
    if control["type"] == "number":  # one step up, else one step down (seeds, counts)
        step = float(control["step"]) if control["step"] not in ("", "any") else 1.0
        value = float(control["value"] or 0)
        steps = [value + step, value - step]
        steps = [v for v in steps if (control["min"] == "" or v >= float(control["min"]))
                 and (control["max"] == "" or v <= float(control["max"]))]
        return [f"{v:g}" for v in steps]
    low = float(control["min"] or 0)
    high = float(control["max"] or 100)
    value = float(control["value"] or low)
    return [control["max"], control["min"]] if value < (low + high) / 2 else [control["min"], control["max"]]


def _digest(state: dict) -> str:
    return hashlib.sha256("\n".join(state["picture"]).encode()).hexdigest()


def move_control(page, root, control: dict, before: dict) -> str | None:
    """Move one control as a reader would; None if the picture changed, else the problem."""
    node = root.locator("[data-control]").nth(control["index"])
    name = control["name"]
    tried = []
    for target in _targets(control):
        if target in (None, "", control["value"]):
            continue
        start = node.input_value()
        how = _move(page, node, control, target)
        tried.append(f"{start} -> {node.input_value()} ({how})")
        try:
            page.wait_for_function("([root, draws]) => Number(root.getAttribute('data-draws') || 0) > draws",
                                   arg=[root.element_handle(), before["draws"]], timeout=WIDGET_TIMEOUT_MS)
        except Exception:  # noqa: BLE001
            return f"moving {name!r} {tried[-1]}: data-draws did not grow (still {before['draws']})"
        page.evaluate(NEXT_FRAMES)
        after = root.evaluate(WIDGET_PICTURE)
        if _digest(after) != _digest(before):
            return None
        before = after  # redrawn, but the same picture: try the other end once
    if not tried:
        return f"could not move {name!r}: it has one value only"
    return f"moving {name!r} ({'; '.join(tried)}) did not change the picture"


def _move(page, node, control: dict, target: str) -> str:
    """Set a control to `target` with the mouse, else the keyboard, else a script; says how."""
    if control["tag"] == "select":
        node.select_option(target)
        return "select"
    if control["type"] == "number":  # typed in, then Tab: input and change, as from a reader
        node.fill(target)
        node.press("Tab")
        return "keyboard"
    start = node.input_value()
    try:
        node.scroll_into_view_if_needed(timeout=3000)
        box = node.bounding_box()
        if box and box["width"] > 4:
            # a click on the track: 6 px in from the end the value should go to
            at_end = float(target) >= float(control["max"] or 100)
            x = box["x"] + (box["width"] - 6 if at_end else 6)
            page.mouse.click(x, box["y"] + box["height"] / 2)
            if node.input_value() != start:
                return "mouse"
        node.focus()
        page.keyboard.press("End" if float(target) >= float(start) else "Home")
        if node.input_value() != start:
            return "keyboard"
    except Exception:  # noqa: BLE001 (hidden or covered: fall back to a script)
        pass
    node.evaluate(SET_BY_SCRIPT, target)
    return "script"


# ------------------------------------------------------------------ the run
MARKER = ".check_book"  # in a folder of screenshots that this script made, and so may empty


def prepare_output(out: Path) -> None:
    """Make the screenshot folder; empty it of PNGs if an earlier run of this script made it."""
    if (out / MARKER).is_file():
        for old in out.glob("*.png"):
            old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("screenshots of book/check_book.py: each run replaces the PNGs here\n")


def check_site(root: Path, pages: list[str], out: Path | None, chromium: str,
               net_log: Path | None = None, verbose: bool = True) -> tuple[list[PageResult], list[str]]:
    """Check every page in one Chromium (a fresh context each); (per-page results, problems
    found in the network log that no single page's events showed)."""
    from playwright.sync_api import sync_playwright

    if out is not None:
        prepare_output(out)
    results = []
    args = list(CHROMIUM_ARGS)
    if net_log is not None:
        args += [f"--log-net-log={net_log}", "--net-log-capture-mode=Default"]
    with check_offline.serve(root) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=args)
        try:
            def new_context():
                return browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, device_scale_factor=1,
                                           color_scheme="light", service_workers="block")

            for page in pages:
                if not (root / page).is_file():
                    results.append(PageResult(page, problems=["no such page in the built site"]))
                    continue
                result = check_page(new_context, base, page, out)
                results.append(result)
                if verbose:
                    print(f"  {page}: {'ok' if result.ok else f'{len(result.problems)} problem(s)'} "
                          f"({result.seconds:.1f} s)", flush=True)
        finally:
            browser.close()
    log_problems = []
    if net_log is not None and net_log.is_file():
        from_pages, _from_browser = check_offline.requested_urls(net_log, "http://127.0.0.1")
        blocked = {url for result in results for url in result.blocked}
        log_problems = [f"network log: a page requested {url}" for url in sorted(from_pages)
                        if not url.startswith(("http://127.0.0.1", "data:", "blob:")) and url not in blocked]
    return results, log_problems


def summary_table(results: list[PageResult]) -> str:
    header = ("page", "requests", "blocked", "console errors", "math typeset", "images", "audio",
              "widgets", "controls moved", "screenshots", "result")
    rows = [header] + [(r.page, str(r.local_requests), str(len(r.blocked)), str(len(r.console_errors)),
                        str(r.typeset), str(r.images), str(r.audios), str(r.widgets), str(r.controls_moved),
                        str(len(r.screenshots)), "ok" if r.ok else f"FAIL ({len(r.problems)})")
                       for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width)
                       in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, nargs="?", default=BOOK / "_build" / "html",
                        help="the built HTML folder (default: book/_build/html)")
    parser.add_argument("--pages", nargs="*", default=None,
                        help="pages to open, relative to root (default: every page of book/_toc.yml, "
                             "or every .html page when the folder is not the book's)")
    parser.add_argument("--out", type=Path, default=BOOK / "_build" / "screenshots",
                        help="folder for the screenshots (default: book/_build/screenshots)")
    parser.add_argument("--no-static", action="store_true", help="skip check_offline.py's static scan")
    args = parser.parse_args()

    root = args.root.resolve()
    if not root.is_dir():
        print(f"check_book: no folder {root}: build the book first (make book)", file=sys.stderr)
        return 1
    chromium = check_offline.find_chromium()
    if chromium is None:
        print("check_book: no chromium on the PATH: install it with 'sudo apt-get install chromium'",
              file=sys.stderr)
        return 2
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("check_book: Playwright is missing: 'make setup' installs it (requirements.lock)",
              file=sys.stderr)
        return 2

    toc = root.parent.parent / "_toc.yml"
    if args.pages:
        pages = args.pages
    elif toc.is_file() and root.parent.name == "_build":
        pages = toc_pages(toc)
    else:
        pages = all_pages(root)
    problems = [] if args.no_static else check_offline.static_scan(root)

    print(f"browser: {len(pages)} pages in {chromium} (Playwright), {WIDTH} px wide")
    with tempfile.TemporaryDirectory() as scratch:
        net_log = Path(scratch) / "netlog.json"
        results, log_problems = check_site(root, pages, args.out, chromium, net_log=net_log)
    print()
    print(summary_table(results))
    print(f"\nscreenshots: {sum(len(r.screenshots) for r in results)} PNGs in {args.out}")
    problems = [f"static scan: {problem}" for problem in problems]
    problems += [f"{r.page}: {problem}" for r in results for problem in r.problems] + log_problems
    if problems:
        print(f"\n{len(problems)} problem(s):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    moved = sum(result.controls_moved for result in results)
    print(f"browser check passed: {len(results)} pages, no console errors, nothing requested from "
          f"other hosts, math typeset, figures and audio loaded; {moved} widget controls moved, "
          f"each changing its widget's picture")
    return 0


if __name__ == "__main__":
    sys.exit(main())
