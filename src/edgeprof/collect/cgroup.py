"""Container metrics from the container's own cgroup files (v1 and v2) and its net/dev.

Files are opened once and re-read with ``pread`` at every tick (:mod:`._procfs`): no path
lookups on the hot path. Parsers are pure functions of file text, tested on recorded files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from edgeprof.collect._procfs import CHUNK, KeptOpen, close_all
from edgeprof.collect.base import BaseCollector, CollectContext
from edgeprof.errors import CollectorUnavailable
from edgeprof.model import Labels, MetricSpec, Sample

# cgroup v1 reports "no limit" as a huge page-aligned number.
_V1_UNLIMITED = 1 << 62


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat) → dict."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if v:
            try:
                out[k] = int(v)
            except ValueError:
                continue
    return out


def _needles(keys: Iterable[str]) -> tuple[bytes, ...]:
    return tuple(k.encode("ascii") + b" " for k in keys)


def _pick(data: bytes, needles: tuple[bytes, ...]) -> list[int | None]:
    """A few keys of a flat-keyed file (``memory.stat``: 40 lines, 2–3 wanted), found with
    ``bytes.find`` rather than parsing every line as :func:`parse_flat_keyed` does: the
    value of each ``needle`` (``b"key "``) in order, None where the key is missing or not an
    integer."""
    out: list[int | None] = []
    for needle in needles:
        i = data.find(needle)
        while i > 0 and data[i - 1] != 10:  # not at a line start: a longer key
            i = data.find(needle, i + 1)
        if i < 0:
            out.append(None)
            continue
        j = data.find(b"\n", i)
        try:
            out.append(int(data[i + len(needle) : j if j >= 0 else len(data)]))
        except ValueError:
            out.append(None)
    return out


def parse_blkio_v1(text: str) -> tuple[int, int]:
    """``blkio.throttle.io_service_bytes`` → (read bytes, write bytes) summed over devices."""
    read = write = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            if parts[1] == "Read":
                read += int(parts[2])
            elif parts[1] == "Write":
                write += int(parts[2])
    return read, write


def parse_io_stat_v2(text: str) -> tuple[int, int]:
    """cgroup v2 ``io.stat`` → (rbytes, wbytes) summed over devices."""
    read = write = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            k, _, v = field.partition("=")
            if k == "rbytes":
                read += int(v)
            elif k == "wbytes":
                write += int(v)
    return read, write


def parse_net_dev(text: str, skip: Iterable[str] = ("lo",)) -> tuple[int, int, int, int]:
    """``/proc/<pid>/net/dev`` → (rx bytes, rx packets, tx bytes, tx packets), lo excluded."""
    rxb = rxp = txb = txp = 0
    skipped = set(skip)
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        if name.strip() in skipped:
            continue
        f = rest.split()
        if len(f) >= 10:
            rxb += int(f[0])
            rxp += int(f[1])
            txb += int(f[8])
            txp += int(f[9])
    return rxb, rxp, txb, txp


def container_metrics(
    cpu_granularity_s: float | None = None, cpu_max_percent: float | None = None
) -> list[MetricSpec]:
    """The container group's metrics. ``cpu_granularity_s`` is the scheduler tick in which
    a busy task's CPU time advances; ``cpu_max_percent`` is 100 × the host's CPUs."""
    return [
        MetricSpec(
            "cpu.usage_seconds",
            "s",
            "counter",
            "CPU time used by the container",
            rate_name="cpu.percent",
            rate_scale=100.0,
            rate_unit="%",
            granularity_s=cpu_granularity_s,
            rate_max=cpu_max_percent,
        ),
        MetricSpec(
            "cpu.throttled_seconds",
            "s",
            "counter",
            "time the container was throttled by its CPU quota",
            rate_unit="s/s",
        ),
        MetricSpec(
            "memory.usage_bytes", "B", "gauge", "memory charged to the cgroup (incl. page cache)"
        ),
        MetricSpec(
            "memory.working_set_bytes",
            "B",
            "gauge",
            "usage minus inactive file cache (docker stats)",
        ),
        MetricSpec("memory.rss_bytes", "B", "gauge", "anonymous memory"),
        MetricSpec("memory.cache_bytes", "B", "gauge", "page cache"),
        MetricSpec("memory.limit_bytes", "B", "gauge", "memory limit (absent when unlimited)"),
        MetricSpec("memory.oom_kills", "1", "counter", "OOM kills inside the container"),
        MetricSpec("io.read_bytes", "B", "counter", "bytes read from block devices"),
        MetricSpec("io.write_bytes", "B", "counter", "bytes written to block devices"),
        MetricSpec("pids.count", "1", "gauge", "processes and threads in the container"),
    ]


NET_METRICS = [
    MetricSpec("net.rx_bytes", "B", "counter", "bytes received (all interfaces but lo)"),
    MetricSpec("net.tx_bytes", "B", "counter", "bytes sent (all interfaces but lo)"),
    MetricSpec("net.rx_packets", "1", "counter", "packets received"),
    MetricSpec("net.tx_packets", "1", "counter", "packets sent"),
]


# The keys the collector reads from each flat-keyed file, as the byte strings ``_pick``
# looks for.
_CPUSTAT_V1 = _needles(("throttled_time",))
_CPUSTAT_V2 = _needles(("usage_usec", "throttled_usec"))
_MEMSTAT_V1 = _needles(("total_inactive_file", "total_rss", "total_cache"))
_MEMSTAT_V2 = _needles(("inactive_file", "anon", "file"))
_OOM = _needles(("oom_kill",))
_NO_IO_V1 = b"Total 0\n"
"""``blkio.throttle.io_service_bytes`` of a cgroup that did no block I/O (the whole file)."""

_new = tuple.__new__
"""``_new(Sample, (metric, labels, t_ns, value))``: a Sample without the Python-level
``NamedTuple.__new__`` call (the hot path creates ~10 per container and tick)."""


class CgroupCollector(BaseCollector):
    """CPU, memory, I/O and pids of one container, from its cgroup (v1 or v2)."""

    group = "container"

    def __init__(
        self, cpu_granularity_s: float | None = None, cpu_max_percent: float | None = None
    ) -> None:
        self._metrics = container_metrics(cpu_granularity_s, cpu_max_percent)
        self._files: list[KeptOpen | None] = []
        self._labels: Labels = ()
        self._version = 1
        self.f_cpu: KeptOpen | None = None
        self.f_cpustat: KeptOpen | None = None
        self.f_memusage: KeptOpen | None = None
        self.f_memstat: KeptOpen | None = None
        self.f_memlimit: KeptOpen | None = None
        self.f_oom: KeptOpen | None = None
        self.f_io: KeptOpen | None = None
        self.f_pids: KeptOpen | None = None

    def metrics(self) -> list[MetricSpec]:
        return self._metrics

    def open(self, ctx: CollectContext) -> None:
        cg = ctx.cgroup
        if cg is None:
            raise CollectorUnavailable("the container's cgroup is unknown")
        self._labels = ctx.labels
        self._version = cg.version
        opt = KeptOpen.optional

        def at(controller: str, name: str) -> KeptOpen | None:
            d = cg.dir_for(controller)
            return None if d is None else opt(f"{d}/{name}")

        if cg.version == 1:
            self.f_cpu = at("cpuacct", "cpuacct.usage")
            self.f_cpustat = at("cpu", "cpu.stat")
            self.f_memusage = at("memory", "memory.usage_in_bytes")
            self.f_memstat = at("memory", "memory.stat")
            self.f_memlimit = at("memory", "memory.limit_in_bytes")
            self.f_oom = at("memory", "memory.oom_control")
            self.f_io = at("blkio", "blkio.throttle.io_service_bytes")
            self.f_pids = at("pids", "pids.current")
        else:
            self.f_cpu = None
            self.f_cpustat = at("cpu", "cpu.stat")
            self.f_memusage = at("memory", "memory.current")
            self.f_memstat = at("memory", "memory.stat")
            self.f_memlimit = at("memory", "memory.max")
            self.f_oom = at("memory", "memory.events")
            self.f_io = at("io", "io.stat")
            self.f_pids = at("pids", "pids.current")
        self._files = [
            self.f_cpu,
            self.f_cpustat,
            self.f_memusage,
            self.f_memstat,
            self.f_memlimit,
            self.f_oom,
            self.f_io,
            self.f_pids,
        ]
        if self.f_memusage is None and self.f_cpu is None and self.f_cpustat is None:
            raise CollectorUnavailable(f"cgroup files of the container are not readable ({cg})")

    def sample(self, now_ns: int) -> list[Sample]:
        # Files are read as bytes (``int()`` takes them as they are) and samples built with
        # ``_new``: this runs for every container at every tick.
        out: list[Sample] = []
        add = out.append
        lab = self._labels
        v1 = self._version == 1
        pread = os.pread
        try:
            f = self.f_cpustat
            if f is not None:
                data = pread(f.fd, CHUNK, 0)
                if v1:
                    (thr_ns,) = _pick(data, _CPUSTAT_V1)
                    add(_new(Sample, ("cpu.throttled_seconds", lab, now_ns, (thr_ns or 0) / 1e9)))
                else:
                    usage_us, thr_us = _pick(data, _CPUSTAT_V2)
                    add(_new(Sample, ("cpu.usage_seconds", lab, now_ns, (usage_us or 0) / 1e6)))
                    add(_new(Sample, ("cpu.throttled_seconds", lab, now_ns, (thr_us or 0) / 1e6)))
            f = self.f_cpu
            if f is not None:
                usage = int(pread(f.fd, CHUNK, 0)) / 1e9
                add(_new(Sample, ("cpu.usage_seconds", lab, now_ns, usage)))
            f = self.f_memusage
            if f is not None:
                usage_b = int(pread(f.fd, CHUNK, 0))
                add(_new(Sample, ("memory.usage_bytes", lab, now_ns, usage_b)))
                f = self.f_memstat
                if f is not None:
                    inactive, rss, cache = _pick(
                        pread(f.fd, CHUNK, 0), _MEMSTAT_V1 if v1 else _MEMSTAT_V2
                    )
                    ws = max(0, usage_b - (inactive or 0))
                    add(_new(Sample, ("memory.working_set_bytes", lab, now_ns, ws)))
                    add(_new(Sample, ("memory.rss_bytes", lab, now_ns, rss or 0)))
                    add(_new(Sample, ("memory.cache_bytes", lab, now_ns, cache or 0)))
            f = self.f_memlimit
            if f is not None:
                raw = pread(f.fd, CHUNK, 0).strip()
                if raw != b"max":
                    limit = int(raw)
                    if limit < _V1_UNLIMITED:
                        add(_new(Sample, ("memory.limit_bytes", lab, now_ns, limit)))
            f = self.f_oom
            if f is not None:
                (kills,) = _pick(pread(f.fd, CHUNK, 0), _OOM)
                if kills is not None:
                    add(_new(Sample, ("memory.oom_kills", lab, now_ns, kills)))
            f = self.f_io
            if f is not None:
                data = pread(f.fd, CHUNK, 0)
                if v1 and data == _NO_IO_V1:
                    r = w = 0
                else:
                    text = data.decode("ascii", "replace")
                    r, w = parse_blkio_v1(text) if v1 else parse_io_stat_v2(text)
                add(_new(Sample, ("io.read_bytes", lab, now_ns, r)))
                add(_new(Sample, ("io.write_bytes", lab, now_ns, w)))
            f = self.f_pids
            if f is not None:
                add(_new(Sample, ("pids.count", lab, now_ns, int(pread(f.fd, CHUNK, 0)))))
        except (OSError, ValueError):
            # The cgroup went away (container exited) between ticks: keep what we have.
            pass
        return out

    def close(self) -> None:
        close_all(self._files)
        self._files = []


class NetCollector(BaseCollector):
    """Network counters of the container's network namespace (``/proc/<pid>/net/dev``)."""

    group = "container"

    def __init__(self) -> None:
        self._f: KeptOpen | None = None
        self._labels: Labels = ()

    def metrics(self) -> list[MetricSpec]:
        return NET_METRICS

    def open(self, ctx: CollectContext) -> None:
        if not ctx.pid:
            raise CollectorUnavailable("the container has no running process to read net/dev from")
        try:
            self._f = KeptOpen(f"{ctx.proc_root}/{ctx.pid}/net/dev")
        except OSError as e:
            raise CollectorUnavailable(
                f"cannot read the container's network counters: {e}"
            ) from None
        self._labels = ctx.labels

    def sample(self, now_ns: int) -> list[Sample]:
        if self._f is None:
            return []
        try:
            rxb, rxp, txb, txp = parse_net_dev(self._f.read())
        except (OSError, ValueError):
            return []
        lab = self._labels
        return [
            _new(Sample, ("net.rx_bytes", lab, now_ns, rxb)),
            _new(Sample, ("net.tx_bytes", lab, now_ns, txb)),
            _new(Sample, ("net.rx_packets", lab, now_ns, rxp)),
            _new(Sample, ("net.tx_packets", lab, now_ns, txp)),
        ]

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
