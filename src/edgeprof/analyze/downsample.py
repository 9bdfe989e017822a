"""Display downsampling that keeps peaks: MinMaxLTTB from ``tsdownsample`` (Rust).

A chart of a long run shows a few thousand points per series; which ones is chosen by
MinMaxLTTB: the extremes of each bucket are preselected (so a one-sample spike survives)
and Largest-Triangle-Three-Buckets picks among them the points that keep the line's shape.
Only the display is reduced: every sample stays in the database.

``tsdownsample`` is an optional dependency (the ``report`` extra): imported when used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeprof.errors import UserError

MIN_POINTS = 16


def _downsamplers() -> tuple[Any, Any]:
    try:
        from tsdownsample import MinMaxLTTBDownsampler, NaNMinMaxLTTBDownsampler
    except ImportError:
        raise UserError(
            "the HTML report needs the report extra (tsdownsample, uplot-python); "
            "install it with: pip install 'edgeprof[report]'"
        ) from None
    return MinMaxLTTBDownsampler, NaNMinMaxLTTBDownsampler


def peak_indices(x: Any, y: Any, n_out: int) -> Any:
    """Indices (ascending, int64) of at most ``n_out`` samples of ``y`` over ascending ``x``
    that keep its peaks; every index when the series is no longer than ``n_out``."""
    n = len(y)
    if n <= n_out:
        return np.arange(n, dtype=np.int64)
    n_out = max(n_out, MIN_POINTS)
    plain, nan_aware = _downsamplers()
    yy = np.asarray(y, dtype=np.float64)
    finite = np.isfinite(yy)
    if not finite.all():
        yy = np.where(finite, yy, np.nan)  # ±inf drawn as gaps, like NaN
        ds = nan_aware()
    else:
        ds = plain()
    idx = ds.downsample(np.asarray(x, dtype=np.float64), yy, n_out=n_out, parallel=False)
    return np.unique(np.asarray(idx, dtype=np.int64))


def shared_indices(x: Any, ys: Sequence[Any], n_out: int) -> Any:
    """Indices to display for several series sampled at the same times ``x``: the union of
    each series' peak-keeping choice (each gets ``n_out / len(ys)``, at least 1,000, points),
    so that every series has a real sample at every displayed time."""
    n = len(x)
    if n <= n_out or not ys:
        return np.arange(n, dtype=np.int64)
    per = max(n_out // len(ys), min(n_out, 1000))
    picks = [peak_indices(x, y, per) for y in ys]
    return picks[0] if len(picks) == 1 else np.unique(np.concatenate(picks))


def time_order(t: Any, *arrays: Any) -> tuple[Any, ...]:
    """``t`` and the arrays reordered by ascending ``t`` (unchanged when already sorted)."""
    t = np.asarray(t)
    if len(t) < 2 or bool(np.all(t[1:] >= t[:-1])):
        return (t, *arrays)
    order = np.argsort(t, kind="stable")
    return (t[order], *(np.asarray(a)[order] for a in arrays))


__all__ = ["peak_indices", "shared_indices", "time_order"]
