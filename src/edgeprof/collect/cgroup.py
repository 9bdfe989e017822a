"""Container metrics from the container's own cgroup files (v1 and v2) and its net/dev.

The cgroup of a container is found from ``/proc/<pid>/cgroup`` and the cgroup mounts in
``/proc/self/mountinfo``, so it works for dockerd, Podman and containerd alike. Files are
opened once and re-read with ``os.pread`` at every tick: no path lookups on the hot path.
Parsers are pure functions of file text, tested on recorded files.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

from edgeprof.collect.base import CgroupPaths, CollectContext
from edgeprof.errors import CollectorUnavailable
from edgeprof.model import Labels, MetricSpec, Sample

# cgroup v1 reports "no limit" as a huge page-aligned number.
_V1_UNLIMITED = 1 << 62


def parse_proc_cgroup(text: str) -> tuple[dict[str, str], str | None]:
    """``/proc/<pid>/cgroup`` → (v1 controller → path, v2 unified path or None)."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        else:
            for c in controllers.split(","):
                v1[c.removeprefix("name=")] = path
    return v1, v2


def parse_cgroup_mounts(
    mountinfo: str,
) -> tuple[dict[str, tuple[str, str]], tuple[str, str] | None]:
    """``/proc/self/mountinfo`` → (v1 controller → (mount root, mount point), v2 mount)."""
    v1: dict[str, tuple[str, str]] = {}
    v2: tuple[str, str] | None = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        rfields = right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        root, mountpoint = fields[3], fields[4]
        fstype, options = rfields[0], rfields[2]
        if fstype == "cgroup2":
            if v2 is None or mountpoint == "/sys/fs/cgroup":
                v2 = (root, mountpoint)
        elif fstype == "cgroup":
            for opt in options.split(","):
                if opt in ("rw", "ro") or opt.startswith(("relatime", "noexec", "nosuid", "nodev")):
                    continue
                v1.setdefault(opt.removeprefix("name="), (root, mountpoint))
    return v1, v2


def _join(mount: tuple[str, str], path: str) -> str:
    root, point = mount
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return point + path if path.startswith("/") else f"{point}/{path}"


def find_cgroup(pid: int, proc_root: str = "/proc") -> CgroupPaths:
    """Locate the cgroup directories of process ``pid`` (as seen from this host)."""
    try:
        with open(f"{proc_root}/{pid}/cgroup") as f:
            proc_text = f.read()
        with open(f"{proc_root}/self/mountinfo") as f:
            mounts_text = f.read()
    except OSError as e:
        raise CollectorUnavailable(f"cannot read the cgroup of pid {pid}: {e}") from None
    v1_paths, v2_path = parse_proc_cgroup(proc_text)
    v1_mounts, v2_mount = parse_cgroup_mounts(mounts_text)
    controllers = {
        c: _join(v1_mounts[c], p) for c, p in v1_paths.items() if c in v1_mounts and c != "systemd"
    }
    if "memory" in controllers or "cpuacct" in controllers:
        return CgroupPaths(version=1, controllers=controllers)
    if v2_path is not None and v2_mount is not None:
        return CgroupPaths(version=2, unified=_join(v2_mount, v2_path))
    raise CollectorUnavailable(f"no cgroup v1 or v2 hierarchy found for pid {pid}")


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


def pick_keyed(text: str, keys: Iterable[str]) -> dict[str, int]:
    """Like ``parse_flat_keyed(text)`` restricted to ``keys``, without parsing every line.

    The sampler's hot path needs 2-3 keys of a 40-line ``memory.stat``; finding them with
    ``str.find`` costs a fraction of building the whole dict.
    """
    out: dict[str, int] = {}
    for k in keys:
        needle = k + " "
        i = text.find(needle)
        while i > 0 and text[i - 1] != "\n":
            i = text.find(needle, i + 1)
        if i < 0:
            continue
        j = text.find("\n", i)
        try:
            out[k] = int(text[i + len(needle) : j if j >= 0 else len(text)])
        except ValueError:
            continue
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


