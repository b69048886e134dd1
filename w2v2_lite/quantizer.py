"""The quantization module: latents Z -> quantized targets Q (paper section 2, eq. 1-2).

Product quantization with G codebooks ("groups") of V entries each. A linear layer
scores every entry of every group; Gumbel-softmax picks one entry per group (hard,
with straight-through gradients, in training; argmax in eval); the G chosen entries
are concatenated. G = 2, V = 320 gives 102,400 possible codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig


def gumbel_temperature_at(step: int, schedule: tuple[float, float, float]) -> float:
    """tau(step) = max(start * decay ** step, floor), the paper's annealing schedule."""
    start, floor, decay = schedule
    return max(start * decay ** step, floor)


def codebook_perplexity(probs: Tensor, mask: Tensor | None = None) -> Tensor:
    """sum_g exp(H(p_bar_g)): the perplexity of the averaged distribution of each group.

    probs (N, G, V), one distribution per step and group (a softmax, or one-hot codes);
    mask (N,) bool selects the steps to average over (all of them when None).
    Equals G * V when every entry is used equally, and G when one entry takes all.
    """
    if mask is not None:
        probs = probs[mask.reshape(-1)]
    mean_probs = probs.mean(dim=0)  # (G, V), p_bar_g
    entropy = -torch.xlogy(mean_probs, mean_probs).sum(dim=-1)  # (G,), with 0 log 0 = 0
    return torch.exp(entropy).sum()


@dataclass
class QuantizerOutput:
    """quantized: (B, T, codevector_dim) the vectors Q; codes: (B, T, G) chosen entries;
    softmax_perplexity / code_perplexity: scalar perplexities, over the selected steps, of
    the averaged softmax and of the best-scoring entries (without Gumbel noise, as in
    fairseq); probs: (B, T, G, V) softmax over entries."""

    quantized: Tensor
    codes: Tensor
    softmax_perplexity: Tensor
    code_perplexity: Tensor
    probs: Tensor


def _sync_temperature(module: "GumbelVectorQuantizer", incompatible_keys: Any) -> None:
    """After `load_state_dict`: take the temperature from the loaded buffer."""
    module._temperature = float(module.gumbel_temperature)


class GumbelVectorQuantizer(nn.Module):
    """Gumbel-softmax product quantizer with G groups of V codevectors of size d / G.

    The Gumbel temperature is a buffer, so it is saved in the state dict and a resumed
    model goes on at the temperature it had, not at the schedule's start. Set it with
    `set_temperature` (the training loop anneals it with `gumbel_temperature_at`); read
    it as the float `temperature`.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.num_groups, self.num_codes = config.num_code_groups, config.num_codes_per_group
        self.codevector_dim = config.codevector_dim
        self.logits = nn.Linear(config.conv_dim, self.num_groups * self.num_codes)
        nn.init.normal_(self.logits.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.logits.bias)
        # (G * V, d / G): row g * V + v is entry v of codebook g.
        self.codevectors = nn.Parameter(torch.empty(self.num_groups * self.num_codes,
                                                    self.codevector_dim // self.num_groups).uniform_())
        self.register_buffer("gumbel_temperature", torch.tensor(config.gumbel_temperature[0]))
        # The same value as a Python float, so that a step reads it without a device sync
        # and reports exactly what was set; reloaded from the buffer with the state dict.
        self._temperature = config.gumbel_temperature[0]
        self.register_load_state_dict_post_hook(_sync_temperature)

    @property
    def temperature(self) -> float:
        """The Gumbel temperature tau used in training mode."""
        return self._temperature

    def set_temperature(self, temperature: float) -> None:
        if not temperature > 0:
            raise ValueError(f"Gumbel temperature must be > 0, got {temperature}")
        self._temperature = float(temperature)
        self.gumbel_temperature.fill_(self._temperature)

    def forward(self, features: Tensor, mask: Tensor | None = None) -> QuantizerOutput:
        """features Z (B, T, C); mask (B, T) bool: steps over which perplexity is taken."""
        batch, steps, _ = features.shape
        groups, codes = self.num_groups, self.num_codes
        scores = self.logits(features).reshape(batch * steps * groups, codes).float()  # (B*T*G, V)
        probs = scores.softmax(dim=-1).view(batch * steps, groups, codes)  # (B*T, G, V)
        if self.training:
            one_hot = F.gumbel_softmax(scores, tau=self.temperature, hard=True)  # straight-through
        else:
            one_hot = F.one_hot(scores.argmax(dim=-1), codes).float()
        one_hot = one_hot.view(batch * steps, groups, codes).to(features.dtype)
        flat_mask = None if mask is None else mask.reshape(-1)
        # Code perplexity counts the best-scoring entries, without Gumbel noise (in eval that is one_hot).
        best = one_hot if not self.training else F.one_hot(scores.detach().argmax(dim=-1), codes).view_as(one_hot)
        codebooks = self.codevectors.view(groups, codes, -1)  # (G, V, d/G)
        # One matmul per group picks each step's entry; gradients flow into the soft part.
        quantized = torch.einsum("ngv,gvd->ngd", one_hot, codebooks).reshape(batch, steps, -1)
        return QuantizerOutput(
            quantized=quantized,
            codes=one_hot.argmax(dim=-1).view(batch, steps, groups),
            softmax_perplexity=codebook_perplexity(probs, flat_mask),
            code_perplexity=codebook_perplexity(best.detach().float(), flat_mask),
            probs=probs.view(batch, steps, groups, codes),
        )
