"""Fallback container metrics from the engine's stats API (``docker stats``' source).

Used when the container's cgroup files cannot be read, e.g. with a remote ``DOCKER_HOST``.
The engine computes one sample per second, so the resolution is 1 s whatever the sampling
interval; the run records that as an event. A background thread reads the stream; each
``sample()`` returns the newest stats document once.

The engine reports ``memory_stats.limit`` as the host's RAM for a container without a
memory limit; the cgroup collector leaves the limit out then, and so does this one (the
container's configured limit, from ``inspect``, says whether there is one).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from edgeprof.collect.base import BaseCollector, CollectContext
from edgeprof.collect.cgroup import NET_METRICS, container_metrics
from edgeprof.errors import CollectorUnavailable
from edgeprof.model import Clock, Labels, MetricSpec, Sample, parse_rfc3339


def stats_to_values(doc: dict[str, Any], memory_limited: bool = True) -> dict[str, float]:
    """One Docker stats document → metric values (same names as the cgroup collector).

    ``memory_limited``: the container has a memory limit; without one the engine's
    ``limit`` is the host's RAM, which is not a limit of the container and is left out.
    """
    out: dict[str, float] = {}
    cpu = doc.get("cpu_stats") or {}
    usage = (cpu.get("cpu_usage") or {}).get("total_usage")
    if usage is not None:
        out["cpu.usage_seconds"] = usage / 1e9
    thr = (cpu.get("throttling_data") or {}).get("throttled_time")
    if thr is not None:
        out["cpu.throttled_seconds"] = thr / 1e9
    mem = doc.get("memory_stats") or {}
    if "usage" in mem:
        stats = mem.get("stats") or {}
        inactive = stats.get("total_inactive_file", stats.get("inactive_file", 0))
        out["memory.usage_bytes"] = mem["usage"]
        out["memory.working_set_bytes"] = max(0, mem["usage"] - inactive)
        if "total_rss" in stats or "anon" in stats:
            out["memory.rss_bytes"] = stats.get("total_rss", stats.get("anon", 0))
        if "total_cache" in stats or "file" in stats:
            out["memory.cache_bytes"] = stats.get("total_cache", stats.get("file", 0))
        limit = mem.get("limit")
        if memory_limited and limit and limit < (1 << 62):
            out["memory.limit_bytes"] = limit
    blk = (doc.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    if blk:
        out["io.read_bytes"] = sum(
            e.get("value", 0) for e in blk if str(e.get("op", "")).lower() == "read"
        )
        out["io.write_bytes"] = sum(
            e.get("value", 0) for e in blk if str(e.get("op", "")).lower() == "write"
        )
    pids = (doc.get("pids_stats") or {}).get("current")
    if pids is not None:
        out["pids.count"] = pids
    nets = doc.get("networks") or {}
    if nets:
        out["net.rx_bytes"] = sum(n.get("rx_bytes", 0) for n in nets.values())
        out["net.tx_bytes"] = sum(n.get("tx_bytes", 0) for n in nets.values())
        out["net.rx_packets"] = sum(n.get("rx_packets", 0) for n in nets.values())
        out["net.tx_packets"] = sum(n.get("tx_packets", 0) for n in nets.values())
    return out


class EngineStatsCollector(BaseCollector):
    group = "container"
    resolution_s: float | None = 1.0

    def __init__(self, cpu_max_percent: float | None = None) -> None:
        self._metrics = container_metrics(None, cpu_max_percent) + NET_METRICS
        self._latest: tuple[int, dict[str, float]] | None = None
        self._seen_t = 0
        self._lock = threading.Lock()
        self._stream: Any = None
        self._end: Any = None
        self._clock = Clock()
        self._thread: threading.Thread | None = None
        self._labels: Labels = ()
        self._memory_limited = True

    def metrics(self) -> list[MetricSpec]:
        return self._metrics

    def open(self, ctx: CollectContext) -> None:
        if ctx.engine is None or ctx.container_id is None:
            raise CollectorUnavailable("no engine to read stats from")
        self._labels = ctx.labels
        self._clock = ctx.clock
        try:
            info = ctx.engine.inspect(ctx.container_id)
            self._memory_limited = info is None or info.memory_limit > 0
            self._stream, self._end = ctx.engine.stats_stream(ctx.container_id)
        except Exception as e:  # noqa: BLE001
            raise CollectorUnavailable(f"the engine's stats API failed: {e}") from None
        self._thread = threading.Thread(target=self._read, name="edgeprof-enginestats", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for doc in self._stream:
                if parse_rfc3339(str(doc.get("read", ""))) is None:
                    continue  # the engine's placeholder before its first reading
                # stamped on the run's clock when received, not with the engine host's clock
                values = stats_to_values(doc, self._memory_limited)
                with self._lock:
                    self._latest = (self._clock.now_ns(), values)
        except Exception:  # noqa: BLE001 - the stream ends when the container goes or close() ends it
            return

    def sample(self, now_ns: int) -> list[Sample]:
        with self._lock:
            latest = self._latest
        if latest is None or latest[0] == self._seen_t:
            return []
        t, values = latest
        self._seen_t = t
        lab = self._labels
        return [Sample(name, lab, t, v) for name, v in values.items()]

    def close(self) -> None:
        if self._end is not None:
            with contextlib.suppress(Exception):
                self._end()  # closes the stream's own connection: the reader returns
        if self._thread is not None:
            self._thread.join(timeout=2)
