"""Cost of each NVML call the GPU collectors make, on this host's GPU 0 (needs a GPU).

    python bench/nvml_calls.py [--repeat 200]

Prints the median and p90 wall time of each call (µs) and of one whole tick of the
``gpu-summary`` and ``gpu-process`` collectors, so the sampler's GPU cost per tick is known.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, float]:
    """(median wall µs, p90 wall µs, mean CPU µs of this thread) per call."""
    out = []
    cpu0 = time.thread_time()
    for _ in range(repeat):
        t0 = time.perf_counter()
        try:
            fn()
        except Exception:
            pass
        out.append((time.perf_counter() - t0) * 1e6)
    cpu = (time.thread_time() - cpu0) * 1e6 / repeat
    out.sort()
    return statistics.median(out), out[int(0.9 * (len(out) - 1))], cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=200)
    a = ap.parse_args()
    import pynvml as n

    from edgeprof.collect.base import CollectContext
    from edgeprof.collect.gpu.nvml import NvmlProcessCollector, NvmlSummaryCollector

    n.nvmlInit()
    h = n.nvmlDeviceGetHandleByIndex(0)
    calls: dict[str, Callable[[], Any]] = {
        "GetSamples(GPU_UTIL)": lambda: n.nvmlDeviceGetSamples(
            h, n.NVML_GPU_UTILIZATION_SAMPLES, 0
        ),
        "GetUtilizationRates": lambda: n.nvmlDeviceGetUtilizationRates(h),
        "GetMemoryInfo": lambda: n.nvmlDeviceGetMemoryInfo(h),
        "GetPowerUsage": lambda: n.nvmlDeviceGetPowerUsage(h),
        "GetTemperature": lambda: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU),
        "GetClockInfo(SM)": lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM),
        "GetClockInfo(MEM)": lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM),
        "GetEncoderUtilization": lambda: n.nvmlDeviceGetEncoderUtilization(h),
        "GetDecoderUtilization": lambda: n.nvmlDeviceGetDecoderUtilization(h),
        "GetComputeRunningProcesses": lambda: n.nvmlDeviceGetComputeRunningProcesses(h),
        "GetGraphicsRunningProcesses": lambda: n.nvmlDeviceGetGraphicsRunningProcesses(h),
        "GetProcessUtilization": lambda: n.nvmlDeviceGetProcessUtilization(h, 0),
    }
    print(f"{'call':32} {'median µs':>10} {'p90 µs':>10} {'CPU µs':>10}")
    for name, fn in calls.items():
        med, p90, cpu = timed(fn, a.repeat)
        print(f"{name:32} {med:10.1f} {p90:10.1f} {cpu:10.1f}")
    n.nvmlShutdown()
    s = NvmlSummaryCollector()
    s.open(CollectContext(target="t"))
    p = NvmlProcessCollector()
    p.open(CollectContext(target="t", pid=1))
    # ticks at 10 Hz: the driver's buffers are read once a second (one tick in ten)
    for name, c in (("gpu-summary tick (10 Hz)", s), ("gpu-process tick (10 Hz)", p)):
        clock = iter(range(time.time_ns(), 2**63, 100_000_000))
        med, p90, cpu = timed(lambda c=c, clock=clock: c.sample(next(clock)), a.repeat)
        print(f"{name:32} {med:10.1f} {p90:10.1f} {cpu:10.1f}")
    s.close()
    p.close()


if __name__ == "__main__":
    main()
