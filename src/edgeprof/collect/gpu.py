"""Which GPU collectors a host gets, and the GPU details stored with a run.

A Jetson (``<proc_root>/device-tree/model`` names a Jetson/NVIDIA board, or
``<etc_root>/nv_tegra_release`` exists) has no NVML: there ``gpu-summary`` means tegrastats
plus the sysfs GPU load. Every other host uses NVML. ``tegrastats`` named explicitly runs
the ``tegrastats`` found on PATH (or the configured path) on any host.
"""

from __future__ import annotations

import os
import re
from typing import Any

from edgeprof.collect.base import Collector
from edgeprof.collect.nvml import NvmlProcessCollector, NvmlSummaryCollector, nvml_host_details
from edgeprof.collect.tegrastats import JetsonGpuLoadCollector, TegrastatsCollector

_L4T_RE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)")


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().replace(b"\x00", b"").decode("utf-8", "replace").strip()
    except OSError:
        return None


def jetson_model(proc_root: str = "/proc") -> str | None:
    return _read(os.path.join(proc_root, "device-tree", "model"))


def l4t_release(etc_root: str = "/etc") -> str | None:
    """``# R35 (release), REVISION: 4.1, …`` → ``"R35.4.1"``; None when absent."""
    text = _read(os.path.join(etc_root, "nv_tegra_release"))
    if text is None:
        return None
    m = _L4T_RE.search(text)
    return f"R{m.group(1)}.{m.group(2)}" if m else None


def is_jetson(proc_root: str = "/proc", etc_root: str = "/etc") -> bool:
    model = jetson_model(proc_root) or ""
    if "jetson" in model.lower() or "nvidia" in model.lower():
        return True
    return os.path.exists(os.path.join(etc_root, "nv_tegra_release"))


def gpu_collectors(
    group: str,
    sys_root: str = "/sys",
    proc_root: str = "/proc",
    nvml: Any = None,
    etc_root: str = "/etc",
) -> list[Collector]:
    """The collectors serving ``group`` (``gpu-summary``, ``gpu-process``, ``tegrastats``).

    ``sys_root`` is not read here: collectors read ``ctx.sys_root`` when opened.
    """
    jetson = is_jetson(proc_root, etc_root)
    if group == "tegrastats":
        out: list[Collector] = [TegrastatsCollector(group="tegrastats")]
        if jetson:
            out.append(JetsonGpuLoadCollector(group="tegrastats"))
        return out
    if group == "gpu-summary":
        if jetson:
            return [
                TegrastatsCollector(group="gpu-summary"),
                JetsonGpuLoadCollector(group="gpu-summary"),
            ]
        return [NvmlSummaryCollector(nvml=nvml)]
    if group == "gpu-process":
        # On a Jetson NVML is absent; the collector then reports itself unavailable.
        return [NvmlProcessCollector(nvml=nvml)]
    raise ValueError(f"not a GPU metric group: {group!r}")


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
    return nvml_host_details(nvml)
