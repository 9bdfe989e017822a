"""tegrastats parser against real lines, the collector against a replaying stand-in, sysfs."""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from edgeprof.collect.base import CollectContext
from edgeprof.collect.gpu import (
    gpu_host_details,
    gpu_summary_collectors,
    tegrastats_collectors,
)
from edgeprof.collect.gpu.jetson import JetsonGpuLoadCollector
from edgeprof.collect.gpu.tegrastats import TegrastatsCollector, interval_ms, parse_line
from edgeprof.errors import CollectorUnavailable
from edgeprof.hostinfo import HostCaps, is_jetson, l4t_release
from edgeprof.model import Clock, labels_of

DATA = Path(__file__).resolve().parents[1] / "data"
LINES = (DATA / "tegrastats" / "samples.txt").read_text().splitlines()
FAKE = DATA / "fake-tegrastats"
JETSON = DATA / "jetson-root"
MIB = 1024 * 1024


def r(n: int):
    return parse_line(LINES[n - 1])


def test_twelve_real_lines_all_parse():
    assert len(LINES) == 12
    for line in LINES:
        reading = parse_line(line)
        assert reading, line
        assert reading.get("jetson.ram.used_bytes") is not None
        assert reading.get("jetson.power.total_watts") is not None
        assert reading.series("jetson.cpu.online")


def test_line1_nano_jp4():
    x = r(1)
    assert x.get("jetson.ram.used_bytes") == 534 * MIB
    assert x.get("jetson.ram.total_bytes") == 3964 * MIB
    assert x.get("jetson.swap.used_bytes") == 5 * MIB
    assert x.get("jetson.swap.cached_bytes") == 1 * MIB
    assert x.get("gpu.utilization_percent") == 0
    assert x.get("gpu.freq_hz") == 76e6
    assert x.get("jetson.cpu.utilization_percent", core="0") == 16
    assert x.get("jetson.cpu.freq_hz", core="3") == 204e6
    assert x.get("jetson.emc.freq_hz") == 204e6
    assert x.get("jetson.power.current_watts", rail="POM_5V_IN") == pytest.approx(1.022)
    assert x.get("jetson.power.total_watts") == pytest.approx(1.022)
    assert x.total_rule == "rail:POM_5V_IN"
    assert x.get("gpu.power_watts", rail="POM_5V_GPU") == 0
    assert x.get("jetson.temperature_celsius", sensor="thermal") == 36.25
    assert x.get("jetson.temperature_celsius", sensor="PMIC") is None  # PMIC@100C placeholder
    assert x.get("jetson.engine.freq_hz", engine="APE") == 25e6
    assert x.timestamp is None


def test_line2_nano_jp461():
    x = r(2)
    assert x.get("jetson.ram.used_bytes") == 1923 * MIB
    assert x.get("jetson.power.average_watts", rail="POM_5V_IN") == pytest.approx(1.628)
    assert x.get("jetson.temperature_celsius", sensor="PMIC") == 50.0  # real reading, kept
    assert x.get("jetson.emc.freq_hz") == 1600e6


def test_line3_tx2_offline_cores():
    x = r(3)
    assert x.get("jetson.cpu.online", core="1") == 0
    assert x.get("jetson.cpu.online", core="2") == 0
    assert x.get("jetson.cpu.utilization_percent", core="1") is None
    assert x.get("jetson.cpu.utilization_percent", core="5") == 2
    assert x.get("gpu.freq_hz") == 624e6
    assert x.get("jetson.emc.utilization_percent") == 4
    assert x.get("jetson.power.total_watts") == pytest.approx(3.056)
    assert x.total_rule == "rail:VDD_IN"
    assert x.get("gpu.power_watts", rail="VDD_SYS_GPU") == pytest.approx(0.152)
    assert x.get("jetson.temperature_celsius", sensor="Tdiode") == 34.25


def test_line4_tx2_without_root():
    x = r(4)
    assert x.get("jetson.swap.used_bytes") is None
    assert x.get("gpu.utilization_percent") == 0
    assert x.get("gpu.freq_hz") is None
    assert x.get("jetson.emc.freq_hz") is None
    assert x.get("jetson.emc.utilization_percent") == 0
    assert x.get("jetson.power.average_watts", rail="VDD_IN") == pytest.approx(3.208)
    assert x.get("jetson.temperature_celsius", sensor="thermal") == 41.9


def test_line5_xavier_nx():
    x = r(5)
    assert x.get("gpu.utilization_percent") == 62
    assert x.get("gpu.freq_hz") == 306e6
    assert x.get("jetson.cpu.freq_hz", core="5") == 1267e6
    assert x.get("jetson.mts.foreground_percent") == 0
    assert x.get("jetson.power.total_watts") == pytest.approx(4.067)


