"""The Collector protocol and the context a collector opens with.

A collector declares its metrics once, is opened with a :class:`CollectContext`, then
``sample(now_ns)`` is called at every tick of the sampler and returns plain samples.
Counters are returned raw; the sampler derives rates. A collector that cannot work on this
machine raises :class:`~edgeprof.errors.CollectorUnavailable` from ``open`` with a reason;
the run records that as an event and goes on.

Optional features are part of the protocol, with their defaults in :class:`BaseCollector`:

* ``dynamic_metrics``: ``metrics()`` grows at run time (app metrics); the sampler re-reads
  it whenever ``metrics_version`` changes;
* ``sample_after_close``: ``close()`` drains what is still queued, and one more
  ``sample()`` after it returns that tail;
* ``resolution_s``: the data is coarser than the sampling interval (the engine's stats API
  gives one reading a second); the run says so once;
* ``container_setup()``: volumes and environment the container needs for this collector
  (the app-metrics socket); such collectors open before the container is created.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from edgeprof.cgroups import CgroupPaths
from edgeprof.model import Clock, Event, Labels, MetricSpec, Sample


def _drop_event(ev: Event) -> None:
    return None


def _drop_code(rows: Sequence[Any]) -> None:
    return None


@dataclass
class CollectContext:
    """What a collector needs to know about the thing it measures.

    ``target`` names the container (None for host-wide collectors); ``labels`` are added to
    every series. ``pid`` is the container's main process as seen from this host (0 when
    unknown); ``proc_root``/``sys_root`` let tests point readers at recorded trees.
    ``emit_event`` records an event (e.g. a rejected message) without raising; it may be
    called from any thread. ``emit_code`` hands sampled stacks
    (:class:`~edgeprof.codeprof.model.CodeSample` rows) to the store, from any thread too;
    by default they are dropped.
    """

    target: str | None = None
    labels: Labels = ()
    clock: Clock = field(default_factory=Clock)
    interval_s: float = 1.0
    emit_event: Callable[[Event], None] = _drop_event
    container_id: str | None = None
    pid: int = 0
    cgroup: CgroupPaths | None = None
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    engine: Any = None
    emit_code: Callable[[Sequence[Any]], None] = _drop_code


@dataclass
class ContainerSetup:
    """What a collector adds to the container it measures (before it is created)."""

    volumes: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class Collector(Protocol):
    """One metric family. ``group`` is the spec's metric-group name it belongs to."""

    group: str
    dynamic_metrics: bool
    sample_after_close: bool
    resolution_s: float | None

    @property
    def metrics_version(self) -> int: ...

    def metrics(self) -> list[MetricSpec]: ...

    def open(self, ctx: CollectContext) -> None: ...

    def sample(self, now_ns: int) -> list[Sample]: ...

    def close(self) -> None: ...

    def container_setup(self) -> ContainerSetup | None: ...


class BaseCollector:
    """Defaults of the optional collector features (see the module docstring)."""

    group: str = ""
    dynamic_metrics: bool = False
    sample_after_close: bool = False
    resolution_s: float | None = None

    @property
    def metrics_version(self) -> int:
        return 0

    def container_setup(self) -> ContainerSetup | None:
        return None

    def close(self) -> None:
        return None
