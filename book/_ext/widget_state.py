"""Keep the w2v2_lite.viz widgets (anywidget models) out of each page's saved widget state.

The book shows those widgets as their self-contained text/html block (see
nb_mime_priority_overrides in _config.yml), so their saved kernel state is not needed;
left in, the ipywidgets html-manager would try to load anywidget's front end
(`anywidget.js`, then `_static/html-manager/anywidget@.../dist/index.js`), fail, and
log console errors. This drops every model whose module is "anywidget", and the models
only they refer to (their layouts); when nothing is left, the page loads no widget
state and no html-manager at all.
"""

from __future__ import annotations

import json
import re
from typing import Any

WIDGET_STATE_KEY = "ipywidgets_state"  # myst-nb's key for the state script of a page
REFERENCE = re.compile(r"IPY_MODEL_([0-9a-f]+)")


def references(model: dict[str, Any]) -> set[str]:
    return set(REFERENCE.findall(json.dumps(model.get("state", {}))))


def drop_anywidget_state(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    js_files = getattr(app.env, "nb_metadata", {}).get(pagename, {}).get("js_files", {})
    if WIDGET_STATE_KEY not in js_files:
        return
    uri, attributes = js_files[WIDGET_STATE_KEY]
    state = json.loads(attributes["body"].replace(r"<\/script>", "</script>"))
    models = state["state"]
    dropped = {model_id for model_id, model in models.items() if model.get("model_module") == "anywidget"}
    if not dropped:
        return
    kept = {model_id: model for model_id, model in models.items() if model_id not in dropped}
    used_by_kept = set().union(*(references(model) for model in kept.values()))
    orphans = set().union(*(references(models[model_id]) for model_id in dropped)) - used_by_kept
    kept = {model_id: model for model_id, model in kept.items() if model_id not in orphans}
    if kept:
        state["state"] = kept
        body = json.dumps(state).replace("</script>", r"<\/script>")
        js_files[WIDGET_STATE_KEY] = (uri, {**attributes, "body": body})
    else:  # nothing left for the html-manager: load neither the state nor its scripts
        for key in [key for key in js_files if key.startswith("ipywidgets_")]:
            del js_files[key]


def setup(app: Any) -> dict[str, Any]:
    # before myst-nb's own html-page-context handler (priority 500) adds the scripts
    app.connect("html-page-context", drop_anywidget_state, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
