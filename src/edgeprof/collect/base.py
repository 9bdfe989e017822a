"""The Collector protocol, the context a collector opens with, and the group registry.

A collector declares its metrics once, is opened with a :class:`CollectContext`, then
``sample(now_ns)`` is called at every tick of the sampler and returns plain samples.
Counters are returned raw; the sampler derives rates. A collector that cannot work on this
machine raises :class:`~edgeprof.errors.CollectorUnavailable` from ``open`` with a reason;
the run records that as an event and goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from edgeprof.model import Event, Labels, MetricSpec, Sample


@dataclass(frozen=True)
class CgroupPaths:
    """Where a container's cgroup lives. ``version`` is 1 or 2.

    For v1, ``controllers`` maps controller name (``cpu``, ``cpuacct``, ``memory``,
    ``blkio``, ``pids``, …) to its directory. For v2, ``unified`` is the one directory.
    """

    version: int
    controllers: dict[str, str] = field(default_factory=dict)
    unified: str | None = None

    def dir_for(self, controller: str) -> str | None:
        if self.version == 2:
            return self.unified
        return self.controllers.get(controller)


@dataclass
class CollectContext:
    """What a collector needs to know about the thing it measures.

    ``labels`` are added to every series (e.g. ``target``). ``pid`` is the container's main
    process as seen from the host (0 when unknown), ``proc_root``/``sys_root`` let tests
    point readers at recorded trees. ``emit_event`` records an event (e.g. a rejected
    message) without raising. ``options`` carries group-specific settings from the spec.
    """

    target: str
    labels: Labels = ()
    container_id: str | None = None
    pid: int = 0
    cgroup: CgroupPaths | None = None
    interval_s: float = 1.0
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    options: dict[str, Any] = field(default_factory=dict)
    emit_event: Callable[[Event], None] = field(default=lambda e: None)
    engine: Any = None


@runtime_checkable
class Collector(Protocol):
    """One metric family. ``group`` is the spec's metric-group name it belongs to."""

    group: str

    def metrics(self) -> list[MetricSpec]: ...

    def open(self, ctx: CollectContext) -> None: ...

    def sample(self, now_ns: int) -> list[Sample]: ...

    def close(self) -> None: ...


# Metric groups a spec may name, with what they measure (the runner picks their collectors).
KNOWN_GROUPS: dict[str, str] = {
    "container": "container cgroup: CPU, memory, I/O, pids; and network from /proc/<pid>/net/dev",
    "system": "host CPU and memory (psutil)",
    "process": "per-process CPU, memory and threads inside the container",
    "gpu-summary": "per-GPU utilization, memory, power, temperature, clocks (NVML or tegrastats)",
    "gpu-process": "GPU memory and SM utilization of the container's processes (NVML)",
    "tegrastats": "Jetson tegrastats: GPU, EMC, per-core CPU, temperatures, power rails",
    "app": "metrics the app itself reports over the metrics socket",
}

DEFAULT_GROUPS = ["container", "system"]
