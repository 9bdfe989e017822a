"""The Prometheus endpoint: a synthetic sink stream in, the exposition text parsed back.

Names, labels and values are checked exactly (cAdvisor's and dcgm-exporter's names and
units, ``edgeprof_*`` for the rest), counters carry the raw monotonic values, odd label
values survive escaping, ended containers and exited processes disappear, and the HTTP
server frees its port on close and refuses a busy one in one sentence (exit 2 from ``run``,
before anything starts).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from edgeprof.collect.cgroup import NET_METRICS, container_metrics  # noqa: E402
from edgeprof.collect.gpu.nvml import PROCESS_METRICS, SUMMARY_METRICS  # noqa: E402
from edgeprof.collect.gpu.tegrastats_parse import TEGRASTATS_METRICS  # noqa: E402
from edgeprof.collect.host import host_metrics  # noqa: E402
from edgeprof.collect.procs import process_metrics  # noqa: E402
from edgeprof.errors import UserError  # noqa: E402
from edgeprof.model import MetricSpec, Sample, labels_of  # noqa: E402
from edgeprof.prometheus import (  # noqa: E402
    ListenAddress,
    PrometheusSink,
    edgeprof_name,
    exposition,
    parse_address,
    serve,
)
from edgeprof.sinks import MemberInfo, Tee  # noqa: E402

CID = "3f" * 32
MiB = 1024 * 1024
S = 1_000_000_000
APP_SPECS = [
    MetricSpec("app.fps", "1", "gauge", "app gauge"),
    MetricSpec("app.frames", "1", "gauge", "app counter increment"),
    MetricSpec("app.frames.total", "1", "total", "app counter running total"),
    MetricSpec("app.infer", "ms", "gauge", "app timer (distribution)"),
]


def _specs() -> list[MetricSpec]:
    """What the sampler describes: every collector's metrics plus the rates it derives."""
    base = [
        *container_metrics(0.01, 200.0),
        *NET_METRICS,
        *process_metrics(200.0),
        *host_metrics(200.0),
        *SUMMARY_METRICS,
        *PROCESS_METRICS,
        *APP_SPECS,
    ]
    return base + [m.rate_spec() for m in base if m.kind in ("counter", "total")]


def _member(**kw: Any) -> MemberInfo:
    args: dict[str, Any] = {
        "target": "base#1",
        "role": "app",
        "container_id": CID,
        "name": "edgeprof-7-base-1",
        "image": "waggle/plugin-objectcounter:0.0.0",
        "limits": {"cpus": 0.5, "memory_bytes": 256 * MiB},
        "labels": {"com.example.team": "vision"},
    }
    args.update(kw)
    return MemberInfo(**args)


TD = {"target": "base#1"}
T = labels_of(TD)
GPU0 = labels_of(gpu=0, uuid="GPU-5fd4-aa", name="NVIDIA H100 80GB HBM3")


