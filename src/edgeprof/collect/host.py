"""Host-wide CPU and memory (metric group ``system``).

The values are psutil's (``cpu_times``, ``virtual_memory``, ``getloadavg``), read on the hot
path from ``/proc/stat`` and ``/proc/meminfo`` kept open (one ``pread`` each) instead of
through psutil, which parses every line of both files at every tick.
"""

from __future__ import annotations

import contextlib
import os

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


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def parse_proc_stat_busy(text: str) -> float:
    """First line of ``/proc/stat`` → CPU seconds not idle, all cores (psutil's
    ``sum(cpu_times()) - idle - iowait - guest - guest_nice``: user, nice, system, irq,
    softirq, steal)."""
    f = text[: text.index("\n")].split()
    if f[0] != "cpu":
        raise ValueError("/proc/stat does not start with the 'cpu' line")
    v = [int(x) for x in f[1:9]]
    # user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / _CLK_TCK


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


class HostCollector:
    """``host.cpu.percent`` uses the same scale as ``cpu.percent``: 100 = one full core."""

    group = "system"

    def __init__(self) -> None:
        self._labels: Labels = ()
        self._stat_fd: int | None = None
        self._meminfo_fd: int | None = None

    def metrics(self) -> list[MetricSpec]:
        return HOST_METRICS

    def open(self, ctx: CollectContext) -> None:
        import psutil

        self._psutil = psutil
        self._labels = tuple(kv for kv in ctx.labels if kv[0] != "target")
        with contextlib.suppress(OSError):
            self._stat_fd = os.open(f"{ctx.proc_root}/stat", os.O_RDONLY | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            self._meminfo_fd = os.open(f"{ctx.proc_root}/meminfo", os.O_RDONLY | os.O_CLOEXEC)

    def _busy(self) -> float:
        if self._stat_fd is not None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                return parse_proc_stat_busy(os.pread(self._stat_fd, 4096, 0).decode("ascii"))
        t = self._psutil.cpu_times()
        idle = t.idle + getattr(t, "iowait", 0.0)
        return sum(t) - idle - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)

    def _memory(self) -> tuple[int, int]:
        if self._meminfo_fd is not None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                got = parse_meminfo(os.pread(self._meminfo_fd, 16384, 0).decode("ascii"))
                if got is not None:
                    return got
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
        with contextlib.suppress(OSError, AttributeError):
            out.append(Sample("host.load1", lab, now_ns, os.getloadavg()[0]))
        return out

    def close(self) -> None:
        for fd in (self._stat_fd, self._meminfo_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._stat_fd = self._meminfo_fd = None
