"""Which floating-point precision to train in: bf16 autocast where the hardware makes it pay.

`--precision auto` picks bf16 on a CUDA GPU that supports it. On a CPU it picks bf16
only when the CPU has bf16 instructions (AVX-512 BF16 or AMX) *and* a bf16 matrix
product, timed once per process, runs at least `BF16_MIN_SPEEDUP` times as fast as
fp32. The flags alone do not settle it: on one Xeon VM with avx512_bf16 and no AMX
exposed, oneDNN's bf16 kernels ran at half to two thirds of the fp32 speed. CPUs without the
instructions emulate bf16 and gain nothing. The numerically delicate parts
(Gumbel-softmax, cosine similarity, log-softmax, the losses, the norms) run in fp32
inside the model whatever the autocast dtype.

The environment variable `W2V2_LITE_PRECISION` (fp32 or bf16) decides what "auto" becomes
on any device: a grid begun in fp32 on one CPU can go on in fp32 on a CPU where bf16 pays.
It does not enter a run's hash (the config still says "auto"); each record says the
precision it trained in.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_VARIABLE = "W2V2_LITE_PRECISION"  # what "auto" becomes, when set (fp32 or bf16)


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


BF16_MIN_SPEEDUP = 1.2  # bf16 must beat fp32 by this factor for "auto" to take it on a CPU


@functools.lru_cache(maxsize=1)
def cpu_bf16_speedup(size: int = 768, repeats: int = 3) -> float:
    """fp32 time / bf16 time of a (size x size) @ (size x size) product on this CPU: > 1 when bf16 is faster.

    Each dtype is warmed up once, then the best of `repeats` runs counts (about 0.1 s in
    all). Cached for the process.
    """
    def best_seconds(dtype: torch.dtype) -> float:
        a = torch.randn(size, size).to(dtype)
        b = torch.randn(size, size).to(dtype)
        a @ b
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        return min(times)

    return best_seconds(torch.float32) / best_seconds(torch.bfloat16)


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """"auto" -> "bf16" or "fp32" for `device`; "fp32" and "bf16" are returned as they are."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {PRECISIONS}")
    if precision != "auto":
        return precision
    chosen = os.environ.get(PRECISION_VARIABLE, "")
    if chosen:
        if chosen not in PRECISIONS[1:]:
            raise ValueError(f"the environment variable {PRECISION_VARIABLE}={chosen!r}: set it to fp32 or bf16, "
                             "or unset it to let precision \"auto\" choose by the hardware")
        return chosen
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_bf16() and cpu_bf16_speedup() >= BF16_MIN_SPEEDUP else "fp32"
    return "fp32"


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision ("fp32": none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
