"""The sampler: rates derived once from counters, failing collectors isolated, timing."""

from __future__ import annotations

import threading
import time

import pytest

from edgeprof.collect.base import CollectContext
from edgeprof.model import Clock, Labels, MetricSpec, Sample, labels_of
from edgeprof.sampler import Sampler

LAB = labels_of(target="t1")


class FakeCollector:
    """Emits a counter (cpu.usage_seconds), a plain counter and a gauge from a script."""

    group = "container"

    def __init__(self, values: list[float] | None = None, labels: Labels = LAB) -> None:
        self.values = list(values or [])
        self.labels = labels
        self.calls = 0
        self.lock = threading.Lock()

    def metrics(self) -> list[MetricSpec]:
        return [
            MetricSpec(
                "cpu.usage_seconds", "s", "counter", rate_name="cpu.percent", rate_scale=100.0
            ),
            MetricSpec("io.read_bytes", "B", "counter"),
            MetricSpec("memory.usage_bytes", "B", "gauge"),
        ]

    def open(self, ctx: CollectContext) -> None:
        pass

    def sample(self, now_ns: int) -> list[Sample]:
        with self.lock:
            i = self.calls
            self.calls += 1
        v = self.values[i] if i < len(self.values) else float(i)
        return [
            Sample("cpu.usage_seconds", self.labels, now_ns, v),
            Sample("io.read_bytes", self.labels, now_ns, v * 1000),
            Sample("memory.usage_bytes", self.labels, now_ns, 42.0),
        ]

    def close(self) -> None:
        pass


class Broken(FakeCollector):
    def sample(self, now_ns: int) -> list[Sample]:
        raise RuntimeError("boom")


def _by_metric(batch: list[Sample]) -> dict[str, Sample]:
    return {s.metric: s for s in batch}


def _sampler(collectors: list, **kw) -> tuple[Sampler, list[list[Sample]]]:
    batches: list[list[Sample]] = []
    return Sampler(collectors, kw.pop("interval_s", 1.0), Clock(), batches.append, **kw), batches


def test_tick_derives_rates_with_rate_name_and_scale() -> None:
    s, _ = _sampler([FakeCollector([10.0, 10.5, 11.5])])
    first = _by_metric(s.tick(1_000_000_000))
    assert set(first) == {"cpu.usage_seconds", "io.read_bytes", "memory.usage_bytes"}
    second = _by_metric(s.tick(2_000_000_000))  # +0.5 CPU-s in 1 s
    assert second["cpu.percent"].value == pytest.approx(50.0)
    assert second["cpu.percent"].labels == LAB
    assert second["cpu.percent"].t_ns == 2_000_000_000
    assert second["io.read_bytes_per_second"].value == pytest.approx(500.0)
    assert "memory.usage_bytes_per_second" not in second  # gauges get no rate
    third = _by_metric(s.tick(2_500_000_000))  # +1.0 CPU-s in 0.5 s = 2 cores
    assert third["cpu.percent"].value == pytest.approx(200.0)
    assert s.latest["cpu.percent"] == pytest.approx(200.0)
    assert s.latest["memory.usage_bytes"] == 42.0


def test_no_rate_on_counter_reset_then_resumes() -> None:
    s, _ = _sampler([FakeCollector([5.0, 1.0, 2.0])])
    s.tick(1_000_000_000)
    reset = _by_metric(s.tick(2_000_000_000))
    assert "cpu.percent" not in reset and "io.read_bytes_per_second" not in reset
    after = _by_metric(s.tick(3_000_000_000))
    assert after["cpu.percent"].value == pytest.approx(100.0)


def test_no_rate_when_time_does_not_advance() -> None:
    s, _ = _sampler([FakeCollector([1.0, 2.0])])
    s.tick(1_000_000_000)
    assert "cpu.percent" not in _by_metric(s.tick(1_000_000_000))


def test_rates_are_kept_per_series() -> None:
    a = FakeCollector([0.0, 1.0], labels=labels_of(target="a"))
    b = FakeCollector([0.0, 0.25], labels=labels_of(target="b"))
    s, _ = _sampler([a, b])
    s.tick(0 + 1)
    out = s.tick(1_000_000_001)
    rates = {x.labels: x.value for x in out if x.metric == "cpu.percent"}
    assert rates == {
        labels_of(target="a"): pytest.approx(100.0),
        labels_of(target="b"): pytest.approx(25.0),
    }


