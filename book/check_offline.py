"""Check that the built book loads nothing from the internet, and that its pages log no errors.

    python book/check_offline.py book/_build/html            # static scan (run by `make book`)
    python book/check_offline.py book/_build/html --browser  # also open pages in headless Chromium

The static scan reads every HTML page and lists each resource the browser would fetch on
its own (scripts, stylesheets, icons, preloads, images, media, iframes, objects, CSS
`url()` and `@import`) whose address is http(s) or protocol-relative (`//host/...`).
Plain hyperlinks (`<a href>`) are not requests, so they are allowed. It then follows the
local stylesheets and scripts the pages use and looks inside them: CSS for remote `url()`
and `@import`, JavaScript for the addresses of the usual CDNs and trackers.

`--browser` serves the folder on 127.0.0.1, opens each page in a fresh headless Chromium
driven through its DevTools protocol (over a pipe) with a network log, and fails if any
request went to another host or if the page logged an error to the console: an uncaught
exception (a script's SyntaxError, say), a console.error or console.assert, or an error
entry of the browser's own (a resource that failed to load). It also reports how many
equations MathJax typeset.

Exit status 0 when nothing leaves the machine and no page logs an error, 1 with a list of
offenders otherwise.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import functools
import http.server
import json
import os
import re
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

# Attributes that make the browser fetch something, per tag.
FETCHING_ATTRIBUTES = {
    "script": ("src",),
    "img": ("src", "srcset"),
    "source": ("src", "srcset"),
    "iframe": ("src",),
    "frame": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "video": ("src", "poster"),
    "audio": ("src",),
    "track": ("src",),
    "input": ("src",),
    "image": ("href", "xlink:href"),  # SVG
    "use": ("href", "xlink:href"),  # SVG
}
# <link rel=...> values that are only metadata; every other rel (stylesheet, icon,
# preload, modulepreload, prefetch, preconnect, dns-prefetch, manifest...) reaches out.
NON_FETCHING_LINK_RELS = {"canonical", "alternate", "next", "prev", "author", "license", "help",
                          "search", "index", "bookmark", "external", "nofollow", "noopener",
                          "noreferrer", "tag", "first", "last", "up", "me"}
CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")\s]+)\1\s*\)|@import\s+(['"])([^'"]+)\3""", re.IGNORECASE)
# Hosts that serve page assets or track visitors: seeing one inside a script means the
# script may load from it.
CDN_HOSTS = re.compile(
    r"""https?://(?:[a-z0-9-]+\.)*(?:jsdelivr\.net|unpkg\.com|cdnjs\.cloudflare\.com|googleapis\.com|
    gstatic\.com|googletagmanager\.com|google-analytics\.com|mathjax\.org|plausible\.io|
    mybinder\.org|hypothes\.is|utteranc\.es|code\.jquery\.com|bootstrapcdn\.com|
    fontawesome\.com/releases|kit\.fontawesome\.com|thebe\.|binder)[^\s'"`)]*""",
    re.IGNORECASE | re.VERBOSE,
)
# Addresses that a script names but that this book never loads, and why (file suffix ->
# address prefix -> reason). Anything else a script names on the hosts above is an offender.
ALLOWED_SCRIPT_MENTIONS = {
    "html-manager/embed-amd.js": {
        "https://cdn.jsdelivr.net/npm/": "the default place for third-party widget modules; the page's "
                                         "data-jupyter-widgets-cdn attribute replaces it (checked per page)",
        "https://fonts.googleapis.com/css?family=Roboto+Mono": "inside a CSS comment (commented-out @import)",
    },
    "mathjax/tex-mml-chtml.js": {
        "https://cdn.jsdelivr.net/npm/speech-rule-engine@": "the speech rule engine's own default; MathJax "
                                                            "points it at the local [mathjax]/sre/mathmaps",
        "https://cdn.jsdelivr.net/npm/sre-mathmaps-ie@": "only for Internet Explorer",
        "https://cdn.jsdelivr.net/npm/wicked-good-xpath@": "only for browsers without document.evaluate (IE)",
        "https://www.mathjax.org": "a hyperlink in MathJax's About box",
    },
}


def is_remote(url: str) -> bool:
    url = url.strip()
    return url.lower().startswith(("http://", "https://", "//", "ftp://", "ws://", "wss://"))


