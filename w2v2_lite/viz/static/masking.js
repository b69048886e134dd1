// MaskingWidget: span masking (paper section 3.1) redrawn in the browser.
// The mask is recomputed here from the controls with mulberry32 and fairseq's span
// algorithm; w2v2_lite/viz/seeded_masking.py is the Python twin, and the tests run this
// file under node to check that both draw the same mask for the same controls.

// mulberry32: a 32-bit seeded generator; each call returns a float in [0, 1) with 32
// random bits (an exact multiple of 2**-32, so Python reproduces it bit for bit).
function mulberry32(seed) {
  let state = seed >>> 0;
  return function next() {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t = (t + Math.imul(t ^ (t >>> 7), t | 61)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// fairseq's span mask for one utterance of `steps` steps (as w2v2_lite.masking.span_mask):
// int(mask_prob * T / M + u) spans, u ~ U[0, 1), at least minSpans; their starts drawn
// without replacement from [0, T - M) (widened to numSpans + 1 places when too few),
// here by a partial Fisher-Yates shuffle; each span covers M steps, cut at the end.
// Returns {mask: Uint8Array(T), starts: [start of each span, in draw order]}.
function seededSpanMask(steps, maskProb, spanLength, seed, minSpans) {
  const mask = new Uint8Array(Math.max(steps, 0));
  if (!(maskProb > 0) || steps <= 0) return { mask, starts: [] };
  const random = mulberry32(seed);
  const uniform = random();
  const numSpans = Math.max(minSpans || 0, Math.floor((maskProb * steps) / spanLength + uniform));
  let startRange = steps - spanLength;
  if (startRange <= numSpans) startRange = numSpans + 1;
  const places = Array.from({ length: startRange }, (_, i) => i);
  const starts = [];
  for (let i = 0; i < numSpans; i++) {
    const j = i + Math.floor(random() * (startRange - i));
    const chosen = places[j];
    places[j] = places[i];
    places[i] = chosen;
    starts.push(chosen);
  }
  for (const start of starts) {
    for (let k = 0; k < spanLength && start + k < steps; k++) mask[start + k] = 1;
  }
  return { mask, starts };
}

// Frames T the feature encoder makes from `samples` samples: conv = [[kernel, stride], ...].
function framesOf(samples, conv) {
  let length = samples;
  for (const [kernel, stride] of conv) {
    length = Math.floor((length - kernel) / stride) + 1;
    if (length <= 0) return 0;
  }
  return length;
}

// Everything the picture and the readout show, from the controls (mirrors picture()).
function maskingPicture(data, p, span, seconds, seed, minSpans) {
  const samples = Math.min(Math.floor(seconds * data.sample_rate), data.num_samples);
  const steps = framesOf(samples, data.conv);
  const maskProb = p * span;
  const { mask, starts } = seededSpanMask(steps, maskProb, span, seed, minSpans);
  let masked = 0;
  let runs = 0;
  for (let t = 0; t < steps; t++) {
    masked += mask[t];
    if (mask[t] && (t === 0 || !mask[t - 1])) runs++;
  }
  return {
    samples, steps, maskProb, mask, starts, masked, runs,
    fraction: masked / Math.max(steps, 1),
    meanSpan: masked / Math.max(runs, 1),
  };
}

function render({ model, el }) {
  const data = model.get("data");
  const frame = createFrame(el, "masking", model.get("title"), 318);
  const ctx = frame.ctx;
  const fixed = (digits) => (value) => Number(value).toFixed(digits);
  const controls = [
    addControl(frame, model, { name: "p", label: "p", min: 0, max: 0.5, step: 0.005, format: fixed(3) }),
    addControl(frame, model, { name: "span", label: "M", min: 1, max: 40, step: 1 }),
    addControl(frame, model, {
      name: "seconds", label: "seconds", min: data.min_seconds, max: data.duration,
      step: 0.01, format: fixed(2),
    }),
    addControl(frame, model, {
      name: "seed", label: "seed", kind: "number", min: 0, max: 4294967295, step: 1,
      parse: (text) => (text.trim() === "" ? NaN : Math.min(Math.max(Math.floor(Number(text)), 0), 4294967295)),
    }),
  ];

  const envelope = decodeBytes(data.envelope); // (blocks, 2) min, max as uint8 around 128
  const spectrogramBytes = decodeBytes(data.spectrogram); // (bins, hops), row 0 = 0 Hz
  const bins = data.spectrogram_bins;
  const hops = data.spectrogram_hops;
  // High frequencies on top: row r of the image is bin (bins - 1 - r).
  const spectrogram = heatmapImage(bins, hops, (r, c) => spectrogramBytes[(bins - 1 - r) * hops + c]);

  const x0 = 56;
  const x1 = PICTURE_WIDTH - 12;
  const wave = [18, 106];
  const spec = [130, 230];
  const strip = [254, 272];

  function draw() {
    const p = model.get("p");
    const span = model.get("span");
    const seconds = model.get("seconds");
    const picture = maskingPicture(data, p, span, seconds, model.get("seed"), model.get("min_spans"));
    const duration = picture.samples / data.sample_rate;
    const xOf = (time) => x0 + (time / Math.max(duration, 1e-9)) * (x1 - x0);
    const stepSeconds = data.frame_stride / data.sample_rate;

    // Waveform: per pixel column, the lowest and highest sample in it.
    panelTitle(ctx, x0, wave[0] - 3, "waveform X");
    const middle = (wave[0] + wave[1]) / 2;
    const half = (wave[1] - wave[0]) / 2;
    ctx.strokeStyle = "#1f5fa8";
    ctx.beginPath();
    const blocksPerPixel = picture.samples / data.envelope_block / (x1 - x0);
    for (let x = 0; x < x1 - x0; x++) {
      const first = Math.floor(x * blocksPerPixel);
      const last = Math.max(first + 1, Math.floor((x + 1) * blocksPerPixel));
      let low = 255;
      let high = 0;
      for (let b = first; b < last && b < envelope.length / 2; b++) {
        low = Math.min(low, envelope[2 * b]);
        high = Math.max(high, envelope[2 * b + 1]);
      }
      if (high < low) continue;
      ctx.moveTo(x0 + x + 0.5, middle - ((high - 128) / 127) * half);
      ctx.lineTo(x0 + x + 0.5, middle - ((low - 128) / 127) * half + 1);
    }
    ctx.stroke();
    verticalAxis(ctx, x0 - 2, wave[0], wave[1], -1, 1, "");

    // Log spectrogram, cropped to the same seconds.
    panelTitle(ctx, x0, spec[0] - 3, "log spectrogram");
    const columns = Math.min(hops, (picture.samples / data.spectrogram_hop));
    if (columns > 0) drawImageSharp(ctx, spectrogram, 0, 0, columns, bins, x0, spec[0], x1 - x0, spec[1] - spec[0]);
    verticalAxis(ctx, x0 - 2, spec[0], spec[1], 0, data.max_hz / 1000, "kHz");

    // The masked steps, shaded over both, and the mask itself as a strip of T cells.
    panelTitle(ctx, x0, strip[0] - 3, "mask over the T = " + picture.steps + " steps (" +
      Math.round(stepSeconds * 1000) + " ms each)");
    for (let t = 0; t < picture.steps; t++) {
      const left = xOf(t * stepSeconds);
      const right = xOf((t + 1) * stepSeconds);
      ctx.fillStyle = picture.mask[t] ? MASK_SOLID : "#e4e4e4";
      ctx.fillRect(left, strip[0], Math.max(right - left - (right - left > 3 ? 1 : 0), 0.5), strip[1] - strip[0]);
      if (!picture.mask[t]) continue;
      ctx.fillStyle = MASK_FILL;
      ctx.fillRect(left, wave[0], right - left, wave[1] - wave[0]);
      ctx.fillRect(left, spec[0], right - left, spec[1] - spec[0]);
    }
    horizontalAxis(ctx, x0, x1, strip[1] + 4, 0, duration, "time (s)");

    frame.readout.textContent =
      "masked " + picture.masked + " of " + picture.steps + " steps: " +
      (100 * picture.fraction).toFixed(1) + "% (p·M = " + picture.maskProb.toFixed(3) + ")\n" +
      picture.starts.length + " spans of M = " + span + " drawn; they merge into " + picture.runs +
      " runs of " + picture.meanSpan.toFixed(1) + " steps on average";
  }

  drawOnChange(frame, model, ["p", "span", "seconds", "seed", "min_spans"], controls, draw);
}
