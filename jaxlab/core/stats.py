"""Seed statistics for experiment reports: means with Student-t confidence intervals,
and paired differences (two methods run on the same seeds).

    m, half, n = mean_ci([0.71, 0.74, 0.70, 0.73, 0.72])   # 0.72 +/- 0.019 (95%), n = 5
    d, half, n = paired_diff(meguide, saint_rw)            # per-seed differences
    fmt_ci(m, half)                                         # "0.720 ± 0.019"
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["mean_ci", "paired_diff", "fmt_ci"]


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, int]:
    """(mean, half-width, n) of the Student-t confidence interval of the mean of the
    finite `values`; the half-width is NaN below two values (and the mean too for none)."""
    from scipy import stats

    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), 0
    if v.size == 1:
        return float(v[0]), float("nan"), 1
    half = float(stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return float(v.mean()), half, int(v.size)


def paired_diff(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> tuple[float, float, int]:
    """`mean_ci` of the per-pair differences a_i - b_i (pairs with a non-finite member
    dropped): the comparison of two methods on the same seeds, whose shared seed-to-seed
    variation (the graph, the split) cancels."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_diff needs as many values on each side, got {a.shape} and {b.shape}")
    return mean_ci(a - b, confidence)


def fmt_ci(mean: float, half: float, digits: int = 3, scale: float = 1.0) -> str:
    """`"mean ± half"` (only the mean when the half-width is NaN; "-" when both are)."""
    if not math.isfinite(mean):
        return "-"
    if not math.isfinite(half):
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {half * scale:.{digits}f}"
