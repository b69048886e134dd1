// TemperatureWidget: Gumbel-softmax samples of the quantizer (paper eq. 1) over a grid
// of temperatures, precomputed in Python with one fixed draw of Gumbel noise n.
// data.soft[i]: base64 uint8 (T, G, V), 255 * sqrt(y) of y = softmax((l + n) / tau_i);
// data.codes[i]: (T, G) argmax entries; data.soft_usage[i]: (G, V) mean of y over frames;
// data.perplexity[i], data.code_perplexity[i]: sum over groups of exp(entropy).

function render({ model, el }) {
  const data = model.get("data");
  const [T, G, V] = data.shape;
  const frame = createFrame(el, "temperature", model.get("title"), 392);
  const ctx = frame.ctx;
  const controls = [
    addControl(frame, model, {
      name: "temperature_index", label: "temperature τ", min: 0, max: data.temperatures.length - 1,
      step: 1, format: (index) => data.temperatures[index].toPrecision(3),
    }),
    addControl(frame, model, {
      name: "group", label: "codebook group", kind: "select",
      options: Array.from({ length: G }, (_, g) => [g, String(g)]),
    }),
  ];
  const soft = data.soft.map(decodeBytes);

  const heat = { x0: 56, x1: 470, y0: 22, y1: 244 };
  const bars = { x0: 486, x1: PICTURE_WIDTH - 12 };
  const curve = { x0: 56, x1: PICTURE_WIDTH - 12, y0: 298, y1: 352 };

  function draw() {
    const index = model.get("temperature_index");
    const group = model.get("group");
    const tau = data.temperatures[index];
    const bytes = soft[index];
    const codes = data.codes[index];

    // Soft samples of the group: entries (rows, entry 0 at the bottom) by frames (columns).
    panelTitle(ctx, heat.x0, heat.y0 - 4, "soft sample y = softmax((l + n) / τ), group " + group +
      " (colour: √y); dots: the hard codes");
    const image = heatmapImage(V, T, (r, t) => bytes[(t * G + group) * V + (V - 1 - r)]);
    drawImageSharp(ctx, image, 0, 0, T, V, heat.x0, heat.y0, heat.x1 - heat.x0, heat.y1 - heat.y0);
    const cellW = (heat.x1 - heat.x0) / T;
    const cellH = (heat.y1 - heat.y0) / V;
    ctx.fillStyle = "#fff";
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 0.8;
    for (let t = 0; t < T; t++) {
      const v = codes[t][group];
      const x = heat.x0 + (t + 0.5) * cellW;
      const y = heat.y1 - (v + 0.5) * cellH;
      ctx.beginPath();
      ctx.arc(x, y, Math.max(2, Math.min(cellW, cellH) * 0.4), 0, 2 * Math.PI);
      ctx.fill();
      ctx.stroke();
    }
    ctx.lineWidth = 1;
    verticalAxis(ctx, heat.x0 - 2, heat.y0, heat.y1, 0, V - 1, "entry v");
    horizontalAxis(ctx, heat.x0, heat.x1, heat.y1 + 2, 0, T * data.frame_seconds, "time (s)");

    // Usage of each entry by the hard codes (bars) and by the averaged soft samples (line).
    const counts = new Array(V).fill(0);
    for (let t = 0; t < T; t++) counts[codes[t][group]] += 1;
    const usage = data.soft_usage[index][group];
    const most = Math.max(...counts.map((c) => c / T), ...usage, 1e-9);
    panelTitle(ctx, bars.x0, heat.y0 - 4, "usage of each entry");
    ctx.fillStyle = MASK_SOLID;
    for (let v = 0; v < V; v++) {
      const width = (counts[v] / T / most) * (bars.x1 - bars.x0);
      ctx.fillRect(bars.x0, heat.y1 - (v + 1) * cellH, width, Math.max(cellH - (cellH > 3 ? 1 : 0), 0.5));
    }
    ctx.strokeStyle = "#1f5fa8";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    for (let v = 0; v < V; v++) {
      const x = bars.x0 + (usage[v] / most) * (bars.x1 - bars.x0);
      const y = heat.y1 - (v + 0.5) * cellH;
      if (v === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    }
    ctx.stroke();
    ctx.lineWidth = 1;
    horizontalAxis(ctx, bars.x0, bars.x1, heat.y1 + 2, 0, most, "share of frames");

    // Perplexity against tau (log axis), this tau marked.
    const taus = data.temperatures;
    const logLo = Math.log(taus[0]);
    const logHi = Math.log(taus[taus.length - 1]);
    const xOf = (t) => curve.x0 + (logHi > logLo ? (Math.log(t) - logLo) / (logHi - logLo) : 0.5) * (curve.x1 - curve.x0);
    const ceiling = G * V;
    const yOf = (value) => curve.y1 - (value / ceiling) * (curve.y1 - curve.y0);
    panelTitle(ctx, curve.x0, curve.y0 - 4, "perplexity against τ (ceiling G·V = " + ceiling +
      "): blue, averaged soft samples; orange, hard codes");
    ctx.strokeStyle = FAINT;
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    ctx.moveTo(curve.x0, yOf(ceiling) + 0.5);
    ctx.lineTo(curve.x1, yOf(ceiling) + 0.5);
    ctx.stroke();
    ctx.setLineDash([]);
    [["perplexity", "#1f5fa8"], ["code_perplexity", MASK_SOLID]].forEach(([key, colour]) => {
      ctx.strokeStyle = colour;
      ctx.fillStyle = colour;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      taus.forEach((t, i) => {
        if (i === 0) ctx.moveTo(xOf(t), yOf(data[key][i]));
        else ctx.lineTo(xOf(t), yOf(data[key][i]));
      });
      ctx.stroke();
      taus.forEach((t, i) => {
        ctx.beginPath();
        ctx.arc(xOf(t), yOf(data[key][i]), i === index ? 4 : 2, 0, 2 * Math.PI);
        ctx.fill();
      });
      ctx.lineWidth = 1;
    });
    ctx.strokeStyle = INK;
    ctx.beginPath();
    ctx.moveTo(xOf(tau) + 0.5, curve.y0);
    ctx.lineTo(xOf(tau) + 0.5, curve.y1);
    ctx.stroke();
    verticalAxis(ctx, curve.x0 - 2, curve.y0, curve.y1, 0, ceiling, "");
    ctx.strokeStyle = FAINT;
    ctx.fillStyle = INK;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.beginPath();
    ctx.moveTo(curve.x0, curve.y1 + 0.5);
    ctx.lineTo(curve.x1, curve.y1 + 0.5);
    ctx.stroke();
    taus.forEach((t) => ctx.fillText(String(Number(t.toPrecision(3))), xOf(t), curve.y1 + 4));
    ctx.fillText("τ (log scale)", (curve.x0 + curve.x1) / 2, curve.y1 + 18);

    const distinct = counts.filter((c) => c > 0).length;
    frame.readout.textContent =
      "τ = " + tau.toPrecision(3) + ": the hard codes of group " + group + " use " + distinct + " of its " + V +
      " entries (argmax (l + n) / τ = argmax (l + n): the same codes at every τ)\n" +
      "perplexity of the averaged soft samples " + data.perplexity[index].toFixed(1) + ", of the hard codes " +
      data.code_perplexity[index].toFixed(1) + ", out of G·V = " + ceiling;
  }

  drawOnChange(frame, model, ["temperature_index", "group"], controls, draw);
}
