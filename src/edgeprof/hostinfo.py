"""What this host is and can do, detected once per run.

:class:`HostCaps` carries the facts collectors are chosen and configured by: the number of
CPUs (the highest CPU rate the hardware can show), the scheduler tick (the real step of the
kernel's CPU-time counters), and whether this is a Jetson. :func:`host_details` is the
description stored with every run. Nothing here imports another edgeprof module but
``cgroups``-free helpers, so the engine, the collectors and the runner can all use it.
"""

from __future__ import annotations

import os
import platform
import re
import time
from dataclasses import dataclass
from typing import Any

_L4T_RE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)")

CLK_TCK = os.sysconf("SC_CLK_TCK")
"""Jiffies per second of ``/proc/stat`` and ``/proc/<pid>/stat`` (USER_HZ, 100 on Linux)."""


def read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().replace(b"\x00", b"").decode("utf-8", "replace").strip()
    except OSError:
        return None


def jetson_model(proc_root: str = "/proc") -> str | None:
    return read_text(os.path.join(proc_root, "device-tree", "model"))


def cpu_model(proc_root: str = "/proc") -> str | None:
    """The CPU's model name from ``/proc/cpuinfo`` (x86's ``model name``; ARM kernels give
    ``model name`` or ``Processor`` on older ones, else only the part number: then the
    architecture and ``CPU part`` are returned, e.g. ``ARMv8 part 0xd42``)."""
    text = read_text(os.path.join(proc_root, "cpuinfo")) or ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "processor name", "cpu model", "hardware"):
        if key in fields:
            return " ".join(fields[key].split())
    if "processor" in fields and not fields["processor"].isdigit():
        return fields["processor"]
    if "cpu part" in fields:
        arch = fields.get("cpu architecture", "")
        return f"ARMv{arch} part {fields['cpu part']}" if arch else f"part {fields['cpu part']}"
    return None


def l4t_release(etc_root: str = "/etc") -> str | None:
    """``# R35 (release), REVISION: 4.1, …`` → ``"R35.4.1"``; None when absent."""
    text = read_text(os.path.join(etc_root, "nv_tegra_release"))
    if text is None:
        return None
    m = _L4T_RE.search(text)
    return f"R{m.group(1)}.{m.group(2)}" if m else None


def is_jetson(proc_root: str = "/proc", etc_root: str = "/etc") -> bool:
    model = jetson_model(proc_root) or ""
    if "jetson" in model.lower() or "nvidia" in model.lower():
        return True
    return os.path.exists(os.path.join(etc_root, "nv_tegra_release"))


def measure_sched_tick(
    duration_s: float = 0.03, min_steps: int = 5, max_s: float = 0.15
) -> float | None:
    """The step in which the kernel's per-task CPU time advances for a running task, in s.

    A task that keeps running is charged its CPU time at scheduler ticks (4 ms at
    ``CONFIG_HZ=250``), so a cgroup's ``cpuacct.usage`` read every 10 ms moves by 8 or 12 ms
    of a busy core. Measured by spinning this thread for ``duration_s`` — longer, up to
    ``max_s``, until ``min_steps`` steps were seen (a 100 Hz kernel steps every 10 ms, and a
    busy machine lends this thread less time) — and taking the median step of
    ``/proc/thread-self/schedstat``; None when that file is not readable.
    """
    try:
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    steps: list[int] = []
    try:
        last = int(os.pread(fd, 128, 0).split()[0])
        start = time.perf_counter()
        end, cap = start + duration_s, start + max_s
        while (now := time.perf_counter()) < end or (len(steps) < min_steps and now < cap):
            v = int(os.pread(fd, 128, 0).split()[0])
            if v != last:
                steps.append(v - last)
                last = v
    except (OSError, ValueError, IndexError):
        return None
    finally:
        os.close(fd)
    if len(steps) < 3:
        return None
    steps.sort()
    return steps[len(steps) // 2] / 1e9


@dataclass(frozen=True)
class HostCaps:
    """Facts about this host, detected once per run (see :func:`detect`)."""

    ncpu: int = 1
    sched_tick_s: float | None = None
    jetson: bool = False
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    etc_root: str = "/etc"

    @property
    def cpu_percent_max(self) -> float:
        """100 per CPU: the highest ``cpu.percent`` this host can produce."""
        return 100.0 * self.ncpu


def detect(proc_root: str = "/proc", sys_root: str = "/sys", etc_root: str = "/etc") -> HostCaps:
    return HostCaps(
        ncpu=os.cpu_count() or 1,
        sched_tick_s=measure_sched_tick(),
        jetson=is_jetson(proc_root, etc_root),
        proc_root=proc_root,
        sys_root=sys_root,
        etc_root=etc_root,
    )


def host_details(caps: HostCaps | None = None) -> dict[str, Any]:
    """Machine facts stored with a run (the engine and GPU add theirs)."""
    import psutil

    details: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": psutil.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_total_bytes": psutil.virtual_memory().total,
    }
    if caps is not None and caps.sched_tick_s:
        details["sched_tick_s"] = caps.sched_tick_s
    boot_id = read_text("/proc/sys/kernel/random/boot_id")
    if boot_id:
        details["boot_id"] = boot_id
    return details
