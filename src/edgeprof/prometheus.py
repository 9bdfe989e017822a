"""``--prometheus ADDR``: serve the newest value of every series in Prometheus' text format.

:class:`PrometheusSink` is a :class:`~edgeprof.sinks.Sink` (plus ``member_started`` /
``member_ended``) that keeps the newest value of each series; :func:`serve` binds an HTTP
endpoint (``prometheus-client``'s WSGI app on its own :class:`CollectorRegistry`) that renders
it on every scrape. ``run`` and ``attach`` start one before any container and close it at
the end (closing frees the port).

Names follow the exporters that existing dashboards already query:

* cAdvisor (``google/cadvisor`` ``lib/metrics/prometheus.go``) for container metrics:
  ``container_cpu_usage_seconds_total{cpu="total"}``, ``container_memory_*``,
  ``container_network_*_total``, ``container_fs_*_bytes_total``, ``container_processes``,
  ``container_threads``, ``container_spec_*``, with cAdvisor's labels ``id`` (the cgroup
  name, ``/docker/<full id>``), ``name``, ``image`` and ``container_label_<key>``. Sums over
  all interfaces / block devices carry no ``interface`` / ``device`` label.
* NVIDIA dcgm-exporter (``etc/default-counters.csv``, ``internal/pkg/rendermetrics``) for
  GPUs: ``DCGM_FI_DEV_*`` with ``gpu``, ``UUID``, ``device`` (``nvidia<N>``), ``modelName``,
  in DCGM's units (framebuffer in MiB, clocks in MHz, power in W). A container's share of a
  GPU is the same name with ``container=<name>`` added, as dcgm-exporter does for shared GPUs
  (``FB_USED`` and ``GPU_UTIL`` only), next to the device-wide series.
* ``edgeprof_<metric>`` for everything else (app metrics ``edgeprof_app_<name>``,
  per-process, host, Jetson), in base units with the unit in the name (``_bytes``,
  ``_seconds``, ``_hertz``, ``_watts``, ``_celsius``); percentages stay 0–100 and end in
  ``_percent``; kernel counters are Prometheus counters (``_total``) with their raw values.

Rates the sampler derives (``cpu.percent`` …) are not exported: Prometheus' ``rate()`` does
that from the counters. A container's series disappear when it ends (as in cAdvisor); a
process's series when it has not been seen for ``stale_after_s``.
"""

from __future__ import annotations

import errno
import math
import re
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgeprof.errors import UserError
from edgeprof.model import Event, Labels, MetricSpec, Sample
from edgeprof.sinks import MemberInfo

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

DEFAULT_PORT = 9464
"""The port when ``--prometheus`` names only a host (OpenTelemetry's Prometheus exporter's
default, unused by cAdvisor's 8080 and dcgm-exporter's 9400)."""

MiB = 1024 * 1024
CFS_PERIOD_US = 100_000
"""Docker's ``--cpus=N`` sets ``CpuPeriod=100000`` and ``CpuQuota=N×100000`` (µs)."""

INSTALL_HINT = "pip install 'edgeprof[prometheus]'"


# -- the listening address --------------------------------------------------------------
@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}/metrics"


def parse_address(text: str) -> ListenAddress:
    """``PORT`` (on 127.0.0.1), ``HOST`` (port 9464), ``HOST:PORT`` or ``[IPv6]:PORT``.

    Listening beyond loopback needs the address spelled out (``0.0.0.0:9464``); an empty
    host (``:9464``) is refused rather than read as "every interface"."""
    s = text.strip()
    hint = "write PORT (on 127.0.0.1), HOST:PORT or [IPv6]:PORT, e.g. 127.0.0.1:9464"
    if not s:
        raise UserError(f"--prometheus needs an address; {hint}")
    if s.isascii() and s.isdigit():
        return ListenAddress("127.0.0.1", _port(s, text, hint))
    if s.startswith("["):
        host, sep, rest = s[1:].partition("]")
        if not sep or not host or (rest and not rest.startswith(":")):
            raise UserError(f"--prometheus {text!r} is not a valid address; {hint}")
        return ListenAddress(host, _port(rest[1:], text, hint) if rest else DEFAULT_PORT)
    if s.count(":") > 1:  # a bare IPv6 address
        return ListenAddress(s, DEFAULT_PORT)
    host, sep, port = s.partition(":")
    if not host:
        raise UserError(
            f"--prometheus {text!r} names no host; write 127.0.0.1{s} for this machine only, "
            f"or 0.0.0.0{s} to listen on every interface"
        )
    return ListenAddress(host, _port(port, text, hint) if sep else DEFAULT_PORT)


