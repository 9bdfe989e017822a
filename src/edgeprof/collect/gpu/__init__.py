"""GPU collectors: which a host gets, and the GPU details stored with a run.

A Jetson (``<proc_root>/device-tree/model`` names a Jetson/NVIDIA board, or
``<etc_root>/nv_tegra_release`` exists) has no NVML: there ``gpu-summary`` means tegrastats
plus the sysfs GPU load, and ``gpu-process`` the nvmap client table (:mod:`.nvmap`). Every
other host uses NVML (:mod:`.nvml`). ``tegrastats`` named
explicitly runs the ``tegrastats`` found on PATH (or the configured path) on any host.
"""

from __future__ import annotations

from typing import Any

from edgeprof.collect.base import Collector
from edgeprof.hostinfo import HostCaps, is_jetson, jetson_model, l4t_release


def gpu_summary_collectors(
    caps: HostCaps, tegrastats_path: str | None = None, nvml: Any = None
) -> list[Collector]:
    """``gpu-summary``: tegrastats + sysfs load on a Jetson, NVML elsewhere."""
    if caps.jetson:
        from edgeprof.collect.gpu.jetson import JetsonGpuLoadCollector
        from edgeprof.collect.gpu.tegrastats import TegrastatsCollector

        return [
            TegrastatsCollector(group="gpu-summary", path=tegrastats_path),
            JetsonGpuLoadCollector(group="gpu-summary"),
        ]
    from edgeprof.collect.gpu.nvml import NvmlSummaryCollector

    return [NvmlSummaryCollector(nvml=nvml)]


def gpu_process_collectors(caps: HostCaps, nvml: Any = None) -> list[Collector]:
    """``gpu-process``: NVML's per-process GPU memory and SM use; on a Jetson, GPU memory
    per process from the nvmap client table, or NVML where that table is empty (Thor)."""
    if caps.jetson:
        from edgeprof.collect.gpu.nvmap import JetsonGpuProcessCollector

        return [JetsonGpuProcessCollector(nvml=nvml)]
    from edgeprof.collect.gpu.nvml import NvmlProcessCollector

    return [NvmlProcessCollector(nvml=nvml)]


def tegrastats_collectors(caps: HostCaps, tegrastats_path: str | None = None) -> list[Collector]:
    """``tegrastats``: the tegrastats on PATH (or configured), plus the sysfs load on a Jetson."""
    from edgeprof.collect.gpu.jetson import JetsonGpuLoadCollector
    from edgeprof.collect.gpu.tegrastats import TegrastatsCollector

    out: list[Collector] = [TegrastatsCollector(group="tegrastats", path=tegrastats_path)]
    if caps.jetson:
        out.append(JetsonGpuLoadCollector(group="tegrastats"))
    return out


def gpu_host_details(
    proc_root: str = "/proc", etc_root: str = "/etc", nvml: Any = None
) -> dict[str, Any]:
    """GPU details to store with a run.

    Jetson: ``{"gpu": "jetson", "jetson_model": …, "l4t_release": "R35.4.1"}``. NVML host:
    ``{"gpu": "nvidia", "model": …, "gpus": […], "driver_version": …,
    "cuda_driver_version": "12.2"}``. Neither: ``{"gpu": None, "reason": …}``.
    """
    if is_jetson(proc_root, etc_root):
        return {
            "gpu": "jetson",
            "jetson_model": jetson_model(proc_root),
            "l4t_release": l4t_release(etc_root),
        }
    from edgeprof.collect.gpu.nvml import nvml_host_details

    return nvml_host_details(nvml)
