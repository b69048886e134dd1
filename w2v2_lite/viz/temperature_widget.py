"""TemperatureWidget: what the Gumbel temperature tau does to the quantizer's samples (eq. 1).

For each codebook group g and frame t the quantizer scores the V entries with logits l;
with Gumbel noise n = -log(-log u) it forms the soft sample
y = softmax((l + n) / tau) and, in the forward pass, picks the hard code argmax y.
Dividing by tau > 0 does not move the argmax, so with one draw of noise the hard codes
are the same at every temperature; tau shapes y, through which the straight-through
gradient flows: one-hot-like when tau is small, flat when it is large. The widget shows
y, the codes, the usage of each entry and the perplexities (sum over groups of
exp(entropy) of the frame-averaged distribution, `quantizer.codebook_perplexity`) over
a grid of temperatures, all computed here once and embedded.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import traitlets

from ._widget import BookWidget, WidgetValueError, encode_bytes, es_module, synced, to_numpy

# The paper anneals tau from 2 to 0.5; the grid reaches past both ends.
DEFAULT_TEMPERATURES = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def perplexity_of(probs: np.ndarray) -> float:
    """sum_g exp(H(mean over frames of probs[:, g])) of probs (T, G, V), as `codebook_perplexity`."""
    mean = probs.mean(axis=0)  # (G, V)
    logs = np.log(mean, out=np.zeros_like(mean), where=mean > 0)
    return float(np.exp(-(mean * logs).sum(axis=-1)).sum())


class TemperatureWidget(BookWidget):
    """Gumbel-softmax samples of one utterance at each temperature of a grid.

    Args:
        soft: (n_temperatures, T, G, V) soft samples y = softmax((l + n) / tau), one draw
            of noise n shared by all temperatures (`from_quantizer` makes them).
        temperatures: the grid, increasing, one per row of `soft`.
        frame_seconds: seconds between frames (0.02 for the paper's feature encoder).
        title: shown above the controls.

    Controls: `temperature_index` (position in the grid; `temperature` reads or sets it
    by value) and `group` (which codebook's samples to draw).
    """

    kind = "temperature"
    _esm = es_module("temperature")

    temperature_index = synced(traitlets.Int(0))
    group = synced(traitlets.Int(0))

    def __init__(self, soft: Any, temperatures: Sequence[float], frame_seconds: float = 0.02,
                 title: str | None = None, temperature: float | None = None) -> None:
        samples = to_numpy(soft, "soft")
        temperatures = [float(t) for t in temperatures]
        if samples.ndim != 4 or samples.shape[0] != len(temperatures):
            raise WidgetValueError(
                f"soft has shape {tuple(samples.shape)}; expected (n_temperatures, T, G, V) with "
                f"n_temperatures = {len(temperatures)}, one row per temperature; "
                "TemperatureWidget.from_quantizer(quantizer, features) makes it")
        if not all(t > 0 for t in temperatures) or sorted(set(temperatures)) != temperatures:
            raise WidgetValueError(f"temperatures={temperatures} must be positive and increasing, e.g. "
                                   f"{list(DEFAULT_TEMPERATURES)}")
        if samples.min() < -1e-6 or not np.allclose(samples.sum(axis=-1), 1.0, atol=1e-3):
            raise WidgetValueError("soft must hold probabilities over the V entries (each (t, g) row sums to 1): "
                                   "softmax((l + n) / tau), not the logits l")
        _, steps, groups, entries = samples.shape
        self._soft = samples.astype(np.float32)
        codes = samples.argmax(axis=-1)  # (n, T, G)
        one_hot = np.eye(entries)[codes]  # (n, T, G, V)
        data = {
            "shape": [steps, groups, entries],
            "temperatures": temperatures,
            "frame_seconds": float(frame_seconds),
            "soft": [encode_bytes(np.round(np.sqrt(np.clip(y, 0, 1)) * 255)) for y in samples],
            "codes": codes.tolist(),
            "soft_usage": np.round(samples.mean(axis=1), 5).tolist(),
            "perplexity": [perplexity_of(y) for y in samples],
            "code_perplexity": [perplexity_of(y) for y in one_hot],
        }
        if title is None:
            title = f"Gumbel temperature: {steps} frames, G = {groups} groups of V = {entries} entries"
        super().__init__(data=data, title=title)
        if temperature is not None:
            self.temperature = temperature

    @classmethod
    def from_quantizer(cls, quantizer: Any, features: Any, temperatures: Sequence[float] | None = None,
                       seed: int = 0, frame_seconds: float = 0.02, title: str | None = None) -> "TemperatureWidget":
        """Sample `quantizer` (a `GumbelVectorQuantizer`) on latents Z (1, T, C) or (T, C).

        The Gumbel noise is drawn once, as `F.gumbel_softmax` draws it after
        `torch.manual_seed(seed)` (the global generator is saved and restored), so the
        codes equal those of `quantizer.train()(features).codes` at that seed, at any
        temperature. The default grid is `DEFAULT_TEMPERATURES`.
        """
        import torch
        import torch.nn.functional as F

        temperatures = list(DEFAULT_TEMPERATURES if temperatures is None else temperatures)
        if not isinstance(features, torch.Tensor):
            features = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        if features.ndim == 2:
            features = features[None]
        channels = quantizer.logits.in_features
        if features.ndim != 3 or features.shape[0] != 1 or features.shape[-1] != channels:
            raise WidgetValueError(
                f"features has shape {tuple(features.shape)}; expected the latents Z of one utterance, "
                f"(1, T, C) or (T, C) with C = {channels} (the model's extract_features, e.g. "
                "model.wav2vec2(waveform).extract_features[:1])")
        groups, entries = quantizer.num_groups, quantizer.num_codes
        with torch.no_grad():
            weight = quantizer.logits.weight
            scores = quantizer.logits(features.to(weight.device, weight.dtype))
            scores = scores.reshape(-1, entries).float().cpu()  # (T * G, V), as the quantizer's forward
            soft = []
            for temperature in temperatures:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    soft.append(F.gumbel_softmax(scores, tau=temperature, hard=False).view(-1, groups, entries))
        return cls(torch.stack(soft), temperatures, frame_seconds=frame_seconds, title=title)

    @classmethod
    def control_names(cls) -> tuple[str, ...]:
        return ("temperature_index", "group")

    @property
    def temperature(self) -> float:
        """The temperature tau of the grid point shown now."""
        return self.data["temperatures"][self.temperature_index]

    @temperature.setter
    def temperature(self, value: float) -> None:
        grid = self.data["temperatures"]
        matches = [i for i, t in enumerate(grid) if abs(t - value) <= 1e-9 * max(abs(t), 1.0)]
        if not matches:
            raise WidgetValueError(f"temperature={value} is not on the grid {grid}; pick one of them, or make the "
                                   "widget with temperatures=[..., {value}, ...]")
        self.temperature_index = matches[0]

    @traitlets.validate("temperature_index")
    def _check_index(self, proposal: Any) -> int:
        index, count = int(proposal["value"]), len(self.data["temperatures"])
        if not 0 <= index < count:
            raise WidgetValueError(f"temperature_index={index} is outside [0, {count - 1}], the positions of the "
                                   f"grid {self.data['temperatures']}")
        return index

    @traitlets.validate("group")
    def _check_group(self, proposal: Any) -> int:
        group, groups = int(proposal["value"]), self.data["shape"][1]
        if not 0 <= group < groups:
            raise WidgetValueError(f"group={group} is outside [0, {groups - 1}]: the quantizer has G = {groups} "
                                   "codebook groups")
        return group

    def picture(self) -> dict[str, Any]:
        """What is drawn now.

        temperature, temperature_index, group; soft (T, G, V) float32 samples y;
        codes (T, G) int, argmax y; usage (G, V) int, how many frames pick each entry;
        soft_usage (G, V), y averaged over frames; distinct_codes (G,) entries used;
        perplexity (of the averaged y) and code_perplexity (of the one-hot codes),
        each a sum over groups, out of max_perplexity = G * V.
        """
        index = self.temperature_index
        soft = self._soft[index]
        steps, groups, entries = soft.shape
        codes = soft.argmax(axis=-1)
        usage = np.stack([np.bincount(codes[:, g], minlength=entries) for g in range(groups)])
        return {
            "temperature": self.temperature,
            "temperature_index": index,
            "group": self.group,
            "soft": soft,
            "codes": codes,
            "usage": usage,
            "soft_usage": soft.mean(axis=0),
            "distinct_codes": (usage > 0).sum(axis=1),
            "perplexity": self.data["perplexity"][index],
            "code_perplexity": self.data["code_perplexity"][index],
            "max_perplexity": groups * entries,
        }

    def figure(self) -> Any:
        """A matplotlib Figure: the soft samples of the group with its codes, entry usage, perplexity against tau."""
        import matplotlib.pyplot as plt

        picture, data = self.picture(), self.data
        group, soft = picture["group"], picture["soft"]
        steps, _, entries = soft.shape
        figure = plt.figure(figsize=(9, 5), dpi=80)
        grid = figure.add_gridspec(2, 2, width_ratios=[3, 1], height_ratios=[3, 1.2])
        heat_ax = figure.add_subplot(grid[0, 0])
        usage_ax = figure.add_subplot(grid[0, 1], sharey=heat_ax)
        curve_ax = figure.add_subplot(grid[1, :])
        seconds = steps * data["frame_seconds"]
        heat_ax.imshow(np.sqrt(soft[:, group, :].T), aspect="auto", cmap="viridis", vmin=0, vmax=1,
                       origin="lower",
                       extent=(0, seconds, -0.5, entries - 0.5), interpolation="nearest")
        times = (np.arange(steps) + 0.5) * data["frame_seconds"]
        heat_ax.scatter(times, picture["codes"][:, group], s=10, c="white", edgecolors="black", linewidths=0.5)
        heat_ax.set(xlabel="time (s)", ylabel="entry v",
                    title=f"y = softmax((l + n) / τ), τ = {picture['temperature']:g}, group {group} (colour √y)")
        usage_ax.barh(np.arange(entries), picture["usage"][group] / steps, color="tab:orange", label="hard codes")
        usage_ax.plot(picture["soft_usage"][group], np.arange(entries), color="tab:blue", label="mean y")
        usage_ax.set(xlabel="share of frames", title="usage")
        usage_ax.legend(fontsize=8)
        taus = data["temperatures"]
        curve_ax.semilogx(taus, data["perplexity"], "o-", label="averaged soft samples")
        curve_ax.semilogx(taus, data["code_perplexity"], "o-", label="hard codes")
        curve_ax.axhline(picture["max_perplexity"], ls="--", color="gray", label="G·V")
        curve_ax.axvline(picture["temperature"], color="black", lw=1)
        curve_ax.set(xlabel="τ", ylabel="perplexity")
        curve_ax.legend(fontsize=8, loc="center right")
        figure.tight_layout()
        return figure
