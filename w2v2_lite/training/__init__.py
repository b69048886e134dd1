"""Training: one loop for pretraining and CTC fine-tuning (`loop`), with its schedules,
precision choice, checkpoints, health monitors and data parallelism.

- `loop`: `TrainConfig`, `Trainer`, `evaluate`, TensorBoard events beside the JSON log
- `schedules`: `warmup_linear_decay`, `tri_stage`, `gumbel_decay_for`
- `precision`: `resolve_precision`, `cpu_has_bf16`, `cpu_bf16_speedup` (bf16 only where it is faster)
- `checkpoint`: atomic, resumable checkpoints
- `monitors`: `HealthMonitor` (collapse, NaN, blank-only CTC)
- `distributed`: data parallelism under torchrun
- `release`: `export_release`, and `build_release` of the pretrained model from its recipe (make pretrained)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "loop",
    "Trainer": "loop",
    "HealthMonitor": "monitors",
    "resolve_precision": "precision",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .loop import TrainConfig, Trainer
    from .monitors import HealthMonitor
    from .precision import resolve_precision

__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
