"""NVIDIA GPUs through NVML (nvidia-ml-py): groups ``gpu-summary`` and ``gpu-process``.

NVML is called through the lazy :class:`~.nvml_lib.Nvml` helper, where an unsupported call
is a missing value, never an exception.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from edgeprof.cgroups import cgroup_procs
from edgeprof.collect.base import BaseCollector, CollectContext
from edgeprof.collect.gpu.nvml_lib import Nvml, handle_key, text
from edgeprof.errors import CollectorUnavailable
from edgeprof.model import Labels, MetricSpec, Sample, labels_of

__all__ = ["Nvml", "NvmlProcessCollector", "NvmlSummaryCollector", "nvml_host_details"]

MHZ = 1_000_000.0
BUFFER_READ_INTERVAL_NS = 1_000_000_000
"""How often the driver's sample buffers are read (``nvmlDeviceGetSamples``,
``nvmlDeviceGetProcessUtilization``). Each read cost 2.1–2.5 ms on an H200 (driver 580),
against 1–6 µs for every other call, and returns every sample since the last read with the
driver's own timestamp — so reading once a second loses nothing, while reading every tick
at 10 Hz would cost the sampler ~5 % of a core. The driver samples at about 6 Hz and keeps
far more than a second of history."""


class _NvmlBase(BaseCollector):
    def __init__(self, nvml: Any = None) -> None:
        self.nvml = Nvml(nvml)
        self._handles: list[tuple[int, Any, Labels]] = []
        self._ctx_labels: Labels = ()

    def open(self, ctx: CollectContext) -> None:
        self.nvml.init()
        self._ctx_labels = ctx.labels
        count = self.nvml.call("nvmlDeviceGetCount")
        if not count:
            self.nvml.shutdown()
            raise CollectorUnavailable("NVML not available: no NVIDIA GPU found")
        handles = []
        base = dict(ctx.labels)
        for i in range(int(count)):
            h = self.nvml.call("nvmlDeviceGetHandleByIndex", i)
            if h is None:
                continue
            uuid = text(self.nvml.call("nvmlDeviceGetUUID", h) or "")
            name = text(self.nvml.call("nvmlDeviceGetName", h) or "")
            handles.append((i, h, labels_of(base, gpu=str(i), uuid=uuid, name=name)))
        if not handles:
            self.nvml.shutdown()
            raise CollectorUnavailable("NVML not available: no GPU handle could be opened")
        self._handles = handles

    def close(self) -> None:
        self._handles = []
        self.nvml.shutdown()


SUMMARY_METRICS = [
    MetricSpec("gpu.utilization_percent", "%", description="SM busy time (driver samples)"),
    MetricSpec("gpu.memory_utilization_percent", "%", description="memory controller busy"),
    MetricSpec("gpu.memory_used_bytes", "B"),
    MetricSpec("gpu.memory_total_bytes", "B"),
    MetricSpec("gpu.power_watts", "W"),
    MetricSpec("gpu.temperature_celsius", "degC"),
    MetricSpec("gpu.sm_clock_hz", "Hz"),
    MetricSpec("gpu.memory_clock_hz", "Hz"),
    MetricSpec("gpu.encoder_utilization_percent", "%"),
    MetricSpec("gpu.decoder_utilization_percent", "%"),
]


def _sample_value(value_type: int, sample: Any) -> float | None:
    """The number in an ``nvmlSample_t`` according to its ``nvmlValueType_t``."""
    v = getattr(sample, "sampleValue", None)
    if v is None:
        return None
    field = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal"}.get(
        value_type, "uiVal"
    )
    raw = getattr(v, field, None)
    return None if raw is None else float(raw)


class NvmlSummaryCollector(_NvmlBase):
    """Per-GPU summary (group ``gpu-summary``), labels ``gpu``, ``uuid``, ``name``.

    Utilisation comes from the driver's sample buffer (``nvmlDeviceGetSamples`` with
    ``NVML_GPU_UTILIZATION_SAMPLES``): every driver sample since the previous call, with the
    driver's own timestamp (µs → ns; both are Unix time). Where the buffer is unsupported or
    empty, ``nvmlDeviceGetUtilizationRates`` is polled and stamped ``now_ns``.
    """

    group = "gpu-summary"

    def __init__(self, nvml: Any = None) -> None:
        super().__init__(nvml)
        self._last_seen_us: dict[int, int] = {}
        self._next_read_ns: dict[int, int] = {}

    def metrics(self) -> list[MetricSpec]:
        return list(SUMMARY_METRICS)

    def open(self, ctx: CollectContext) -> None:
        super().open(ctx)
        # Start the sample window at the newest sample the driver holds now, so the first
        # tick returns only samples taken after open (not minutes of history).
        for i, h, _ in self._handles:
            self._last_seen_us[i] = self._newest_sample_us(h)

    def _newest_sample_us(self, handle: Any) -> int:
        kind = self.nvml.const("NVML_GPU_UTILIZATION_SAMPLES", 1)
        got = self.nvml.call("nvmlDeviceGetSamples", handle, kind, 0)
        if not got:
            return 0
        _, samples = got
        return max((int(s.timeStamp) for s in samples), default=0)

    def sample(self, now_ns: int) -> list[Sample]:
        out: list[Sample] = []
        for i, h, lab in self._handles:
            out.extend(self._utilization(i, h, lab, now_ns))
            out.extend(self._gauges(h, lab, now_ns))
        return out

    def _utilization(self, i: int, h: Any, lab: Labels, now_ns: int) -> list[Sample]:
        n = self.nvml
        out: list[Sample] = []
        rates = None
        kind = n.const("NVML_GPU_UTILIZATION_SAMPLES", 1)
        buffered = ("nvmlDeviceGetSamples", handle_key(h)) not in n._unsupported
        due = now_ns >= self._next_read_ns.get(i, 0)
        got = None
        if buffered and due:
            got = n.call("nvmlDeviceGetSamples", h, kind, self._last_seen_us.get(i, 0))
            self._next_read_ns[i] = now_ns + BUFFER_READ_INTERVAL_NS
        if got is not None:
            vtype, samples = got
            last = self._last_seen_us.get(i, 0)
            for s in sorted(samples, key=lambda s: int(s.timeStamp)):
                ts = int(s.timeStamp)
                if ts <= last:
                    continue
                value = _sample_value(int(vtype), s)
                if value is None:
                    continue
                out.append(Sample("gpu.utilization_percent", lab, ts * 1000, value))
                last = ts
            self._last_seen_us[i] = last
        rates = n.call("nvmlDeviceGetUtilizationRates", h)
        # polled utilisation only where the buffer gave nothing: unsupported (every tick), or
        # read this tick and empty (an idle driver); between buffer reads, nothing
        poll = not out and (got is not None or not buffered or due)
        if rates is not None:
            if poll and getattr(rates, "gpu", None) is not None:
                out.append(Sample("gpu.utilization_percent", lab, now_ns, float(rates.gpu)))
            if getattr(rates, "memory", None) is not None:
                out.append(
                    Sample("gpu.memory_utilization_percent", lab, now_ns, float(rates.memory))
                )
        return out

    def _gauges(self, h: Any, lab: Labels, now_ns: int) -> list[Sample]:
        n = self.nvml
        out: list[Sample] = []

        def put(metric: str, value: float | None) -> None:
            if value is not None:
                out.append(Sample(metric, lab, now_ns, float(value)))

        mem = n.call("nvmlDeviceGetMemoryInfo", h)
        if mem is not None:
            put("gpu.memory_used_bytes", getattr(mem, "used", None))
            put("gpu.memory_total_bytes", getattr(mem, "total", None))
        mw = n.call("nvmlDeviceGetPowerUsage", h)
        put("gpu.power_watts", None if mw is None else mw / 1000.0)
        put(
            "gpu.temperature_celsius",
            n.call("nvmlDeviceGetTemperature", h, n.const("NVML_TEMPERATURE_GPU", 0)),
        )
        sm = n.call("nvmlDeviceGetClockInfo", h, n.const("NVML_CLOCK_SM", 1))
        put("gpu.sm_clock_hz", None if sm is None else sm * MHZ)
        memclk = n.call("nvmlDeviceGetClockInfo", h, n.const("NVML_CLOCK_MEM", 2))
        put("gpu.memory_clock_hz", None if memclk is None else memclk * MHZ)
        enc = n.call("nvmlDeviceGetEncoderUtilization", h)
        put("gpu.encoder_utilization_percent", None if enc is None else enc[0])
        dec = n.call("nvmlDeviceGetDecoderUtilization", h)
        put("gpu.decoder_utilization_percent", None if dec is None else dec[0])
        return out


PROCESS_METRICS = [
    MetricSpec("gpu.process.memory_used_bytes", "B", description="labels pid, gpu"),
    MetricSpec("gpu.process.sm_utilization_percent", "%", description="labels pid, gpu"),
    MetricSpec("gpu.container.memory_used_bytes", "B", description="sum over the container"),
]


def _cgroup_procs_pids(ctx: CollectContext) -> set[int]:
    return set() if ctx.cgroup is None else set(cgroup_procs(ctx.cgroup))


class NvmlProcessCollector(_NvmlBase):
    """GPU memory and SM utilisation of the target container's processes (``gpu-process``).

    NVML reports host PIDs. A PID belongs to the container when ``<proc_root>/<pid>/cgroup``
    contains ``ctx.container_id``, or when it is listed in the container's ``cgroup.procs``.
    """

    group = "gpu-process"

    def __init__(self, nvml: Any = None) -> None:
        super().__init__(nvml)
        self._ctx: CollectContext | None = None
        self._last_seen_us: dict[int, int] = {}
        self._next_read_ns: dict[int, int] = {}
        self._member: dict[int, bool] = {}

    def metrics(self) -> list[MetricSpec]:
        return list(PROCESS_METRICS)

    def open(self, ctx: CollectContext) -> None:
        if not ctx.container_id and ctx.cgroup is None and not ctx.pid:
            raise CollectorUnavailable(
                "gpu-process needs the target's container id or cgroup to match GPU processes"
            )
        super().open(ctx)
        self._ctx = ctx

    def _belongs(self, pid: int, procs: set[int]) -> bool:
        if pid in procs:
            return True
        ctx = self._ctx
        if ctx is None:
            return False
        cached = self._member.get(pid)
        if cached is not None:
            return cached
        ok = pid == ctx.pid and ctx.pid != 0
        if not ok and ctx.container_id:
            try:
                path = os.path.join(ctx.proc_root, str(pid), "cgroup")
                with open(path, encoding="utf-8", errors="replace") as f:
                    ok = ctx.container_id in f.read()
            except OSError:
                return False  # process gone or unreadable: do not cache
        self._member[pid] = ok
        return ok

    def _processes(self, h: Any) -> dict[int, float | None]:
        procs: dict[int, float | None] = {}
        for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            for p in self.nvml.call(fn, h) or []:
                pid = int(p.pid)
                mem = getattr(p, "usedGpuMemory", None)
                prev = procs.get(pid)
                if mem is not None and (prev is None or mem > prev):
                    procs[pid] = float(mem)
                elif pid not in procs:
                    procs[pid] = None
        return procs

    def _sm_util(self, i: int, h: Any, now_ns: int) -> dict[int, list[tuple[int, float]]]:
        """Every per-process SM sample since the last read, by pid (read once a second)."""
        if now_ns < self._next_read_ns.get(i, 0):
            return {}
        self._next_read_ns[i] = now_ns + BUFFER_READ_INTERVAL_NS
        last = self._last_seen_us.get(i, 0)
        got = self.nvml.call("nvmlDeviceGetProcessUtilization", h, last)
        seen: dict[int, dict[int, float]] = {}
        newest = last
        for s in _as_list(got):
            ts, pid = int(s.timeStamp), int(s.pid)
            if ts <= last:
                continue
            seen.setdefault(pid, {})[ts] = float(s.smUtil)
            newest = max(newest, ts)
        self._last_seen_us[i] = newest
        return {pid: sorted(by_ts.items()) for pid, by_ts in seen.items()}

    def sample(self, now_ns: int) -> list[Sample]:
        assert self._ctx is not None
        ctx_pids = _cgroup_procs_pids(self._ctx)
        base = dict(self._ctx_labels)
        out: list[Sample] = []
        for i, h, _ in self._handles:
            procs = self._processes(h)
            util = self._sm_util(i, h, now_ns)
            gpu = str(i)
            total = 0.0
            for pid in sorted(set(procs) | set(util)):
                if not self._belongs(pid, ctx_pids):
                    continue
                lab = labels_of(base, pid=pid, gpu=gpu)
                mem = procs.get(pid)
                if mem is not None:
                    total += mem
                    out.append(Sample("gpu.process.memory_used_bytes", lab, now_ns, mem))
                for ts_us, sm in util.get(pid, ()):
                    out.append(Sample("gpu.process.sm_utilization_percent", lab, ts_us * 1000, sm))
            out.append(
                Sample("gpu.container.memory_used_bytes", labels_of(base, gpu=gpu), now_ns, total)
            )
        return out


def _as_list(value: Any) -> Iterable[Any]:
    if value is None:
        return []
    return list(value)


def nvml_host_details(nvml: Any = None) -> dict[str, Any]:
    """GPU models, driver and CUDA driver versions; ``{"gpu": None, "reason": …}`` without."""
    n = Nvml(nvml)
    try:
        n.init()
    except CollectorUnavailable as e:
        return {"gpu": None, "reason": str(e)}
    try:
        count = int(n.call("nvmlDeviceGetCount") or 0)
        gpus = []
        for i in range(count):
            h = n.call("nvmlDeviceGetHandleByIndex", i)
            if h is None:
                continue
            mem = n.call("nvmlDeviceGetMemoryInfo", h)
            gpus.append(
                {
                    "index": i,
                    "name": text(n.call("nvmlDeviceGetName", h) or ""),
                    "uuid": text(n.call("nvmlDeviceGetUUID", h) or ""),
                    "memory_total_bytes": getattr(mem, "total", None),
                }
            )
        cuda = n.call("nvmlSystemGetCudaDriverVersion")
        cuda_text = None if cuda is None else f"{int(cuda) // 1000}.{int(cuda) % 1000 // 10}"
        driver = n.call("nvmlSystemGetDriverVersion")
        if not gpus:
            return {"gpu": None, "reason": "NVML found no GPU"}
        return {
            "gpu": "nvidia",
            "gpus": gpus,
            "model": gpus[0]["name"],
            "driver_version": None if driver is None else text(driver),
            "cuda_driver_version": cuda_text,
        }
    finally:
        n.shutdown()