def test_line6_bracketed_freq_mw_timestamp():
    x = r(6)
    assert x.timestamp is not None and x.timestamp.year == 2024 and x.timestamp.hour == 13
    assert x.get("jetson.ram.used_bytes") == 3168 * MIB
    assert x.get("gpu.freq_hz", gpc="0") == 114e6
    assert x.get("jetson.engine.freq_hz", engine="VIC") == 115e6
    assert x.get("jetson.power.current_watts", rail="VDD_IN") == pytest.approx(2.763)
    assert x.get("jetson.power.average_watts", rail="VDD_SOC") == pytest.approx(0.711)
    assert x.get("jetson.power.total_average_watts") == pytest.approx(2.846)


def test_line7_agx_xavier_sums_rails():
    x = r(7)
    assert x.total_rule == "sum"
    assert x.get("jetson.power.total_watts") == pytest.approx(
        (0 + 311 + 932 + 0 + 621 + 1482) / 1000
    )
    assert [x.get("jetson.cpu.online", core=str(i)) for i in range(8)] == [1] * 4 + [0] * 4
    assert x.get("gpu.power_watts", rail="GPU") == 0
    assert x.get("jetson.ram.total_bytes") == 31927 * MIB


def test_line8_agx_xavier_without_root():
    x = r(8)
    assert x.get("gpu.freq_hz") is None
    assert x.get("jetson.swap.cached_bytes") == 23 * MIB
    assert x.get("jetson.power.total_watts") == pytest.approx(
        (463 + 618 + 2936 + 0 + 309 + 3306) / 1000
    )
    assert x.get("jetson.temperature_celsius", sensor="PMIC") is None


def test_line9_agx_orin_no_emc():
    x = r(9)
    assert x.get("jetson.emc.utilization_percent") is None
    assert x.get("jetson.emc.freq_hz") is None
    assert x.get("gpu.utilization_percent") == 0
    assert x.get("gpu.freq_hz") is None
    assert len(x.series("jetson.cpu.utilization_percent")) == 12
    assert x.get("jetson.temperature_celsius", sensor="soc2") == 37.843
    # AGX Orin: no VDD_IN, VIN_SYS_5V0 is one input rail of several -> sum of the rails
    assert x.total_rule == "sum"
    assert x.get("jetson.power.total_watts") == pytest.approx((4940 + 988 + 4442) / 1000)


def test_line10_orin_nx():
    x = r(10)
    assert x.get("jetson.emc.freq_hz") == 2133e6
    assert x.get("gpu.freq_hz") == 611e6
    assert x.get("jetson.temperature_celsius", sensor="CV0") == 45.812
    assert x.get("jetson.power.total_watts") == pytest.approx(5.299)


def test_line11_engines_and_off():
    x = r(11)
    assert x.get("gpu.utilization_percent") == 84
    assert x.get("gpu.freq_hz", gpc="0") == 713e6
    assert x.get("jetson.engine.utilization_percent", engine="NVDEC") == 40
    assert x.get("jetson.engine.freq_hz", engine="NVENC") == 115e6
    assert x.get("jetson.engine.online", engine="VIC") == 1
    for off in ("NVJPG", "NVJPG1", "OFA", "NVDLA0", "PVA0"):
        assert x.get("jetson.engine.online", engine=off) == 0
        assert x.get("jetson.engine.utilization_percent", engine=off) is None
    assert x.get("jetson.swap.cached_bytes") == 202 * MIB
    assert x.get("jetson.cpu.freq_hz", core="5") == 247e6
    assert x.get("jetson.power.current_watts", rail="VDD_IN") == pytest.approx(17.946)


def test_line12_jetpack7_three_values_two_gpcs():
    x = r(12)
    assert x.timestamp is not None and x.timestamp.year == 2026
    assert x.get("gpu.utilization_percent") == 12
    assert x.get("gpu.freq_hz", gpc="0") == 1300e6
    assert x.get("gpu.freq_hz", gpc="1") == 1300e6
    assert x.get("jetson.power.current_watts", rail="VDD_GPU_SOC") == pytest.approx(5.139)
    assert x.get("jetson.power.average_watts", rail="VDD_CPU_CV") == pytest.approx(3.268)
    assert x.get("jetson.power.max_watts", rail="VIN_SYS_5V0") == pytest.approx(5.5)
    assert x.get("jetson.temperature_celsius", sensor="cpu") == 52.968
    assert x.get("jetson.power.total_watts") == pytest.approx(5.139 + 3.268 + 5.5)
    assert x.get("jetson.swap.used_bytes") is None
    assert x.get("jetson.engine.online", engine="NVENC0") == 0
    assert x.get("gpu.power_watts", rail="VDD_GPU_SOC") is None  # shared rail


