"""Per-process metrics inside the container (metric group ``process``).

The container's processes are the PIDs listed in its cgroup; each becomes series labelled
with ``pid`` and ``name`` (the command name, from psutil, once per process). On the hot
path each process costs two ``pread`` calls on files kept open: ``/proc/<pid>/stat`` (CPU
time and threads) and ``/proc/<pid>/statm`` (resident size) — the very values psutil's
``cpu_times``, ``num_threads`` and ``memory_info().rss`` report, without psutil's per-call
overhead; ``cgroup.procs`` is kept open too.
"""

from __future__ import annotations

import contextlib
import os

from edgeprof.collect.base import CgroupPaths, CollectContext
from edgeprof.collect.cgroup import cgroup_procs, cgroup_procs_path
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


_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def parse_proc_pid_stat(text: str) -> tuple[float, int]:
    """``/proc/<pid>/stat`` → (user + system CPU seconds, threads)."""
    f = text[text.rindex(")") + 2 :].split()
    # fields 14/15 utime/stime, 20 num_threads; f[0] is field 3 (state)
    return (int(f[11]) + int(f[12])) / _CLK_TCK, int(f[17])


def parse_proc_pid_statm_rss(text: str) -> int:
    """``/proc/<pid>/statm`` → resident bytes (psutil's ``memory_info().rss``)."""
    return int(text.split(None, 2)[1]) * _PAGE_SIZE


def _pread_all(fd: int) -> bytes:
    data = os.pread(fd, 65536, 0)
    if len(data) < 65536:
        return data
    chunks = [data]
    while len(data) == 65536:
        data = os.pread(fd, 65536, 65536 * len(chunks))
        chunks.append(data)
    return b"".join(chunks)


class ProcessCollector:
    group = "process"

    def __init__(self) -> None:
        # pid → (fd of its stat, fd of its statm, labels)
        self._procs: dict[int, tuple[int, int, Labels]] = {}
        self._cg: CgroupPaths | None = None
        self._labels: Labels = ()
        self._procs_fd: int | None = None
        self._proc_root = "/proc"

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
        self._proc_root = ctx.proc_root
        path = cgroup_procs_path(ctx.cgroup)
        if path is not None:
            with contextlib.suppress(OSError):
                self._procs_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def _pids(self) -> list[int]:
        assert self._cg is not None
        if self._procs_fd is None:
            return cgroup_procs(self._cg)
        try:
            return [int(x) for x in _pread_all(self._procs_fd).split()]
        except (OSError, ValueError):
            return []

    def _proc(self, pid: int) -> tuple[int, int, Labels] | None:
        entry = self._procs.get(pid)
        if entry is None:
            try:
                fd = os.open(f"{self._proc_root}/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            try:
                fdm = os.open(f"{self._proc_root}/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                os.close(fd)
                return None
            try:
                name = self._psutil.Process(pid).name()
            except self._psutil.Error:
                os.close(fd)
                os.close(fdm)
                return None
            labels = tuple(sorted((*self._labels, ("pid", str(pid)), ("process", name))))
            entry = self._procs[pid] = (fd, fdm, labels)
        return entry

    def _drop(self, pid: int) -> None:
        entry = self._procs.pop(pid, None)
        if entry is not None:
            for fd in entry[:2]:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def sample(self, now_ns: int) -> list[Sample]:
        pids = self._pids()
        if not pids:  # the cgroup is gone or emptied: the container has exited, nothing to record
            return []
        out = [Sample("process.count", self._labels, now_ns, len(pids))]
        pread = os.pread
        for pid in pids:
            entry = self._proc(pid)
            if entry is None:
                continue
            fd, fdm, lab = entry
            try:
                cpu, threads = parse_proc_pid_stat(pread(fd, 4096, 0).decode("ascii", "replace"))
                rss = parse_proc_pid_statm_rss(pread(fdm, 4096, 0).decode("ascii"))
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
        if self._procs_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._procs_fd)
            self._procs_fd = None
