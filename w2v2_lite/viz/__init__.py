"""The book's interactive widgets: span masking, the Gumbel temperature, attention maps.

    from w2v2_lite.viz import MaskingWidget, TemperatureWidget, AttentionWidget
    MaskingWidget(waveform, p=0.065, span=10)                       # (L,) samples
    TemperatureWidget.from_quantizer(model.quantizer, features)     # Z (1, T, C)
    AttentionWidget.from_model(model, waveform)                     # or (layers, H, T, T) maps

Each widget is live in three places, and moving a control changes the picture in all
of them:

- in a kernel (JupyterLab, Colab, VS Code) it is an ipywidgets widget made with
  anywidget: its controls are traits, synced both ways (`w.p = 0.3` redraws it);
- in the rendered book, and in any page without a kernel, it is the `text/html` entry
  of its MIME bundle: the same front end inline, with its data, and no request to
  anything (the book prefers that entry to the widget view: `nb_mime_priority_overrides`
  in book/_config.yml);
- in Python, `picture()` returns what is drawn (arrays and numbers, for tests) and
  `figure()` a matplotlib Figure of it.

Where the computing happens: the mask is cheap, so the browser redraws it from the
controls with `seeded_span_mask`'s twin (fairseq's algorithm with mulberry32, a seeded
generator both languages reproduce bit for bit; the tests run the JavaScript under node
and compare). Gumbel-softmax samples at each temperature of a grid and the attention
maps of every layer and head need the model, so Python computes them once and embeds
them as uint8 base64 (about 100-300 KB per widget for the tiny model).

Why this design (what was tried, issue 8):

- Plain ipywidgets (sliders + an Output holding a matplotlib figure) redraw only through
  a Python callback. Exported as widget state and rendered by the html-manager in a
  static page, the sliders move and the picture stays frozen (ipywidgets #16, #758):
  the callback is gone with the kernel. Only a picture computed from the controls in
  the browser stays live without a kernel.
- anywidget (the widget's view is an ES module the front end runs; no build step):
  tried in JupyterLab 4 driven by headless Chromium, the view draws, moving a slider
  reaches the kernel (`w.p` changes) and setting a trait in Python redraws the view.
  In a static page its view would need the html-manager to load anywidget's own
  front-end bundle (from the book's folder, at a version-named path) and the notebook
  to carry the widget state: in a test book the manager asked for `anywidget.js` and
  `anywidget@~0.11.*/dist/index.js`, got 404s and logged console errors.
- A self-contained HTML block (the module inline, the data as JSON, a four-method
  stand-in for the model) needs nothing but the page: no RequireJS, no html-manager,
  no widget state. In a Jupyter Book 1 build it drew and redrew; it also runs where no
  widget manager exists (nbconvert's HTML, Colab without anywidget).
- Chosen: both, from one front end. `render({model, el})` is written once against
  anywidget's model API (get / set / on / save_changes); anywidget runs it in a kernel
  and the `text/html` entry of the same widget's MIME bundle runs it in a page; the
  book prefers that entry (`nb_mime_priority_overrides`). Without anywidget installed
  the widgets still work, as the page block alone.

Importing this package is cheap (no torch, no anywidget): each widget's module loads
when its name is first read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "MaskingWidget": "masking_widget",
    "TemperatureWidget": "temperature_widget",
    "AttentionWidget": "attention_widget",
    "seeded_span_mask": "seeded_masking",
    "mulberry32": "seeded_masking",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .attention_widget import AttentionWidget
    from .masking_widget import MaskingWidget
    from .seeded_masking import mulberry32, seeded_span_mask
    from .temperature_widget import TemperatureWidget


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
