"""NVML collectors against an injected stand-in module (no GPU on the test machine)."""

from __future__ import annotations

from pathlib import Path

import pytest
from nvml_stand_in import StandInNvml

from edgeprof.cgroups import CgroupPaths
from edgeprof.collect.base import CollectContext
from edgeprof.collect.gpu import gpu_host_details
from edgeprof.collect.gpu.nvml import (
    BUFFER_READ_INTERVAL_NS,
    Nvml,
    NvmlProcessCollector,
    NvmlSummaryCollector,
)
from edgeprof.errors import CollectorUnavailable
from edgeprof.model import labels_of

MIB = 1024 * 1024
CID = "3f4e2a9c1b7d8e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"


def by(samples, metric):
    return [s for s in samples if s.metric == metric]


def test_summary_with_driver_samples():
    nv = StandInNvml()
    c = NvmlSummaryCollector(nvml=nv)
    ctx = CollectContext(target="t1", labels=labels_of(target="t1"))
    c.open(ctx)
    assert nv.inited == 1
    # open() starts the window at the newest buffered sample; replay two newer ones
    nv.util_samples += [(1_700_000_000_332_000, 70), (1_700_000_000_498_000, 90)]
    out = c.sample(5)
    util = by(out, "gpu.utilization_percent")
    assert [(s.t_ns, s.value) for s in util] == [
        (1_700_000_000_332_000_000, 70.0),
        (1_700_000_000_498_000_000, 90.0),
    ]
    lab = dict(util[0].labels)
    assert lab == {
        "target": "t1",
        "gpu": "0",
        "uuid": "GPU-84b0bf9a-67bf-493c-9214-4fad8b125a6d",
        "name": "Tesla T4",
    }
    one = {s.metric: s.value for s in out if s.metric != "gpu.utilization_percent"}
    assert one["gpu.memory_used_bytes"] == 2436 * MIB
    assert one["gpu.memory_total_bytes"] == 15360 * MIB
    assert one["gpu.power_watts"] == pytest.approx(27.923)
    assert one["gpu.temperature_celsius"] == 44
    assert one["gpu.sm_clock_hz"] == 1590e6
    assert one["gpu.memory_clock_hz"] == 5000e6
    assert one["gpu.memory_utilization_percent"] == 18
    assert "gpu.encoder_utilization_percent" not in one  # NotSupported → missing
    assert "gpu.decoder_utilization_percent" not in one  # other NVML error → missing
    # the buffer is read at most once a second (each read costs ~2 ms on real GPUs): a tick
    # in between has no utilisation, and the driver is not asked
    calls = nv.calls["nvmlDeviceGetSamples"]
    assert by(c.sample(6), "gpu.utilization_percent") == []
    assert nv.calls["nvmlDeviceGetSamples"] == calls
    # nothing new in the buffer a second later: fall back to the polled rate
    t = 5 + BUFFER_READ_INTERVAL_NS
    again = by(c.sample(t), "gpu.utilization_percent")
    assert [(s.t_ns, s.value) for s in again] == [(t, 37.0)]
    assert nv.calls["nvmlDeviceGetSamples"] == calls + 1
    assert {m.name for m in c.metrics()} >= {s.metric for s in out}
    c.close()
    assert nv.inited == 0


def test_summary_without_sample_buffer_polls():
    c = NvmlSummaryCollector(nvml=StandInNvml(samples_supported=False))
    c.open(CollectContext(target="t"))
    util = by(c.sample(77), "gpu.utilization_percent")
    assert [(s.t_ns, s.value) for s in util] == [(77, 37.0)]
    c.close()


def test_nvml_helper_not_supported_is_none_and_remembered():
    nv = StandInNvml()
    n = Nvml(nv)
    n.init()
    assert n.call("nvmlDeviceGetEncoderUtilization", "h") is None
    assert ("nvmlDeviceGetEncoderUtilization", "h") in n._unsupported
    assert n.call("nvmlNoSuchFunction") is None


def write_proc(root: Path, pid: int, cgroup: str) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "cgroup").write_text(cgroup)


def test_process_collector_matches_container(tmp_path):
    proc = tmp_path / "proc"
    write_proc(proc, 4242, f"0::/system.slice/docker-{CID}.scope\n")
    write_proc(proc, 999, "0::/system.slice/docker-0123456789ab.scope\n")
    write_proc(proc, 4300, "0::/user.slice\n")  # not in the container by its cgroup file...
    cg = tmp_path / "cg"
    cg.mkdir()
    (cg / "cgroup.procs").write_text("4300\n")  # ...but listed in the container's cgroup.procs
    ctx = CollectContext(
        target="t1",
        labels=labels_of(target="t1"),
        container_id=CID,
        proc_root=str(proc),
        cgroup=CgroupPaths(version=2, unified=str(cg)),
    )
    c = NvmlProcessCollector(nvml=StandInNvml())
    c.open(ctx)
    out = c.sample(1000)
    mem = {dict(s.labels)["pid"]: s.value for s in by(out, "gpu.process.memory_used_bytes")}
    assert mem == {"4242": 1536 * MIB}  # 4300 has no memory figure, 999 is foreign
    sm = [
        (dict(s.labels)["pid"], s.t_ns, s.value)
        for s in by(out, "gpu.process.sm_utilization_percent")
    ]
    assert sm == [  # every driver sample of our processes, each at its own time
        ("4242", 1_700_000_000_100_000_000, 55.0),
        ("4242", 1_700_000_000_200_000_000, 61.0),
        ("4300", 1_700_000_000_200_000_000, 3.0),
    ]
    (total,) = by(out, "gpu.container.memory_used_bytes")
    assert total.value == 1536 * MIB
    assert dict(total.labels) == {"target": "t1", "gpu": "0"}
    # the utilisation window moved on: no new per-process samples the second time
    assert by(c.sample(1000 + BUFFER_READ_INTERVAL_NS), "gpu.process.sm_utilization_percent") == []
    c.close()


def test_process_collector_needs_container():
    with pytest.raises(CollectorUnavailable, match="container"):
        NvmlProcessCollector(nvml=StandInNvml()).open(CollectContext(target="t"))


def test_host_details_with_stand_in(tmp_path):
    d = gpu_host_details(proc_root=str(tmp_path), etc_root=str(tmp_path), nvml=StandInNvml())
    assert d["gpu"] == "nvidia"
    assert d["model"] == "Tesla T4"
    assert d["driver_version"] == "525.89.02"
    assert d["cuda_driver_version"] == "12.0"
    assert d["gpus"][0]["memory_total_bytes"] == 15360 * MIB


def _real_nvml_works() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:
        return False


@pytest.mark.skipif(_real_nvml_works(), reason="this host has a working NVIDIA driver")
def test_real_nvml_without_gpu_is_unavailable(tmp_path):
    with pytest.raises(CollectorUnavailable, match="NVML not available: .+"):
        NvmlSummaryCollector().open(CollectContext(target="t"))
    d = gpu_host_details(proc_root=str(tmp_path), etc_root=str(tmp_path))
    assert d["gpu"] is None and d["reason"].startswith("NVML not available")


def test_missing_pynvml_module_is_unavailable(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **kw):
        if name == "pynvml":
            raise ImportError("No module named 'pynvml'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(CollectorUnavailable, match="nvidia-ml-py is not installed"):
        NvmlSummaryCollector().open(CollectContext(target="t"))
