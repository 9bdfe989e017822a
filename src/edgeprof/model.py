"""Core data model: metric descriptions, samples, events, the run clock.

A *series* is a metric name plus labels; a *sample* is ``(metric, labels, t_ns, value)``
where ``t_ns`` is wall-clock Unix time in nanoseconds derived from one monotonic base per
run. Event kinds and target statuses are closed vocabularies (``Literal`` types), so a typo
is a type error rather than a silently unknown kind.
"""

from __future__ import annotations

import numbers
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

Labels = tuple[tuple[str, str], ...]
"""Labels as a sorted tuple of ``(key, value)`` pairs, so that a series key is hashable."""

Kind = Literal["gauge", "counter", "total"]
"""``gauge``: a value at a time. ``counter``: monotonic, counted from an unknown origin (a
kernel counter); its total over a run is its increase, a drop is a reset. ``total``: a
running total that starts at zero with the series and may go down (StatsD counters with
decrements); its total is its last value."""

Unit = Literal["%", "B", "s", "ms", "Hz", "W", "degC", "1", "B/s", "1/s", "s/s"]
"""The one unit vocabulary every declared metric uses."""

UNITS: frozenset[str] = frozenset(Unit.__args__)  # type: ignore[attr-defined]

EventKind = Literal[
    "target_started",
    "exited",
    "timed_out",
    "interrupted",
    "target_error",
    "exited_before_sampling",
    "sigkill_after_grace",
    "low_resolution",
    "rate_windows",
    "collector_unavailable",
    "collector_failed",
    "sampler_timing",
    "app_metric_rejected",
    "app_metric_kinds",
    "app_metrics_stats",
    "app_metrics_socket",
    "app_event",
    "app_service_check",
    "app_upload",
    "app_value",
    "pywaggle_stats",
    "pywaggle_timezone",
    "note",
    "crashed",
    "container_restarted",
    "container_removed",
    "detached",
    "samples_dropped",
    "samples_rejected",
]

TargetStatus = Literal[
    "pending",
    "running",
    "exited",
    "failed",
    "oom_killed",
    "timed_out",
    "error",
    "interrupted",
    "not_run",
    "crashed",
    "detached",
]

FAILED_STATUSES: frozenset[str] = frozenset({"failed", "oom_killed", "error"})
"""Target statuses that make ``edgeprof run`` exit 1."""


def labels_of(mapping: dict[str, Any] | None = None, **kw: Any) -> Labels:
    """Build a canonical (sorted, string-valued) label tuple."""
    items: dict[str, Any] = dict(mapping or {})
    items.update(kw)
    return tuple(sorted((str(k), str(v)) for k, v in items.items()))


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """Describes one metric a collector emits.

    Counters are stored as counters; the sampler also emits their rate once, under
    ``rate_name`` (default ``<name>_per_second``) multiplied by ``rate_scale``. For example
    ``cpu.usage_seconds`` is a counter whose rate, times 100, is ``cpu.percent``.

    ``granularity_s`` is the step in which the counter really advances (``/proc/stat``
    counts 10 ms jiffies): the sampler derives its rate over a window of at least ten steps,
    so a 10 ms sample of a jiffy counter never reads 0 % or 400 %. ``rate_max`` is the
    highest rate the hardware can produce (all cores busy); a rate is never reported above.
    """

    name: str
    unit: str
    kind: Kind = "gauge"
    description: str = ""
    rate_name: str | None = None
    rate_scale: float = 1.0
    rate_unit: str | None = None
    granularity_s: float | None = None
    rate_max: float | None = None

    @property
    def rate_metric(self) -> str:
        return self.rate_name or f"{self.name}_per_second"

    @property
    def derived_unit(self) -> str:
        """The unit of the derived rate."""
        return self.rate_unit or f"{self.unit}/s"

    def rate_spec(self) -> MetricSpec:
        """The gauge the sampler derives from this counter."""
        return MetricSpec(self.rate_metric, self.derived_unit, "gauge", f"rate of {self.name}")


class Sample(NamedTuple):
    """One value of one series at one time (a tuple: cheap to create on the hot path)."""

    metric: str
    labels: Labels
    t_ns: int
    value: float


_INT64 = 2**63


def storable(t: Any, v: Any) -> tuple[int, float] | str:
    """A sample's time and value as stored (int64 ns, a float), or why they cannot be.

    A time is an integer (numpy's too) or a finite real number, rounded to ns, within
    int64; a value is anything a float can be made of (numpy scalars, Decimal, Fraction,
    a bool as 0 or 1) except text, and finite or not (NaN and infinities are kept)."""
    if isinstance(t, (bool, str, bytes, bytearray)):
        return _bad_time(t)
    try:
        ns = int(t) if isinstance(t, numbers.Integral) else round(float(t))
    except (TypeError, ValueError, OverflowError):
        return _bad_time(t)
    if not -_INT64 <= ns < _INT64:
        return _bad_time(t)
    if isinstance(v, (str, bytes, bytearray)):
        return f"value {_short(v)} is not a number"
    try:
        value = float(v)
    except (TypeError, ValueError, OverflowError):
        return f"value {_short(v)} is not a number"
    return ns, value


def _bad_time(t: Any) -> str:
    return f"time {_short(t)} is not a whole number of nanoseconds within int64"


def _short(x: Any, n: int = 60) -> str:
    r = repr(x)
    return r if len(r) <= n else r[: n - 1] + "…"


@dataclass(frozen=True, slots=True)
class Event:
    """A timestamped fact: target started/exited/timed out, collector unavailable, …

    ``target`` names the target (container) it concerns, None for the run as a whole.
    """

    t_ns: int
    kind: EventKind
    message: str
    target: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


class Clock:
    """Wall-clock nanoseconds from one monotonic base, so clock steps never reorder samples."""

    __slots__ = ("_wall0", "_mono0")

    def __init__(self) -> None:
        self._wall0 = time.time_ns()
        self._mono0 = time.monotonic_ns()

    def now_ns(self) -> int:
        return self._wall0 + (time.monotonic_ns() - self._mono0)

    def from_monotonic(self, mono_ns: int) -> int:
        return self._wall0 + (mono_ns - self._mono0)


_TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


def parse_rfc3339(text: str) -> int | None:
    """RFC 3339 timestamps as engines write them (up to nanosecond digits) → Unix ns;
    None when unset (Go's zero time, ``0001-01-01…``) or not a timestamp."""
    m = _TIME_RE.match(text.strip())
    if m is None or text.startswith("0001-"):
        return None
    whole, frac, tz = m.groups()
    base = datetime.fromisoformat(whole + ("+00:00" if tz in (None, "Z") else tz))
    return int(base.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])