def _port(p: str, text: str, hint: str) -> int:
    if not (p.isascii() and p.isdigit()) or int(p) > 65535:  # "²" is a digit to isdigit()
        raise UserError(f"--prometheus {text!r}: {p!r} is not a port (0 to 65535); {hint}")
    return int(p)


# -- names --------------------------------------------------------------------------------
_BAD_NAME = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(text: str) -> str:
    """A legal Prometheus metric name (dots and other characters become ``_``)."""
    s = _BAD_NAME.sub("_", text)
    return s if s and not s[0].isdigit() else "_" + s


def label_name(text: str) -> str:
    """A legal label name (``[a-zA-Z_][a-zA-Z0-9_]*``, not starting with ``__``)."""
    s = metric_name(text)
    return "x" + s if s.startswith("__") else s


# unit → (suffix, scale, short suffixes to replace)
_UNIT_SUFFIX: dict[str, tuple[str, float, tuple[str, ...]]] = {
    "B": ("_bytes", 1.0, ("_b",)),
    "s": ("_seconds", 1.0, ("_s", "_secs")),
    "ms": ("_seconds", 1e-3, ("_ms", "_milliseconds")),
    "Hz": ("_hertz", 1.0, ("_hz",)),
    "W": ("_watts", 1.0, ("_w",)),
    "degC": ("_celsius", 1.0, ("_c", "_degc")),
    "%": ("_percent", 1.0, ("_pct",)),
    "B/s": ("_bytes_per_second", 1.0, ()),
    "1/s": ("_per_second", 1.0, ()),
    "s/s": ("_seconds_per_second", 1.0, ()),
}


def edgeprof_name(metric: str, unit: str) -> tuple[str, float]:
    """``edgeprof_<metric>`` with its unit as the suffix Prometheus' conventions ask for, and
    the factor that converts a value to that unit (``ms`` → seconds)."""
    base = "edgeprof_" + metric_name(metric).lstrip("_")
    suffix, scale, shorts = _UNIT_SUFFIX.get(unit, ("", 1.0, ()))
    if suffix and not base.endswith(suffix):
        for short in shorts:
            if base.endswith(short):
                base = base[: -len(short)]
                break
        base += suffix
    return base, scale


@dataclass(frozen=True)
class _Cadvisor:
    name: str
    typ: str  # gauge | counter (the family name without _total)
    help: str
    extra: tuple[tuple[str, str], ...] = ()
    needs_cpu_limit: bool = False


# edgeprof metric → cAdvisor (lib/metrics/prometheus.go; help texts are cAdvisor's)
CADVISOR: dict[str, _Cadvisor] = {
    "cpu.usage_seconds": _Cadvisor(
        "container_cpu_usage_seconds",
        "counter",
        "Cumulative cpu time consumed in seconds.",
        (("cpu", "total"),),
    ),
    "cpu.throttled_seconds": _Cadvisor(
        "container_cpu_cfs_throttled_seconds",
        "counter",
        "Total time duration the container has been throttled.",
        needs_cpu_limit=True,
    ),
    "memory.usage_bytes": _Cadvisor(
        "container_memory_usage_bytes",
        "gauge",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
    ),
    "memory.working_set_bytes": _Cadvisor(
        "container_memory_working_set_bytes", "gauge", "Current working set in bytes."
    ),
    "memory.rss_bytes": _Cadvisor("container_memory_rss", "gauge", "Size of RSS in bytes."),
    "memory.cache_bytes": _Cadvisor(
        "container_memory_cache", "gauge", "Number of bytes of page cache memory."
    ),
    "memory.oom_kills": _Cadvisor(
        "container_oom_events",
        "counter",
        "Count of out of memory events observed for the container",
    ),
    "io.read_bytes": _Cadvisor(
        "container_fs_reads_bytes", "counter", "Cumulative count of bytes read"
    ),
    "io.write_bytes": _Cadvisor(
        "container_fs_writes_bytes", "counter", "Cumulative count of bytes written"
    ),
    "net.rx_bytes": _Cadvisor(
        "container_network_receive_bytes", "counter", "Cumulative count of bytes received"
    ),
    "net.tx_bytes": _Cadvisor(
        "container_network_transmit_bytes", "counter", "Cumulative count of bytes transmitted"
    ),
    "net.rx_packets": _Cadvisor(
        "container_network_receive_packets", "counter", "Cumulative count of packets received"
    ),
    "net.tx_packets": _Cadvisor(
        "container_network_transmit_packets", "counter", "Cumulative count of packets transmitted"
    ),
    "pids.count": _Cadvisor(
        "container_threads", "gauge", "Number of threads running inside the container"
    ),
    "process.count": _Cadvisor(
        "container_processes", "gauge", "Number of processes running inside the container."
    ),
}


