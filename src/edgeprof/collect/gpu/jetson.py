"""Jetson GPU load from sysfs (``gpu.0/load``), read with a kept-open file."""

from __future__ import annotations

import os

from edgeprof.collect._procfs import KeptOpen
from edgeprof.collect.base import BaseCollector, CollectContext
from edgeprof.errors import CollectorUnavailable
from edgeprof.model import Labels, MetricSpec, Sample, labels_of

GPU_LOAD_PATHS = ("devices/gpu.0/load", "devices/platform/gpu.0/load")


class JetsonGpuLoadCollector(BaseCollector):
    """Jetson iGPU load from sysfs (``<sys_root>/devices/gpu.0/load``, 0-1000 → percent).

    The file is kept open and re-read at every tick. Emits
    ``gpu.utilization_percent{source="sysfs"}``.
    """

    def __init__(self, group: str = "tegrastats") -> None:
        self.group = group
        self._file: KeptOpen | None = None
        self._labels: Labels = ()
        self.path: str | None = None

    def metrics(self) -> list[MetricSpec]:
        return [
            MetricSpec(
                "gpu.utilization_percent", "%", description="iGPU load from sysfs gpu.0/load"
            )
        ]

    def open(self, ctx: CollectContext) -> None:
        self._labels = labels_of(dict(ctx.labels), source="sysfs")
        reasons = []
        for rel in GPU_LOAD_PATHS:
            path = os.path.join(ctx.sys_root, rel)
            try:
                f = KeptOpen(path)
            except OSError as e:
                reasons.append(f"{path}: {e.strerror}")
                continue
            try:
                int(f.read().split()[0])
            except (OSError, ValueError, IndexError) as e:
                f.close()
                reasons.append(f"{path}: unreadable ({e})")
                continue
            self._file, self.path = f, path
            return
        raise CollectorUnavailable("Jetson GPU load not readable: " + "; ".join(reasons))

    def sample(self, now_ns: int) -> list[Sample]:
        if self._file is None:
            return []
        try:
            raw = int(self._file.read().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return [Sample("gpu.utilization_percent", self._labels, now_ns, raw / 10.0)]

    def close(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            f.close()
