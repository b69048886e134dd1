"""Compare float tensors relative to their own scale, so that a test holds on every CPU kernel.

An entry near zero carries the rounding error of the larger terms that cancelled to make
it, and that error depends on the kernel (AVX-512, AVX2 or plain code sums in a different
order). An elementwise relative tolerance on such an entry measures the kernel, not the
code. Here the largest error is compared with the largest magnitude of the expected
tensor instead:

    max |actual - expected|  <=  rtol * max |expected|

so `rtol` reads as "agree to this many digits of the tensor's scale": about 1e-5 for two
fp32 implementations of the same model, 1e-9 for float64. A real bug (a wrong sign, a
missing term, a shifted index) moves entries by a sizeable part of the scale and fails.
Scalars compared with `pytest.approx(rel=...)` already are relative to their own size.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _as_tensor(value: Tensor | float) -> Tensor:
    return value.detach() if isinstance(value, Tensor) else torch.tensor(value)


def scaled_difference(actual: Tensor | float, expected: Tensor | float) -> float:
    """max |actual - expected| / max |expected| over the finite entries: 0.0 when equal.

    Non-finite entries (-inf logits, say) must be the same in both, else the result is inf.
    """
    actual, expected = _as_tensor(actual).double(), _as_tensor(expected).double()
    if actual.shape != expected.shape:
        raise AssertionError(f"shapes differ: {tuple(actual.shape)} and {tuple(expected.shape)}")
    finite = torch.isfinite(expected)
    same_non_finite = torch.equal(torch.isfinite(actual), finite) and torch.equal(
        actual[~finite].nan_to_num(), expected[~finite].nan_to_num())
    if not same_non_finite:
        return float("inf")
    error = (actual[finite] - expected[finite]).abs().max().item() if finite.any() else 0.0
    scale = expected[finite].abs().max().item() if finite.any() else 0.0
    if error == 0.0:
        return 0.0
    return error / scale if scale > 0 else float("inf")


def assert_close_to_scale(actual: Tensor | float, expected: Tensor | float, rtol: float, label: str = "") -> None:
    """Fail unless max |actual - expected| <= rtol * max |expected| (same shape, same non-finite entries)."""
    difference = scaled_difference(actual, expected)
    if difference <= rtol:
        return
    actual, expected = _as_tensor(actual).double(), _as_tensor(expected).double()
    where = (actual - expected).nan_to_num(nan=float("inf")).abs().flatten().argmax().item()
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(where), expected.shape)) if expected.dim() else ()
    prefix = f"{label}: " if label else ""
    raise AssertionError(
        f"{prefix}max |actual - expected| is {difference:.3g} of max |expected| "
        f"({expected.abs().max().item():.3g}), allowed {rtol:g}; worst at {index}: "
        f"{actual.flatten()[where].item():.9g} vs {expected.flatten()[where].item():.9g}")