@dataclass(frozen=True)
class _Dcgm:
    name: str
    scale: float
    help: str
    floor: bool = False  # DCGM reports whole MiB


# edgeprof metric → dcgm-exporter (etc/default-counters.csv; help texts are its own)
DCGM: dict[str, _Dcgm] = {
    "gpu.utilization_percent": _Dcgm("DCGM_FI_DEV_GPU_UTIL", 1.0, "GPU utilization (in %)."),
    "gpu.memory_utilization_percent": _Dcgm(
        "DCGM_FI_DEV_MEM_COPY_UTIL", 1.0, "Memory utilization (in %)."
    ),
    "gpu.memory_used_bytes": _Dcgm(
        "DCGM_FI_DEV_FB_USED", 1 / MiB, "Framebuffer memory used (in MiB).", floor=True
    ),
    "gpu.container.memory_used_bytes": _Dcgm(
        "DCGM_FI_DEV_FB_USED", 1 / MiB, "Framebuffer memory used (in MiB).", floor=True
    ),
    "gpu.power_watts": _Dcgm("DCGM_FI_DEV_POWER_USAGE", 1.0, "Power draw (in W)."),
    "gpu.temperature_celsius": _Dcgm("DCGM_FI_DEV_GPU_TEMP", 1.0, "GPU temperature (in C)."),
    "gpu.sm_clock_hz": _Dcgm("DCGM_FI_DEV_SM_CLOCK", 1e-6, "SM clock frequency (in MHz)."),
    "gpu.memory_clock_hz": _Dcgm("DCGM_FI_DEV_MEM_CLOCK", 1e-6, "Memory clock frequency (in MHz)."),
    "gpu.encoder_utilization_percent": _Dcgm(
        "DCGM_FI_DEV_ENC_UTIL", 1.0, "Encoder utilization (in %)."
    ),
    "gpu.decoder_utilization_percent": _Dcgm(
        "DCGM_FI_DEV_DEC_UTIL", 1.0, "Decoder utilization (in %)."
    ),
}
_FB_FREE = _Dcgm("DCGM_FI_DEV_FB_FREE", 1 / MiB, "Framebuffer memory free (in MiB).", floor=True)
_PROC_SM = "gpu.process.sm_utilization_percent"
"""Summed per container and GPU into ``DCGM_FI_DEV_GPU_UTIL{container=…}`` (as
dcgm-exporter sums its per-process SM utilization per pod), and exported per process."""


def cadvisor_id(info: MemberInfo) -> str:
    """cAdvisor's ``id`` label: the container's cgroup name (``/docker/<full id>`` under
    Docker's cgroupfs driver). A ``cgroup`` attribute on the member info wins if present."""
    cg = getattr(info, "cgroup", None)
    if isinstance(cg, str) and cg:
        return cg
    return f"/docker/{info.container_id}"


def _gpu_labels(lab: dict[str, str], keep_target: bool = False) -> dict[str, str]:
    """edgeprof's GPU labels (``gpu``, ``uuid``, ``name``) in dcgm-exporter's spelling
    (``gpu``, ``UUID``, ``modelName``, plus ``device="nvidia<gpu>"``)."""
    out: dict[str, str] = {}
    for k, v in lab.items():
        if k == "target" and not keep_target:
            continue
        if k == "uuid":
            out["UUID"] = v
        elif k == "name":
            out["modelName"] = v
        else:
            out[label_name(k)] = v
    if "gpu" in out:
        out["device"] = f"nvidia{out['gpu']}"
    return out


