"""AttentionWidget: browse the self-attention maps of the context network, layer by layer, head by head.

The maps are softmax(Q K^T / sqrt(d_head)) of each layer and head (B = 1), as
`SelfAttention` computes them with `need_weights=True`; `from_model` runs a model once
to collect them. They are embedded as uint8 (each map scaled to its own largest
weight), with the mean attention distance and entropy of each map computed here
from the floats.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import traitlets

from ._widget import BookWidget, WidgetValueError, encode_bytes, es_module, synced, to_numpy

MAX_EMBEDDED_BYTES = 1_500_000  # layers * heads * T * T; about 2 MB of page once in base64


def stack_attentions(attentions: Any) -> np.ndarray:
    """Attention probabilities as (layers, heads, T, T) float64.

    Accepts that array itself, (layers, 1, heads, T, T), or a list of per-layer (1, H, T, T)
    or (H, T, T) tensors (what a model returns with output_attentions=True).
    """
    if isinstance(attentions, (list, tuple)):
        if not attentions:
            raise WidgetValueError("attentions is empty: pass one (1, H, T, T) map per layer, e.g. "
                                   "model(waveform, output_attentions=True).attentions")
        attentions = np.stack([to_numpy(layer, "attentions") for layer in attentions])
    maps = to_numpy(attentions, "attentions")
    if maps.ndim == 5 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim != 4 or maps.shape[-1] != maps.shape[-2]:
        raise WidgetValueError(
            f"attentions has shape {tuple(maps.shape)}; expected (layers, heads, T, T) for one utterance "
            "(or a list of (1, heads, T, T), one per layer); for a batch, take one utterance: [a[:1] for a in ...]")
    if maps.min() < -1e-6 or not np.allclose(maps.sum(axis=-1), 1.0, atol=1e-3):
        raise WidgetValueError("attentions must be probabilities: each query's weights over the keys sum to 1 "
                               "(softmax(Q K^T / sqrt(d)), not the scores before the softmax)")
    return maps


class AttentionWidget(BookWidget):
    """The attention maps of every layer and head of one utterance; controls `layer` and `head` (0-based).

    Args:
        attentions: (layers, heads, T, T) probabilities, query by key, a Tensor or an
            array, or a list of per-layer (1, heads, T, T) maps.
        frame_seconds: seconds between frames (0.02 for the paper's feature encoder).
        title: shown above the controls.
        layer, head: the map shown first.
    """

    kind = "attention"
    _esm = es_module("attention")

    layer = synced(traitlets.Int(0))
    head = synced(traitlets.Int(0))

    def __init__(self, attentions: Any, frame_seconds: float = 0.02, title: str | None = None,
                 layer: int = 0, head: int = 0) -> None:
        maps = stack_attentions(attentions)
        layers, heads, steps, _ = maps.shape
        if maps.size > MAX_EMBEDDED_BYTES:
            raise WidgetValueError(
                f"{layers} layers x {heads} heads x {steps} x {steps} frames is {maps.size:,} weights, more than "
                f"the {MAX_EMBEDDED_BYTES:,} a page should embed; use a shorter utterance (T <= "
                f"{int(math.sqrt(MAX_EMBEDDED_BYTES / (layers * heads)))} frames, "
                f"{math.sqrt(MAX_EMBEDDED_BYTES / (layers * heads)) * frame_seconds:.1f} s) or fewer layers")
        self._maps = maps.astype(np.float32)
        offsets = np.abs(np.arange(steps)[None, :] - np.arange(steps)[:, None])  # |k - q|, (T, T)
        peak = maps.max(axis=(-1, -2))  # (layers, heads)
        logs = np.log(maps, out=np.zeros_like(maps), where=maps > 0)
        data = {
            "shape": [layers, heads, steps],
            "frame_seconds": float(frame_seconds),
            "maps": encode_bytes(np.round(maps / np.maximum(peak, 1e-12)[..., None, None] * 255)),
            "peak": peak.tolist(),
            "distance": (maps * offsets).sum(axis=-1).mean(axis=-1).tolist(),
            "entropy": (-(maps * logs).sum(axis=-1)).mean(axis=-1).tolist(),
        }
        if title is None:
            title = f"Self-attention: {layers} layers x {heads} heads over {steps} frames"
        super().__init__(data=data, title=title)
        self.layer, self.head = layer, head

    @classmethod
    def from_model(cls, model: Any, waveform: Any, max_seconds: float = 2.5, sample_rate: int = 16000,
                   title: str | None = None) -> "AttentionWidget":
        """Run `model` once on `waveform` ((L,) or (1, L)) and browse its attention maps.

        model: a `Wav2Vec2ForPreTraining`, `Wav2Vec2ForCTC` or `Wav2Vec2Model`; it runs in
        eval mode without masking (its mode is restored after). The waveform is cut to
        its first `max_seconds`, which keeps the page small.
        """
        import torch

        encoder = getattr(model, "wav2vec2", model)
        if not isinstance(waveform, torch.Tensor):
            waveform = torch.as_tensor(np.asarray(waveform), dtype=torch.float32)
        if waveform.ndim == 1:
            waveform = waveform[None]
        if waveform.ndim != 2 or waveform.shape[0] != 1:
            raise WidgetValueError(f"waveform has shape {tuple(waveform.shape)}; pass one utterance, (L,) or (1, L)")
        waveform = waveform[:, : int(max_seconds * sample_rate)]
        parameter = next(encoder.parameters())
        was_training = encoder.training
        encoder.eval()
        try:
            with torch.no_grad():
                output = encoder(waveform.to(parameter.device, parameter.dtype), output_attentions=True,
                                 draw_time_mask=False)
        finally:
            encoder.train(was_training)
        frame_seconds = encoder.config.frame_stride / sample_rate
        return cls([a[:1].float().cpu() for a in output.attentions], frame_seconds=frame_seconds, title=title)

    @classmethod
    def control_names(cls) -> tuple[str, ...]:
        return ("layer", "head")

    @traitlets.validate("layer")
    def _check_layer(self, proposal: Any) -> int:
        layer, layers = int(proposal["value"]), self.data["shape"][0]
        if not 0 <= layer < layers:
            raise WidgetValueError(f"layer={layer} is outside [0, {layers - 1}]: there are {layers} layers, "
                                   "counted from 0")
        return layer

    @traitlets.validate("head")
    def _check_head(self, proposal: Any) -> int:
        head, heads = int(proposal["value"]), self.data["shape"][1]
        if not 0 <= head < heads:
            raise WidgetValueError(f"head={head} is outside [0, {heads - 1}]: each layer has {heads} heads, "
                                   "counted from 0")
        return head

    def picture(self) -> dict[str, Any]:
        """What is drawn now: layer, head, map (T, T) float32 (query rows, key columns),
        mean_distance (frames between a query and the keys it weights, averaged over
        queries), entropy (nats per query, averaged) and peak (largest weight)."""
        layer, head = self.layer, self.head
        return {
            "layer": layer,
            "head": head,
            "map": self._maps[layer, head],
            "mean_distance": self.data["distance"][layer][head],
            "entropy": self.data["entropy"][layer][head],
            "peak": self.data["peak"][layer][head],
        }

    def figure(self) -> Any:
        """A matplotlib Figure of the current map, query by key, in seconds."""
        import matplotlib.pyplot as plt

        picture = self.picture()
        seconds = self.data["shape"][2] * self.data["frame_seconds"]
        figure, ax = plt.subplots(figsize=(5.5, 4.6), dpi=80)
        image = ax.imshow(picture["map"], cmap="viridis", extent=(0, seconds, seconds, 0), interpolation="nearest")
        ax.set(xlabel="key time (s)", ylabel="query time (s)",
               title=f"layer {picture['layer']}, head {picture['head']}: mean distance "
                     f"{picture['mean_distance']:.1f} frames")
        figure.colorbar(image, ax=ax, label="attention weight")
        figure.tight_layout()
        return figure
