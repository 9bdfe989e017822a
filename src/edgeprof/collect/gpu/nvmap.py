"""GPU memory per container on a Jetson, from the nvmap driver's client table (``gpu-process``).

NVML does not support the integrated GPU of Jetsons with the ``nvgpu`` driver (Nano … Orin):
there, the ``nvmap`` allocator keeps a table of its clients in debugfs,
``/sys/kernel/debug/nvmap/iovmm/clients`` (root only), which htop's Jetson support and
jetson-stats also read. Its format, from the kernel's ``nvmap_debug_clients_show`` /
``client_stringify`` (``drivers/video/tegra/nvmap``)::

    CLIENT                        PROCESS      PID        SIZE      "%-18s %18s %8s %11s"
    user                              gem     4481     118372K      "%-18s %18s %8u %10lluK"
    total                                              141896K      "%-18s %18s %8s %10lluK"

One row per client (each open of ``/dev/nvmap``; a process may have several): the client's
name (``user`` for user space), the process's ``comm`` (up to 15 characters, may contain
spaces), its host PID (the thread-group leader) and the memory it holds in KiB (each buffer
divided among the clients that share it). The last row is the allocator's total.

:func:`parse_nvmap_clients` reads that text; :class:`NvmapProcessCollector` reads the file
at every tick, keeps the rows whose PID belongs to the container (its ``cgroup.procs``, its
``/proc/<pid>/cgroup`` naming the container, or its main PID) and emits the same series as
NVML's process collector: ``gpu.process.memory_used_bytes{pid, gpu}`` and
``gpu.container.memory_used_bytes{gpu}``, with ``gpu="0"`` (a Jetson has one iGPU).

Thor-class devices (JetPack 7, unified ``nvidia.ko`` driver) keep the table empty (or lack it)
and NVML works there: :class:`JetsonGpuProcessCollector` picks the source that has data and
records a note naming it.

Never run on real Jetson hardware: written from the kernel source and tested on a recorded
client table and tables formatted like the kernel's ``printf`` (see ``tests/data/jetson-nvmap``).
"""

from __future__ import annotations

import os
import re
from typing import Any, NamedTuple

from edgeprof.cgroups import cgroup_procs
from edgeprof.collect.base import BaseCollector, CollectContext, Collector
from edgeprof.errors import CollectorUnavailable
from edgeprof.model import Event, Labels, MetricSpec, Sample, labels_of

CLIENTS_REL = "kernel/debug/nvmap/iovmm/clients"
"""The client table, relative to the sysfs root (debugfs mounted at /sys/kernel/debug)."""

GPU_INDEX = "0"

_SIZE = re.compile(r"^(\d+)([KMG]?)$")
_UNIT = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}

NVMAP_METRICS = [
    MetricSpec("gpu.process.memory_used_bytes", "B", description="labels pid, gpu"),
    MetricSpec("gpu.container.memory_used_bytes", "B", description="sum over the container"),
]


class NvmapClient(NamedTuple):
    """One row of the client table."""

    process: str
    pid: int
    bytes: int
    client: str = "user"


class NvmapTable(NamedTuple):
    """The client rows and the ``total`` row (None when the text has none)."""

    clients: list[NvmapClient]
    total_bytes: int | None

    @property
    def has_data(self) -> bool:
        """Some memory is accounted: a nonzero total or a nonzero client row."""
        return bool(self.total_bytes) or any(c.bytes for c in self.clients)


def _size(token: str) -> int | None:
    m = _SIZE.match(token)
    if m is None:
        return None
    return int(m.group(1)) * _UNIT[m.group(2)]


def parse_nvmap_clients(text: str) -> NvmapTable:
    """The text of ``nvmap/iovmm/clients`` → its client rows and total, in bytes.

    Rows are read from the right (size, then PID), so a process name with spaces is kept
    whole. The header and any line that does not fit (a truncated read, another table's
    detail lines) are skipped; sizes take the kernel's ``K`` suffix (``M``/``G`` and a bare
    number are accepted too, as htop does).
    """
    clients: list[NvmapClient] = []
    total: int | None = None
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] == "CLIENT":
            continue
        if parts[0] == "total":
            if len(parts) >= 2:
                size = _size(parts[-1])
                if size is not None:
                    total = size
            continue
        if len(parts) < 3 or not parts[-2].isdigit() or not parts[-2].isascii():
            continue
        size = _size(parts[-1])
        if size is None:
            continue
        clients.append(NvmapClient(" ".join(parts[1:-2]), int(parts[-2]), size, parts[0]))
    return NvmapTable(clients, total)