# -- the sink -----------------------------------------------------------------------------
class PrometheusSink:
    """The newest value of every series, rendered in Prometheus' names on each scrape.

    Thread-safe: the sampler writes from its thread, the HTTP server reads from its own.
    """

    def __init__(self, stale_after_s: float = 5.0) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, Labels], tuple[int, float]] = {}
        self._specs: dict[str, MetricSpec] = {}
        self._skip: set[str] = set()
        self._members: dict[str, MemberInfo] = {}
        self._ended: set[str] = set()
        self._seen: dict[str, int] = {}  # target → newest t_ns
        self._stale_ns = int(stale_after_s * 1e9)
        self._pruned_ns = 0

    # Sink -------------------------------------------------------------------------------
    def describe(self, specs: Sequence[MetricSpec]) -> None:
        with self._lock:
            for m in specs:
                self._specs[m.name] = m
                if m.kind in ("counter", "total"):
                    self._skip.add(m.rate_metric)  # derived: rate() does it in PromQL
                if m.kind == "total" and m.name.endswith(".total"):
                    self._skip.add(m.name[: -len(".total")])  # an app counter's increments

    def write(self, batch: Sequence[Sample]) -> None:
        with self._lock:
            values, skip, ended, seen = self._values, self._skip, self._ended, self._seen
            newest = 0
            for s in batch:
                if s.metric in skip:
                    continue
                target = _target(s.labels)
                if target is not None:
                    if target in ended:
                        continue  # a late sample of a container that has ended
                    if s.t_ns > seen.get(target, 0):
                        seen[target] = s.t_ns
                key = (s.metric, s.labels)
                old = values.get(key)
                if old is None or s.t_ns >= old[0]:
                    values[key] = (s.t_ns, s.value)
                newest = max(newest, s.t_ns)
            if newest - self._pruned_ns >= 1_000_000_000:
                self._pruned_ns = newest
                self._prune()

    def event(self, ev: Event) -> None:
        return None

    def member_started(self, info: MemberInfo) -> None:
        with self._lock:
            self._members[info.target] = info
            self._ended.discard(info.target)

    def member_ended(self, target: str) -> None:
        """The container's series disappear, as cAdvisor drops a container that is gone."""
        with self._lock:
            self._members.pop(target, None)
            self._ended.add(target)
            self._seen.pop(target, None)
            for key in [k for k in self._values if _target(k[1]) == target]:
                del self._values[key]

    def _prune(self) -> None:
        """Forget per-process series not refreshed within ``stale_after_s`` of their
        container's newest sample (the process has exited). Under the lock."""
        seen, stale = self._seen, self._stale_ns
        gone = [
            k
            for k, (t, _) in self._values.items()
            if _has(k[1], "pid") and t < seen.get(_target(k[1]) or "", t) - stale
        ]
        for k in gone:
            del self._values[k]

    # rendering ----------------------------------------------------------------------------
    def families(self) -> list[Metric]:
        """Every series in Prometheus' names (the collector behind the endpoint)."""
        from prometheus_client.metrics_core import Metric

        with self._lock:
            self._prune()
            values = dict(self._values)
            specs = dict(self._specs)
            members = dict(self._members)
            seen = dict(self._seen)
        out = _Families(Metric)
        gpu_info: dict[str, dict[str, str]] = {}  # gpu index → its dcgm labels
        fb: dict[Labels, dict[str, float]] = {}  # device series → used/total bytes
        proc_sm: dict[tuple[str, str], float] = {}  # (target, gpu) → Σ SM %
        for (metric, labels), (_, value) in sorted(values.items()):
            lab = dict(labels)
            if metric.startswith("gpu.") and "target" not in lab and "gpu" in lab:
                gpu_info.setdefault(lab["gpu"], _gpu_labels(lab))
            if metric in ("gpu.memory_used_bytes", "gpu.memory_total_bytes") and (
                "target" not in lab
            ):
                fb.setdefault(labels, {})[metric] = value
            if metric == _PROC_SM and "target" in lab:
                k = (lab["target"], lab.get("gpu", ""))
                proc_sm[k] = proc_sm.get(k, 0.0) + value
        for (metric, labels), (_, value) in sorted(values.items()):
            lab = dict(labels)
            target = lab.get("target")
            member = members.get(target) if target is not None else None
            cad = CADVISOR.get(metric)
            if cad is not None and target is not None:
                if cad.needs_cpu_limit and (member is None or not member.limits.get("cpus")):
                    continue  # cAdvisor: only for containers with a CPU quota
                extra = {label_name(k): v for k, v in lab.items() if k != "target"}
                out.add(
                    cad.name,
                    cad.typ,
                    cad.help,
                    {**extra, **dict(cad.extra), **_container_labels(target, member)},
                    value,
                )
                continue
            dcgm = DCGM.get(metric)
            if dcgm is not None:
                glab = _gpu_labels(lab)
                if target is not None:  # a container's share of a GPU
                    glab = {**gpu_info.get(lab.get("gpu", ""), {}), **glab}
                    glab["container"] = member.name if member is not None else target
                    glab["target"] = target
                out.add(dcgm.name, "gauge", dcgm.help, glab, _scaled(value, dcgm))
                continue
            if metric == "memory.limit_bytes" and member is not None:
                continue  # it is container_spec_memory_limit_bytes
            spec = specs.get(metric)
            unit = spec.unit if spec is not None else "1"
            name, scale = edgeprof_name(metric, unit)
            typ = "counter" if spec is not None and spec.kind == "counter" else "gauge"
            if typ == "counter" and name.endswith("_total"):
                name = name[: -len("_total")]
            help_ = (spec.description if spec is not None else "") or metric
            if metric.startswith("gpu."):
                plab = _gpu_labels(lab, keep_target=True)
            else:
                plab = {label_name(k): v for k, v in lab.items()}
            if target is not None and member is not None:
                plab = _merge(plab, {"name": member.name})
            out.add(name, typ, f"{help_} (edgeprof {metric}, {unit})", plab, value * scale)
        for labels, mem in fb.items():
            if "gpu.memory_used_bytes" in mem and "gpu.memory_total_bytes" in mem:
                free = mem["gpu.memory_total_bytes"] - mem["gpu.memory_used_bytes"]
                out.add(
                    _FB_FREE.name,
                    "gauge",
                    _FB_FREE.help,
                    _gpu_labels(dict(labels)),
                    _scaled(free, _FB_FREE),
                )
        for (target, gpu), total in proc_sm.items():
            member = members.get(target)
            glab = {**gpu_info.get(gpu, {"gpu": gpu, "device": f"nvidia{gpu}"})}
            glab["container"] = member.name if member is not None else target
            glab["target"] = target
            out.add(
                DCGM["gpu.utilization_percent"].name,
                "gauge",
                "GPU utilization (in %).",
                glab,
                total,
            )
        for target, member in sorted(members.items()):
            _spec_series(out, target, member, values, seen.get(target))
        return out.done()


