// Shared by the three widgets of w2v2_lite.viz; each widget's module is this file, then
// its own file, then either `export default { render }` (anywidget, in a kernel) or a
// small shim that feeds `render` the traits embedded in the page (the book, no kernel).
// The model is anywidget's: model.get(name), model.set(name, value),
// model.save_changes(), model.on("change:name", callback).
// No network: nothing here loads anything; everything is drawn on a <canvas>.

const PICTURE_WIDTH = 720; // canvas size in CSS pixels; it shrinks with the page
const FONT = "11px sans-serif";
const INK = "#222";
const FAINT = "#888";
const MASK_FILL = "rgba(255, 140, 0, 0.40)";
const MASK_SOLID = "rgb(235, 120, 0)";

// The widget's frame: root, a row of controls, the picture and a text readout.
// DOM contract (WIDGETS.md): div.w2v2-widget[data-widget], controls carry
// data-control="<trait>", canvas.w2v2-picture, .w2v2-readout, data-ready, data-draws.
function createFrame(el, kind, title, height) {
  const root = document.createElement("div");
  root.className = "w2v2-widget tex2jax_ignore mathjax_ignore";
  root.dataset.widget = kind;
  root.dataset.draws = "0";
  root.style.cssText = "font: 13px sans-serif; color: " + INK + "; background: #fff;" +
    "border: 1px solid #ddd; border-radius: 4px; padding: 8px; max-width: " +
    (PICTURE_WIDTH + 18) + "px; box-sizing: border-box;";
  if (title) {
    const heading = document.createElement("div");
    heading.className = "w2v2-title";
    heading.style.cssText = "font-weight: bold; margin-bottom: 4px;";
    heading.textContent = title;
    root.appendChild(heading);
  }
  const controls = document.createElement("div");
  controls.className = "w2v2-controls";
  controls.style.cssText = "display: flex; flex-wrap: wrap; gap: 4px 18px; margin-bottom: 6px;";
  root.appendChild(controls);
  const canvas = document.createElement("canvas");
  canvas.className = "w2v2-picture";
  canvas.style.cssText = "display: block; width: 100%; max-width: " + PICTURE_WIDTH + "px;";
  root.appendChild(canvas);
  const readout = document.createElement("div");
  readout.className = "w2v2-readout";
  readout.style.cssText = "margin-top: 4px; font-family: monospace; font-size: 12px;" +
    "white-space: pre-wrap;";
  root.appendChild(readout);
  el.appendChild(root);
  const ctx = sizeCanvas(canvas, PICTURE_WIDTH, height);
  return { root, controls, canvas, ctx, readout };
}

// Crisp drawing on high-density screens: the backing store has devicePixelRatio times
// the CSS pixels, and the context is scaled so that code draws in CSS pixels.
function sizeCanvas(canvas, width, height) {
  const ratio = (typeof window !== "undefined" && window.devicePixelRatio) || 1;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.aspectRatio = width + " / " + height;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return ctx;
}

// One labelled control bound to a trait: the input sets the trait, and a change of the
// trait (from the user or from Python) updates the input and its printed value.
// spec: {name, label, kind: "range"|"number"|"select", min, max, step, options, format}
function addControl(frame, model, spec) {
  const label = document.createElement("label");
  label.style.cssText = "display: inline-flex; align-items: center; gap: 6px;";
  const caption = document.createElement("span");
  caption.textContent = spec.label;
  label.appendChild(caption);
  let input;
  if (spec.kind === "select") {
    input = document.createElement("select");
    spec.options.forEach(([value, text]) => {
      const option = document.createElement("option");
      option.value = String(value);
      option.textContent = text;
      input.appendChild(option);
    });
  } else {
    input = document.createElement("input");
    input.type = spec.kind || "range";
    input.min = String(spec.min);
    input.max = String(spec.max);
    input.step = String(spec.step);
    if (input.type === "number") input.style.width = "7em";
  }
  input.dataset.control = spec.name;
  label.appendChild(input);
  const shown = document.createElement("span");
  shown.className = "w2v2-value";
  shown.style.cssText = "font-family: monospace; min-width: 3.5em;";
  if (input.type === "range") label.appendChild(shown);
  frame.controls.appendChild(label);

  const format = spec.format || ((value) => String(value));
  const show = () => {
    const value = model.get(spec.name);
    if (document.activeElement !== input || input.type === "range") input.value = String(value);
    shown.textContent = format(value);
  };
  const parse = spec.parse || Number;
  const send = () => {
    const value = parse(input.value);
    if (Number.isNaN(value) || value === model.get(spec.name)) return;
    model.set(spec.name, value);
    model.save_changes();
  };
  input.addEventListener("input", send);
  input.addEventListener("change", send);
  show();
  return { input, show };
}

