"""The base of the three widgets: an anywidget in a kernel, a self-contained page block everywhere.

A widget's front end is one ES module, static/common.js followed by static/<kind>.js,
whose `render({model, el})` draws everything from the model's traits. Two ways to run it:

- in a kernel (JupyterLab, Colab, VS Code) anywidget loads it as the widget's `_esm`,
  and the traits stay in sync with Python both ways;
- in any page (the rendered book, an exported notebook, Colab without anywidget), the
  `text/html` entry of the widget's MIME bundle holds the same module inline in a
  `<script type="module">`, with the traits as JSON and a four-method stand-in for the
  model; moving a control there redraws in the browser, with no kernel and no network.

Without anywidget installed the widgets are plain `traitlets.HasTraits` objects that
display as that `text/html` block, still live, and still driven from Python by setting
traits (what the tests and `picture()` / `figure()` do).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import traitlets

STATIC = Path(__file__).with_name("static")
_blocks_made = itertools.count()  # numbers the page blocks made by this process

try:
    import anywidget

    WidgetBase: type = anywidget.AnyWidget
    HAS_ANYWIDGET = True
except ImportError:  # no anywidget: the text/html block is the widget
    WidgetBase = traitlets.HasTraits
    HAS_ANYWIDGET = False


class WidgetValueError(traitlets.TraitError, ValueError):
    """A control or an input the widget cannot show; the message says what would work."""


@lru_cache(maxsize=None)
def front_end_source(kind: str) -> str:
    """static/common.js + static/<kind>.js: the functions, `render` last, no export."""
    return (STATIC / "common.js").read_text() + "\n" + (STATIC / f"{kind}.js").read_text()


def es_module(kind: str) -> str:
    """The ES module anywidget loads: the front end plus its default export."""
    return front_end_source(kind) + "\nexport default { render };\n"


# Stands in for anywidget's model in a page without a kernel: the traits live in a plain
# object; set() calls the listeners at once, as Backbone does in a kernel.
PAGE_MODEL = """
{
  const host = document.getElementById(HOST_ID);
  const state = JSON.parse(document.getElementById(HOST_ID + "-state").textContent);
  const listeners = {};
  const model = {
    get: (name) => state[name],
    set: (name, value) => {
      state[name] = value;
      (listeners["change:" + name] || []).forEach((callback) => callback());
    },
    on: (event, callback) => { (listeners[event] = listeners[event] || []).push(callback); },
    off: () => {},
    save_changes: () => {},
    send: () => {},
  };
  render({ model, el: host });
}
"""


def synced(trait: traitlets.TraitType) -> traitlets.TraitType:
    """Tag a trait as part of the widget's state: synced with the kernel and put in the page."""
    return trait.tag(sync=True, page=True)


def to_numpy(array: Any, name: str) -> np.ndarray:
    """A Tensor (any device), array or nested list as a float64 numpy array."""
    if hasattr(array, "detach"):  # a torch.Tensor, without importing torch here
        array = array.detach().float().cpu().numpy()
    try:
        result = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise WidgetValueError(f"{name} must be a tensor or an array of numbers, got {type(array).__name__}") from error
    if not np.all(np.isfinite(result)):
        raise WidgetValueError(f"{name} holds NaN or infinite values; the widget can only draw finite numbers")
    return result


def encode_bytes(values: np.ndarray) -> str:
    """uint8 values (any shape, read in C order) as URL-safe base64, decoded by decodeBytes() in JS.

    URL-safe ("-" and "_" for "+" and "/"): the text holds no slash, so it can never look
    like a path (tests/test_notebooks.py scans outputs for machine paths) or end a script.
    """
    return base64.urlsafe_b64encode(np.ascontiguousarray(values, dtype=np.uint8).tobytes()).decode("ascii")


def decode_bytes(text: str, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of `encode_bytes`: a uint8 array of `shape`."""
    return np.frombuffer(base64.urlsafe_b64decode(text), dtype=np.uint8).reshape(shape)


class BookWidget(WidgetBase):
    """One widget of the book: traits tagged `page=True` are its state (controls and data).

    Subclasses set `kind` (the static/<kind>.js file and the root's data-widget), define
    their traits with `synced(...)`, and implement `picture()` and `figure()`.
    """

    kind: ClassVar[str] = ""
    title = synced(traitlets.Unicode(""))
    data = synced(traitlets.Dict())

    def picture(self) -> dict[str, Any]:
        """What the widget draws for the current controls (numbers and arrays)."""
        raise NotImplementedError

    def figure(self) -> Any:
        """A matplotlib Figure of the current picture (for print, or where no JS runs)."""
        raise NotImplementedError

    def page_state(self) -> dict[str, Any]:
        """The traits the front end reads, as JSON-ready values."""
        return {name: getattr(self, name) for name in self.trait_names(page=True)}

    def standalone_html(self) -> str:
        """A self-contained HTML block that draws the widget live, with no kernel and no network.

        The state is embedded as JSON (`</` escaped so that it cannot end the script), the
        front end inline as a module script; nothing is fetched.
        """
        state = json.dumps(self.page_state(), separators=(",", ":")).replace("</", "<\\/")
        # Unique on a page, and the same on every run of a notebook (no noise in its diffs).
        host_id = f"w2v2-{self.kind}-{next(_blocks_made)}-{hashlib.sha1(state.encode()).hexdigest()[:10]}"
        script = front_end_source(self.kind) + PAGE_MODEL.replace("HOST_ID", json.dumps(host_id))
        return (f'<div id="{host_id}" class="w2v2-host"></div>\n'
                f'<script type="application/json" id="{host_id}-state">{state}</script>\n'
                f'<script type="module">\n{script}</script>\n')

    def _repr_html_(self) -> str:
        return self.standalone_html()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """anywidget's widget view in a kernel, and the live page block as text/html.

        JupyterLab, Colab and VS Code show the widget view when they can; the book (see
        `nb_mime_priority_overrides` in book/_config.yml), nbconvert's HTML and any
        front end without the widget manager show the text/html block.
        """
        html = self.standalone_html()
        if not HAS_ANYWIDGET:
            return {"text/plain": repr(self), "text/html": html}
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return {"text/plain": repr(self), "text/html": html}
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        data = dict(data)
        data["text/html"] = html
        return data, metadata

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{name}={getattr(self, name)!r}' for name in self.control_names())})"

    @classmethod
    def control_names(cls) -> tuple[str, ...]:
        """The traits the user moves (each an input or select with data-control=name)."""
        return ()
