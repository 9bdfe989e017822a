"""Compare two stored runs, target by target, with verdicts that are honest about noise.

The way benchstat does it:

* Targets are matched across the runs by their base name (``burn#1``…``burn#4`` are the
  repeats of ``burn``); each repeat's statistic (its mean, its p95, its max…) is one
  observation. The figure shown for a run is the median of its repeats' statistics
  (the statistic itself for a single repeat).
* With at least 4 repeats on both sides: the Mann–Whitney U test (two-sided, α = 0.05)
  over the repeats' statistics. The exact null distribution when a side has at most 8
  repeats and there are no ties, else the normal approximation with tie and continuity
  corrections — scipy's ``mannwhitneyu(method="auto")`` choice, whose p-values the tests
  match.
* With fewer: samples inside a run are autocorrelated, so a test that treats them as
  independent calls nearly everything significant. Instead a circular block bootstrap
  (Politis & Romano 1992) of each series, block length chosen from the series' own
  autocorrelation (Politis & White 2004, with Patton, Politis & White's 2009 correction),
  gives the 95 % percentile interval of the difference B − A; it is significant when the
  interval excludes 0. With 2–3 repeats each repeat is resampled on its own and the
  replicate is the median over repeats, with the note that Mann–Whitney U needs ≥ 4.

The bootstrap never materialises resampled series of a long run (see :class:`_Boot`):
a replicate's mean is the mean of its blocks' means, its maximum the largest of its
blocks' maxima, so both are drawn from per-block summaries computed once in O(n).
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeprof.analyze.model import CounterStats, GaugeStats, MetricStats
from edgeprof.analyze.summary import metric_stats, series_key
from edgeprof.errors import UserError
from edgeprof.store.base import SeriesRecord, Store

ALPHA = 0.05
MIN_MWU_REPEATS = 4
RESAMPLES = 2000
DEFAULT_SEED = 1
GAUGE_STATS = ("mean", "min", "p50", "p95", "p99", "max")
COUNTER_STATS = ("total",)
DEFAULT_STATS = ("mean", "p95", "max")
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
MWU = "mann-whitney-u"
BOOT = "block-bootstrap"
NOTE_FEW = f"need ≥ {MIN_MWU_REPEATS} repeats for Mann–Whitney U"
NOTE_ONE = (
    f"one repeat: only the noise within each run is seen, not from run to run; "
    f"repeat: ≥ {MIN_MWU_REPEATS} for Mann–Whitney U"
)
MIN_BOOT_SAMPLES = 30
"""Fewer samples per run than this and no bootstrap verdict is given: measured on AR(1)
pairs from one process, 20–30 samples called 12–24 % of them significant."""
NOTE_SHORT = (
    f"fewer than {MIN_BOOT_SAMPLES} samples in a run: too few for a bootstrap verdict; "
    f"sample longer or repeat: ≥ {MIN_MWU_REPEATS}"
)
NOTE_NAN = "no finite values in a run: no verdict"

# Above this many blocks a replicate's mean (an average of k blocks drawn with
# replacement) is drawn from the normal law with the bootstrap's exact mean and variance:
# the two differ by O(1/sqrt(k)) (Berry–Esseen), far below the interval's own noise.
MAX_DRAWN_BLOCKS = 1000
# Up to this many samples a quantile's replicates are computed on resampled series; above,
# from the Bahadur representation (see _Boot.quantile).
MAX_EXACT_QUANTILE_N = 200
MAX_EXACT_TIED_N = 20_000
"""Above this, a quantile on tied values is bootstrapped on an evenly thinned series."""


# -- Mann–Whitney U ----------------------------------------------------------------------


def _rank(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (1-based) of ``v`` and the sizes of its groups of ties."""
    order = np.argsort(v, kind="mergesort")
    s = v[order]
    new = np.r_[True, s[1:] != s[:-1]]
    starts = np.flatnonzero(new)
    counts = np.diff(np.r_[starts, len(v)])
    avg = starts + (counts + 1) / 2.0  # mean of ranks start+1 .. start+count
    ranks = np.empty(len(v))
    ranks[order] = np.repeat(avg, counts)
    return ranks, counts


def _u_counts(n1: int, n2: int) -> np.ndarray:
    """Number of arrangements of ``n1`` + ``n2`` distinct values giving each U (0…n1·n2).

    The generating function is the Gaussian binomial coefficient; built by the recurrence
    f(m, n; u) = f(m-1, n; u-n) + f(m, n-1; u) over one growing table.
    """
    m, n = (n1, n2) if n1 <= n2 else (n2, n1)
    # f[j] for the current m: counts over u for (m, j) with j = 0..n
    # float64: exact up to 2**53 arrangements, relative error 1e-16 beyond (a p-value
    # is a ratio of such counts)
    prev = [np.ones(1) for _ in range(n + 1)]  # m = 0: U = 0 once
    for mm in range(1, m + 1):
        cur = [np.ones(1)]  # (mm, 0): U = 0 once
        for j in range(1, n + 1):
            size = mm * j + 1
            out = np.zeros(size)
            a = prev[j]  # (mm-1, j), shifted by j
            out[j : j + len(a)] += a
            b = cur[j - 1]  # (mm, j-1)
            out[: len(b)] += b
            cur.append(out)
        prev = cur
    return prev[n]


