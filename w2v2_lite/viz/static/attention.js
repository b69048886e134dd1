// AttentionWidget: the self-attention probabilities of every layer and head, embedded.
// data.maps: base64 uint8 (layers, heads, T, T), each map scaled so that its largest
// weight is 255 (data.peak[layer][head] holds that weight); data.distance and
// data.entropy: per (layer, head), mean over queries, computed in Python from the floats.

function render({ model, el }) {
  const data = model.get("data");
  const [L, H, T] = data.shape;
  const frame = createFrame(el, "attention", model.get("title"), 388);
  const ctx = frame.ctx;
  const controls = [
    addControl(frame, model, { name: "layer", label: "layer", min: 0, max: L - 1, step: 1 }),
    addControl(frame, model, {
      name: "head", label: "head", kind: "select",
      options: Array.from({ length: H }, (_, h) => [h, String(h)]),
    }),
  ];
  const maps = decodeBytes(data.maps);
  const mapAt = (layer, head) => maps.subarray((layer * H + head) * T * T, (layer * H + head + 1) * T * T);

  const square = { x0: 64, y0: 22, size: 300 };
  const profile = { x0: 420, x1: PICTURE_WIDTH - 12, y0: 22, y1: 142 };
  const thumbs = { x0: 420, x1: PICTURE_WIDTH - 12, y0: 196 };
  const seconds = T * data.frame_seconds;

  // Clicking a thumbnail picks that head.
  frame.canvas.addEventListener("click", (event) => {
    const box = frame.canvas.getBoundingClientRect();
    const x = ((event.clientX - box.left) / box.width) * PICTURE_WIDTH;
    const y = ((event.clientY - box.top) / box.height) * (frame.canvas.height / frame.canvas.width) * PICTURE_WIDTH;
    const size = thumbSize();
    const h = Math.floor((x - thumbs.x0) / (size + 6));
    if (h >= 0 && h < H && y >= thumbs.y0 && y <= thumbs.y0 + size && x - thumbs.x0 - h * (size + 6) <= size) {
      model.set("head", h);
      model.save_changes();
    }
  });
  const thumbSize = () => Math.min(80, ((thumbs.x1 - thumbs.x0) - 6 * (H - 1)) / H);

  function draw() {
    const layer = model.get("layer");
    const head = model.get("head");
    const map = mapAt(layer, head);

    panelTitle(ctx, square.x0, square.y0 - 4, "layer " + layer + ", head " + head +
      ": weight of key (x) for query (y)");
    const image = heatmapImage(T, T, (q, k) => map[q * T + k]);
    drawImageSharp(ctx, image, 0, 0, T, T, square.x0, square.y0, square.size, square.size);
    // Queries run down the square, so this axis counts from the top.
    ctx.strokeStyle = FAINT;
    ctx.fillStyle = INK;
    ctx.font = FONT;
    ctx.beginPath();
    ctx.moveTo(square.x0 - 2.5, square.y0);
    ctx.lineTo(square.x0 - 2.5, square.y0 + square.size);
    ctx.stroke();
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    const step = niceStep(seconds, 5);
    for (let s = 0; s <= seconds + 1e-9; s += step) {
      ctx.fillText(s.toFixed(decimalsFor(step)), square.x0 - 6, square.y0 + (s / seconds) * square.size);
    }
    ctx.save();
    ctx.translate(12, square.y0 + square.size / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    ctx.fillText("query time (s)", 0, 0);
    ctx.restore();
    horizontalAxis(ctx, square.x0, square.x0 + square.size, square.y0 + square.size + 2, 0, seconds,
      "key time (s)");

    // Mean weight against the offset k - q, over all queries: local heads peak near 0.
    const peak = data.peak[layer][head];
    const sums = new Float64Array(2 * T - 1);
    const counts = new Float64Array(2 * T - 1);
    for (let q = 0; q < T; q++) {
      for (let k = 0; k < T; k++) {
        sums[k - q + T - 1] += (map[q * T + k] / 255) * peak;
        counts[k - q + T - 1] += 1;
      }
    }
    const means = Array.from(sums, (s, i) => s / counts[i]);
    const top = Math.max(...means, 1e-9);
    panelTitle(ctx, profile.x0, profile.y0 - 4, "mean weight against offset k − q (frames)");
    ctx.strokeStyle = "#1f5fa8";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    means.forEach((m, i) => {
      const x = profile.x0 + (i / (2 * T - 2 || 1)) * (profile.x1 - profile.x0);
      const y = profile.y1 - (m / top) * (profile.y1 - profile.y0);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
    ctx.lineWidth = 1;
    horizontalAxis(ctx, profile.x0, profile.x1, profile.y1 + 2, -(T - 1), T - 1, "", 0);

    // Every head of this layer, small; the one shown is framed.
    const size = thumbSize();
    panelTitle(ctx, thumbs.x0, thumbs.y0 - 4, "the " + H + " heads of layer " + layer + " (click one)");
    for (let h = 0; h < H; h++) {
      const x = thumbs.x0 + h * (size + 6);
      const thumbMap = mapAt(layer, h);
      drawImageSharp(ctx, heatmapImage(T, T, (q, k) => thumbMap[q * T + k]), 0, 0, T, T, x, thumbs.y0, size, size);
      if (h === head) {
        ctx.strokeStyle = MASK_SOLID;
        ctx.lineWidth = 3;
        ctx.strokeRect(x - 1.5, thumbs.y0 - 1.5, size + 3, size + 3);
        ctx.lineWidth = 1;
      }
      ctx.fillStyle = INK;
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      ctx.fillText("head " + h, x + size / 2, thumbs.y0 + size + 4);
    }

    const distance = data.distance[layer][head];
    frame.readout.textContent =
      "layer " + layer + " of 0–" + (L - 1) + ", head " + head + " of 0–" + (H - 1) + ": a query attends " +
      distance.toFixed(1) + " frames (" + Math.round(distance * data.frame_seconds * 1000) + " ms) away on average\n" +
      "entropy " + data.entropy[layer][head].toFixed(2) + " nats per query (uniform over the T = " + T +
      " keys: " + Math.log(T).toFixed(2) + "); largest weight " + peak.toFixed(3);
  }

  drawOnChange(frame, model, ["layer", "head"], controls, draw);
}
