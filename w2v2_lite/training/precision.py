"""Which floating-point precision to train in: bf16 autocast where the hardware has it.

`--precision auto` picks bf16 on a CUDA GPU that supports it and on a CPU with bf16
instructions (AVX-512 BF16 or AMX), where bf16 matrix products run about 3x faster than
fp32; fp32 elsewhere, because CPUs without them emulate bf16 and gain nothing. The
numerically delicate parts (Gumbel-softmax, cosine similarity, log-softmax, the losses,
the norms) run in fp32 inside the model whatever the autocast dtype.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when this CPU has bf16 arithmetic (Linux: the avx512_bf16 or amx_bf16 flag)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = set()
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
                break
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    mkldnn_check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(mkldnn_check()) if mkldnn_check is not None else False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """"auto" -> "bf16" or "fp32" for `device`; "fp32" and "bf16" are returned as they are."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {PRECISIONS}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_bf16() else "fp32"
    return "fp32"


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision ("fp32": none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
