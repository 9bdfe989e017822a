"""Per-process metrics inside the container (metric group ``process``), through psutil.

The container's processes are the PIDs listed in its cgroup; each becomes series labelled
with ``pid`` and ``name`` (the command name).
"""

from __future__ import annotations

from typing import Any

from edgeprof.collect.base import CgroupPaths, CollectContext
from edgeprof.collect.cgroup import cgroup_procs
from edgeprof.errors import CollectorUnavailable
from edgeprof.model import Labels, MetricSpec, Sample

PROCESS_METRICS = [
    MetricSpec(
        "process.cpu.usage_seconds",
        "s",
        "counter",
        "CPU time of one process",
        rate_name="process.cpu.percent",
        rate_scale=100.0,
        rate_unit="%",
    ),
    MetricSpec("process.memory.rss_bytes", "B", "gauge", "resident memory of one process"),
    MetricSpec("process.threads", "1", "gauge", "threads of one process"),
    MetricSpec("process.count", "1", "gauge", "processes in the container"),
]


class ProcessCollector:
    group = "process"

    def __init__(self) -> None:
        self._procs: dict[int, tuple[Any, Labels]] = {}
        self._cg: CgroupPaths | None = None
        self._labels: Labels = ()

    def metrics(self) -> list[MetricSpec]:
        return PROCESS_METRICS

    def open(self, ctx: CollectContext) -> None:
        import psutil

        if ctx.cgroup is None:
            raise CollectorUnavailable(
                "the container's cgroup is unknown, so its processes are too"
            )
        self._psutil = psutil
        self._cg = ctx.cgroup
        self._labels = ctx.labels

    def _proc(self, pid: int) -> tuple[Any, Labels] | None:
        entry = self._procs.get(pid)
        if entry is None:
            try:
                p = self._psutil.Process(pid)
                name = p.name()
            except self._psutil.Error:
                return None
            labels = tuple(sorted((*self._labels, ("pid", str(pid)), ("process", name))))
            entry = self._procs[pid] = (p, labels)
        return entry

    def sample(self, now_ns: int) -> list[Sample]:
        assert self._cg is not None
        pids = cgroup_procs(self._cg)
        out = [Sample("process.count", self._labels, now_ns, len(pids))]
        err = self._psutil.Error
        for pid in pids:
            entry = self._proc(pid)
            if entry is None:
                continue
            p, lab = entry
            try:
                with p.oneshot():
                    ct = p.cpu_times()
                    rss = p.memory_info().rss
                    threads = p.num_threads()
            except err:
                self._procs.pop(pid, None)
                continue
            out.append(Sample("process.cpu.usage_seconds", lab, now_ns, ct.user + ct.system))
            out.append(Sample("process.memory.rss_bytes", lab, now_ns, rss))
            out.append(Sample("process.threads", lab, now_ns, threads))
        if len(self._procs) > len(pids) + 64:
            live = set(pids)
            self._procs = {k: v for k, v in self._procs.items() if k in live}
        return out

    def close(self) -> None:
        self._procs.clear()