def mann_whitney_u(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, str]:
    """Two-sided Mann–Whitney U: ``(U of x, p, "exact" | "asymptotic")``.

    As scipy's ``mannwhitneyu(x, y)`` with its defaults (continuity correction, method
    ``auto``: exact when a sample has at most 8 values and nothing is tied)."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one value")
    ranks, ties = _rank(np.concatenate([a, b]))
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    u2 = n1 * n2 - u1
    u = max(u1, u2)
    if (n1 <= 8 or n2 <= 8) and not (ties > 1).any():
        counts = _u_counts(n1, n2)
        k = int(round(u))
        p = 2 * float(counts[k:].sum()) / float(counts.sum())
        return u1, min(1.0, max(0.0, p)), "exact"
    n = n1 + n2
    tie_term = float((ties.astype(np.float64) ** 3 - ties).sum())
    s = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    if s == 0:  # every value tied: nothing tells the samples apart
        return u1, 1.0, "asymptotic"
    z = (u - n1 * n2 / 2 - 0.5) / s
    p = math.erfc(z / math.sqrt(2))  # 2 · (1 - Φ(z))
    return u1, min(1.0, max(0.0, p)), "asymptotic"


# -- block bootstrap ---------------------------------------------------------------------


def _autocovariance(x: np.ndarray, lags: int) -> np.ndarray:
    """Biased sample autocovariances of ``x`` at lags 0..lags (FFT; O(n log n))."""
    n = len(x)
    e = x - x.mean()
    size = 1 << (n + lags).bit_length()
    f = np.fft.rfft(e, size)
    acv = np.fft.irfft(f * np.conj(f), size)[: lags + 1] / n
    return np.asarray(acv, dtype=np.float64)


def block_params(x: np.ndarray) -> tuple[int, float]:
    """Circular block bootstrap block length of Politis & White (2004), as corrected by
    Patton, Politis & White (2009) — the rule of ``arch``'s ``optimal_block_length`` —
    and ``c = G / g(0)``, the constant of the block bootstrap variance's bias.

    The lag ``m̂`` after which autocorrelations stay insignificant for ``K_N`` lags sets
    a flat-top lag window of 2·m̂; from it ``b = (2 G² / D)^(1/3) · n^(1/3)`` with
    ``G = Σ λ(k/M)|k|R(k)`` and ``D = 4/3 · g(0)²``, ``g(0) = Σ λ(k/M) R(k)`` (the long-run
    variance). An uncorrelated series gets 1; the length is capped at min(3√n, n/3) as in
    the paper.
    """
    n = len(x)
    if n < 4:
        return 1, 0.0
    kn = max(5, int(math.ceil(math.log10(n))))
    m_max = int(math.ceil(math.sqrt(n))) + kn
    b_max = max(1, int(math.ceil(min(3 * math.sqrt(n), n / 3))))
    lags = min(m_max, n - 1)
    acv = _autocovariance(x, lags)
    if not acv[0] > 0:
        return 1, 0.0  # a constant series
    rho = np.abs(acv[1:] / acv[0])
    thresh = 2.0 * math.sqrt(math.log10(n) / n)
    small = rho < thresh
    m_hat = None
    run = 0
    for i, s in enumerate(small):
        run = run + 1 if s else 0
        if run == kn:
            m_hat = i + 1 - kn  # lags 1..m_hat significant at most
            break
    if m_hat is None:
        big = np.flatnonzero(~small)
        m_hat = int(big[-1]) + 1 if len(big) else 0
    big_m = min(2 * m_hat, lags)
    if big_m == 0:
        return 1, 0.0
    k = np.arange(-big_m, big_m + 1)
    t = np.abs(k) / big_m
    lam = np.where(t <= 0.5, 1.0, 2.0 * (1.0 - t))
    r = acv[np.abs(k)]
    g = float((lam * np.abs(k) * r).sum())
    g0 = float((lam * r).sum())
    if g0 <= 0:
        return 1, 0.0
    b = (2.0 * g * g / (4.0 / 3.0 * g0 * g0)) ** (1.0 / 3.0) * n ** (1.0 / 3.0)
    return int(min(b_max, max(1, round(b)))), max(0.0, g / g0)


def block_length(x: np.ndarray) -> int:
    """The block length :func:`block_params` chooses for ``x``."""
    return block_params(x)[0]


def _window_max(ext: np.ndarray, width: int, count: int) -> np.ndarray:
    """Maxima of ``ext[i:i+width]`` for i in 0..count-1 in O(len) (van Herk/Gil–Werman)."""
    if width == 1:
        return ext[:count].copy()
    m = -(-len(ext) // width)
    pad = np.full(m * width, -np.inf)
    pad[: len(ext)] = ext
    seg = pad.reshape(m, width)
    pre = np.maximum.accumulate(seg, axis=1).ravel()
    suf = np.maximum.accumulate(seg[:, ::-1], axis=1)[:, ::-1].ravel()
    i = np.arange(count)
    return np.maximum(suf[i], pre[i + width - 1])


def _percentile(sorted_x: np.ndarray, q: float) -> float:
    """Linear-interpolated percentile of sorted values (edgeprof.stats' definition)."""
    pos = q * (len(sorted_x) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_x) - 1)
    return float(sorted_x[lo] + (sorted_x[hi] - sorted_x[lo]) * (pos - lo))