def _spec_series(
    out: _Families,
    target: str,
    member: MemberInfo,
    values: dict[tuple[str, Labels], tuple[int, float]],
    last_ns: int | None,
) -> None:
    """cAdvisor's per-container spec series, from what the member's info says."""
    lab = _container_labels(target, member)
    cpus = member.limits.get("cpus")
    if cpus:
        out.add(
            "container_spec_cpu_period",
            "gauge",
            "CPU period of the container.",
            lab,
            float(CFS_PERIOD_US),
        )
        out.add(
            "container_spec_cpu_quota",
            "gauge",
            "CPU quota of the container.",
            lab,
            float(round(cpus * CFS_PERIOD_US)),
        )
    mem = member.limits.get("memory_bytes")
    if not mem:
        got = values.get(("memory.limit_bytes", (("target", target),)))
        mem = got[1] if got is not None else 0.0  # cAdvisor: 0 when unlimited
    out.add(
        "container_spec_memory_limit_bytes",
        "gauge",
        "Memory limit for the container.",
        lab,
        float(mem),
    )
    if last_ns is not None:
        out.add(
            "container_last_seen",
            "gauge",
            "Last time a container was seen by the exporter",
            lab,
            last_ns / 1e9,
        )
    out.add(
        "edgeprof_container_info",
        "gauge",
        "1 for each container edgeprof samples; labels say which",
        {**lab, "role": member.role},
        1.0,
    )


def _container_labels(target: str, member: MemberInfo | None) -> dict[str, str]:
    """cAdvisor's identity labels of a container (``id``, ``name``, ``image``,
    ``container_label_*``) plus edgeprof's ``target``."""
    if member is None:
        return {"target": target}
    lab = {f"container_label_{label_name(k)}": v for k, v in member.labels.items()}
    lab.update(id=cadvisor_id(member), name=member.name, image=member.image, target=target)
    return lab


def _merge(own: dict[str, str], ours: dict[str, str]) -> dict[str, str]:
    """Add ``ours``; a sample's own label of the same name becomes ``exported_<name>`` (as
    Prometheus does when a target's label clashes with its own)."""
    out = dict(own)
    for k, v in ours.items():
        if k in out and out[k] != v:
            out["exported_" + k] = out.pop(k)
        out[k] = v
    return out


def _scaled(value: float, d: _Dcgm) -> float:
    v = value * d.scale
    return float(math.floor(v + 1e-9)) if d.floor else v


def _target(labels: Labels) -> str | None:
    for k, v in labels:
        if k == "target":
            return v
    return None


def _has(labels: Labels, key: str) -> bool:
    return any(k == key for k, _ in labels)


