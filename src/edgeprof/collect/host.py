"""Host-wide CPU and memory (metric group ``system``).

The values are psutil's (``cpu_times``, ``virtual_memory``, ``getloadavg``), read on the hot
path from ``/proc/stat`` and ``/proc/meminfo`` kept open (one ``pread`` each) instead of
through psutil, which parses every line of both files at every tick. ``/proc/stat`` counts
in jiffies (10 ms): the metric declares that granularity, so the sampler derives
``host.cpu.percent`` over a window long enough to be exact.
"""

from __future__ import annotations

import os

from edgeprof.collect._procfs import KeptOpen, close_all
from edgeprof.collect.base import BaseCollector, CollectContext
from edgeprof.hostinfo import CLK_TCK
from edgeprof.model import Labels, MetricSpec, Sample


def host_metrics(cpu_max_percent: float | None = None) -> list[MetricSpec]:
    return [
        MetricSpec(
            "host.cpu.busy_seconds",
            "s",
            "counter",
            "CPU time the host spent not idle (all cores)",
            rate_name="host.cpu.percent",
            rate_scale=100.0,
            rate_unit="%",
            granularity_s=1.0 / CLK_TCK,
            rate_max=cpu_max_percent,
        ),
        MetricSpec(
            "host.memory.used_bytes", "B", "gauge", "host memory in use (total minus available)"
        ),
        MetricSpec("host.memory.available_bytes", "B", "gauge", "host memory available"),
        MetricSpec("host.load1", "1", "gauge", "host 1-minute load average"),
    ]


def parse_proc_stat_busy(text: str) -> float:
    """First line of ``/proc/stat`` → CPU seconds not idle, all cores (psutil's
    ``sum(cpu_times()) - idle - iowait - guest - guest_nice``: user, nice, system, irq,
    softirq, steal)."""
    f = text[: text.index("\n")].split()
    if f[0] != "cpu":
        raise ValueError("/proc/stat does not start with the 'cpu' line")
    v = [int(x) for x in f[1:9]]
    # user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


def parse_meminfo(text: str) -> tuple[int, int] | None:
    """``/proc/meminfo`` → (total, available) bytes as psutil's ``virtual_memory``;
    None without ``MemAvailable`` (kernels before 3.14: psutil estimates it)."""

    def field(key: str) -> int | None:
        i = text.find(key)
        if i < 0:
            return None
        j = text.find("\n", i)
        return int(text[i + len(key) : j if j >= 0 else len(text)].split()[0]) * 1024

    total = field("MemTotal:")
    avail = field("MemAvailable:")
    if total is None or avail is None:
        return None
    if avail > total:  # as psutil does
        avail = field("MemFree:") or 0
    return total, avail


class HostCollector(BaseCollector):
    """``host.cpu.percent`` uses the same scale as ``cpu.percent``: 100 = one full core."""

    group = "system"

    def __init__(self, cpu_max_percent: float | None = None) -> None:
        self._metrics = host_metrics(cpu_max_percent)
        self._labels: Labels = ()
        self._stat: KeptOpen | None = None
        self._meminfo: KeptOpen | None = None

    def metrics(self) -> list[MetricSpec]:
        return self._metrics

    def open(self, ctx: CollectContext) -> None:
        import psutil

        self._psutil = psutil
        self._labels = tuple(kv for kv in ctx.labels if kv[0] != "target")
        self._stat = KeptOpen.optional(f"{ctx.proc_root}/stat")
        self._meminfo = KeptOpen.optional(f"{ctx.proc_root}/meminfo")

    def _busy(self) -> float:
        if self._stat is not None:
            try:
                return parse_proc_stat_busy(self._stat.read())
            except (OSError, ValueError, IndexError):
                pass
        t = self._psutil.cpu_times()
        idle = t.idle + getattr(t, "iowait", 0.0)
        return sum(t) - idle - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)

    def _memory(self) -> tuple[int, int]:
        if self._meminfo is not None:
            try:
                got = parse_meminfo(self._meminfo.read())
                if got is not None:
                    return got
            except (OSError, ValueError, IndexError):
                pass
        vm = self._psutil.virtual_memory()
        return vm.total, vm.available

    def sample(self, now_ns: int) -> list[Sample]:
        busy = self._busy()
        total, available = self._memory()
        lab = self._labels
        out = [
            Sample("host.cpu.busy_seconds", lab, now_ns, busy),
            Sample("host.memory.used_bytes", lab, now_ns, total - available),
            Sample("host.memory.available_bytes", lab, now_ns, available),
        ]
        try:
            out.append(Sample("host.load1", lab, now_ns, os.getloadavg()[0]))
        except (OSError, AttributeError):
            pass
        return out

    def close(self) -> None:
        close_all([self._stat, self._meminfo])
        self._stat = self._meminfo = None