@pytest.mark.parametrize(
    "line",
    [
        "",
        "   ",
        "garbage",
        "RAM",
        "RAM x/yMB",
        "CPU [",
        "CPU [abc,@@,]",
        "GR3D_FREQ %@[,]",
        "\x00\xff binary",
        "VDD_IN /",
        "Error: tegrastats needs root",
    ],
)
def test_garbage_never_raises(line):
    reading = parse_line(line)
    assert isinstance(reading.values, tuple)


def test_unknown_fields_skipped_rest_parsed():
    line = "RAM 100/200MB (lfb 1x4MB) FOO_BAR baz@@ NEWTHING 3%@[x] GR3D_FREQ 7%@99 ZZ@-256C a@1.5C"
    x = parse_line(line)
    assert x.get("jetson.ram.used_bytes") == 100 * MIB
    assert x.get("gpu.utilization_percent") == 7
    assert x.get("jetson.temperature_celsius", sensor="ZZ") is None  # -256C placeholder
    assert x.get("jetson.temperature_celsius", sensor="a") == 1.5


def test_thor_style_freq_only_and_old_cpu_form():
    x = parse_line("RAM 4722/7844MB (lfb 1x512kB) EMC_FREQ 2%@1866 GR3D_FREQ @[1000,1000,1000]")
    assert x.get("gpu.utilization_percent") is None
    assert x.get("gpu.freq_hz", gpc="2") == 1000e6
    y = parse_line("CPU [10%,20%,off]@1200")
    assert y.get("jetson.cpu.freq_hz", core="1") == 1200e6
    assert y.get("jetson.cpu.online", core="2") == 0


def test_interval_ms():
    assert interval_ms(0.05) == 100
    assert interval_ms(0.5) == 500
    assert interval_ms(1) == 1000


# ----------------------------------------------------------------- collector + stand-in


