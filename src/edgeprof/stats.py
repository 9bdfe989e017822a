"""The one place statistics are computed: percentiles and summary statistics.

Used by the sampler (its own timing), the analysis (run summaries) and the benchmarks, so
a p99 means the same thing everywhere: linear interpolation between closest ranks, numpy's
default method.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(sorted_vals: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile of values sorted ascending, ``q`` in 0..1; NaN if empty."""
    n = len(sorted_vals)
    if n == 0:
        return math.nan
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * frac


def describe(values: Iterable[float] | Any) -> dict[str, float]:
    """mean, min, p50, p95, p99, max and count of the values (at least one); a numpy array
    is summarised in numpy (a million values in milliseconds)."""
    if hasattr(values, "dtype"):
        import numpy as np

        arr = np.sort(np.asarray(values, dtype=np.float64))
        mean = math.fsum(arr.tolist()) / len(arr) if len(arr) < 4096 else float(arr.mean())
        vals: Any = arr
    else:
        vals = sorted(values)
        mean = math.fsum(vals) / len(vals)
    n = len(vals)
    return {
        "mean": mean,
        "min": float(vals[0]),
        "p50": float(percentile(vals, 0.50)),
        "p95": float(percentile(vals, 0.95)),
        "p99": float(percentile(vals, 0.99)),
        "max": float(vals[-1]),
        "count": n,
    }


def counter_increase(vals: Sequence[float] | Any) -> float:
    """Increase of a monotonic counter over time-ordered values; a drop is a reset (the
    counter restarted from zero), so the value after it counts in full."""
    if hasattr(vals, "dtype"):
        import numpy as np

        a = np.asarray(vals, dtype=np.float64)
        d = np.diff(a)
        return float(np.where(d >= 0, d, a[1:]).sum())
    total = 0.0
    prev = vals[0]
    for v in vals[1:]:
        total += v - prev if v >= prev else v
        prev = v
    return total


def mean(vals: Sequence[float]) -> float:
    return math.fsum(vals) / len(vals) if vals else math.nan