def parse_nvmap_meminfo(text: str) -> int | None:
    """``NvMapMemUsed`` of ``/proc/meminfo`` in bytes; None where the line is absent (the
    unified ``nvidia.ko`` driver of Thor-class devices has none)."""
    for line in text.splitlines():
        if line.startswith("NvMapMemUsed:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit() and parts[1].isascii():
                unit = parts[2] if len(parts) > 2 else "kB"
                return int(parts[1]) * (1024 if unit.lower() == "kb" else 1)
    return None


def read_nvmap_table(path: str) -> NvmapTable:
    """Read and parse the client table; :class:`CollectorUnavailable` with the reason when the
    file cannot be read (debugfs not mounted, not root, no nvmap driver)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CollectorUnavailable(
            f"{path} not readable ({e.strerror or e}): debugfs not mounted or not root "
            "(run as root with debugfs mounted: mount -t debugfs none /sys/kernel/debug)"
        ) from None
    return parse_nvmap_clients(raw.decode("utf-8", errors="replace"))


def nvgpu_stack(proc_root: str = "/proc") -> bool:
    """The nvgpu/nvmap driver stack is loaded: ``NvMapMemUsed`` is in ``/proc/meminfo``."""
    try:
        with open(os.path.join(proc_root, "meminfo"), encoding="utf-8", errors="replace") as f:
            return parse_nvmap_meminfo(f.read()) is not None
    except OSError:
        return False


class _Membership:
    """Whether a host PID belongs to the target container (the rule NVML's collector uses)."""

    def __init__(self, ctx: CollectContext) -> None:
        self.ctx = ctx
        self._cache: dict[int, bool] = {}

    def pids_now(self) -> set[int]:
        return set() if self.ctx.cgroup is None else set(cgroup_procs(self.ctx.cgroup))

    def belongs(self, pid: int, procs: set[int]) -> bool:
        if pid in procs or (pid == self.ctx.pid and pid != 0):
            return True
        cached = self._cache.get(pid)
        if cached is not None:
            return cached
        ok = False
        if self.ctx.container_id:
            try:
                path = os.path.join(self.ctx.proc_root, str(pid), "cgroup")
                with open(path, encoding="utf-8", errors="replace") as f:
                    ok = self.ctx.container_id in f.read()
            except OSError:
                return False  # gone or unreadable: ask again next time
        self._cache[pid] = ok
        return ok

    def forget_except(self, pids: set[int]) -> None:
        """Drop cached answers for PIDs no longer in the table (a PID may be reused)."""
        for pid in [p for p in self._cache if p not in pids]:
            del self._cache[pid]


class NvmapProcessCollector(BaseCollector):
    """GPU memory of the target container's processes from the nvmap client table.

    ``clients_path`` overrides ``<sys_root>/kernel/debug/nvmap/iovmm/clients``.
    """

    group = "gpu-process"

    def __init__(self, clients_path: str | None = None) -> None:
        self.clients_path = clients_path
        self.path: str | None = None
        self._member: _Membership | None = None
        self._labels: Labels = ()

    def metrics(self) -> list[MetricSpec]:
        return list(NVMAP_METRICS)

    def resolve_path(self, ctx: CollectContext) -> str:
        return self.clients_path or os.path.join(ctx.sys_root, CLIENTS_REL)

    def open(self, ctx: CollectContext) -> None:
        if not ctx.container_id and ctx.cgroup is None and not ctx.pid:
            raise CollectorUnavailable(
                "gpu-process needs the target's container id or cgroup to match GPU processes"
            )
        path = self.resolve_path(ctx)
        read_nvmap_table(path)  # unreadable: unavailable now, with the reason
        self.path = path
        self._member = _Membership(ctx)
        self._labels = ctx.labels

    def sample(self, now_ns: int) -> list[Sample]:
        if self.path is None or self._member is None:
            return []
        try:
            table = read_nvmap_table(self.path)
        except CollectorUnavailable:
            return []  # a failed read is a missing sample, not a zero
        return self.samples_from(table, now_ns)

    def samples_from(self, table: NvmapTable, now_ns: int) -> list[Sample]:
        """The container's series from one parsed table."""
        assert self._member is not None
        procs = self._member.pids_now()
        per_pid: dict[int, int] = {}
        for c in table.clients:
            if c.pid and self._member.belongs(c.pid, procs):
                per_pid[c.pid] = per_pid.get(c.pid, 0) + c.bytes
        self._member.forget_except({c.pid for c in table.clients})
        base = dict(self._labels)
        out = [
            Sample(
                "gpu.process.memory_used_bytes",
                labels_of(base, pid=pid, gpu=GPU_INDEX),
                now_ns,
                float(per_pid[pid]),
            )
            for pid in sorted(per_pid)
        ]
        out.append(
            Sample(
                "gpu.container.memory_used_bytes",
                labels_of(base, gpu=GPU_INDEX),
                now_ns,
                float(sum(per_pid.values())),
            )
        )
        return out

    def close(self) -> None:
        self.path = None
        self._member = None


class JetsonGpuProcessCollector(BaseCollector):
    """``gpu-process`` on a Jetson: the nvmap client table where it has data, NVML where that
    is the working source (Thor-class devices), with a note naming the source used.

    * nvmap readable and either holding data or on the nvgpu stack (``NvMapMemUsed`` in
      ``/proc/meminfo``) → nvmap;
    * otherwise NVML, if it opens;
    * otherwise nvmap, if readable (empty now);
    * on the nvgpu stack with the table unreadable, or neither source working → unavailable
      with the reasons (NVML has no per-process memory for the nvgpu iGPU, so it is not a
      silent fallback there).
    """

    group = "gpu-process"

    def __init__(self, clients_path: str | None = None, nvml: Any = None) -> None:
        from edgeprof.collect.gpu.nvml import PROCESS_METRICS

        self.nvmap = NvmapProcessCollector(clients_path)
        self._nvml_arg = nvml
        self._metrics = list(PROCESS_METRICS)
        self.active: Collector | None = None
        self.source: str | None = None

    def metrics(self) -> list[MetricSpec]:
        return list(self._metrics)

    def _nvml(self) -> Collector:
        from edgeprof.collect.gpu.nvml import NvmlProcessCollector

        return NvmlProcessCollector(nvml=self._nvml_arg)

    def open(self, ctx: CollectContext) -> None:
        path = self.nvmap.resolve_path(ctx)
        table: NvmapTable | None = None
        nvmap_reason = ""
        try:
            table = read_nvmap_table(path)
        except CollectorUnavailable as e:
            nvmap_reason = str(e)
        nvgpu = nvgpu_stack(ctx.proc_root)
        why = ""
        if table is not None and (table.has_data or nvgpu):
            chosen: Collector = self.nvmap
            source = "nvmap"
        elif nvgpu:
            raise CollectorUnavailable(
                f"GPU memory per process on this Jetson (nvgpu driver) comes only from nvmap: "
                f"{nvmap_reason}"
            )
        else:
            nvml = self._nvml()
            try:
                nvml.open(ctx)
            except CollectorUnavailable as e:
                if table is None:
                    raise CollectorUnavailable(f"{nvmap_reason}; {e}") from None
                chosen, source = self.nvmap, "nvmap"
                why = f" (its table is empty and NVML is unavailable: {e})"
            else:
                self.active, self.source = nvml, "nvml"
                why = (
                    " (the nvmap client table is empty: unified nvidia.ko driver)"
                    if table is not None
                    else f" ({nvmap_reason})"
                )
                self._note(ctx, "NVML", why)
                return
        chosen.open(ctx)
        self.active, self.source = chosen, source
        where = self.nvmap.path or path
        self._note(ctx, f"the nvmap client table {where}", why)

    def _note(self, ctx: CollectContext, source_text: str, why: str) -> None:
        ctx.emit_event(
            Event(
                t_ns=ctx.clock.now_ns(),
                kind="note",
                message=f"gpu-process: GPU memory per process from {source_text}{why}",
                target=ctx.target,
                data={"group": self.group, "source": self.source},
            )
        )

    def sample(self, now_ns: int) -> list[Sample]:
        return [] if self.active is None else self.active.sample(now_ns)

    def close(self) -> None:
        active, self.active = self.active, None
        if active is not None:
            active.close()