class _Families:
    """Metric families by name; the first type a name gets wins, one sample per label set."""

    def __init__(self, metric_cls: Any) -> None:
        self._cls = metric_cls
        self._fams: dict[str, Metric] = {}
        self._keys: set[tuple[str, frozenset[tuple[str, str]]]] = set()

    def add(self, name: str, typ: str, help_: str, labels: dict[str, str], value: float) -> None:
        fam = self._fams.get(name)
        if fam is None:
            fam = self._fams[name] = self._cls(name, help_, typ)
        elif fam.type != typ:
            return
        key = (name, frozenset(labels.items()))
        if key in self._keys:
            return
        self._keys.add(key)
        fam.add_sample(name + "_total" if typ == "counter" else name, labels, float(value))

    def done(self) -> list[Metric]:
        return list(self._fams.values())


class _Collector:
    """What the registry sees: no ``describe`` (the sink's is the Sink protocol's)."""

    def __init__(self, sink: PrometheusSink) -> None:
        self._sink = sink

    def collect(self) -> Iterator[Metric]:
        yield from self._sink.families()


def registry_for(sink: PrometheusSink) -> CollectorRegistry:
    """A registry of its own holding only ``sink`` (no process/GC metrics of edgeprof)."""
    try:
        from prometheus_client import CollectorRegistry
    except ImportError:
        raise UserError(f"--prometheus needs prometheus-client: {INSTALL_HINT}") from None
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(sink))
    return reg


def exposition(sink: PrometheusSink) -> str:
    """The text a scrape returns now (Prometheus text format 0.0.4)."""
    from prometheus_client import generate_latest

    return generate_latest(registry_for(sink)).decode()


# -- the server ---------------------------------------------------------------------------
class PrometheusExporter:
    """A :class:`PrometheusSink` served over HTTP; give ``exporter.sink`` to the session
    (``RunSettings.sinks``) and ``close()`` it at the end (the port is free afterwards)."""

    def __init__(self, address: ListenAddress, sink: PrometheusSink | None = None) -> None:
        self.address = address
        self.sink = sink or PrometheusSink()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = address.port

    @property
    def url(self) -> str:
        return self.address.url(self.port)

    def start(self) -> PrometheusExporter:
        """Bind and serve in a daemon thread; a bad address or a busy port is a
        :class:`UserError` naming it (nothing is left listening)."""
        registry = registry_for(self.sink)
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        from prometheus_client import make_wsgi_app

        a = self.address
        where = f"--prometheus {a.host}:{a.port}"
        try:
            infos = socket.getaddrinfo(a.host, a.port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise UserError(f"{where}: cannot resolve {a.host!r} ({e.strerror})") from None
        family, _, _, _, sockaddr = infos[0]

        class Server(ThreadingMixIn, WSGIServer):
            daemon_threads = True
            address_family = family

        class Quiet(WSGIRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return None

        try:
            self._server = make_server(
                str(sockaddr[0]), a.port, make_wsgi_app(registry), Server, Quiet
            )
        except OSError as e:
            raise UserError(_bind_error(where, a, e)) from None
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="edgeprof-prometheus",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and free the port (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> PrometheusExporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bind_error(where: str, a: ListenAddress, e: OSError) -> str:
    if e.errno == errno.EADDRINUSE:
        return (
            f"{where}: port {a.port} is already in use on {a.host}; "
            "stop what listens there or choose another port"
        )
    if e.errno == errno.EADDRNOTAVAIL:
        return (
            f"{where}: {a.host} is not an address of this machine; use 127.0.0.1 or one of its own"
        )
    if e.errno == errno.EACCES:
        return f"{where}: no permission to listen on port {a.port} (ports below 1024 need root); choose a port above 1023"
    return f"{where}: cannot listen there: {e.strerror or e}"


def serve(address: str | ListenAddress, sink: PrometheusSink | None = None) -> PrometheusExporter:
    """Parse ``address`` (as ``--prometheus`` takes it), bind, serve ``sink``."""
    a = parse_address(address) if isinstance(address, str) else address
    return PrometheusExporter(a, sink).start()


def serve_prometheus(address: str | None) -> PrometheusExporter | None:
    """``--prometheus ADDR`` of ``run`` and ``attach``: serve, say where on stderr (None:
    the option was not given)."""
    if address is None:
        return None
    exporter = serve(address)
    print(f"edgeprof: serving Prometheus metrics at {exporter.url}", file=sys.stderr)
    return exporter
