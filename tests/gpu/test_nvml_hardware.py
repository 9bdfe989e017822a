"""NVML collectors on a real NVIDIA GPU, against a ground truth we control.

Skipped (with the reason) where NVML finds no GPU, as on the CI machine. On a GPU machine:
``python -m pytest tests/gpu -v`` with PyTorch (or CuPy) installed for the load. Two worker
processes allocate known amounts of GPU memory (2 GiB and 1 GiB) and keep the SMs busy with
matrix products; the collectors must see the load, the memory, and only our worker's process.
Set ``EDGEPROF_GPU_REPORT=path.json`` to keep what was measured (for notes).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed (extra 'nvml')")

from edgeprof.collect.base import CollectContext  # noqa: E402
from edgeprof.collect.gpu import gpu_host_details  # noqa: E402
from edgeprof.collect.gpu.nvml import NvmlProcessCollector, NvmlSummaryCollector  # noqa: E402
from edgeprof.model import labels_of  # noqa: E402

GIB = 1024**3
LOAD_S = 6.0
REPORT: dict[str, Any] = {}


def _gpu_count() -> int:
    try:
        pynvml.nvmlInit()
    except Exception as e:  # no driver / no library
        pytest.skip(f"no NVIDIA GPU here: NVML could not start ({e})")
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        pynvml.nvmlShutdown()


def _load_module() -> str:
    for mod in ("torch", "cupy"):
        res = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True)
        if res.returncode == 0:
            return mod
    pytest.skip("neither PyTorch nor CuPy is installed to put a load on the GPU")


WORKER = r"""
import sys, time
mod, nbytes, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
if mod == "torch":
    import torch
    buf = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    buf.fill_(1)
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.float32)
    out = torch.empty_like(a)
    sync = torch.cuda.synchronize
    def step():
        torch.matmul(a, a, out=out)
else:
    import cupy
    buf = cupy.ones(nbytes, dtype=cupy.uint8)
    a = cupy.random.rand(4096, 4096, dtype=cupy.float32)
    out = cupy.empty_like(a)
    sync = cupy.cuda.Device().synchronize
    def step():
        cupy.matmul(a, a, out=out)
step(); sync()
print("ready", flush=True)
end = time.time() + secs
while time.time() < end:
    for _ in range(20):
        step()
    sync()