@pytest.fixture
def fake_on_path(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    target = bindir / "tegrastats"
    shutil.copy(FAKE, target)
    target.chmod(target.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FAKE_TEGRASTATS_SAMPLES", str(DATA / "tegrastats" / "samples.txt"))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return target


def test_collector_replays_stand_in_on_path(fake_on_path):
    clock = Clock()
    ctx = CollectContext(target="t1", labels=labels_of(target="t1"), interval_s=0.1)
    c = TegrastatsCollector()
    assert c.group == "tegrastats"
    c.open(ctx)
    try:
        deadline = time.monotonic() + 5
        samples = []
        while time.monotonic() < deadline and len({s.t_ns for s in samples}) < 3:
            time.sleep(0.15)
            samples += c.sample(clock.now_ns())
    finally:
        c.close()
    assert samples
    names = {s.metric for s in samples}
    assert {"jetson.ram.used_bytes", "gpu.utilization_percent", "jetson.power.total_watts"} <= names
    assert all(("target", "t1") in s.labels for s in samples)
    ram = [s for s in samples if s.metric == "jetson.ram.used_bytes"]
    assert ram[0].value == 534 * MIB  # first replayed line is line 1
    ts = [s.t_ns for s in ram]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    core = [s for s in samples if s.metric == "jetson.cpu.online"]
    assert any(("core", "0") in s.labels for s in core)
    known = {m.name for m in c.metrics()}
    assert names <= known


def test_collector_path_option_and_close_terminates(tmp_path):
    ctx = CollectContext(target="t", interval_s=0.1)
    c = TegrastatsCollector(path=str(FAKE))
    c.open(ctx)
    proc = c._proc
    assert proc is not None
    c.close()
    assert proc.poll() is not None
    c.close()  # idempotent


def test_collector_unavailable_when_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CollectorUnavailable, match="not found"):
        TegrastatsCollector().open(CollectContext(target="t"))


def test_collector_unavailable_when_exits_at_once(tmp_path):
    script = tmp_path / "tegrastats"
    script.write_text("#!/bin/sh\necho 'tegrastats: permission denied' >&2\nexit 3\n")
    script.chmod(0o755)
    ctx = CollectContext(target="t")
    with pytest.raises(CollectorUnavailable, match="code 3.*permission denied"):
        TegrastatsCollector(path=str(script)).open(ctx)


# ----------------------------------------------------------------- sysfs + host detection


def test_sysfs_gpu_load_reader(tmp_path):
    load = tmp_path / "devices" / "gpu.0" / "load"
    load.parent.mkdir(parents=True)
    load.write_text("412\n")
    c = JetsonGpuLoadCollector()
    c.open(CollectContext(target="t", labels=labels_of(target="t"), sys_root=str(tmp_path)))
    try:
        (s,) = c.sample(123)
        assert s.metric == "gpu.utilization_percent"
        assert s.value == pytest.approx(41.2)
        assert dict(s.labels) == {"source": "sysfs", "target": "t"}
        load.write_text("1000\n")  # same inode: pread sees the new content
        assert c.sample(124)[0].value == 100.0
    finally:
        c.close()


def test_sysfs_gpu_load_platform_path_and_missing(tmp_path):
    with pytest.raises(CollectorUnavailable, match="not readable"):
        JetsonGpuLoadCollector().open(CollectContext(target="t", sys_root=str(tmp_path)))
    p = tmp_path / "devices" / "platform" / "gpu.0" / "load"
    p.parent.mkdir(parents=True)
    p.write_text("5\n")
    c = JetsonGpuLoadCollector()
    c.open(CollectContext(target="t", sys_root=str(tmp_path)))
    assert c.sample(1)[0].value == 0.5
    c.close()


def test_fake_jetson_tree_host_details_and_collectors():
    proc_root, etc_root = str(JETSON / "proc"), str(JETSON / "etc")
    assert is_jetson(proc_root, etc_root)
    assert l4t_release(etc_root) == "R35.4.1"
    d = gpu_host_details(proc_root=proc_root, etc_root=etc_root)
    assert d == {
        "gpu": "jetson",
        "jetson_model": "NVIDIA Jetson AGX Orin Developer Kit",
        "l4t_release": "R35.4.1",
    }
    cs = gpu_summary_collectors(HostCaps(jetson=is_jetson(proc_root, etc_root)))
    assert [type(c).__name__ for c in cs] == ["TegrastatsCollector", "JetsonGpuLoadCollector"]
    assert all(c.group == "gpu-summary" for c in cs)
    c = cs[1]
    c.open(CollectContext(target="t", sys_root=str(JETSON / "sys")))
    assert c.sample(1)[0].value == pytest.approx(41.2)
    c.close()


def test_non_jetson_host_uses_nvml(tmp_path):
    caps = HostCaps(jetson=is_jetson(str(tmp_path), str(tmp_path)))
    cs = gpu_summary_collectors(caps)
    assert [type(c).__name__ for c in cs] == ["NvmlSummaryCollector"]
    ts = tegrastats_collectors(caps)
    assert [type(c).__name__ for c in ts] == ["TegrastatsCollector"]


def test_jetson_with_gpu_summary_and_tegrastats_runs_one_tegrastats():
    """Both groups on a Jetson read the same tegrastats: one reader, so no doubled samples."""
    from edgeprof.collect.registry import GROUPS, GroupEnv

    caps = HostCaps(jetson=True)
    both = frozenset({"gpu-summary", "tegrastats"})
    env = GroupEnv(caps=caps, selected=both)
    made = [type(c).__name__ for g in ("gpu-summary", "tegrastats") for c in GROUPS[g].factory(env)]
    assert made == ["TegrastatsCollector", "JetsonGpuLoadCollector"]
    alone = GroupEnv(caps=caps, selected=frozenset({"gpu-summary"}))
    assert len(GROUPS["gpu-summary"].factory(alone)) == 2


@pytest.mark.parametrize(
    ("cpuinfo", "want"),
    [
        (
            "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R)  CPU @ 2.20GHz\n"
            "processor\t: 1\nmodel name\t: Intel(R) Xeon(R)  CPU @ 2.20GHz\n",
            "Intel(R) Xeon(R) CPU @ 2.20GHz",
        ),
        (  # an arm64 kernel (Jetson Orin): no model name, only the part number
            "processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\n"
            "CPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd42\nCPU revision\t: 1\n",
            "ARMv8 part 0xd42",
        ),
        (
            "Processor\t: AArch64 Processor rev 4 (aarch64)\nprocessor\t: 0\n",
            "AArch64 Processor rev 4 (aarch64)",
        ),
        ("", None),
    ],
)
def test_cpu_model(tmp_path: Path, cpuinfo: str, want: str | None) -> None:
    from edgeprof.hostinfo import cpu_model

    (tmp_path / "cpuinfo").write_text(cpuinfo)
    assert cpu_model(str(tmp_path)) == want
