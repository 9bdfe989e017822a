"""Where the sampler's output goes: one small protocol, several consumers.

The sampler hands every batch to one :class:`Sink`. :class:`Tee` fans it out (the store's
batch writer, the live view's :class:`LatestValues`, a Prometheus endpoint, …); a failing
secondary sink is reported once and never stops the primary one. A sink that shows or
exports per container may also have ``member_started(MemberInfo)`` and
``member_ended(target)``: the runner and ``attach`` call them through the Tee. Sinks are called from
the sampler's thread; each keeps its own state behind its own lock and hands out copies, so
no dict is shared by reference across threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from edgeprof.model import Event, Labels, MetricSpec, Sample


class Sink(Protocol):
    def describe(self, specs: Sequence[MetricSpec]) -> None:
        """Metrics (units, kinds) that may appear from now on; before their samples."""
        ...

    def write(self, batch: Sequence[Sample]) -> None: ...

    def event(self, ev: Event) -> None: ...


@dataclass(frozen=True)
class MemberInfo:
    """A container a session starts observing, for sinks that show or export per container
    (the live view, the Prometheus endpoint): its samples carry ``target=<target>``."""

    target: str
    """The ``target`` label of its samples (a target's name, or an attached container's)."""
    role: str
    """``app`` (a target edgeprof runs), ``service`` or ``attached``."""
    container_id: str
    name: str
    """The container's name in the engine."""
    image: str
    limits: dict[str, float] = field(default_factory=dict)
    """``cpus`` (cores) and ``memory_bytes`` where set."""
    labels: dict[str, str] = field(default_factory=dict)
    """The container's own engine labels."""
    cgroup: str = ""
    """Its cgroup relative to the hierarchy's root (``/docker/<id>``); empty if unknown."""


def member_started(sink: object, info: MemberInfo) -> None:
    """Tell ``sink`` of a new container, if it wants to know (an optional sink method)."""
    fn = getattr(sink, "member_started", None)
    if fn is not None:
        fn(info)


def member_ended(sink: object, target: str) -> None:
    """Tell ``sink`` that a container's series ended (it exited or was removed)."""
    fn = getattr(sink, "member_ended", None)
    if fn is not None:
        fn(target)


class NullSink:
    def describe(self, specs: Sequence[MetricSpec]) -> None:
        return None

    def write(self, batch: Sequence[Sample]) -> None:
        return None

    def event(self, ev: Event) -> None:
        return None


class Tee:
    """Every call goes to the primary sink, then to each secondary one (errors contained)."""

    def __init__(
        self,
        primary: Sink,
        *secondary: Sink,
        on_error: Callable[[Sink, BaseException], None] | None = None,
    ) -> None:
        self.primary = primary
        self.secondary = list(secondary)
        self._on_error = on_error
        self._failed: set[int] = set()

    def _each(self, call: Callable[[Sink], None]) -> None:
        call(self.primary)
        for s in self.secondary:
            try:
                call(s)
            except Exception as e:  # noqa: BLE001 - a display must never stop the store
                if id(s) not in self._failed:
                    self._failed.add(id(s))
                    if self._on_error is not None:
                        self._on_error(s, e)

    def describe(self, specs: Sequence[MetricSpec]) -> None:
        self._each(lambda s: s.describe(specs))

    def write(self, batch: Sequence[Sample]) -> None:
        self._each(lambda s: s.write(batch))

    def event(self, ev: Event) -> None:
        self._each(lambda s: s.event(ev))

    def member_started(self, info: MemberInfo) -> None:
        self._each(lambda s: member_started(s, info))

    def member_ended(self, target: str) -> None:
        self._each(lambda s: member_ended(s, target))


class LatestValues:
    """The newest value of every series (label-aware), for live displays and exporters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, Labels], tuple[int, float]] = {}

    def describe(self, specs: Sequence[MetricSpec]) -> None:
        return None

    def write(self, batch: Sequence[Sample]) -> None:
        with self._lock:
            values = self._values
            for s in batch:
                values[(s.metric, s.labels)] = (s.t_ns, s.value)

    def event(self, ev: Event) -> None:
        return None

    def snapshot(self) -> dict[tuple[str, Labels], tuple[int, float]]:
        """A copy of every series' newest ``(t_ns, value)``."""
        with self._lock:
            return dict(self._values)

    def for_labels(self, labels: Labels) -> dict[str, float]:
        """metric → newest value of the series whose labels are exactly ``labels``."""
        with self._lock:
            return {m: v for (m, lab), (_, v) in self._values.items() if lab == labels}