print("done", flush=True)
"""


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    path = os.environ.get("EDGEPROF_GPU_REPORT")
    if path and REPORT:
        Path(path).write_text(json.dumps(REPORT, indent=2, default=str))


def _start_worker(mod: str, nbytes: int, secs: float) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-c", WORKER, mod, str(nbytes), str(secs)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.strip() == "ready", f"GPU worker did not start (exit {p.poll()})"
    return p


def test_host_details_name_the_gpu():
    _gpu_count()
    d = gpu_host_details()
    REPORT["host_details"] = d
    assert d["gpu"] == "nvidia"
    assert d["model"] and d["gpus"][0]["memory_total_bytes"] > 8 * GIB
    assert re.fullmatch(r"\d+\.\d+(\.\d+)*", d["driver_version"]), d
    assert re.fullmatch(r"\d+\.\d+", d["cuda_driver_version"]), d


def test_collectors_see_a_known_load():
    assert _gpu_count() >= 1
    mod = _load_module()
    summary = NvmlSummaryCollector()
    t_open_ns = time.time_ns()
    summary.open(CollectContext(target="t", labels=labels_of(target="t")))
    try:
        idle = []
        for _ in range(10):
            idle += summary.sample(time.time_ns())
            time.sleep(0.1)
        ours = _start_worker(mod, 2 * GIB, LOAD_S)
        other = _start_worker(mod, 1 * GIB, LOAD_S)
        proc = NvmlProcessCollector()
        proc.open(CollectContext(target="t", labels=labels_of(target="t"), pid=ours.pid))
        busy: list[Any] = []
        pbusy: list[Any] = []
        tick_us: list[float] = []
        try:
            t_end = time.monotonic() + LOAD_S - 1.0
            while time.monotonic() < t_end:
                t0 = time.perf_counter()
                busy += summary.sample(time.time_ns())
                tick_us.append((time.perf_counter() - t0) * 1e6)
                pbusy += proc.sample(time.time_ns())
                time.sleep(0.1)
        finally:
            proc.close()
            for p in (ours, other):
                p.wait(timeout=60)
        t_done_ns = time.time_ns()
    finally:
        summary.close()

    def series(samples: list[Any], metric: str) -> list[tuple[int, float]]:
        return [(s.t_ns, s.value) for s in samples if s.metric == metric]

    util = series(busy, "gpu.utilization_percent")
    mem_idle = [v for _, v in series(idle, "gpu.memory_used_bytes")]
    mem_busy = [v for _, v in series(busy, "gpu.memory_used_bytes")]
    power_idle = [v for _, v in series(idle, "gpu.power_watts")]
    power_busy = [v for _, v in series(busy, "gpu.power_watts")]
    sm_clock = [v for _, v in series(busy, "gpu.sm_clock_hz")]
    pmem = [(dict(s.labels), s.value) for s in pbusy if s.metric == "gpu.process.memory_used_bytes"]
    psm = [
        (dict(s.labels), s.value) for s in pbusy if s.metric == "gpu.process.sm_utilization_percent"
    ]
    cmem = [v for _, v in series(pbusy, "gpu.container.memory_used_bytes")]
    REPORT["load"] = {
        "module": mod,
        "util_samples": len(util),
        "util_max": max((v for _, v in util), default=None),
        "util_timestamps_ns": [util[0][0], util[-1][0]] if util else None,
        "window_ns": [t_open_ns, t_done_ns],
        "memory_used_idle_max": max(mem_idle, default=None),
        "memory_used_busy_max": max(mem_busy, default=None),
        "power_idle_mean": sum(power_idle) / len(power_idle) if power_idle else None,
        "power_busy_max": max(power_busy, default=None),
        "sm_clock_hz_max": max(sm_clock, default=None),
        "process_memory": sorted({(lab["pid"], v) for lab, v in pmem}),
        "process_sm": [(lab["pid"], v) for lab, v in psm],
        "container_memory_max": max(cmem, default=None),
        "ours_pid": ours.pid,
        "other_pid": other.pid,
        "summary_tick_us_median": sorted(tick_us)[len(tick_us) // 2] if tick_us else None,
    }
    # the SMs were busy, seen by the driver's own sample buffer, stamped in Unix time
    assert util, "no utilisation samples"
    assert max(v for _, v in util) >= 80
    assert all(t_open_ns - 2e9 <= t <= t_done_ns + 1e9 for t, _ in util), REPORT["load"]
    # read once a second, the buffer still gives every driver sample (~6 Hz on NVIDIA GPUs)
    assert len(util) >= 3 * (t_done_ns - t_open_ns) / 1e9, REPORT["load"]
    ts = [t for t, _ in util]
    assert ts == sorted(ts) and len(set(ts)) == len(ts), "driver samples repeated across ticks"
    # 3 GiB allocated by the workers (plus their CUDA contexts)
    assert max(mem_busy) - max(mem_idle) >= 3 * GIB
    assert power_idle and max(power_busy) > 1.2 * (sum(power_idle) / len(power_idle))
    assert sm_clock and 100e6 < max(sm_clock) < 5e9
    # only our worker's process, with at least its 2 GiB buffer; never the other worker's
    pids = {lab["pid"] for lab, _ in pmem}
    assert pids == {str(ours.pid)}, REPORT["load"]
    ours_mem = max(v for _, v in pmem)
    assert 2 * GIB <= ours_mem < 2 * GIB + 2 * GIB  # buffer + context and matrices
    assert max(cmem) == ours_mem
    assert str(other.pid) not in {lab["pid"] for lab, _ in psm}
    # NVML gives one per-process sample per read (the latest), read once a second; the two
    # workers share the SMs, so ours has a part of them
    assert len(psm) >= 3 and 30 <= max(v for _, v in psm) <= 100, REPORT["load"]
