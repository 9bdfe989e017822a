"""Per-process metrics inside the container (metric group ``process``).

The container's processes are the PIDs listed in its cgroup; each becomes series labelled
with ``pid`` and ``process`` (the command name, from psutil, once per process). On the hot
path each process costs two ``pread`` calls on files kept open: ``/proc/<pid>/stat`` (CPU
time and threads) and ``/proc/<pid>/statm`` (resident size) — the very values psutil's
``cpu_times``, ``num_threads`` and ``memory_info().rss`` report, without psutil's per-call
overhead; ``cgroup.procs`` is kept open too.
"""

from __future__ import annotations

import os

from edgeprof.cgroups import CgroupPaths, cgroup_procs
from edgeprof.collect._procfs import KeptOpen, close_all
from edgeprof.collect.base import BaseCollector, CollectContext
from edgeprof.errors import CollectorUnavailable
from edgeprof.hostinfo import CLK_TCK
from edgeprof.model import Labels, MetricSpec, Sample

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def process_metrics(cpu_max_percent: float | None = None) -> list[MetricSpec]:
    return [
        MetricSpec(
            "process.cpu.usage_seconds",
            "s",
            "counter",
            "CPU time of one process",
            rate_name="process.cpu.percent",
            rate_scale=100.0,
            rate_unit="%",
            granularity_s=1.0 / CLK_TCK,
            rate_max=cpu_max_percent,
        ),
        MetricSpec("process.memory.rss_bytes", "B", "gauge", "resident memory of one process"),
        MetricSpec("process.threads", "1", "gauge", "threads of one process"),
        MetricSpec("process.count", "1", "gauge", "processes in the container"),
    ]


def parse_proc_pid_stat(text: str) -> tuple[float, int]:
    """``/proc/<pid>/stat`` → (user + system CPU seconds, threads)."""
    f = text[text.rindex(")") + 2 :].split()
    # fields 14/15 utime/stime, 20 num_threads; f[0] is field 3 (state)
    return (int(f[11]) + int(f[12])) / CLK_TCK, int(f[17])


def parse_proc_pid_statm_rss(text: str) -> int:
    """``/proc/<pid>/statm`` → resident bytes (psutil's ``memory_info().rss``)."""
    return int(text.split(None, 2)[1]) * _PAGE_SIZE


class ProcessCollector(BaseCollector):
    group = "process"

    def __init__(self, cpu_max_percent: float | None = None) -> None:
        self._metrics = process_metrics(cpu_max_percent)
        # pid → (its stat, its statm, labels)
        self._procs: dict[int, tuple[KeptOpen, KeptOpen, Labels]] = {}
        self._cg: CgroupPaths | None = None
        self._labels: Labels = ()
        self._procs_file: KeptOpen | None = None
        self._proc_root = "/proc"

    def metrics(self) -> list[MetricSpec]:
        return self._metrics

    def open(self, ctx: CollectContext) -> None:
        import psutil

        if ctx.cgroup is None:
            raise CollectorUnavailable(
                "the container's cgroup is unknown, so its processes are too"
            )
        self._psutil = psutil
        self._cg = ctx.cgroup
        self._labels = ctx.labels
        self._proc_root = ctx.proc_root
        self._procs_file = KeptOpen.optional(ctx.cgroup.procs_path())

    def _pids(self) -> list[int]:
        assert self._cg is not None
        if self._procs_file is None:
            return cgroup_procs(self._cg)
        try:
            return [int(x) for x in self._procs_file.read_bytes().split()]
        except (OSError, ValueError):
            return []

    def _proc(self, pid: int) -> tuple[KeptOpen, KeptOpen, Labels] | None:
        entry = self._procs.get(pid)
        if entry is None:
            stat = statm = None
            try:
                stat = KeptOpen(f"{self._proc_root}/{pid}/stat")
                statm = KeptOpen(f"{self._proc_root}/{pid}/statm")
                name = self._psutil.Process(pid).name()
            except (OSError, self._psutil.Error):
                close_all([stat, statm])
                return None
            labels = tuple(sorted((*self._labels, ("pid", str(pid)), ("process", name))))
            entry = self._procs[pid] = (stat, statm, labels)
        return entry

    def _drop(self, pid: int) -> None:
        entry = self._procs.pop(pid, None)
        if entry is not None:
            close_all([entry[0], entry[1]])

    def sample(self, now_ns: int) -> list[Sample]:
        pids = self._pids()
        if not pids:  # the cgroup is gone or emptied: the container has exited, nothing to record
            return []
        out = [Sample("process.count", self._labels, now_ns, len(pids))]
        for pid in pids:
            entry = self._proc(pid)
            if entry is None:
                continue
            stat, statm, lab = entry
            try:
                cpu, threads = parse_proc_pid_stat(stat.read())
                rss = parse_proc_pid_statm_rss(statm.read())
            except (OSError, ValueError, IndexError):
                self._drop(pid)  # the process exited (ESRCH) between listing and reading
                continue
            out.append(Sample("process.cpu.usage_seconds", lab, now_ns, cpu))
            out.append(Sample("process.memory.rss_bytes", lab, now_ns, rss))
            out.append(Sample("process.threads", lab, now_ns, threads))
        if len(self._procs) > len(pids) + 64:
            live = set(pids)
            for pid in [p for p in self._procs if p not in live]:
                self._drop(pid)
        return out

    def close(self) -> None:
        for pid in list(self._procs):
            self._drop(pid)
        if self._procs_file is not None:
            self._procs_file.close()
            self._procs_file = None
