"""Host-wide CPU and memory (metric group ``system``), read through psutil."""

from __future__ import annotations

import contextlib

from edgeprof.collect.base import CollectContext
from edgeprof.model import Labels, MetricSpec, Sample

HOST_METRICS = [
    MetricSpec(
        "host.cpu.busy_seconds",
        "s",
        "counter",
        "CPU time the host spent not idle (all cores)",
        rate_name="host.cpu.percent",
        rate_scale=100.0,
        rate_unit="%",
    ),
    MetricSpec(
        "host.memory.used_bytes", "B", "gauge", "host memory in use (total minus available)"
    ),
    MetricSpec("host.memory.available_bytes", "B", "gauge", "host memory available"),
    MetricSpec("host.load1", "1", "gauge", "host 1-minute load average"),
]


class HostCollector:
    """``host.cpu.percent`` uses the same scale as ``cpu.percent``: 100 = one full core."""

    group = "system"

    def __init__(self) -> None:
        self._labels: Labels = ()

    def metrics(self) -> list[MetricSpec]:
        return HOST_METRICS

    def open(self, ctx: CollectContext) -> None:
        import psutil

        self._psutil = psutil
        self._labels = tuple(kv for kv in ctx.labels if kv[0] != "target")

    def sample(self, now_ns: int) -> list[Sample]:
        ps = self._psutil
        t = ps.cpu_times()
        idle = t.idle + getattr(t, "iowait", 0.0)
        busy = sum(t) - idle - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
        vm = ps.virtual_memory()
        lab = self._labels
        out = [
            Sample("host.cpu.busy_seconds", lab, now_ns, busy),
            Sample("host.memory.used_bytes", lab, now_ns, vm.total - vm.available),
            Sample("host.memory.available_bytes", lab, now_ns, vm.available),
        ]
        with contextlib.suppress(OSError, AttributeError):
            out.append(Sample("host.load1", lab, now_ns, ps.getloadavg()[0]))
        return out

    def close(self) -> None:
        pass