class _Boot:
    """Circular block bootstrap replicates of one series' statistics.

    The resampled series is ``k = round(n / L)`` blocks of ``L`` consecutive samples
    (wrapping around the end), each block's start uniform over the ``n`` positions.

    * mean: a replicate's mean is the mean of its k blocks' means; block means of all n
      starts come from one cumulative sum. Up to ``MAX_DRAWN_BLOCKS`` blocks the starts
      are drawn; beyond, the mean of k draws is normal with the bootstrap's exact mean
      (the series' mean: the circular bootstrap is unbiased for it) and variance
      (var of the block means / k).
    * max (min): the bootstrap of a maximum over all k blocks is inconsistent (Bickel &
      Freedman 1981; a replicate equals the sample max 63 % of the time) and, measured
      on AR(1) pairs from one process, calls 11–17 % of them significant. So the max is
      bootstrapped m-out-of-n, over m = k/2 blocks (1–2 % of such pairs significant; its
      interval is of maxima over half-length series, so it is conservative). The max of
      m block maxima drawn with replacement has ``P(max* ≤ t) = G(t)^m``, ``G`` the law
      of the n circular block maxima: a replicate is ``G⁻¹(U^(1/m))``, one uniform draw
      — the bootstrap's exact law, at no cost per block.
    * quantile q: up to ``MAX_EXACT_QUANTILE_N`` samples the resampled series are built
      and their percentile taken. Beyond, by the Bahadur representation
      ``q* − q̂ ≈ −(F*(q̂) − F̂(q̂)) / f(q̂)``: F*(q̂) is the mean of the resampled
      indicator 1{x ≤ q̂} (drawn as the mean above, from the indicator's block means) and
      1/f(q̂) is Siddiqui's difference quotient of the sample quantile function with the
      Hall–Sheather bandwidth. The error is O(n^-3/4) against an interval of O(n^-1/2).
    """

    def __init__(self, x: np.ndarray, rng: np.random.Generator, resamples: int) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.n = len(self.x)
        self.L, c = block_params(self.x)
        self.k = max(1, int(round(self.n / self.L)))
        # The block bootstrap's variance is biased low: E var* = σ²∞ (1 − c/L) (Künsch
        # 1989), and by (1 − L/n) for centring on the series' own mean; and its spread is
        # learnt from about k blocks, so its 95 % interval is widened as Student's t with
        # k − 1 degrees of freedom widens the normal's. Measured on AR(1) series (φ 0–0.9,
        # 50 to 2,000 samples), the uncorrected interval calls 6–15 % of identical pairs
        # significant, the corrected one 3–10 % (10 % only
        # for the mean of 50 samples at φ = 0.5). Each bias term is floored at 1/2.
        z = _norm_ppf(1 - ALPHA / 2)
        self.spread = (
            _t_ppf(1 - ALPHA / 2, max(2, self.k - 1))
            / z
            / math.sqrt(max(0.5, 1.0 - c / self.L) * max(0.5, 1.0 - self.L / self.n))
        )
        self.rng = rng
        self.B = resamples
        self._sorted: np.ndarray | None = None

    @property
    def sorted(self) -> np.ndarray:
        if self._sorted is None:
            self._sorted = np.sort(self.x)
        return self._sorted

    def _ext(self, v: np.ndarray) -> np.ndarray:
        return np.concatenate([v, v[: self.L - 1]]) if self.L > 1 else v

    def _block_means(self, v: np.ndarray) -> np.ndarray:
        cs = np.concatenate([[0.0], np.cumsum(self._ext(v))])
        return np.asarray((cs[self.L : self.L + self.n] - cs[: self.n]) / self.L)

    def _mean_of_blocks(self, bm: np.ndarray) -> np.ndarray:
        if self.k <= MAX_DRAWN_BLOCKS:
            idx = self.rng.integers(0, self.n, size=(self.B, self.k))
            return np.asarray(bm[idx].mean(axis=1))
        mu = float(bm.mean())
        sd = float(bm.std()) / math.sqrt(self.k)
        return mu + sd * self.rng.standard_normal(self.B)

    def _spread(self, reps: np.ndarray, center: float) -> np.ndarray:
        return np.asarray(center + (reps - center) * self.spread)

    def mean(self) -> np.ndarray:
        return self._spread(self._mean_of_blocks(self._block_means(self.x)), float(self.x.mean()))

    def max(self, sign: float = 1.0) -> np.ndarray:
        v = sign * self.x
        bmax = np.sort(_window_max(self._ext(v), self.L, self.n))
        m = max(1, self.k // 2)  # m-out-of-n: see the class's notes
        u = self.rng.random(self.B) ** (1.0 / m)
        idx = np.clip(np.ceil(u * self.n).astype(np.int64) - 1, 0, self.n - 1)
        return np.asarray(sign * bmax[idx])

    def _exact_quantile(self, q: float) -> np.ndarray:
        """Quantile replicates of resampled series built in full (in batches of at most
        about two million values)."""
        batch = max(1, min(self.B, 2_000_000 // max(1, self.k * self.L)))
        out = []
        for start in range(0, self.B, batch):
            nb = min(batch, self.B - start)
            starts = self.rng.integers(0, self.n, size=(nb, self.k))
            idx = (starts[:, :, None] + np.arange(self.L)).reshape(nb, -1) % self.n
            vals = self.x[idx]
            m = vals.shape[1]
            pos = q * (m - 1)
            lo = math.floor(pos)
            hi = min(lo + 1, m - 1)
            part = np.partition(vals, [lo, hi] if hi != lo else [lo], axis=1)
            out.append(part[:, lo] + (part[:, hi] - part[:, lo]) * (pos - lo))
        return self._spread(np.concatenate(out), _percentile(self.sorted, q))

    def quantile(self, q: float) -> np.ndarray:
        if self.n <= MAX_EXACT_QUANTILE_N:
            return self._exact_quantile(q)
        s = self.sorted
        qhat = _percentile(s, q)
        if np.count_nonzero(self.x == qhat) > 1:
            # Tied values at the quantile (counts, whole pages, a CPU at its limit): the
            # shortcut below assumes a density there and would give every replicate the
            # same value. Resample in full instead — above MAX_EXACT_TIED_N samples from
            # an evenly thinned series, whose interval is wider (conservative), never
            # narrower than the data allow.
            if self.n <= MAX_EXACT_TIED_N:
                return self._exact_quantile(q)
            step = -(-self.n // MAX_EXACT_TIED_N)
            thin = _Boot(self.x[::step], self.rng, self.B)
            return thin._exact_quantile(q)
        n = self.n
        z = _norm_ppf(1 - ALPHA / 2)
        zq = _norm_ppf(q)
        phi = math.exp(-zq * zq / 2) / math.sqrt(2 * math.pi)
        h = n ** (-1 / 3) * z ** (2 / 3) * (1.5 * phi**2 / (2 * zq**2 + 1)) ** (1 / 3)
        lo_q, hi_q = max(0.0, q - h), min(1.0, q + h)
        sparsity = (_percentile(s, hi_q) - _percentile(s, lo_q)) / (hi_q - lo_q)
        ind = (self.x <= qhat).astype(np.float64)
        f_star = self._mean_of_blocks(self._block_means(ind))
        return self._spread(qhat - (f_star - float(ind.mean())) * sparsity, qhat)

    def stat(self, name: str) -> np.ndarray:
        if name == "mean":
            return self.mean()
        if name == "max":
            return self.max()
        if name == "min":
            return self.max(-1.0)
        return self.quantile(QUANTILES[name])


def _norm_ppf(p: float) -> float:
    """Inverse of the standard normal CDF (Acklam's rational approximation, refined by one
    Newton step: error < 1e-12)."""
    if p <= 0.0 or p >= 1.0:
        raise ValueError("p must be in (0, 1)")
    a = (-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.3577518672690, -30.66479806614716, 2.506628277459239)  # fmt: skip
    b = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572)  # fmt: skip
    c = (-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783)  # fmt: skip
    d = (0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416)
    lo = 0.02425
    if p < lo:
        qv = math.sqrt(-2 * math.log(p))
        x = (((((c[0] * qv + c[1]) * qv + c[2]) * qv + c[3]) * qv + c[4]) * qv + c[5]) / (
            (((d[0] * qv + d[1]) * qv + d[2]) * qv + d[3]) * qv + 1
        )
    elif p <= 1 - lo:
        qv = p - 0.5
        r = qv * qv
        x = (
            (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
            * qv
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
        )
    else:
        qv = math.sqrt(-2 * math.log(1 - p))
        x = -(((((c[0] * qv + c[1]) * qv + c[2]) * qv + c[3]) * qv + c[4]) * qv + c[5]) / (
            (((d[0] * qv + d[1]) * qv + d[2]) * qv + d[3]) * qv + 1
        )
    e = 0.5 * math.erfc(-x / math.sqrt(2)) - p
    return x - e * math.sqrt(2 * math.pi) * math.exp(x * x / 2)


def _t_ppf(p: float, df: int) -> float:
    """Student's t quantile by the Cornish–Fisher expansion in 1/df (Abramowitz & Stegun
    26.7.5; at p = 0.975 within 3 % of the exact quantile at df = 2, 0.1 % at df ≥ 5)."""
    z = _norm_ppf(p)
    v = float(df)
    z3, z5, z7 = z**3, z**5, z**7
    return (
        z
        + (z3 + z) / (4 * v)
        + (5 * z5 + 16 * z3 + 3 * z) / (96 * v**2)
        + (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * v**3)
    )


def _increments(vals: np.ndarray, kind: str | None) -> np.ndarray:
    """A counter's per-sample increases, whose sum is its total (edgeprof.stats rules)."""
    if kind == "total":
        return np.diff(vals, prepend=0.0)
    if len(vals) < 2:
        return np.zeros(1)
    d = np.diff(vals)
    return np.where(d >= 0, d, vals[1:])


def bootstrap_replicates(
    repeats: Sequence[np.ndarray],
    stat: str,
    rng: np.random.Generator,
    resamples: int = RESAMPLES,
    kind: str | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Replicates of the median over repeats of a statistic, and the block lengths used.

    ``stat`` is a gauge statistic of :data:`GAUGE_STATS`, or ``total`` (``repeats`` are then
    a counter's values, ``kind`` its series kind)."""
    reps = []
    lengths = []
    for x in repeats:
        if stat == "total":
            inc = _increments(np.asarray(x, dtype=np.float64), kind)
            b = _Boot(inc, rng, resamples)
            reps.append(b.mean() * len(inc))  # a total is n × the mean increment
        else:
            b = _Boot(x, rng, resamples)
            reps.append(b.stat(stat))
        lengths.append(b.L)
    stacked = np.stack(reps, axis=1)
    return (stacked[:, 0] if stacked.shape[1] == 1 else np.median(stacked, axis=1)), lengths


# -- the comparison ----------------------------------------------------------------------


@dataclass
class StatComparison:
    stat: str
    a: float
    b: float
    change_pct: float | None
    p_value: float
    significant: bool
    method: str
    n_a: int
    n_b: int
    ci_low: float | None = None
    """Bootstrap: 95 % interval of B − A, in the metric's unit."""
    ci_high: float | None = None
    block_lengths_a: list[int] = field(default_factory=list)
    block_lengths_b: list[int] = field(default_factory=list)
    note: str | None = None

    @property
    def ci_pct(self) -> tuple[float | None, float | None]:
        if self.ci_low is None or self.ci_high is None or self.a == 0:
            return None, None
        return 100 * self.ci_low / abs(self.a), 100 * self.ci_high / abs(self.a)

    def to_json(self) -> dict[str, Any]:
        lo_pct, hi_pct = self.ci_pct
        out: dict[str, Any] = {
            "a": _finite(self.a),
            "b": _finite(self.b),
            "change_pct": _finite(self.change_pct),
            "p_value": _finite(self.p_value),
            "significant": self.significant,
            "method": self.method,
            "n_a": self.n_a,
            "n_b": self.n_b,
        }
        if self.method == BOOT:
            out.update(
                ci_low=_finite(self.ci_low),
                ci_high=_finite(self.ci_high),
                ci_low_pct=_finite(lo_pct),
                ci_high_pct=_finite(hi_pct),
                block_length_a=self.block_lengths_a,
                block_length_b=self.block_lengths_b,
            )
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class MetricComparison:
    key: str
    unit: str | None
    kind: str  # "gauge" | "counter"
    stats: dict[str, StatComparison]


@dataclass
class TargetComparison:
    name: str
    repeats_a: int
    repeats_b: int
    method: str | None
    note: str | None
    metrics: dict[str, MetricComparison]
    only_in_a: list[str]
    only_in_b: list[str]
    only_in: str | None = None
    """``"a"`` or ``"b"`` when the target is in one run only."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "repeats_a": self.repeats_a,
            "repeats_b": self.repeats_b,
            "method": self.method,
            "note": self.note,
            "only_in": self.only_in,
            "metrics": {
                k: {s: c.to_json() for s, c in m.stats.items()} for k, m in self.metrics.items()
            },
            "units": {k: m.unit for k, m in self.metrics.items()},
            "metrics_only_in_a": self.only_in_a,
            "metrics_only_in_b": self.only_in_b,
        }


@dataclass
class Comparison:
    run_a: int
    run_b: int
    targets: list[TargetComparison]
    alpha: float = ALPHA
    seed: int = DEFAULT_SEED
    resamples: int = RESAMPLES

    @property
    def method(self) -> str:
        used = {t.method for t in self.targets if t.method}
        return used.pop() if len(used) == 1 else ("mixed" if used else "none")

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "run_a": self.run_a,
            "run_b": self.run_b,
            "alpha": self.alpha,
            "bootstrap": {"resamples": self.resamples, "seed": self.seed, "ci": 0.95},
            "targets": [t.to_json() for t in self.targets],
        }


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def change_pct(a: float, b: float) -> float | None:
    """(B − A) / |A| in percent; None when A is 0 and B is not (no finite change)."""
    if a == 0:
        return 0.0 if b == 0 else None
    return (b - a) / abs(a) * 100.0


@dataclass
class _Series:
    kind: str  # gauge | counter
    series_kind: str | None
    unit: str | None
    stats: MetricStats
    values: np.ndarray


@dataclass
class _Target:
    name: str
    repeats: list[dict[str, _Series]]


def base_name(name: str, config: dict[str, Any]) -> str:
    """``burn#3`` (the 3rd repeat of ``burn``) → ``burn``; any other name as it is."""
    ri = config.get("repeat_index")
    m = re.fullmatch(r"(.*)#(\d+)", name)
    if m and isinstance(ri, int) and int(m.group(2)) == ri + 1:
        return m.group(1)
    return name


def _load(store: Store, run_ref: str | int) -> tuple[int, dict[str, _Target]]:
    run = store.resolve_run(run_ref)
    # the rows of services started for the apps are not compared
    targets = [t for t in store.targets(run.id) if t.config.get("role") != "service"]
    arrays = store.series_arrays(run.id)
    by_target: dict[int, dict[str, _Series]] = {t.id: {} for t in targets}
    # per target and key: the series behind it. A process's PID differs from run to run,
    # so per-process series are keyed by process name, and processes of one name (workers)
    # are added up tick by tick, as their container's total would be.
    grouped: dict[tuple[int, str], list[tuple[SeriesRecord, np.ndarray, np.ndarray]]] = {}
    for s in store.series(run.id):
        if s.target_id is None or s.target_id not in by_target:
            continue
        got = arrays.get(s.id)
        if got is None or not len(got[1]):
            continue
        labels = {k: v for k, v in s.labels.items() if k != "pid"}
        key = series_key(s.metric, labels)
        grouped.setdefault((s.target_id, key), []).append(
            (s, np.asarray(got[0], dtype=np.int64), np.asarray(got[1], dtype=np.float64))
        )
    for (tid, key), parts in grouped.items():
        s = parts[0][0]
        if len(parts) == 1:
            vals = parts[0][2]
        else:
            ts = np.unique(np.concatenate([p[1] for p in parts]))
            vals = np.zeros(len(ts))
            for _, t_p, v_p in parts:
                np.add.at(vals, np.searchsorted(ts, t_p), np.nan_to_num(v_p))
        st = metric_stats(s, vals)
        kind = "counter" if isinstance(st, CounterStats) else "gauge"
        by_target[tid][key] = _Series(kind, s.kind, s.unit, st, vals)
    out: dict[str, _Target] = {}
    order = sorted(targets, key=lambda t: (t.config.get("repeat_index", 0), t.idx))
    for t in order:
        base = base_name(t.name, t.config)
        out.setdefault(base, _Target(base, [])).repeats.append(by_target[t.id])
    return run.id, out


def _stat_value(st: MetricStats, stat: str) -> float:
    if isinstance(st, CounterStats):
        return float(st.total)
    v = getattr(st, stat)
    return float("nan") if v is None else float(v)


def _rng(seed: int, *parts: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(parts).encode())])


def _compare_stat(
    target: str,
    key: str,
    stat: str,
    a: list[_Series],
    b: list[_Series],
    seed: int,
    resamples: int,
) -> StatComparison:
    obs_a = [_stat_value(s.stats, stat) for s in a]
    obs_b = [_stat_value(s.stats, stat) for s in b]
    va, vb = float(np.median(obs_a)), float(np.median(obs_b))
    ch = change_pct(va, vb)
    if len(a) >= MIN_MWU_REPEATS and len(b) >= MIN_MWU_REPEATS:
        if not all(math.isfinite(v) for v in (*obs_a, *obs_b)):
            return StatComparison(
                stat, va, vb, None, math.nan, False, MWU, len(a), len(b), note=NOTE_NAN
            )
        _, p, _how = mann_whitney_u(obs_a, obs_b)
        return StatComparison(stat, va, vb, ch, p, p < ALPHA, MWU, len(a), len(b))
    note = NOTE_FEW if max(len(a), len(b)) > 1 else NOTE_ONE
    if not (math.isfinite(va) and math.isfinite(vb)):
        return StatComparison(
            stat, va, vb, None, math.nan, False, BOOT, len(a), len(b), note=NOTE_NAN
        )
    if min(len(x.values) for x in (*a, *b)) < MIN_BOOT_SAMPLES:
        return StatComparison(
            stat, va, vb, ch, math.nan, False, BOOT, len(a), len(b), note=NOTE_SHORT
        )
    kind = a[0].series_kind
    rep_a, la = bootstrap_replicates(
        [s.values for s in a], stat, _rng(seed, target, key, stat, "a"), resamples, kind
    )
    rep_b, lb = bootstrap_replicates(
        [s.values for s in b], stat, _rng(seed, target, key, stat, "b"), resamples, kind
    )
    diff = rep_b - rep_a
    lo, hi = (float(v) for v in np.quantile(diff, [ALPHA / 2, 1 - ALPHA / 2]))
    frac = min(float((diff <= 0).mean()), float((diff >= 0).mean()))
    p = min(1.0, max(2 * frac, 1.0 / resamples))
    sig = lo > 0 or hi < 0
    return StatComparison(stat, va, vb, ch, p, sig, BOOT, len(a), len(b), lo, hi, la, lb, note)


def compare(
    store: Store,
    run_a: str | int,
    run_b: str | int,
    targets: Sequence[str] = (),
    metrics: Sequence[str] = (),
    stats: Sequence[str] = DEFAULT_STATS,
    seed: int = DEFAULT_SEED,
    resamples: int = RESAMPLES,
) -> Comparison:
    """Compare every target (or those named, by base name) of two stored runs.

    ``metrics`` keeps the series whose key (``metric`` or ``metric{labels}``) or metric
    name is given; ``stats`` are the gauge statistics compared (counters: their total).
    """
    id_a, ta = _load(store, run_a)
    id_b, tb = _load(store, run_b)
    return _compare_loaded(id_a, ta, id_b, tb, targets, metrics, stats, seed, resamples)


def _selection(
    names: list[str],
    loaded: Sequence[dict[str, _Target]],
    targets: Sequence[str],
    metrics: Sequence[str],
    stats: Sequence[str],
    where: str,
) -> list[str]:
    """The target names compared (those asked for, in run order); a target, metric or
    statistic asked for that none of the runs (``where``) has is one sentence."""
    if targets:
        unknown = [t for t in targets if t not in names]
        if unknown:
            raise UserError(
                f"no target {unknown[0]!r} in {where} (targets: {', '.join(names) or 'none'}); "
                "pass one of those to --target"
            )
        names = [n for n in names if n in targets]
    if metrics:
        present = {k for ts in loaded for t in ts.values() for r in t.repeats for k in r}
        bare = {k.split("{", 1)[0] for k in present}
        unknown = [m for m in metrics if m not in present and m not in bare]
        if unknown:
            raise UserError(
                f"no metric {unknown[0]!r} in {where}; 'edgeprof summary RUN' lists the "
                "metrics of a run"
            )
    bad = [s for s in stats if s not in GAUGE_STATS]
    if bad:
        raise UserError(f"unknown statistic {bad[0]!r}; use one of {', '.join(GAUGE_STATS)}")
    return names


def _wanted(metrics: Sequence[str]) -> Callable[[str], bool]:
    """Whether a series key (``name{labels}``) is among the metrics asked for (all if none)."""

    def wanted(key: str) -> bool:
        return not metrics or key in metrics or key.split("{", 1)[0] in metrics

    return wanted


def _compare_loaded(
    id_a: int,
    ta: dict[str, _Target],
    id_b: int,
    tb: dict[str, _Target],
    targets: Sequence[str] = (),
    metrics: Sequence[str] = (),
    stats: Sequence[str] = DEFAULT_STATS,
    seed: int = DEFAULT_SEED,
    resamples: int = RESAMPLES,
) -> Comparison:
    """:func:`compare` of targets loaded already (a group's: the repeats of its runs)."""
    names = list(ta) + [n for n in tb if n not in ta]
    names = _selection(names, [ta, tb], targets, metrics, stats, f"run {id_a} or run {id_b}")
    wanted = _wanted(metrics)

    out: list[TargetComparison] = []
    for name in names:
        a, b = ta.get(name), tb.get(name)
        if a is None or b is None:
            only = "b" if a is None else "a"
            t = b if a is None else a
            assert t is not None
            out.append(
                TargetComparison(
                    name,
                    len(a.repeats) if a else 0,
                    len(b.repeats) if b else 0,
                    None,
                    f"only in run {id_b if a is None else id_a}",
                    {},
                    [],
                    [],
                    only,
                )
            )
            continue
        keys_a = _common_keys(a.repeats)
        keys_b = _common_keys(b.repeats)
        both = [k for k in keys_a if k in keys_b and wanted(k)]
        mwu = len(a.repeats) >= MIN_MWU_REPEATS and len(b.repeats) >= MIN_MWU_REPEATS
        method = MWU if mwu else BOOT
        note = None if mwu else NOTE_FEW if max(len(a.repeats), len(b.repeats)) > 1 else NOTE_ONE
        metrics_out: dict[str, MetricComparison] = {}
        for key in both:
            sa = [r[key] for r in a.repeats]
            sb = [r[key] for r in b.repeats]
            if sa[0].kind != sb[0].kind:
                continue
            kind = sa[0].kind
            wanted_stats = COUNTER_STATS if kind == "counter" else tuple(stats)
            metrics_out[key] = MetricComparison(
                key,
                sa[0].unit or sb[0].unit,
                kind,
                {st: _compare_stat(name, key, st, sa, sb, seed, resamples) for st in wanted_stats},
            )
        out.append(
            TargetComparison(
                name,
                len(a.repeats),
                len(b.repeats),
                method,
                note,
                metrics_out,
                [k for k in keys_a if k not in keys_b and wanted(k)],
                [k for k in keys_b if k not in keys_a and wanted(k)],
            )
        )
    return Comparison(id_a, id_b, out, seed=seed, resamples=resamples)


def _common_keys(repeats: list[dict[str, _Series]]) -> list[str]:
    """Series every repeat of a target has (a per-process series of one repeat is not
    comparable to another's), in sorted order."""
    if not repeats:
        return []
    common = set(repeats[0])
    for r in repeats[1:]:
        common &= set(r)
    return sorted(common)


# -- groups of runs (compare --by KEY) ---------------------------------------------------


@dataclass
class RunGroup:
    """The runs of one value of the ``--by`` key (a device model, a branch…)."""

    value: str
    runs: list[int]


@dataclass
class GroupMetric:
    key: str
    unit: str | None
    kind: str  # "gauge" | "counter"
    values: dict[str, dict[str, float | None]]
    """stat → group value → the figure (median of the repeats' statistic); None: the
    group lacks the series."""
    vs_baseline: dict[str, dict[str, StatComparison]]
    """stat → group value (not the baseline's) → that group against the baseline."""


@dataclass
class GroupTarget:
    name: str
    repeats: dict[str, int]
    """group value → the target's repeats over the group's runs (0: not in the group)."""
    methods: dict[str, str | None]
    """group value (not the baseline's) → the method of its verdicts against the baseline."""
    notes: dict[str, str | None]
    metrics: dict[str, GroupMetric]


@dataclass
class GroupComparison:
    by: str
    groups: list[RunGroup]
    """The baseline first."""
    targets: list[GroupTarget]
    alpha: float = ALPHA
    seed: int = DEFAULT_SEED
    resamples: int = RESAMPLES

    @property
    def baseline(self) -> RunGroup:
        return self.groups[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "baseline": self.baseline.value,
            "groups": [{"value": g.value, "runs": g.runs} for g in self.groups],
            "alpha": self.alpha,
            "bootstrap": {"resamples": self.resamples, "seed": self.seed, "ci": 0.95},
            "targets": [
                {
                    "name": t.name,
                    "repeats": t.repeats,
                    "methods": t.methods,
                    "notes": t.notes,
                    "metrics": {
                        k: {
                            st: {
                                "values": {g: _finite(v) for g, v in vals.items()},
                                "vs_baseline": {
                                    g: c.to_json() for g, c in m.vs_baseline.get(st, {}).items()
                                },
                            }
                            for st, vals in m.values.items()
                        }
                        for k, m in t.metrics.items()
                    },
                    "units": {k: m.unit for k, m in t.metrics.items()},
                }
                for t in self.targets
            ],
        }


def compare_groups(
    store: Store,
    by: str,
    groups: Sequence[tuple[str, Sequence[int]]],
    targets: Sequence[str] = (),
    metrics: Sequence[str] = (),
    stats: Sequence[str] = DEFAULT_STATS,
    seed: int = DEFAULT_SEED,
    resamples: int = RESAMPLES,
) -> GroupComparison:
    """Compare groups of runs (``(value, run ids)``, the baseline first), each group
    against the baseline as :func:`compare` compares two runs: the repeats of a target
    over all runs of a group are its observations (Mann–Whitney U with ≥ 4 on both sides,
    else the block bootstrap). The figure of a group is the median of those repeats'
    statistic (the statistic itself for one run of one repeat)."""
    if len(groups) < 2:
        raise ValueError("compare_groups needs at least two groups")
    loaded: list[dict[str, _Target]] = []
    for _, refs in groups:
        merged: dict[str, _Target] = {}
        for ref in refs:
            _, ts = _load(store, ref)
            for name, t in ts.items():
                merged.setdefault(name, _Target(name, [])).repeats.extend(t.repeats)
        loaded.append(merged)
    values = [v for v, _ in groups]
    where = f"the runs grouped by {by}"
    names: list[str] = []
    for ts in loaded:
        names += [n for n in ts if n not in names]
    names = _selection(names, loaded, targets, metrics, stats, where)
    wanted = _wanted(metrics)

    if metrics:  # only the series asked for are compared
        for ts in loaded:
            for t in ts.values():
                t.repeats = [{k: v for k, v in r.items() if wanted(k)} for r in t.repeats]
    pairs = [
        _compare_loaded(
            groups[0][1][0],
            loaded[0],
            groups[i][1][0],
            loaded[i],
            [n for n in names if n in loaded[0] or n in loaded[i]],
            [],
            stats,
            seed,
            resamples,
        )
        for i in range(1, len(groups))
    ]
    out: list[GroupTarget] = []
    for name in names:
        per = [ts.get(name) for ts in loaded]
        keys: list[str] = []
        kinds: dict[str, tuple[str, str | None]] = {}
        common: list[set[str]] = []
        for tg in per:
            ck = _common_keys(tg.repeats) if tg is not None else []
            common.append(set(ck))
            for k in ck:
                if tg is not None and wanted(k) and k not in keys:
                    keys.append(k)
                    s0 = tg.repeats[0][k]
                    kinds[k] = (s0.kind, s0.unit)
        keys.sort()
        gm: dict[str, GroupMetric] = {}
        for k in keys:
            kind, unit = kinds[k]
            wanted_stats = COUNTER_STATS if kind == "counter" else tuple(stats)
            vals: dict[str, dict[str, float | None]] = {st: {} for st in wanted_stats}
            for g, tg, have in zip(values, per, common, strict=True):
                # a series not every repeat of a group has is not compared
                reps = [r[k] for r in tg.repeats] if tg is not None and k in have else []
                for st in wanted_stats:
                    if not reps or reps[0].kind != kind:
                        vals[st][g] = None
                    else:
                        vals[st][g] = float(np.median([_stat_value(r.stats, st) for r in reps]))
            vs: dict[str, dict[str, StatComparison]] = {st: {} for st in wanted_stats}
            for g, c in zip(values[1:], pairs, strict=True):
                tc = next((x for x in c.targets if x.name == name), None)
                mc = tc.metrics.get(k) if tc is not None else None
                if mc is None:
                    continue
                for st, sc in mc.stats.items():
                    if st in vs:
                        vs[st][g] = sc
            gm[k] = GroupMetric(k, unit, kind, vals, vs)
        methods: dict[str, str | None] = {}
        notes: dict[str, str | None] = {}
        for g, c in zip(values[1:], pairs, strict=True):
            tc = next((x for x in c.targets if x.name == name), None)
            methods[g] = tc.method if tc is not None else None
            notes[g] = tc.note if tc is not None else None
        out.append(
            GroupTarget(
                name,
                {
                    g: 0 if tg is None else len(tg.repeats)
                    for g, tg in zip(values, per, strict=True)
                },
                methods,
                notes,
                gm,
            )
        )
    return GroupComparison(
        by,
        [RunGroup(v, list(refs)) for v, refs in groups],
        out,
        seed=seed,
        resamples=resamples,
    )


# -- --fail-on ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FailRule:
    text: str
    metric: str
    stat: str
    threshold_pct: float
    """Signed: +10 fails on a rise of more than 10 %, -5 on a drop of more than 5 %."""


_RULE = re.compile(r"^(?P<metric>.+)\.(?P<stat>[A-Za-z0-9_]+):(?P<pct>.*)$")
_PCT = re.compile(r"^(?P<sign>[+-])\s*(?P<num>\d+(?:\.\d*)?|\.\d+)\s*%$")


def _split_rules(text: str) -> list[str]:
    """Split at commas outside ``{…}`` (labels hold commas)."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


def parse_fail_on(text: str) -> list[FailRule]:
    """``"cpu.percent.mean:+10%,app.fps.p50:-5%"`` → rules; a bad one is a UserError."""
    rules = []
    for part in _split_rules(text):
        if not part:
            raise UserError(
                f"--fail-on {text!r} has an empty rule; write METRIC.STAT:+N% rules "
                "separated by commas, e.g. 'cpu.percent.mean:+10%'"
            )
        m = _RULE.match(part)
        if not m:
            raise UserError(
                f"--fail-on rule {part!r} is not METRIC.STAT:+N% or METRIC.STAT:-N%; "
                "write e.g. 'cpu.percent.mean:+10%'"
            )
        stat = m.group("stat")
        if stat not in GAUGE_STATS and stat not in COUNTER_STATS:
            raise UserError(
                f"--fail-on rule {part!r} has an unknown statistic {stat!r}; use one of "
                f"{', '.join(GAUGE_STATS + COUNTER_STATS)}"
            )
        pm = _PCT.match(m.group("pct").strip())
        if not pm:
            raise UserError(
                f"--fail-on rule {part!r}: the threshold {m.group('pct').strip()!r} is not a "
                "signed percentage; write +10% (a rise of more than 10 % fails) or -5% "
                "(a drop of more than 5 % fails)"
            )
        pct = float(pm.group("num"))
        rules.append(
            FailRule(part, m.group("metric"), stat, pct if pm.group("sign") == "+" else -pct)
        )
    return rules


def check_rules_known(c: Comparison, rules: Sequence[FailRule], known: dict[str, str]) -> None:
    """Every rule's metric exists in one of the runs, with a statistic its kind has.

    ``known``: metric key → gauge|counter of every series of both runs' targets."""
    for r in rules:
        kind = known.get(r.metric)
        if kind is None:
            raise UserError(
                f"--fail-on rule {r.text!r} names metric {r.metric!r}, which neither run "
                f"{c.run_a} nor run {c.run_b} has; 'edgeprof summary RUN' lists the metrics"
            )
        if kind == "counter" and r.stat != "total":
            raise UserError(
                f"--fail-on rule {r.text!r}: {r.metric} is a counter, compared by its "
                f"total; write {r.metric}.total:{'+' if r.threshold_pct >= 0 else '-'}"
                f"{abs(r.threshold_pct):g}%"
            )
        if kind == "gauge" and r.stat == "total":
            raise UserError(
                f"--fail-on rule {r.text!r}: {r.metric} is a gauge, it has no total; use one "
                f"of {', '.join(GAUGE_STATS)}"
            )


@dataclass(frozen=True)
class RuleResult:
    target: str
    rule: FailRule
    outcome: str  # passed | failed | skipped
    message: str


def evaluate_rules(c: Comparison, rules: Sequence[FailRule]) -> list[RuleResult]:
    """Each rule on each target: failed when the change is significant and past the
    threshold in its direction, or when one run has no data for it."""
    out = []
    for t in c.targets:
        for r in rules:
            if t.only_in is not None:
                out.append(RuleResult(t.name, r, "skipped", f"target {t.name} is {t.note}"))
                continue
            keys = [
                k for k in _rule_keys(r.metric, list(t.metrics)) if r.stat in t.metrics[k].stats
            ]
            missing_a = _rule_keys(r.metric, t.only_in_b)  # in B only: no data in run A
            missing_b = _rule_keys(r.metric, t.only_in_a)
            for key in missing_b + missing_a:
                run = c.run_b if key in missing_b else c.run_a
                out.append(RuleResult(t.name, r, "failed", f"{key}: no data in run {run}"))
            if not keys and not (missing_a or missing_b):
                out.append(RuleResult(t.name, r, "skipped", f"{t.name} has no {r.metric}"))
            for key in keys:
                out.append(_rule_result(t.name, r, key, t.metrics[key].stats[r.stat]))
    return out


def _rule_result(target: str, r: FailRule, key: str, s: StatComparison) -> RuleResult:
    ch = s.change_pct
    if ch is None:
        ch = math.inf if s.b > s.a else -math.inf
    past = ch > r.threshold_pct if r.threshold_pct >= 0 else ch < r.threshold_pct
    failed = s.significant and past
    sign = "+" if r.threshold_pct >= 0 else "-"
    limit = f"limit {sign}{abs(r.threshold_pct):g} %"
    change = "n/a" if s.change_pct is None else f"{s.change_pct:+.1f} %"
    verdict = "significant" if s.significant else "not significant"
    p = f"p = {s.p_value:.3g}" if math.isfinite(s.p_value) else "no test"
    msg = f"{key} {r.stat}: {s.a:.6g} → {s.b:.6g} ({change}, {p}, {verdict}, {s.method}), {limit}"
    if s.note:
        msg += f"; {s.note}"
    return RuleResult(target, r, "failed" if failed else "passed", msg)


def known_metrics(c: Comparison, store: Store) -> dict[str, str]:
    """metric key (as compared: without ``pid``) and bare metric name → gauge|counter, for
    every series of both runs' targets (for --fail-on)."""
    out: dict[str, str] = {}
    for ref in (c.run_a, c.run_b):
        for s in store.series(ref):
            if s.target_id is None:
                continue
            kind = "counter" if s.kind in ("counter", "total") else "gauge"
            labels = {k: v for k, v in s.labels.items() if k != "pid"}
            out.setdefault(series_key(s.metric, labels), kind)
            out.setdefault(s.metric, kind)
    return out


def _rule_keys(rule_metric: str, keys: Sequence[str]) -> list[str]:
    """The compared keys a rule names: its exact key, or for a bare metric name every
    labelled series of that metric (``process.cpu.percent`` → each process)."""
    if rule_metric in keys:
        return [rule_metric]
    if "{" in rule_metric:
        return []
    return [k for k in keys if k.split("{", 1)[0] == rule_metric]


__all__ = [
    "ALPHA",
    "BOOT",
    "MWU",
    "Comparison",
    "FailRule",
    "GaugeStats",
    "RuleResult",
    "bootstrap_replicates",
    "block_length",
    "compare",
    "evaluate_rules",
    "mann_whitney_u",
    "parse_fail_on",
]