def test_failing_collector_reported_and_others_sampled() -> None:
    errors: list[tuple[object, BaseException]] = []
    broken = Broken()
    good = FakeCollector([1.0])
    s, _ = _sampler([broken, good], on_error=lambda c, e: errors.append((c, e)))
    out = s.tick(1)
    assert {x.metric for x in out} == {"cpu.usage_seconds", "io.read_bytes", "memory.usage_bytes"}
    assert len(errors) == 1
    assert errors[0][0] is broken and str(errors[0][1]) == "boom"
    # Without on_error the failure is swallowed too.
    s2, _ = _sampler([broken, FakeCollector([1.0])])
    assert len(s2.tick(1)) == 3


def test_run_50ms_for_half_a_second() -> None:
    col = FakeCollector()
    s, batches = _sampler([col], interval_s=0.05)
    s.start()
    time.sleep(0.5)
    s.stop(final_sample=False)
    t = s.timing()
    # ~11 ticks expected (t=0, 0.05, … 0.5); loose bounds for a loaded CI machine.
    assert 6 <= t.ticks <= 13
    assert len(batches) == t.ticks == col.calls
    assert t.interval_s == 0.05
    assert t.missed >= 0
    assert 0.03 <= t.period_p50_s <= 0.1
    assert t.period_p99_s >= t.period_p50_s
    assert t.period_max_dev_s >= 0
    assert t.lateness_p99_s >= 0
    assert 0.4 <= t.wall_seconds <= 2.0
    assert 0 <= t.cpu_seconds <= t.wall_seconds
    d = t.as_dict()
    assert set(d) == {
        "ticks",
        "missed",
        "interval_s",
        "period_p50_s",
        "period_p99_s",
        "period_max_dev_s",
        "lateness_p99_s",
        "cpu_seconds",
        "wall_seconds",
        "realtime",
    }
    assert t.realtime is False  # not asked for
    # Samples are timestamped in wall-clock ns and increase.
    ts = [b[0].t_ns for b in batches]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    assert abs(ts[0] / 1e9 - time.time()) < 60
    # From the second tick on, each batch carries the derived cpu.percent.
    assert all("cpu.percent" in _by_metric(b) for b in batches[1:])


def test_stop_with_final_sample_adds_one_batch() -> None:
    col = FakeCollector()
    s, batches = _sampler([col], interval_s=10.0)
    s.start()
    deadline = time.monotonic() + 2
    while not batches and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(batches) == 1  # the tick at t=0; the next one is 10 s away
    s.stop(final_sample=True)
    assert len(batches) == 2
    assert s.timing().ticks == 1  # the final sample is not a scheduled tick
    assert batches[1][0].t_ns >= batches[0][0].t_ns
    s.stop(final_sample=True)  # a second stop does nothing
    assert len(batches) == 2


def test_stop_without_final_sample() -> None:
    s, batches = _sampler([FakeCollector()], interval_s=10.0)
    s.start()
    deadline = time.monotonic() + 2
    while not batches and time.monotonic() < deadline:
        time.sleep(0.005)
    s.stop(final_sample=False)
    assert len(batches) == 1


def test_timing_before_start_is_empty() -> None:
    s, _ = _sampler([FakeCollector()], interval_s=0.1)
    t = s.timing()
    assert t.ticks == 0 and t.period_p50_s == 0.0 and t.period_max_dev_s == 0.0


def test_realtime_sampler_thread_when_allowed() -> None:
    import os

    s, _ = _sampler([FakeCollector()], interval_s=0.01)
    s.realtime = True
    seen: list[int] = []
    orig = s.tick

    def tick(now_ns: int) -> list[Sample]:
        if not seen:
            seen.append(os.sched_getscheduler(threading.get_native_id()))
        return orig(now_ns)

    s.tick = tick  # type: ignore[method-assign]
    s.start()
    time.sleep(0.1)
    s.stop(final_sample=False)
    if s.realtime_error is not None:  # no CAP_SYS_NICE: the normal scheduler is kept, and said so
        assert s.timing().realtime is False and seen == [os.SCHED_OTHER]
    else:
        assert s.timing().realtime is True and seen == [os.SCHED_FIFO]
