"""A contract every collector keeps: each metric it emits is declared by its ``metrics()``,
with a unit from the one vocabulary (``model.UNITS``) and a kind the store understands; the
registry offers every group the spec accepts."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from nvml_stand_in import StandInNvml

from edgeprof.analyze.budgets import metric_catalog
from edgeprof.cgroups import find_cgroup
from edgeprof.collect.app.aggregate import Aggregator
from edgeprof.collect.app.wire import parse_datagram
from edgeprof.collect.base import BaseCollector, CollectContext, Collector
from edgeprof.collect.cgroup import CgroupCollector, NetCollector
from edgeprof.collect.enginestats import EngineStatsCollector
from edgeprof.collect.gpu.jetson import JetsonGpuLoadCollector
from edgeprof.collect.gpu.nvmap import JetsonGpuProcessCollector, NvmapProcessCollector
from edgeprof.collect.gpu.nvml import NvmlProcessCollector, NvmlSummaryCollector
from edgeprof.collect.gpu.tegrastats import TEGRASTATS_METRICS, parse_line
from edgeprof.collect.host import HostCollector
from edgeprof.collect.procs import ProcessCollector
from edgeprof.collect.registry import GROUPS, KNOWN_GROUPS
from edgeprof.engine.base import ContainerRequest
from edgeprof.engine.fake import FakeEngine, Script
from edgeprof.model import UNITS, Clock, MetricSpec, Sample, labels_of
from edgeprof.sampler import Sampler
from edgeprof.spec import Profiling

DATA = Path(__file__).resolve().parent.parent / "data"
LAB = labels_of(target="t1")


def _check(c: Collector, samples: list[Sample]) -> None:
    specs = {m.name: m for m in c.metrics()}
    assert samples, f"{type(c).__name__} emitted nothing"
    catalog = metric_catalog()  # what budgets and compare accept as metric names
    for m in specs.values():
        if not m.name.startswith("app."):  # the app's own names are known only at run time
            assert m.name in catalog, f"{m.name} is missing from budgets.metric_catalog()"
            assert catalog[m.name].unit == m.unit, m.name
        assert m.unit in UNITS, (type(c).__name__, m.name, m.unit)
        assert m.kind in ("gauge", "counter", "total")
        if m.kind != "gauge":
            assert m.rate_spec().unit in UNITS, (m.name, m.rate_spec().unit)
    for s in samples:
        assert s.metric in specs, f"{type(c).__name__} emits undeclared {s.metric}"
        assert isinstance(s.value, int | float) and isinstance(s.t_ns, int)


def _sample(c: Collector, ctx: CollectContext, n: int = 2) -> list[Sample]:
    c.open(ctx)
    try:
        out: list[Sample] = []
        for _ in range(n):
            out += c.sample(time.time_ns())
            time.sleep(0.02)
        return out
    finally:
        c.close()


def test_cgroup_net_host_process_collectors() -> None:
    v1 = DATA / "cgroup" / "v1"
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        proc = Path(tmp) / "proc"
        shutil.copytree(v1 / "proc", proc)
        (proc / "self" / "mountinfo").write_text(
            (v1 / "proc" / "self" / "mountinfo")
            .read_text()
            .replace("/sys/fs/cgroup", str(v1 / "sys/fs/cgroup"))
        )
        cg = find_cgroup(31232, proc_root=str(proc))
        for c in (CgroupCollector(0.004, 200.0), NetCollector()):
            _check(
                c,
                _sample(
                    c,
                    CollectContext(
                        target="t1", labels=LAB, pid=31232, cgroup=cg, proc_root=str(proc)
                    ),
                ),
            )
    host = HostCollector(200.0)
    _check(host, _sample(host, CollectContext()))
    me = find_cgroup(os.getpid())
    procs = ProcessCollector(200.0)
    _check(procs, _sample(procs, CollectContext(target="t1", labels=LAB, cgroup=me)))


def test_engine_stats_collector() -> None:
    engine = FakeEngine({"t1": Script(run_s=None)})
    h = engine.start(ContainerRequest("fake:latest", "c", [], labels={"edgeprof.target": "t1"}))
    c = EngineStatsCollector(200.0)
    ctx = CollectContext(target="t1", labels=LAB, engine=engine, container_id=h.container_id)
    c.open(ctx)
    out: list[Sample] = []
    deadline = time.monotonic() + 3
    while not out and time.monotonic() < deadline:
        time.sleep(0.05)
        out += c.sample(time.time_ns())
    c.close()
    engine.remove(h)
    _check(c, out)


def test_nvml_collectors() -> None:
    for c in (NvmlSummaryCollector(nvml=StandInNvml()), NvmlProcessCollector(nvml=StandInNvml())):
        _check(c, _sample(c, CollectContext(target="t1", labels=LAB, pid=4242)))


def test_tegrastats_and_jetson_sysfs() -> None:
    declared = {m.name: m for m in TEGRASTATS_METRICS}
    for line in (DATA / "tegrastats" / "samples.txt").read_text().splitlines():
        for metric, _, _ in parse_line(line).values:
            assert metric in declared, metric
    assert all(m.unit in UNITS for m in declared.values())
    c = JetsonGpuLoadCollector()
    _check(c, _sample(c, CollectContext(sys_root=str(DATA / "jetson-root" / "sys"))))


def test_nvmap_collectors(tmp_path: Path) -> None:
    sys_root = tmp_path / "sys"
    clients = sys_root / "kernel/debug/nvmap/iovmm/clients"
    clients.parent.mkdir(parents=True)
    clients.write_text((DATA / "jetson-nvmap" / "clients-gimbal.txt").read_text())
    (tmp_path / "meminfo").write_text("NvMapMemUsed:     141896 kB\n")
    ctx = CollectContext(
        target="t1", labels=LAB, pid=4481, sys_root=str(sys_root), proc_root=str(tmp_path)
    )
    for c in (NvmapProcessCollector(), JetsonGpuProcessCollector(nvml=StandInNvml())):
        _check(c, _sample(c, ctx))


class _AggregatorAsCollector(BaseCollector):
    group = "app"

    def __init__(self, agg: Aggregator) -> None:
        self.agg = agg

    def metrics(self) -> list[MetricSpec]:
        return self.agg.metrics()

    def open(self, ctx: CollectContext) -> None:
        pass

    def sample(self, now_ns: int) -> list[Sample]:
        return self.agg.take()[0]


def test_app_metrics_declare_what_they_emit() -> None:
    agg = Aggregator(LAB, "t1")
    data = (
        b"fps:29.7|g\nframes:1|c|#cam:a\ninfer:12|ms\nusers:x|s\nq:+2|g\n"
        + b'{"name":"j","value":1}'
    )
    agg.ingest(*parse_datagram(data, time.time_ns()))
    _check(_AggregatorAsCollector(agg), agg.take()[0] or [Sample("app.fps", LAB, 1, 1.0)])


def test_sampler_describes_every_rate_it_derives() -> None:
    class Sink:
        def __init__(self) -> None:
            self.described: set[str] = set()
            self.seen: set[str] = set()

        def describe(self, specs: list[MetricSpec]) -> None:
            self.described |= {m.name for m in specs}

        def write(self, batch: list[Sample]) -> None:
            self.seen |= {s.metric for s in batch}

        def event(self, ev: object) -> None:
            pass

    sink = Sink()
    host = HostCollector(200.0)
    host.open(CollectContext())
    s = Sampler([host], 0.05, Clock(), sink)
    for _ in range(4):
        sink.write(s.tick(time.time_ns()))
        time.sleep(0.06)
    host.close()
    assert "host.cpu.percent" in sink.seen
    assert sink.seen <= sink.described


def test_registry_is_the_one_list_of_groups() -> None:
    assert set(KNOWN_GROUPS) == set(GROUPS)
    for name, g in GROUPS.items():
        assert g.description and g.scope in ("container", "host")
        Profiling(targets=[{"args": "x"}], metrics=[name])  # the spec accepts every group
    with pytest.raises(ValueError, match="unknown metric group"):
        Profiling(targets=[{"args": "x"}], metrics=["gpu-sumary"])
    with pytest.raises(ValueError, match="turns off socket and pywaggle"):
        Profiling(
            targets=[{"args": "x"}],
            metrics=["app"],
            app_metrics={"socket": False, "pywaggle": False},
        )