// Redraw whenever one of `names` changes; draw once now. Returns the draw function.
function drawOnChange(frame, model, names, controls, draw) {
  const redraw = () => {
    controls.forEach((control) => control.show());
    frame.ctx.clearRect(0, 0, frame.canvas.width, frame.canvas.height);
    frame.ctx.fillStyle = "#fff";
    frame.ctx.fillRect(0, 0, frame.canvas.width, frame.canvas.height);
    draw();
    frame.root.dataset.draws = String(Number(frame.root.dataset.draws) + 1);
    frame.root.dataset.ready = "1";
  };
  names.forEach((name) => model.on("change:" + name, redraw));
  redraw();
  return redraw;
}

// URL-safe base64 text (Python's base64.urlsafe_b64encode of uint8 bytes) -> Uint8Array.
function decodeBytes(text) {
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// viridis, from 9 anchors, linearly between them: value in [0, 1] -> [r, g, b].
const VIRIDIS = [
  [68, 1, 84], [71, 45, 123], [59, 82, 139], [44, 114, 142], [33, 145, 140],
  [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
];
const VIRIDIS_TABLE = (() => {
  const table = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const position = (i / 255) * (VIRIDIS.length - 1);
    const low = Math.min(Math.floor(position), VIRIDIS.length - 2);
    const t = position - low;
    for (let c = 0; c < 3; c++) {
      table[i * 3 + c] = Math.round(VIRIDIS[low][c] * (1 - t) + VIRIDIS[low + 1][c] * t);
    }
  }
  return table;
})();

// An offscreen canvas of `rows` x `cols` cells coloured by `value(row, col)` in 0..255
// (row 0 at the top), to be scaled onto the picture with drawImage.
function heatmapImage(rows, cols, value) {
  const image = document.createElement("canvas");
  image.width = Math.max(cols, 1);
  image.height = Math.max(rows, 1);
  const ctx = image.getContext("2d");
  const pixels = ctx.createImageData(image.width, image.height);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = Math.max(0, Math.min(255, Math.round(value(r, c))));
      const at = (r * cols + c) * 4;
      pixels.data[at] = VIRIDIS_TABLE[v * 3];
      pixels.data[at + 1] = VIRIDIS_TABLE[v * 3 + 1];
      pixels.data[at + 2] = VIRIDIS_TABLE[v * 3 + 2];
      pixels.data[at + 3] = 255;
    }
  }
  ctx.putImageData(pixels, 0, 0);
  return image;
}

function drawImageSharp(ctx, image, sx, sy, sw, sh, dx, dy, dw, dh) {
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(image, sx, sy, sw, sh, dx, dy, dw, dh);
  ctx.imageSmoothingEnabled = true;
}

// A step (1, 2 or 5 times a power of ten) that puts about `count` ticks on `span`.
function niceStep(span, count) {
  const raw = span / Math.max(count, 1);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const factor of [1, 2, 5, 10]) if (factor * power >= raw) return factor * power;
  return 10 * power;
}

// Ticks and numbers along a horizontal axis at y, for values lo..hi drawn at x0..x1.
function horizontalAxis(ctx, x0, x1, y, lo, hi, label, digits) {
  ctx.strokeStyle = FAINT;
  ctx.fillStyle = INK;
  ctx.font = FONT;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  ctx.beginPath();
  ctx.moveTo(x0, y + 0.5);
  ctx.lineTo(x1, y + 0.5);
  ctx.stroke();
  if (hi > lo) {
    const step = niceStep(hi - lo, 6);
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) {
      const x = x0 + ((v - lo) / (hi - lo)) * (x1 - x0);
      ctx.beginPath();
      ctx.moveTo(x + 0.5, y);
      ctx.lineTo(x + 0.5, y + 4);
      ctx.stroke();
      ctx.fillText(v.toFixed(digits === undefined ? decimalsFor(step) : digits), x, y + 5);
    }
  }
  if (label) ctx.fillText(label, (x0 + x1) / 2, y + 18);
}

function decimalsFor(step) {
  return step >= 1 ? 0 : Math.min(3, Math.ceil(-Math.log10(step) - 1e-9));
}

// Numbers along a vertical axis at x, for values lo (at y1, the bottom) .. hi (at y0).
function verticalAxis(ctx, x, y0, y1, lo, hi, label) {
  ctx.strokeStyle = FAINT;
  ctx.fillStyle = INK;
  ctx.font = FONT;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  ctx.beginPath();
  ctx.moveTo(x - 0.5, y0);
  ctx.lineTo(x - 0.5, y1);
  ctx.stroke();
  if (hi > lo) {
    const step = niceStep(hi - lo, 3);
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) {
      const y = y1 - ((v - lo) / (hi - lo)) * (y1 - y0);
      ctx.beginPath();
      ctx.moveTo(x - 4, y + 0.5);
      ctx.lineTo(x, y + 0.5);
      ctx.stroke();
      ctx.fillText(v.toFixed(decimalsFor(step)), x - 6, y);
    }
  }
  if (label) {
    ctx.save();
    ctx.translate(12, (y0 + y1) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(label, 0, 0);
    ctx.restore();
  }
}

function panelTitle(ctx, x, y, text) {
  ctx.fillStyle = INK;
  ctx.font = "bold " + FONT;
  ctx.textAlign = "left";
  ctx.textBaseline = "bottom";
  ctx.fillText(text, x, y);
}
