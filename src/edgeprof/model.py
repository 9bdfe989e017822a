"""Core data model: metric descriptions, samples and events.

A *series* is a metric name plus labels; a *sample* is ``(series, t_ns, value)`` where
``t_ns`` is wall-clock Unix time in nanoseconds derived from one monotonic base per run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

Labels = tuple[tuple[str, str], ...]
"""Labels as a sorted tuple of ``(key, value)`` pairs, so that a series key is hashable."""

Kind = Literal["gauge", "counter"]


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
    """

    name: str
    unit: str
    kind: Kind = "gauge"
    description: str = ""
    rate_name: str | None = None
    rate_scale: float = 1.0
    rate_unit: str | None = None

    @property
    def rate_metric(self) -> str:
        return self.rate_name or f"{self.name}_per_second"


@dataclass(frozen=True, slots=True)
class Sample:
    metric: str
    labels: Labels
    t_ns: int
    value: float


@dataclass(frozen=True, slots=True)
class Event:
    """A timestamped fact: target started/exited/timed out, collector unavailable, …"""

    t_ns: int
    kind: str
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