def _tick(t_s: float, cpu: float) -> list[Sample]:
    t = int(t_s * S)
    return [
        Sample("cpu.usage_seconds", T, t, cpu),
        Sample("cpu.percent", T, t, 50.0),  # derived: never exported
        Sample("cpu.throttled_seconds", T, t, 0.75),
        Sample("memory.usage_bytes", T, t, 120 * MiB),
        Sample("memory.working_set_bytes", T, t, 100 * MiB),
        Sample("memory.rss_bytes", T, t, 90 * MiB),
        Sample("memory.cache_bytes", T, t, 30 * MiB),
        Sample("memory.limit_bytes", T, t, 256 * MiB),
        Sample("memory.oom_kills", T, t, 0),
        Sample("io.read_bytes", T, t, 4096),
        Sample("io.write_bytes", T, t, 8192),
        Sample("pids.count", T, t, 5),
        Sample("net.rx_bytes", T, t, 1500),
        Sample("net.tx_bytes", T, t, 700),
        Sample("net.rx_packets", T, t, 10),
        Sample("net.tx_packets", T, t, 6),
        Sample("process.count", T, t, 2),
        Sample("process.cpu.usage_seconds", labels_of(TD, pid=41, process="python3"), t, cpu),
        Sample("process.memory.rss_bytes", labels_of(TD, pid=41, process="python3"), t, 80 * MiB),
        Sample("process.threads", labels_of(TD, pid=41, process="python3"), t, 4),
        Sample("host.cpu.busy_seconds", (), t, 1000.0 + cpu),
        Sample("host.memory.used_bytes", (), t, 3 * 1024 * MiB),
        Sample("host.load1", (), t, 1.25),
        Sample("gpu.utilization_percent", GPU0, t, 37.0),
        Sample("gpu.memory_used_bytes", GPU0, t, 1234 * MiB + 512 * 1024),
        Sample("gpu.memory_total_bytes", GPU0, t, 81559 * MiB),
        Sample("gpu.power_watts", GPU0, t, 187.5),
        Sample("gpu.temperature_celsius", GPU0, t, 41.0),
        Sample("gpu.sm_clock_hz", GPU0, t, 1_755_000_000.0),
        Sample("gpu.memory_clock_hz", GPU0, t, 2_619_000_000.0),
        Sample("gpu.process.memory_used_bytes", labels_of(TD, pid=41, gpu=0), t, 600 * MiB),
        Sample("gpu.process.sm_utilization_percent", labels_of(TD, pid=41, gpu=0), t, 20.0),
        Sample("gpu.process.sm_utilization_percent", labels_of(TD, pid=42, gpu=0), t, 11.0),
        Sample("gpu.container.memory_used_bytes", labels_of(TD, gpu=0), t, 900 * MiB + 7),
        Sample("app.fps", labels_of(TD, camera="bottom"), t, 29.5),
        Sample("app.frames", labels_of(TD, camera="bottom"), t, 3),  # an increment
        Sample("app.frames.total", labels_of(TD, camera="bottom"), t, 300 + t_s),
        Sample("app.frames.total_per_second", labels_of(TD, camera="bottom"), t, 30.0),
        Sample("app.infer", labels_of(TD, model="yolo"), t, 12.5),
    ]


Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _parse(text: str) -> tuple[dict[str, str], Series]:
    """family name → type; (sample name, labels) → value."""
    types: dict[str, str] = {}
    values: Series = {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in values, f"duplicate series {key}"
            values[key] = s.value
    return types, values


def _one(values: Series, name: str, **labels: str) -> tuple[dict[str, str], float]:
    """The one series ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    hits = [(dict(k[1]), v) for k, v in values.items() if k[0] == name and want <= k[1]]
    assert len(hits) == 1, (name, labels, hits)
    return hits[0]


@pytest.fixture
def sink() -> PrometheusSink:
    s = PrometheusSink()
    s.describe(_specs())
    s.member_started(_member())
    s.write(_tick(10.0, 1.5))
    return s


CADVISOR_LABELS = {
    "id": f"/docker/{CID}",
    "name": "edgeprof-7-base-1",
    "image": "waggle/plugin-objectcounter:0.0.0",
    "container_label_com_example_team": "vision",
    "target": "base#1",
}


def test_cadvisor_names_labels_and_values(sink: PrometheusSink) -> None:
    types, values = _parse(exposition(sink))
    expect = {
        ("container_cpu_usage_seconds_total", "counter"): 1.5,
        ("container_cpu_cfs_throttled_seconds_total", "counter"): 0.75,
        ("container_memory_usage_bytes", "gauge"): 120 * MiB,
        ("container_memory_working_set_bytes", "gauge"): 100 * MiB,
        ("container_memory_rss", "gauge"): 90 * MiB,
        ("container_memory_cache", "gauge"): 30 * MiB,
        ("container_oom_events_total", "counter"): 0,
        ("container_fs_reads_bytes_total", "counter"): 4096,
        ("container_fs_writes_bytes_total", "counter"): 8192,
        ("container_network_receive_bytes_total", "counter"): 1500,
        ("container_network_transmit_bytes_total", "counter"): 700,
        ("container_network_receive_packets_total", "counter"): 10,
        ("container_network_transmit_packets_total", "counter"): 6,
        ("container_threads", "gauge"): 5,
        ("container_processes", "gauge"): 2,
        ("container_spec_cpu_period", "gauge"): 100_000,
        ("container_spec_cpu_quota", "gauge"): 50_000,
        ("container_spec_memory_limit_bytes", "gauge"): 256 * MiB,
        ("container_last_seen", "gauge"): 10.0,
    }
    for (name, typ), value in expect.items():
        family = name.removesuffix("_total") if typ == "counter" else name
        assert types[family] == typ, name
        labels, got = _one(values, name)
        assert got == value, name
        extra = {"cpu": "total"} if name == "container_cpu_usage_seconds_total" else {}
        assert labels == {**CADVISOR_LABELS, **extra}, name
    # the raw counter, not a rate: nothing derived is exported
    assert not [k for k in values if "percent" in k[0] and k[0].startswith("container")]
    assert not [k for k in values if "per_second" in k[0]]
    # memory.limit_bytes is container_spec_memory_limit_bytes, not a second series
    assert not [k for k in values if k[0] == "edgeprof_memory_limit_bytes"]


def test_dcgm_names_labels_and_units(sink: PrometheusSink) -> None:
    types, values = _parse(exposition(sink))
    dev = {"gpu": "0", "UUID": "GPU-5fd4-aa", "device": "nvidia0"}
    dev_labels = {**dev, "modelName": "NVIDIA H100 80GB HBM3"}
    for name, value in {
        "DCGM_FI_DEV_GPU_UTIL": 37.0,
        "DCGM_FI_DEV_FB_USED": 1234.0,  # whole MiB, as DCGM reports it
        "DCGM_FI_DEV_FB_FREE": 81559.0 - 1235.0,  # total − used, whole MiB
        "DCGM_FI_DEV_POWER_USAGE": 187.5,  # W
        "DCGM_FI_DEV_GPU_TEMP": 41.0,
        "DCGM_FI_DEV_SM_CLOCK": 1755.0,  # MHz
        "DCGM_FI_DEV_MEM_CLOCK": 2619.0,
    }.items():
        assert types[name] == "gauge"
        hits = [
            (dict(k[1]), v)
            for k, v in values.items()
            if k[0] == name and "container" not in dict(k[1])
        ]
        assert hits == [(dev_labels, value)], name
    # the container's share, next to the device series (dcgm-exporter's shared-GPU form)
    share = {**dev_labels, "container": "edgeprof-7-base-1", "target": "base#1"}
    assert _one(values, "DCGM_FI_DEV_FB_USED", container="edgeprof-7-base-1") == (share, 900.0)
    assert _one(values, "DCGM_FI_DEV_GPU_UTIL", container="edgeprof-7-base-1") == (share, 31.0)
    # per process and the total memory under edgeprof_ names, in bytes
    labels, v = _one(values, "edgeprof_gpu_process_memory_used_bytes", pid="41")
    assert v == 600 * MiB
    assert labels == {"gpu": "0", "device": "nvidia0", "pid": "41", "target": "base#1",
                      "name": "edgeprof-7-base-1"}  # fmt: skip
    assert _one(values, "edgeprof_gpu_memory_total_bytes")[1] == 81559 * MiB


def test_edgeprof_names_for_the_rest(sink: PrometheusSink) -> None:
    types, values = _parse(exposition(sink))
    proc = {"target": "base#1", "name": "edgeprof-7-base-1", "pid": "41", "process": "python3"}
    assert types["edgeprof_process_cpu_usage_seconds"] == "counter"
    assert _one(values, "edgeprof_process_cpu_usage_seconds_total") == (proc, 1.5)
    assert _one(values, "edgeprof_process_memory_rss_bytes") == (proc, 80 * MiB)
    assert _one(values, "edgeprof_process_threads") == (proc, 4)
    assert types["edgeprof_host_cpu_busy_seconds"] == "counter"
    assert _one(values, "edgeprof_host_cpu_busy_seconds_total") == ({}, 1001.5)
    assert _one(values, "edgeprof_host_memory_used_bytes") == ({}, 3 * 1024 * MiB)
    assert _one(values, "edgeprof_host_load1") == ({}, 1.25)
    app = {"target": "base#1", "name": "edgeprof-7-base-1"}
    assert _one(values, "edgeprof_app_fps") == ({**app, "camera": "bottom"}, 29.5)
    assert types["edgeprof_app_frames_total"] == "gauge"  # may go down (decrements)
    assert _one(values, "edgeprof_app_frames_total") == ({**app, "camera": "bottom"}, 310.0)
    assert _one(values, "edgeprof_app_infer_seconds") == ({**app, "model": "yolo"}, 0.0125)
    # an app counter's single increment is meaningless in a scrape: only its total
    assert not [k for k in values if k[0] == "edgeprof_app_frames"]
    # every edgeprof-owned name is legal and prefixed
    for name in types:
        assert name.startswith(("container_", "DCGM_FI_DEV_", "edgeprof_")), name


def test_counters_are_the_raw_monotonic_values(sink: PrometheusSink) -> None:
    seen: list[float] = []
    for i, cpu in enumerate([1.5, 1.75, 2.0, 2.5, 2.5, 3.25]):
        sink.write(_tick(10.0 + i * 0.5, cpu))
        _, values = _parse(exposition(sink))
        seen.append(_one(values, "container_cpu_usage_seconds_total")[1])
    assert seen == [1.5, 1.75, 2.0, 2.5, 2.5, 3.25]
    assert seen == sorted(seen)
    # an older sample arriving late never moves a series back
    sink.write([Sample("cpu.usage_seconds", T, int(9 * S), 0.1)])
    _, values = _parse(exposition(sink))
    assert _one(values, "container_cpu_usage_seconds_total")[1] == 3.25


ODD = ['say "hi"', "two\nlines", "back\\slash", "<script>alert(1)</script>", "ünï €", ""]


@pytest.mark.parametrize("odd", ODD)
def test_odd_label_values_round_trip(odd: str) -> None:
    s = PrometheusSink()
    s.describe(APP_SPECS)
    s.member_started(_member(name=f"n{odd}", image=odd, labels={"a.b-c": odd, "__x": odd}))
    s.write([Sample("app.fps", labels_of(TD, tag=odd, **{"weird key!": odd}), S, 1.0)])
    text = exposition(s)
    assert "<script>" not in odd or "<script>alert(1)</script>" in text  # text/plain, verbatim
    assert "\n" not in odd or "two\\nlines" in text
    _, values = _parse(text)
    labels, v = _one(values, "edgeprof_app_fps")
    assert v == 1.0
    assert labels["tag"] == odd and labels["weird_key_"] == odd
    labels, _ = _one(values, "container_spec_memory_limit_bytes")
    assert labels["image"] == odd and labels["name"] == f"n{odd}"
    assert labels["container_label_a_b_c"] == odd and labels["container_label_x__x"] == odd


def test_a_clashing_app_label_is_kept_as_exported_name() -> None:
    s = PrometheusSink()
    s.describe(APP_SPECS)
    s.member_started(_member())
    s.write([Sample("app.fps", labels_of(TD, name="cam-1"), S, 2.0)])
    _, values = _parse(exposition(s))
    labels, _ = _one(values, "edgeprof_app_fps")
    assert labels["name"] == "edgeprof-7-base-1" and labels["exported_name"] == "cam-1"


def test_an_ended_container_disappears_and_a_restarted_one_returns(sink: PrometheusSink) -> None:
    other = labels_of(target="other")
    sink.member_started(_member(target="other", name="other", container_id="ab" * 32))
    sink.write([Sample("cpu.usage_seconds", other, 11 * S, 9.0)])
    sink.member_ended("base#1")
    sink.write(_tick(11.0, 2.0))  # a late sample of the ended one is ignored
    _, values = _parse(exposition(sink))
    assert not [k for k in values if ("target", "base#1") in k[1]]
    assert _one(values, "container_cpu_usage_seconds_total")[0]["name"] == "other"
    assert _one(values, "DCGM_FI_DEV_GPU_UTIL")[1] == 37.0  # device-wide series stay
    sink.member_started(_member())
    sink.write(_tick(12.0, 0.5))  # restarted: a new counter from its new origin
    _, values = _parse(exposition(sink))
    assert _one(values, "container_cpu_usage_seconds_total", target="base#1")[1] == 0.5


def test_an_exited_process_disappears_after_stale_after_s() -> None:
    s = PrometheusSink(stale_after_s=2.0)
    s.describe(_specs())
    s.member_started(_member())
    s.write(_tick(10.0, 1.0))
    for t in (11.0, 12.0, 13.0):  # pid 41 has exited; the container goes on
        s.write([Sample("cpu.usage_seconds", T, int(t * S), t)])
    _, values = _parse(exposition(s))
    assert not [k for k in values if ("pid", "41") in k[1]]
    assert _one(values, "container_cpu_usage_seconds_total")[1] == 13.0


def test_no_cpu_limit_means_no_quota_and_no_throttling_series() -> None:
    s = PrometheusSink()
    s.describe(_specs())
    s.member_started(_member(limits={}))
    s.write([Sample("cpu.throttled_seconds", T, S, 0.0), Sample("cpu.usage_seconds", T, S, 1.0)])
    _, values = _parse(exposition(s))
    names = {k[0] for k in values}
    assert "container_spec_cpu_quota" not in names
    assert "container_cpu_cfs_throttled_seconds_total" not in names
    assert _one(values, "container_spec_memory_limit_bytes")[1] == 0.0  # cAdvisor: unlimited


def test_through_a_tee_as_run_uses_it(sink: PrometheusSink) -> None:
    from edgeprof.sinks import LatestValues

    s = PrometheusSink()
    tee = Tee(LatestValues(), s)
    tee.describe(_specs())
    tee.member_started(_member())
    tee.write(_tick(1.0, 0.25))
    _, values = _parse(exposition(s))
    assert _one(values, "container_cpu_usage_seconds_total")[1] == 0.25
    tee.member_ended("base#1")
    _, values = _parse(exposition(s))
    assert not [k for k in values if k[0].startswith("container_")]


@pytest.mark.parametrize(
    ("metric", "unit", "name", "scale"),
    [
        ("host.memory.used_bytes", "B", "edgeprof_host_memory_used_bytes", 1.0),
        ("jetson.cpu.freq_hz", "Hz", "edgeprof_jetson_cpu_freq_hertz", 1.0),
        ("jetson.power.current_watts", "W", "edgeprof_jetson_power_current_watts", 1.0),
        ("jetson.temperature_celsius", "degC", "edgeprof_jetson_temperature_celsius", 1.0),
        ("jetson.emc.utilization_percent", "%", "edgeprof_jetson_emc_utilization_percent", 1.0),
        ("app.latency", "ms", "edgeprof_app_latency_seconds", 1e-3),
        ("app.latency_ms", "ms", "edgeprof_app_latency_seconds", 1e-3),
        ("app.queue-depth", "1", "edgeprof_app_queue_depth", 1.0),
        ("process.cpu.usage_seconds", "s", "edgeprof_process_cpu_usage_seconds", 1.0),
    ],
)
def test_edgeprof_name(metric: str, unit: str, name: str, scale: float) -> None:
    assert edgeprof_name(metric, unit) == (name, scale)


def test_jetson_series_are_named_and_labelled() -> None:
    s = PrometheusSink()
    s.describe(TEGRASTATS_METRICS)
    s.write(
        [
            Sample("jetson.power.current_watts", labels_of(rail="VDD_GPU_SOC"), S, 3.25),
            Sample("gpu.utilization_percent", labels_of(source="tegrastats"), S, 61.0),
            Sample("gpu.freq_hz", (), S, 918_000_000.0),
        ]
    )
    _, values = _parse(exposition(s))
    assert _one(values, "edgeprof_jetson_power_current_watts") == ({"rail": "VDD_GPU_SOC"}, 3.25)
    assert _one(values, "DCGM_FI_DEV_GPU_UTIL") == ({"source": "tegrastats"}, 61.0)
    assert _one(values, "edgeprof_gpu_freq_hertz") == ({}, 918_000_000.0)


# -- addresses and the server --------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("9464", "127.0.0.1", 9464),
        ("0", "127.0.0.1", 0),
        ("127.0.0.1:9100", "127.0.0.1", 9100),
        ("0.0.0.0:9464", "0.0.0.0", 9464),
        ("localhost", "localhost", 9464),
        ("[::1]:9464", "::1", 9464),
        ("[::1]", "::1", 9464),
        ("::1", "::1", 9464),
    ],
)
def test_parse_address(text: str, host: str, port: int) -> None:
    assert parse_address(text) == ListenAddress(host, port)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (":9464", "names no host; write 127.0.0.1:9464"),
        ("127.0.0.1:99999", "'99999' is not a port"),
        ("127.0.0.1:http", "'http' is not a port"),
        ("[::1", "not a valid address"),
        ("", "needs an address"),
    ],
)
def test_bad_addresses_are_one_sentence(text: str, says: str) -> None:
    with pytest.raises(UserError) as e:
        parse_address(text)
    assert says in str(e.value) and "\n" not in str(e.value)


@pytest.fixture
def served() -> Iterator[tuple[Any, PrometheusSink]]:
    sink = PrometheusSink()
    sink.describe(_specs())
    sink.member_started(_member())
    sink.write(_tick(5.0, 0.5))
    exp = serve("127.0.0.1:0", sink)
    try:
        yield exp, sink
    finally:
        exp.close()


def test_served_over_http_and_the_port_is_free_after_close(
    served: tuple[Any, PrometheusSink],
) -> None:
    exp, sink = served
    assert exp.port > 0 and exp.url == f"http://127.0.0.1:{exp.port}/metrics"
    with urllib.request.urlopen(exp.url, timeout=5) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    _, values = _parse(text)
    assert _one(values, "container_cpu_usage_seconds_total")[1] == 0.5
    assert not [k for k in values if k[0].startswith(("python_", "process_"))]  # own registry
    sink.write(_tick(6.0, 0.75))  # a later scrape sees the newer value
    with urllib.request.urlopen(exp.url, timeout=5) as r:
        _, values = _parse(r.read().decode())
    assert _one(values, "container_cpu_usage_seconds_total")[1] == 0.75
    port = exp.port
    exp.close()
    exp.close()  # idempotent
    again = serve(f"127.0.0.1:{port}")  # the port is free again (for the next run)
    again.close()
    with socket.socket() as nothing:  # and nothing answers there any more
        assert nothing.connect_ex(("127.0.0.1", port)) != 0


def test_a_busy_port_is_one_sentence(served: tuple[Any, PrometheusSink]) -> None:
    exp, _ = served
    with pytest.raises(UserError) as e:
        serve(f"127.0.0.1:{exp.port}")
    msg = str(e.value)
    assert f"port {exp.port} is already in use on 127.0.0.1" in msg and "\n" not in msg


def test_an_address_not_on_this_machine_is_one_sentence() -> None:
    with pytest.raises(UserError) as e:
        serve("192.0.2.1:9464")  # TEST-NET-1: never assigned to a host
    assert "192.0.2.1 is not an address of this machine" in str(e.value)


def test_run_with_a_busy_port_exits_2_before_starting_anything(tmp_path: Path) -> None:
    """The spec is valid and no engine is reachable: the busy port is what stops it."""
    spec = tmp_path / "sage.yaml"
    spec.write_text(
        "name: p\nimage: edgeprof-test/busybox:latest\nprofiling:\n  targets:\n"
        "    - {name: t, args: ['true']}\n"
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = subprocess.run(
            [sys.executable, "-m", "edgeprof.cli.main", "run", str(spec), "--prometheus",
             f"127.0.0.1:{port}", "--db", f"sqlite:///{tmp_path / 'x.db'}"],
            capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": "unix:///nonexistent.sock",
                 "HOME": str(tmp_path)},
        )  # fmt: skip
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines == [
        f"edgeprof: error: --prometheus 127.0.0.1:{port}: port {port} is already in use on "
        "127.0.0.1; stop what listens there or choose another port"
    ]
    assert not (tmp_path / "x.db").exists()  # nothing was opened