class _File:
    """A file kept open and re-read from offset 0 with pread."""

    __slots__ = ("fd", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def read(self) -> str:
        return os.pread(self.fd, 65536, 0).decode("ascii", "replace")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _open_optional(path: str | None) -> _File | None:
    if path is None:
        return None
    try:
        return _File(path)
    except OSError:
        return None


CONTAINER_METRICS = [
    MetricSpec(
        "cpu.usage_seconds",
        "s",
        "counter",
        "CPU time used by the container",
        rate_name="cpu.percent",
        rate_scale=100.0,
        rate_unit="%",
    ),
    MetricSpec(
        "cpu.throttled_seconds", "s", "counter", "time the container was throttled by its CPU quota"
    ),
    MetricSpec(
        "memory.usage_bytes", "B", "gauge", "memory charged to the cgroup (incl. page cache)"
    ),
    MetricSpec(
        "memory.working_set_bytes", "B", "gauge", "usage minus inactive file cache (docker stats)"
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


# The keys the collector reads from each flat-keyed file (see ``pick_keyed``).
_CPUSTAT_V1 = ("throttled_time",)
_CPUSTAT_V2 = ("usage_usec", "throttled_usec")
_MEMSTAT_V1 = ("total_inactive_file", "total_rss", "total_cache")
_MEMSTAT_V2 = ("inactive_file", "anon", "file")
_OOM = ("oom_kill",)


class CgroupCollector:
    """CPU, memory, I/O and pids of one container, from its cgroup (v1 or v2)."""

    group = "container"

    def __init__(self) -> None:
        self._files: list[_File] = []
        self._labels: Labels = ()
        self._version = 1

    def metrics(self) -> list[MetricSpec]:
        return CONTAINER_METRICS

    def open(self, ctx: CollectContext) -> None:
        cg = ctx.cgroup
        if cg is None:
            raise CollectorUnavailable("the container's cgroup is unknown")
        self._labels = ctx.labels
        self._version = cg.version
        if cg.version == 1:
            cpuacct = cg.dir_for("cpuacct")
            cpu = cg.dir_for("cpu")
            mem = cg.dir_for("memory")
            blkio = cg.dir_for("blkio")
            pids = cg.dir_for("pids")
            self.f_cpu = _open_optional(cpuacct and f"{cpuacct}/cpuacct.usage")
            self.f_cpustat = _open_optional(cpu and f"{cpu}/cpu.stat")
            self.f_memusage = _open_optional(mem and f"{mem}/memory.usage_in_bytes")
            self.f_memstat = _open_optional(mem and f"{mem}/memory.stat")
            self.f_memlimit = _open_optional(mem and f"{mem}/memory.limit_in_bytes")
            self.f_oom = _open_optional(mem and f"{mem}/memory.oom_control")
            self.f_io = _open_optional(blkio and f"{blkio}/blkio.throttle.io_service_bytes")
            self.f_pids = _open_optional(pids and f"{pids}/pids.current")
        else:
            d = cg.unified
            self.f_cpu = None
            self.f_cpustat = _open_optional(f"{d}/cpu.stat")
            self.f_memusage = _open_optional(f"{d}/memory.current")
            self.f_memstat = _open_optional(f"{d}/memory.stat")
            self.f_memlimit = _open_optional(f"{d}/memory.max")
            self.f_oom = _open_optional(f"{d}/memory.events")
            self.f_io = _open_optional(f"{d}/io.stat")
            self.f_pids = _open_optional(f"{d}/pids.current")
        self._files = [
            f
            for f in (
                self.f_cpu,
                self.f_cpustat,
                self.f_memusage,
                self.f_memstat,
                self.f_memlimit,
                self.f_oom,
                self.f_io,
                self.f_pids,
            )
            if f is not None
        ]
        if self.f_memusage is None and self.f_cpu is None and self.f_cpustat is None:
            raise CollectorUnavailable(f"cgroup files of the container are not readable ({cg})")

    def sample(self, now_ns: int) -> list[Sample]:
        out: list[Sample] = []
        lab = self._labels
        v1 = self._version == 1
        try:
            if self.f_cpustat is not None:
                st = pick_keyed(self.f_cpustat.read(), _CPUSTAT_V1 if v1 else _CPUSTAT_V2)
                if v1:
                    out.append(
                        Sample(
                            "cpu.throttled_seconds", lab, now_ns, st.get("throttled_time", 0) / 1e9
                        )
                    )
                else:
                    out.append(
                        Sample("cpu.usage_seconds", lab, now_ns, st.get("usage_usec", 0) / 1e6)
                    )
                    out.append(
                        Sample(
                            "cpu.throttled_seconds", lab, now_ns, st.get("throttled_usec", 0) / 1e6
                        )
                    )
            if self.f_cpu is not None:
                out.append(Sample("cpu.usage_seconds", lab, now_ns, int(self.f_cpu.read()) / 1e9))
            if self.f_memusage is not None:
                usage = int(self.f_memusage.read())
                out.append(Sample("memory.usage_bytes", lab, now_ns, usage))
                if self.f_memstat is not None:
                    ms = pick_keyed(self.f_memstat.read(), _MEMSTAT_V1 if v1 else _MEMSTAT_V2)
                    if v1:
                        inactive = ms.get("total_inactive_file", 0)
                        rss, cache = ms.get("total_rss", 0), ms.get("total_cache", 0)
                    else:
                        inactive = ms.get("inactive_file", 0)
                        rss, cache = ms.get("anon", 0), ms.get("file", 0)
                    out.append(
                        Sample("memory.working_set_bytes", lab, now_ns, max(0, usage - inactive))
                    )
                    out.append(Sample("memory.rss_bytes", lab, now_ns, rss))
                    out.append(Sample("memory.cache_bytes", lab, now_ns, cache))
            if self.f_memlimit is not None:
                raw = self.f_memlimit.read().strip()
                if raw != "max" and int(raw) < _V1_UNLIMITED:
                    out.append(Sample("memory.limit_bytes", lab, now_ns, int(raw)))
            if self.f_oom is not None:
                kills = pick_keyed(self.f_oom.read(), _OOM).get("oom_kill")
                if kills is not None:
                    out.append(Sample("memory.oom_kills", lab, now_ns, kills))
            if self.f_io is not None:
                text = self.f_io.read()
                r, w = parse_blkio_v1(text) if v1 else parse_io_stat_v2(text)
                out.append(Sample("io.read_bytes", lab, now_ns, r))
                out.append(Sample("io.write_bytes", lab, now_ns, w))
            if self.f_pids is not None:
                out.append(Sample("pids.count", lab, now_ns, int(self.f_pids.read())))
        except (OSError, ValueError):
            # The cgroup went away (container exited) between ticks: keep what we have.
            pass
        return out

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files = []


class NetCollector:
    """Network counters of the container's network namespace (``/proc/<pid>/net/dev``)."""

    group = "container"

    def __init__(self) -> None:
        self._f: _File | None = None
        self._labels: Labels = ()

    def metrics(self) -> list[MetricSpec]:
        return NET_METRICS

    def open(self, ctx: CollectContext) -> None:
        if not ctx.pid:
            raise CollectorUnavailable("the container has no running process to read net/dev from")
        try:
            self._f = _File(f"{ctx.proc_root}/{ctx.pid}/net/dev")
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
            Sample("net.rx_bytes", lab, now_ns, rxb),
            Sample("net.tx_bytes", lab, now_ns, txb),
            Sample("net.rx_packets", lab, now_ns, rxp),
            Sample("net.tx_packets", lab, now_ns, txp),
        ]

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def cgroup_procs_path(cg: CgroupPaths) -> str | None:
    """The ``cgroup.procs`` file listing the container's processes, or None."""
    if cg.version == 1:
        d = cg.dir_for("pids") or cg.dir_for("memory") or cg.dir_for("cpuacct")
    else:
        d = cg.unified
    return None if d is None else f"{d}/cgroup.procs"


def cgroup_procs(cg: CgroupPaths) -> list[int]:
    """PIDs in the container's cgroup (all processes, not threads)."""
    path = cgroup_procs_path(cg)
    if path is None:
        return []
    try:
        with open(path) as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


__all__ = [
    "CgroupCollector",
    "NetCollector",
    "cgroup_procs",
    "cgroup_procs_path",
    "find_cgroup",
    "parse_blkio_v1",
    "parse_flat_keyed",
    "parse_io_stat_v2",
    "parse_net_dev",
    "parse_proc_cgroup",
    "pick_keyed",
]