class PageParser(HTMLParser):
    """Collects (what, url) for every resource a page fetches, and its local scripts and styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.fetched: list[tuple[str, str]] = []
        self.inline_css: list[str] = []
        self.widget_cdns: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name.lower(): (value or "") for name, value in attrs}
        for name in FETCHING_ATTRIBUTES.get(tag, ()):
            if name in values:
                urls = [part.split()[0] for part in values[name].split(",") if part.split()] if name == "srcset" \
                    else [values[name]]
                self.fetched += [(f"<{tag} {name}>", url) for url in urls]
        if tag == "link" and "href" in values:
            rels = set(values.get("rel", "").lower().split())
            if not rels or rels - NON_FETCHING_LINK_RELS:
                self.fetched.append((f"<link rel={values.get('rel', '')!r}>", values["href"]))
        if tag == "meta" and values.get("http-equiv", "").lower() == "refresh":
            url = values.get("content", "").partition("url=")[2]
            if url:
                self.fetched.append(("<meta refresh>", url))
        if "style" in values:
            self.inline_css.append(values["style"])
        if "data-jupyter-widgets-cdn" in values:
            self.widget_cdns.append(values["data-jupyter-widgets-cdn"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.inline_css.append(data)


def css_urls(css: str) -> list[str]:
    return [match.group(2) or match.group(4) for match in CSS_URL.finditer(css)]


def local_target(page: Path, url: str, root: Path) -> Path | None:
    """The file a relative or root-relative URL of `page` names, if it lies in `root`."""
    path = urlsplit(url).path
    if not path or urlsplit(url).scheme:
        return None
    target = (root / path.lstrip("/")) if path.startswith("/") else (page.parent / path)
    target = target.resolve()
    return target if target.is_file() and root.resolve() in target.parents else None


def scan_css(path: Path, root: Path, seen: set[Path], offenders: list[str]) -> None:
    if path in seen:
        return
    seen.add(path)
    for url in css_urls(path.read_text(errors="replace")):
        if is_remote(url):
            offenders.append(f"{path.relative_to(root)}: url()/@import {url}")
        elif url.endswith(".css") and (target := local_target(path, url, root)):
            scan_css(target, root, seen, offenders)


def scan_script(path: Path, root: Path, seen: set[Path], offenders: list[str]) -> None:
    if path in seen:
        return
    seen.add(path)
    relative = path.relative_to(root).as_posix()
    allowed = next((prefixes for suffix, prefixes in ALLOWED_SCRIPT_MENTIONS.items()
                    if relative.endswith(suffix)), {})
    for match in sorted(set(CDN_HOSTS.findall(path.read_text(errors="replace")))):
        if not any(match.startswith(prefix) for prefix in allowed):
            offenders.append(f"{relative}: names {match}")


def scan_page(page: Path, root: Path, seen: set[Path], offenders: list[str]) -> None:
    parser = PageParser()
    parser.feed(page.read_text(errors="replace"))
    name = page.relative_to(root)
    for what, url in parser.fetched:
        if is_remote(url):
            offenders.append(f"{name}: {what} {url}")
        elif target := local_target(page, url, root):
            if target.suffix == ".css":
                scan_css(target, root, seen, offenders)
            elif target.suffix in (".js", ".mjs"):
                scan_script(target, root, seen, offenders)
    for css in parser.inline_css:
        offenders += [f"{name}: inline CSS url() {url}" for url in css_urls(css) if is_remote(url)]
    offenders += [f"{name}: data-jupyter-widgets-cdn={url}" for url in parser.widget_cdns if is_remote(url)]


def static_scan(root: Path) -> list[str]:
    pages = sorted(root.rglob("*.html"))
    if not pages:
        return [f"no HTML pages under {root}: build the book first (make book)"]
    offenders: list[str] = []
    seen: set[Path] = set()
    for page in pages:
        scan_page(page, root, seen, offenders)
    print(f"static scan: {len(pages)} pages, {len(seen)} local stylesheets and scripts, "
          f"{len(offenders)} remote resources")
    return offenders


# ------------------------------------------------------------------ browser check
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-default-apps", "--disable-extensions", "--metrics-recording-only",
                  "--disable-domain-reliability", "--disable-client-side-phishing-detection"]


# From this window width on, the theme's content column is as wide as it gets: code and
# output blocks show 89 columns of 14 px monospace (76 at 1280 px, with both sidebars).
SCREENSHOT_WIDTH = 1440


def find_chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome", "chrome")
                 if (path := shutil.which(name))), None)


@contextlib.contextmanager
def serve(root: Path):
    handler = functools.partial(QuietHandler, directory=str(root))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass


def requested_urls(net_log: Path, page_site: str) -> tuple[set[str], set[str]]:
    """(URLs the page requested, URLs Chromium requested for itself) from a network log.

    Every request made on behalf of a page carries that page's site in its network
    isolation key, whatever host it goes to; the browser's own traffic (component
    updates, account checks) carries none, so it is told apart and not held against the book.
    """
    text = net_log.read_text(errors="replace").rstrip().rstrip(",")
    if not text.endswith("}"):
        text += "]}"  # a log cut short when the browser exits: close the event list
    log = json.loads(text)
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    page, browser = set(), set()
    for event in log.get("events", []):
        params = event.get("params") or {}
        if event.get("type") == start_job and "url" in params:
            isolation_key = params.get("network_isolation_key", "")
            (page if page_site in isolation_key else browser).add(params["url"])
    return page, browser


class DevTools:
    """Chromium driven through its DevTools protocol over --remote-debugging-pipe.

    The browser reads commands from its file descriptor 3 and writes replies and events
    to 4, as JSON messages that each end with a NUL byte; no websocket library is needed.
    Events of the page's session are kept in `events` as they arrive.
    """

    def __init__(self, command: list[str]) -> None:
        to_browser, self._commands = _pipe_above(10)
        self._replies, from_browser = _pipe_above(10)
        actions = [(os.POSIX_SPAWN_DUP2, to_browser, 3), (os.POSIX_SPAWN_DUP2, from_browser, 4),
                   (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
        self.pid = os.posix_spawn(command[0], [*command, "--remote-debugging-pipe", "about:blank"],
                                  os.environ, file_actions=actions)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, timeout: float = 60,
             session: bool = True) -> dict:
        """Send one command (to the page's session unless session=False) and wait for its reply."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply is None:
                raise TimeoutError(f"no reply to {method} within {timeout:.0f} s")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def wait_for(self, method: str, timeout: float) -> bool:
        """Wait for an event of the page's session; True if it came."""
        deadline = time.monotonic() + timeout
        while not any(event["method"] == method for event in self.events):
            if self._receive(deadline) is None:
                return False
        return True

    def settle(self, quiet: float, timeout: float) -> None:
        """Read events until none came for `quiet` seconds, or `timeout` passed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._receive(min(deadline, time.monotonic() + quiet)) is None:
                return

    def _receive(self, deadline: float) -> dict | None:
        """The next message (events of our session are also kept), or None at the deadline."""
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                return None
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe (it crashed or exited)")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message and message.get("sessionId") == self.session:
            self.events.append(message)
        return message

    def close(self) -> None:
        """Close the browser cleanly (so that it finishes its network log), or kill it."""
        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=10, session=False)
        for _ in range(100):
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                break
            time.sleep(0.1)
        else:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self._commands)
        os.close(self._replies)


def _pipe_above(lowest: int) -> tuple[int, int]:
    """A pipe whose two ends are at `lowest` or above (so that dup2 onto 3 and 4 cannot clash)."""
    ends = []
    for fd in os.pipe():
        ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest))
        os.close(fd)
    return ends[0], ends[1]


def console_errors(events: list[dict]) -> list[str]:
    """What the page logged as an error: uncaught exceptions, console.error/assert, and the
    browser's own error entries (failed loads, blocked requests)."""
    errors = []
    for event in events:
        params = event.get("params", {})
        if event["method"] == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            where = f"{details.get('url', '')}:{details.get('lineNumber', 0) + 1}"
            errors.append(f"uncaught {text.splitlines()[0] if text else 'exception'} ({where})")
        elif event["method"] == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            words = [str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", [])]
            errors.append(f"console.{params['type']}: {' '.join(words)}")
        elif event["method"] == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            errors.append(f"{entry.get('source', 'browser')}: {entry.get('text', '')} {entry.get('url', '')}".strip())
    return errors


WINDOW_WIDTH = 1280  # a laptop screen: both sidebars show, and code must still fit beside them
# The longest line of each code block (a cell's or the prose's) or printed output wider than its box.
CUT_OFF_CODE = """
[...document.querySelectorAll('div.highlight pre, div.cell div.cell_output pre')]
  .filter(block => block.scrollWidth > block.clientWidth + 1)
  .map(block => block.textContent.split('\\n').reduce((a, b) => b.length > a.length ? b : a, ''))
"""


def open_page(chromium: str, url: str, scratch: Path, screenshot: Path | None) -> dict:
    """Load one page in a fresh headless Chromium: its console errors, typeset formulas, requests."""
    net_log = scratch / "netlog.json"
    browser = DevTools([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={scratch}/profile",
                        f"--log-net-log={net_log}", "--net-log-capture-mode=Default",
                        f"--window-size={WINDOW_WIDTH},1600"])
    problems = []
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        browser.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                       session=False)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            browser.send(f"{domain}.enable")
        browser.send("Page.navigate", {"url": url})
        if not browser.wait_for("Page.loadEventFired", timeout=60):
            problems.append("the page did not finish loading within 60 s")
        # MathJax typesets after the load event; then let late scripts run and log
        browser.send("Runtime.evaluate", {"awaitPromise": True, "expression":
                     "window.MathJax?.startup?.promise?.then(() => true) ?? true"}, timeout=60)
        browser.settle(quiet=1.0, timeout=10)
        typeset = browser.send("Runtime.evaluate", {"returnByValue": True, "expression":
                               "document.querySelectorAll('mjx-container').length"})["result"]["value"]
        cut_off = browser.send("Runtime.evaluate", {"returnByValue": True, "expression": CUT_OFF_CODE})
        problems += [f"at {WINDOW_WIDTH} px a code block scrolls sideways, its longest line cut: {line!r}"
                     for line in cut_off["result"]["value"]]
        if screenshot is not None:  # the whole page: a window as tall as its content
            height = browser.send("Page.getLayoutMetrics")["cssContentSize"]["height"]
            browser.send("Emulation.setDeviceMetricsOverride", {
                "width": SCREENSHOT_WIDTH, "height": min(int(height), 30000), "deviceScaleFactor": 1,
                "mobile": False})
            browser.settle(quiet=0.5, timeout=5)
            shot = browser.send("Page.captureScreenshot", {"format": "png"})
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        errors = console_errors(browser.events)
    finally:
        browser.close()
    from_page, from_browser = requested_urls(net_log, "http://127.0.0.1")
    net_log.unlink()
    return {"errors": errors, "problems": problems, "typeset": typeset,
            "from_page": from_page, "from_browser": from_browser}


def browser_check(root: Path, pages: list[str], screenshot_dir: Path | None) -> list[str]:
    chromium = find_chromium()
    if chromium is None:
        return ["--browser: no chromium found (apt-get install chromium)"]
    offenders = []
    total_errors = 0
    with serve(root) as base, tempfile.TemporaryDirectory() as scratch:
        for page in pages:
            screenshot = None
            if screenshot_dir is not None:
                screenshot_dir.mkdir(parents=True, exist_ok=True)
                screenshot = screenshot_dir / (page.replace("/", "_").removesuffix(".html") + ".png")
            seen = open_page(chromium, f"{base}/{page}", Path(scratch), screenshot)
            local = [u for u in seen["from_page"] if u.startswith(base + "/") or u.startswith(("data:", "blob:"))]
            others = sorted(set(seen["from_page"]) - set(local))
            offenders += [f"{page}: the page requested {u}" for u in others]
            offenders += [f"{page}: console error: {error}" for error in seen["errors"]]
            offenders += [f"{page}: {problem}" for problem in seen["problems"]]
            total_errors += len(seen["errors"])
            print(f"browser: {page}: {len(local)} local requests, {len(others)} to other hosts; "
                  f"{len(seen['errors'])} console errors; {seen['typeset']} formulas typeset by MathJax; "
                  f"(Chromium's own background requests, not counted: {len(seen['from_browser'])})")
            if screenshot is not None:
                print(f"browser: screenshot {screenshot}")
    print(f"browser: {len(pages)} pages, {total_errors} console errors")
    return offenders


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, nargs="?", default=Path("book/_build/html"),
                        help="the built HTML folder (default: book/_build/html)")
    parser.add_argument("--browser", action="store_true",
                        help="also open pages in headless Chromium: log its network requests and "
                             "the pages' console errors")
    parser.add_argument("--pages", nargs="*", default=None,
                        help="pages for --browser, relative to root (default: every page of the toc)")
    parser.add_argument("--screenshots", type=Path, default=None, help="with --browser: save PNGs here")
    args = parser.parse_args()

    root = args.root.resolve()
    offenders = static_scan(root)
    if args.browser and root.is_dir():
        pages = args.pages or sorted(str(p.relative_to(root)) for p in root.rglob("*.html")
                                     if not p.name.startswith(("genindex", "search"))
                                     and not p.relative_to(root).parts[0].startswith("_"))
        offenders += browser_check(root, pages, args.screenshots)
    if offenders:
        print(f"\n{len(offenders)} problem(s): resources from outside the machine or console errors:",
              file=sys.stderr)
        for offender in offenders:
            print(f"  {offender}", file=sys.stderr)
        return 1
    print("offline check passed: the book makes no requests to other hosts"
          + (" and its pages log no console errors" if args.browser else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
