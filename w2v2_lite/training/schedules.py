"""Learning-rate and Gumbel-temperature schedules, as functions of the update number.

Pretraining (fairseq `polynomial_decay` with power 1): linear warm-up to the peak, then
linear decay to 0 at the last update. Fine-tuning (fairseq `tri_stage`): warm up from
`init_scale` x peak, hold the peak, then decay exponentially to `final_scale` x peak.
Each returns the multiplier of the peak learning rate; the loop sets the rate from the
update count before every update, so a resumed run needs no scheduler state.
"""

from __future__ import annotations

import math


def warmup_linear_decay(update: int, warmup_updates: int, max_updates: int) -> float:
    """Scale of the peak lr at `update`: 0 -> 1 over the warm-up, then 1 -> 0 at `max_updates`."""
    if update < warmup_updates:
        return (update + 1) / warmup_updates
    return max(0.0, (max_updates - update) / max(1, max_updates - warmup_updates))


def tri_stage(update: int, max_updates: int, phase_ratio: tuple[float, float, float] = (0.1, 0.4, 0.5),
              init_scale: float = 0.01, final_scale: float = 0.05) -> float:
    """Scale of the peak lr at `update` for fairseq's tri-stage schedule.

    Warm-up: linear from init_scale to 1 over phase_ratio[0] of the updates; hold at 1
    for phase_ratio[1]; decay: exp(-k t) from 1 to final_scale over phase_ratio[2]; then
    final_scale.
    """
    warmup = int(max_updates * phase_ratio[0])
    hold = int(max_updates * phase_ratio[1])
    decay = int(max_updates * phase_ratio[2])
    if update < warmup:
        return init_scale + (1.0 - init_scale) * update / warmup
    update -= warmup
    if update < hold:
        return 1.0
    update -= hold
    if update <= decay:
        return math.exp(math.log(final_scale) * update / max(decay, 1))
    return final_scale


def gumbel_decay_for(start: float, floor: float, updates: int) -> float:
    """The per-update decay that takes the temperature from `start` to `floor` in `updates`.

    The paper's 0.999995 reaches 0.5 after 277k of 400k updates; a run of a few thousand
    updates needs a faster decay to anneal at all.
    """
    if updates < 1 or floor >= start:
        return 1.0
    return (floor / start) ** (1.0 / updates)
