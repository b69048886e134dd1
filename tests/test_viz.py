"""The book's widgets (w2v2_lite.viz): moving a control changes what is drawn, and the drawing is right.

Each widget is driven from Python by setting its control traits; `picture()` is checked
against a direct computation (the masking functions, the quantizer, the model). The page
block (text/html) must need nothing outside itself; the browser's mask must equal
Python's (run under node); and, where Chromium is installed, each block is opened in
it, its controls moved, and its DOM checked against the contract in the widgets' docs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from w2v2_lite.config import ModelConfig
from w2v2_lite.masking import span_mask, span_statistics
from w2v2_lite.models import Wav2Vec2ForPreTraining
from w2v2_lite.quantizer import codebook_perplexity
from w2v2_lite.viz import AttentionWidget, MaskingWidget, TemperatureWidget, seeded_span_mask
from w2v2_lite.viz._widget import HAS_ANYWIDGET, STATIC, es_module, front_end_source
from w2v2_lite.viz.seeded_masking import span_mask_from_draws

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000
NODE = shutil.which("node")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Voiced bursts with silences between them, (L,) float32."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    bursts = np.clip(np.sin(2 * np.pi * 2.0 * t), 0, None)
    noise = np.random.default_rng(seed).standard_normal(len(t))
    return (bursts * (np.sin(2 * np.pi * 150 * t) + 0.3 * noise)).astype(np.float32)


@pytest.fixture(scope="module")
def model() -> Wav2Vec2ForPreTraining:
    torch.manual_seed(0)
    return Wav2Vec2ForPreTraining(ModelConfig.tiny()).eval()


@pytest.fixture(scope="module")
def waveform() -> torch.Tensor:
    return torch.from_numpy(speech_like(1.0))


@pytest.fixture(scope="module")
def features(model, waveform) -> torch.Tensor:
    with torch.no_grad():
        return model.wav2vec2(waveform[None]).extract_features  # (1, T, C)


@pytest.fixture(scope="module")
def widgets(model, waveform, features) -> dict:
    return {
        "masking": MaskingWidget(waveform, p=0.065, span=10),
        "temperature": TemperatureWidget.from_quantizer(model.quantizer, features),
        "attention": AttentionWidget.from_model(model, waveform),
    }


def html_of(widget) -> str:
    bundle = widget._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    return data["text/html"]


# ---------------------------------------------------------------- import
def test_import_is_cheap():
    code = ("import sys, w2v2_lite.viz; "
            "assert 'torch' not in sys.modules and 'anywidget' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---------------------------------------------------------------- masking
def test_seeded_algorithm_is_span_mask_with_other_random_numbers():
    # Fed torch's draws in span_mask's order, the twin's algorithm gives span_mask's mask.
    cases = [(200, 0.65, 10, 0), (50, 0.65, 10, 2), (7, 0.9, 10, 1), (120, 0.2, 3, 0), (300, 1.3, 20, 0)]
    for seed, (steps, mask_prob, span, min_spans) in enumerate(cases):
        expected = span_mask((1, steps), mask_prob, span, min_spans, generator=torch.Generator().manual_seed(seed))[0]
        generator = torch.Generator().manual_seed(seed)
        mask, _ = span_mask_from_draws(
            steps, mask_prob, span, min_spans,
            uniform=lambda: torch.rand((), generator=generator).item(),
            first_of_permutation=lambda n, k: torch.randperm(n, generator=generator)[:k].tolist())
        np.testing.assert_array_equal(mask, expected.numpy())


def test_masked_fraction_follows_p_and_m_on_long_inputs():
    widget = MaskingWidget(speech_like(60.0), max_seconds=60.0)
    assert widget.picture()["steps"] == ModelConfig.tiny().num_frames(60 * SAMPLE_RATE) == 2999
    for p, span in [(0.005, 10), (0.065, 10), (0.02, 5), (0.1, 3)]:
        widget.p, widget.span = p, span
        fractions = []
        for seed in range(8):
            widget.seed = seed
            picture = widget.picture()
            assert picture["mask_prob"] == pytest.approx(p * span)
            fractions.append(picture["fraction"])
        # spans overlap, so the fraction is below p*M: about 1 - (1 - p)^M, close to p*M when p*M is small
        assert np.mean(fractions) == pytest.approx(1 - (1 - p) ** span, abs=0.02)
        assert max(fractions) <= p * span + 0.01
    widget.p, widget.span = 0.005, 10
    assert widget.picture()["fraction"] == pytest.approx(0.05, abs=0.01)


def test_masking_controls_change_the_picture(waveform):
    widget = MaskingWidget(waveform, p=0.065, span=10, seed=3)
    first = widget.picture()
    assert first["steps"] == ModelConfig.tiny().num_frames(len(waveform)) == 49
    # its numbers are span_statistics of its mask
    fraction, mean_span = span_statistics(torch.from_numpy(first["mask"])[None])
    assert (first["fraction"], first["mean_span"]) == pytest.approx((fraction, mean_span))
    assert first["masked"] == first["mask"].sum() > 0
    widget.seed = 4
    assert not np.array_equal(widget.picture()["mask"], first["mask"])
    widget.seconds = 0.5
    half = widget.picture()
    assert half["samples"] == 8000 and half["steps"] == ModelConfig.tiny().num_frames(8000) == 24
    widget.p = 0.0
    assert widget.picture()["masked"] == 0 and widget.picture()["masked_seconds"] == []
    widget.p, widget.span = 0.3, 4
    picture = widget.picture()
    assert picture["mean_span"] >= 4 and picture["mask_prob"] == pytest.approx(1.2)
    start, end = picture["masked_seconds"][0]
    assert end - start == pytest.approx(0.02 * round((end - start) / 0.02)) and end > start


def test_masking_rejects_bad_input_and_says_what_works(waveform):
    with pytest.raises(ValueError, match=r"shape \(2, 16000\).*waveform\[0\]"):
        MaskingWidget(torch.zeros(2, 16000))
    with pytest.raises(ValueError, match="fewer than the 400"):
        MaskingWidget(np.zeros(300))
    with pytest.raises(ValueError, match="NaN"):
        MaskingWidget(np.full(16000, np.nan))
    widget = MaskingWidget(waveform)
    with pytest.raises(ValueError, match=r"p=1.5 is outside \[0, 1\].*0.065"):
        widget.p = 1.5
    with pytest.raises(ValueError, match="span=0"):
        widget.span = 0
    with pytest.raises(ValueError, match=r"seconds=3.0 is outside \[0.03, 1.000\]"):
        widget.seconds = 3.0
    with pytest.raises(ValueError, match=r"seed=-1 must lie in \[0, 2\*\*32\)"):
        widget.seed = -1
    assert widget.p == 0.065  # a refused value leaves the control as it was


def run_node(script: str) -> str:
    done = subprocess.run([NODE, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_browser_draws_the_same_mask_as_python():
    rng = np.random.default_rng(0)
    cases = [[int(rng.integers(0, 400)), float(rng.uniform(0, 2.0)), int(rng.integers(1, 25)),
              int(rng.integers(0, 2 ** 32)), int(rng.integers(0, 3))] for _ in range(300)]
    cases += [[0, 0.65, 10, 1, 0], [5, 0.65, 10, 2, 2], [100, 0.0, 10, 3, 0], [30, 0.65, 10, 2 ** 32 - 1, 0]]
    script = (front_end_source("masking") + f"\nconst cases = {json.dumps(cases)};\n"
              "const out = cases.map(([T, q, M, seed, k]) => { const r = seededSpanMask(T, q, M, seed, k);"
              " return [Array.from(r.mask), r.starts]; });\n"
              "const random = mulberry32(12345);\n"
              "console.log(JSON.stringify({masks: out, floats: [random(), random(), random()]}));\n")
    result = json.loads(run_node(script))
    for (steps, mask_prob, span, seed, min_spans), (mask, starts) in zip(cases, result["masks"]):
        expected_mask, expected_starts = seeded_span_mask(steps, mask_prob, span, seed, min_spans)
        assert mask == expected_mask.astype(int).tolist() and starts == expected_starts
    from w2v2_lite.viz import mulberry32
    random = mulberry32(12345)
    assert result["floats"] == [random(), random(), random()]


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_browser_picture_equals_python_picture(waveform):
    widget = MaskingWidget(speech_like(3.0), p=0.065, span=10)
    controls = [(0.065, 10, 3.0, 0), (0.2, 5, 1.234, 7), (0.01, 20, 0.03, 99), (0.5, 1, 2.5, 2 ** 31)]
    script = (front_end_source("masking") + f"\nconst data = {json.dumps(widget.data)};\n"
              f"const controls = {json.dumps(controls)};\n"
              "console.log(JSON.stringify(controls.map(([p, M, s, seed]) => {"
              " const r = maskingPicture(data, p, M, s, seed, 0);"
              " return [r.steps, Array.from(r.mask), r.fraction, r.meanSpan, r.runs]; })));\n")
    for (p, span, seconds, seed), (steps, mask, fraction, mean_span, runs) in zip(controls, json.loads(run_node(script))):
        widget.p, widget.span, widget.seconds, widget.seed = p, span, seconds, seed
        picture = widget.picture()
        assert (steps, mask, runs) == (picture["steps"], picture["mask"].astype(int).tolist(), picture["runs"])
        assert (fraction, mean_span) == pytest.approx((picture["fraction"], picture["mean_span"]))


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_es_modules_parse(tmp_path):
    for kind in ("masking", "temperature", "attention"):
        path = tmp_path / f"{kind}.mjs"
        path.write_text(es_module(kind))
        done = subprocess.run([NODE, "--check", str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- temperature
def test_temperature_codes_and_perplexity_match_the_quantizer(model, features):
    quantizer = model.quantizer
    widget = TemperatureWidget.from_quantizer(quantizer, features, temperatures=[0.1, 0.5, 2.0, 10.0], seed=5)
    groups, entries = quantizer.num_groups, quantizer.num_codes
    scores = quantizer.logits(features).reshape(-1, entries).float().detach()
    perplexities = []
    for temperature in [0.1, 0.5, 2.0, 10.0]:
        widget.temperature = temperature
        picture = widget.picture()
        assert picture["temperature"] == temperature
        # the codes the quantizer picks in training at this temperature, with the same noise
        quantizer.train()
        quantizer.set_temperature(temperature)
        torch.manual_seed(5)
        with torch.no_grad():
            codes = quantizer(features).codes[0]
        quantizer.eval()
        np.testing.assert_array_equal(picture["codes"], codes.numpy())
        torch.manual_seed(5)
        soft = F.gumbel_softmax(scores, tau=temperature, hard=False).view(-1, groups, entries)
        torch.testing.assert_close(torch.from_numpy(picture["soft"]), soft)
        assert picture["perplexity"] == pytest.approx(float(codebook_perplexity(soft)), rel=1e-5)
        one_hot = F.one_hot(codes, entries).float()
        assert picture["code_perplexity"] == pytest.approx(float(codebook_perplexity(one_hot)), rel=1e-5)
        for g in range(groups):
            np.testing.assert_array_equal(picture["usage"][g], np.bincount(codes[:, g].numpy(), minlength=entries))
        assert picture["max_perplexity"] == groups * entries
        perplexities.append(picture["perplexity"])
    # a hotter temperature flattens the soft samples: their averaged distribution spreads out
    assert perplexities == sorted(perplexities) and perplexities[-1] > 2 * perplexities[0]
    widget.group = 1
    assert widget.picture()["group"] == 1


def test_temperature_leaves_the_global_generator_alone(model, features):
    state = torch.get_rng_state()
    TemperatureWidget.from_quantizer(model.quantizer, features)
    assert torch.equal(torch.get_rng_state(), state)


def test_temperature_rejects_bad_input(model, features):
    with pytest.raises(ValueError, match=r"features has shape \(2, .*\(1, T, C\) or \(T, C\) with C = 128"):
        TemperatureWidget.from_quantizer(model.quantizer, features.expand(2, -1, -1))
    with pytest.raises(ValueError, match="positive and increasing"):
        TemperatureWidget.from_quantizer(model.quantizer, features, temperatures=[1.0, 0.5])
    with pytest.raises(ValueError, match="not the logits"):
        TemperatureWidget(torch.randn(2, 5, 2, 8), [0.5, 1.0])
    widget = TemperatureWidget.from_quantizer(model.quantizer, features[0], temperatures=[0.5, 1.0])
    with pytest.raises(ValueError, match=r"temperature=0.7 is not on the grid \[0.5, 1.0\]"):
        widget.temperature = 0.7
    with pytest.raises(ValueError, match=r"group=2 is outside \[0, 1\]"):
        widget.group = 2
    with pytest.raises(ValueError, match=r"temperature_index=5 is outside \[0, 1\]"):
        widget.temperature_index = 5


# ---------------------------------------------------------------- attention
def test_attention_maps_are_the_models(model, waveform, widgets):
    widget = widgets["attention"]
    with torch.no_grad():
        attentions = model.wav2vec2(waveform[None], output_attentions=True).attentions
    layers, heads = len(attentions), attentions[0].shape[1]
    assert widget.data["shape"] == [layers, heads, 49]
    for layer in range(layers):
        for head in range(heads):
            widget.layer, widget.head = layer, head
            picture = widget.picture()
            assert (picture["layer"], picture["head"]) == (layer, head)
            torch.testing.assert_close(torch.from_numpy(picture["map"]), attentions[layer][0, head])
            offsets = (torch.arange(49)[None, :] - torch.arange(49)[:, None]).abs()
            distance = (attentions[layer][0, head] * offsets).sum(-1).mean()
            assert picture["mean_distance"] == pytest.approx(float(distance), rel=1e-4)
    assert not model.training  # from_model restores the mode


def test_attention_accepts_stacked_maps_and_rejects_bad_ones(model, waveform):
    maps = torch.rand(2, 3, 10, 10).softmax(dim=-1)
    widget = AttentionWidget(maps, frame_seconds=0.02, layer=1, head=2)
    torch.testing.assert_close(torch.from_numpy(widget.picture()["map"]), maps[1, 2])
    listed = AttentionWidget([maps[0][None], maps[1][None]])
    assert listed.data == AttentionWidget(maps).data
    with pytest.raises(ValueError, match=r"shape \(2, 3, 10, 9\).*\(layers, heads, T, T\)"):
        AttentionWidget(maps[..., :9])
    with pytest.raises(ValueError, match="probabilities"):
        AttentionWidget(torch.randn(2, 3, 10, 10))
    with pytest.raises(ValueError, match="shorter utterance"):
        AttentionWidget(torch.full((4, 4, 700, 700), 1 / 700))
    with pytest.raises(ValueError, match=r"layer=2 is outside \[0, 1\]"):
        widget.layer = 2
    with pytest.raises(ValueError, match=r"head=-1 is outside \[0, 2\]"):
        widget.head = -1


# ---------------------------------------------------------------- every widget
@pytest.mark.parametrize("kind", ["masking", "temperature", "attention"])
def test_page_block_is_self_contained(widgets, kind):
    html = html_of(widgets[kind])
    assert not re.search(r"https?://", html), "the page block names an address"
    assert not re.search(r"<script[^>]*\bsrc=", html) and not re.search(r"\bimport\s*\(|\bimport\s.*\bfrom\b", html)
    assert '<script type="module">' in html and "render({ model, el: host })" in html
    state = re.search(r'<script type="application/json" id="[^"]+">(.*?)</script>', html, re.S).group(1)
    assert json.loads(state)["data"] == widgets[kind].data
    assert len(html) < 300_000, f"{len(html)} bytes"
    # the embedded bytes are URL-safe base64: no slash that could read as a machine path
    payloads = [value for value in widgets[kind].data.values() if isinstance(value, str)]
    payloads += [value for value in widgets[kind].data.get("soft", [])]
    assert payloads and not any("/" in value for value in payloads)
    bundle = widgets[kind]._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    if HAS_ANYWIDGET:  # a widget in a kernel too
        assert "application/vnd.jupyter.widget-view+json" in data


@pytest.mark.parametrize("kind", ["masking", "temperature", "attention"])
def test_figure_draws_the_current_picture(widgets, kind):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = widgets[kind].figure()
    assert figure.axes and all(ax.has_data() for ax in figure.axes if ax.get_label() != "<colorbar>")
    plt.close(figure)


def test_without_anywidget_the_widgets_are_the_page_block():
    code = ("import sys; sys.modules['anywidget'] = None\n"
            "import numpy as np\n"
            "from w2v2_lite.viz import MaskingWidget\n"
            "w = MaskingWidget(np.sin(np.arange(16000) / 9.0))\n"
            "w.p = 0.2\n"
            "bundle = w._repr_mimebundle_()\n"
            "assert set(bundle) == {'text/plain', 'text/html'}, bundle.keys()\n"
            "assert '\"p\":0.2' in bundle['text/html'] and w.picture()['masked'] > 0\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_static_files_are_package_data():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "viz/static/*.js" in config["w2v2_lite"]
    assert {path.name for path in STATIC.glob("*.js")} == {"common.js", "masking.js", "temperature.js", "attention.js"}


# Moves each control of each widget in the page and back, recording what the DOM contract names.
BROWSER_PROBE = """
<script type="module">
window.addEventListener("load", () => setTimeout(() => {
  const report = [];
  for (const root of document.querySelectorAll("div.w2v2-widget")) {
    const canvas = root.querySelector("canvas.w2v2-picture");
    const readout = root.querySelector(".w2v2-readout");
    const entry = {widget: root.dataset.widget, ready: root.dataset.ready, controls: {}};
    for (const input of root.querySelectorAll("[data-control]")) {
      const before = [canvas.toDataURL(), readout.textContent, Number(root.dataset.draws)];
      const original = input.value;
      // a value other than the current one
      if (input.tagName === "SELECT") input.selectedIndex = (input.selectedIndex + 1) % input.options.length;
      else if (input.type === "number") input.value = String(Number(input.value) + 1);
      else {
        const [low, high, now] = [Number(input.min), Number(input.max), Number(input.value)];
        input.value = String(now - low > (high - low) / 2 ? low + 0.2 * (high - low) : low + 0.8 * (high - low));
      }
      input.dispatchEvent(new Event("input"));
      entry.controls[input.dataset.control] = {
        picture: canvas.toDataURL() !== before[0], readout: readout.textContent !== before[1],
        draws: Number(root.dataset.draws) - before[2]};
      input.value = original;  // back, so that each control moves from the first state
      input.dispatchEvent(new Event("input"));
    }
    report.push(entry);
  }
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(report);
  document.body.appendChild(out);
}, 100));
</script>
"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_controls_redraw_in_the_browser(widgets, tmp_path):
    page = tmp_path / "widgets.html"
    blocks = "\n".join(html_of(widgets[kind]) for kind in ("masking", "temperature", "attention"))
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'></head><body>{blocks}"
                    f"{BROWSER_PROBE}</body></html>")
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stderr[-2000:]
    report = json.loads(found.group(1).replace("&quot;", '"'))
    assert [entry["widget"] for entry in report] == ["masking", "temperature", "attention"]
    expected_controls = {"masking": {"p", "span", "seconds", "seed"}, "temperature": {"temperature_index", "group"},
                         "attention": {"layer", "head"}}
    for entry in report:
        assert entry["ready"] == "1"
        assert set(entry["controls"]) == expected_controls[entry["widget"]]
        for name, moved in entry["controls"].items():
            assert moved == {"picture": True, "readout": True, "draws": 1}, (entry["widget"], name, moved)
