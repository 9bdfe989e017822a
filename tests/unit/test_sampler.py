"""The sampler: rates derived once from counters, failing collectors isolated, timing."""

from __future__ import annotations

import threading
import time

import pytest

from edgeprof.collect.base import BaseCollector, CollectContext, Collector
from edgeprof.model import Clock, Event, Labels, MetricSpec, Sample, labels_of
from edgeprof.sampler import Sampler
from edgeprof.sinks import LatestValues, Tee

LAB = labels_of(target="t1")


class FakeCollector(BaseCollector):
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
                "cpu.usage_seconds",
                "s",
                "counter",
                rate_name="cpu.percent",
                rate_scale=100.0,
                rate_unit="%",
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


class ListSink:
    def __init__(self) -> None:
        self.batches: list[list[Sample]] = []
        self.described: dict[str, MetricSpec] = {}
        self.events: list[Event] = []

    def describe(self, specs) -> None:  # type: ignore[no-untyped-def]
        for m in specs:
            self.described[m.name] = m

    def write(self, batch) -> None:  # type: ignore[no-untyped-def]
        self.batches.append(list(batch))

    def event(self, ev: Event) -> None:
        self.events.append(ev)


def _sampler(collectors: list, **kw) -> tuple[Sampler, list[list[Sample]]]:
    sink = ListSink()
    s = Sampler(collectors, kw.pop("interval_s", 1.0), Clock(), sink, **kw)
    return s, sink.batches


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


class Burst(BaseCollector):
    """An app total that arrives several times per tick, with the app's own timestamps."""

    group = "app"

    def __init__(self, per_tick: list[list[tuple[int, float]]]) -> None:
        self.per_tick = per_tick

    def metrics(self) -> list[MetricSpec]:
        return [MetricSpec("app.frames", "", "total")]

    def open(self, ctx: CollectContext) -> None:
        pass

    def sample(self, now_ns: int) -> list[Sample]:
        got = self.per_tick.pop(0) if self.per_tick else []
        return [Sample("app.frames", LAB, t, v) for t, v in got]

    def close(self) -> None:
        pass


def test_one_rate_per_series_and_tick_from_its_newest_sample() -> None:
    sec = 1_000_000_000
    s, _ = _sampler(
        [Burst([[(sec, 0.0)], [(sec + sec // 4, 5.0), (sec + sec // 2, 8.0), (2 * sec, 20.0)]])]
    )
    s.tick(sec)
    out = s.tick(2 * sec)
    assert len([x for x in out if x.metric == "app.frames"]) == 3  # every sample is kept
    (rate,) = [x for x in out if x.metric != "app.frames"]
    # over the newest window of at least half the interval: 8 → 20 in the last 0.5 s
    assert rate.t_ns == 2 * sec and rate.value == pytest.approx(24.0)


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


# --- what the sink learns ------------------------------------------------------------------


def test_sink_learns_units_and_kinds_before_samples() -> None:
    sink = ListSink()
    Sampler([FakeCollector()], 1.0, Clock(), sink)
    d = sink.described
    assert d["cpu.usage_seconds"].kind == "counter" and d["cpu.usage_seconds"].unit == "s"
    assert d["cpu.percent"].unit == "%" and d["cpu.percent"].kind == "gauge"
    assert d["io.read_bytes_per_second"].unit == "B/s"


class Dynamic(BaseCollector):
    """Metrics that appear at run time (like app metrics)."""

    group = "app"
    dynamic_metrics = True

    def __init__(self) -> None:
        self.names: list[str] = []

    @property
    def metrics_version(self) -> int:
        return len(self.names)

    def metrics(self) -> list[MetricSpec]:
        return [MetricSpec(n, "ms") for n in self.names]

    def open(self, ctx: CollectContext) -> None:
        pass

    def sample(self, now_ns: int) -> list[Sample]:
        self.names.append(f"app.m{len(self.names)}")
        return [Sample(self.names[-1], (), now_ns, 1.0)]


def test_dynamic_metrics_are_described_as_they_appear() -> None:
    sink = ListSink()
    s = Sampler([Dynamic()], 1.0, Clock(), sink)
    s.tick(1)
    s.tick(2)
    assert set(sink.described) == {"app.m0", "app.m1"}


def test_latest_values_are_per_series_with_any_labels() -> None:
    latest = LatestValues()
    sink = ListSink()
    a = FakeCollector([0.0, 1.0], labels=labels_of(target="a", container="x"))
    b = FakeCollector([0.0, 0.5], labels=labels_of(target="b"))
    s = Sampler([a, b], 1.0, Clock(), Tee(sink, latest))
    for t in (1_000_000_000, 2_000_000_000):
        s.sink.write(s.tick(t))
    assert latest.for_labels(labels_of(target="a", container="x"))["cpu.percent"] == pytest.approx(
        100.0
    )
    assert latest.for_labels(labels_of(target="b"))["cpu.percent"] == pytest.approx(50.0)
    snap = latest.snapshot()
    snap.clear()  # a copy: the sink's own state is untouched
    assert latest.for_labels(labels_of(target="b"))


# --- rates that never exceed what the hardware can do --------------------------------------


class Jiffies(BaseCollector):
    """A busy CPU read through a counter that advances in 10 ms steps (like /proc/stat)."""

    group = "system"

    def __init__(self, busy_cores: float, ncpu: int = 2) -> None:
        self.busy = busy_cores
        self.ncpu = ncpu

    def metrics(self) -> list[MetricSpec]:
        return [
            MetricSpec(
                "host.cpu.busy_seconds",
                "s",
                "counter",
                rate_name="host.cpu.percent",
                rate_scale=100.0,
                rate_unit="%",
                granularity_s=0.01,
                rate_max=100.0 * self.ncpu,
            )
        ]

    def open(self, ctx: CollectContext) -> None:
        pass

    def sample(self, now_ns: int) -> list[Sample]:
        # each of the busy cores is charged whole 10 ms jiffies, at its own phase
        total = 0
        for core in range(self.ncpu):
            load = min(1.0, max(0.0, self.busy - core))
            total += int((now_ns / 1e9 * load + core * 0.0037) / 0.01)
        return [Sample("host.cpu.busy_seconds", (), now_ns, total * 0.01)]


@pytest.mark.parametrize("busy", [0.5, 1.0, 2.0])
def test_jiffy_counter_at_10ms_never_reads_impossible_values(busy: float) -> None:
    col = Jiffies(busy)
    s, _ = _sampler([col], interval_s=0.01)
    rates = []
    for k in range(1, 1000):
        t = 1_000_000_000 + k * 10_000_000 + (k * 7919 % 1000) * 1000  # a little jitter
        rates += [x.value for x in s.tick(t) if x.metric == "host.cpu.percent"]
    assert rates, "no rate derived"
    assert max(rates) <= 200.0  # 2 CPUs: never 300 % or 400 %
    assert min(rates) >= 0.0
    mean = sum(rates) / len(rates)
    assert mean == pytest.approx(busy * 100, abs=3.0)
    # one tick of 10 ms would read 0, 100, 200, 300 %; a 100 ms window is within 10 points
    assert max(abs(r - busy * 100) for r in rates) <= 21.0 if busy < 2 else True
    assert s.rate_windows() == {"host.cpu.percent": {"granularity_s": 0.01, "window_s": 0.1}}


def test_window_is_the_interval_when_the_counter_is_fine_enough() -> None:
    col = Jiffies(1.0)
    s, _ = _sampler([col], interval_s=1.0)
    assert s.rate_windows() == {}
    s.tick(1_000_000_000)
    (r,) = [x for x in s.tick(2_000_000_000) if x.metric == "host.cpu.percent"]
    assert r.value == pytest.approx(100.0, abs=1.0)


class Totals(BaseCollector):
    group = "app"

    def __init__(self, values: list[float]) -> None:
        self.values = values

    def metrics(self) -> list[MetricSpec]:
        return [MetricSpec("app.x.total", "1", "total")]

    def open(self, ctx: CollectContext) -> None:
        pass

    def sample(self, now_ns: int) -> list[Sample]:
        return [Sample("app.x.total", (), now_ns, self.values.pop(0))]


def test_running_total_may_go_down_without_a_reset() -> None:
    s, _ = _sampler([Totals([10.0, 7.0, 9.0])])
    s.tick(1_000_000_000)
    (down,) = [x for x in s.tick(2_000_000_000) if x.metric == "app.x.total_per_second"]
    assert down.value == pytest.approx(-3.0)
    (up,) = [x for x in s.tick(3_000_000_000) if x.metric == "app.x.total_per_second"]
    assert up.value == pytest.approx(2.0)


def test_collectors_added_while_running_are_sampled() -> None:
    s, batches = _sampler([], interval_s=0.02)
    s.start()
    late: Collector = FakeCollector()
    s.add([late])
    deadline = time.monotonic() + 2
    while not any(b for b in batches) and time.monotonic() < deadline:
        time.sleep(0.01)
    s.remove([late])
    s.stop(final_sample=False)
    assert any(x.metric == "cpu.usage_seconds" for b in batches for x in b)


class Scripted(BaseCollector):
    """Emits, at each tick, the samples of a script (any series, times and values)."""

    group = "app"

    def __init__(self, specs: list[MetricSpec], per_tick: list[list[Sample]]) -> None:
        self.specs = specs
        self.per_tick = per_tick

    def metrics(self) -> list[MetricSpec]:
        return self.specs

    def open(self, ctx: CollectContext) -> None:
        pass

    def sample(self, now_ns: int) -> list[Sample]:
        return self.per_tick.pop(0) if self.per_tick else []

    def close(self) -> None:
        pass


def _reference_rates(
    specs: dict[str, MetricSpec], interval_s: float, ticks: list[list[Sample]]
) -> list[list[Sample]]:
    """The rates each tick must add, by the rule written out plainly: per series, the rate
    from the newest earlier sample at least (window − interval/2) old, where the window is
    the interval or ten steps of the counter's granularity; a counter's drop clears its
    history, a sample not newer than the last one is skipped; one rate per series and
    tick (the last one computed), in the order the series first got one in that tick."""
    hist: dict[tuple[str, Labels], list[tuple[int, float]]] = {}
    out = []
    for batch in ticks:
        derived: dict[tuple[str, Labels], Sample] = {}
        for metric, labels, t, v in batch:
            m = specs.get(metric)
            if m is None or m.kind not in ("counter", "total"):
                continue
            window = max(interval_s, 10 * (m.granularity_s or 0))
            min_age = int((window - interval_s / 2) * 1e9)
            h = hist.setdefault((metric, labels), [])
            if h and t <= h[-1][0]:
                continue
            if h and m.kind == "counter" and v < h[-1][1]:
                h.clear()
            h.append((t, v))
            old = [x for x in h[:-1] if t - x[0] >= min_age]
            if old:
                del h[: h.index(old[-1])]
                t0, v0 = old[-1]
                rate = (v - v0) * 1e9 / (t - t0) * m.rate_scale
                if m.rate_max is not None:
                    rate = min(rate, m.rate_max)
                derived[(metric, labels)] = Sample(m.rate_metric, labels, t, rate)
        out.append(list(derived.values()))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_rates_match_the_rule_on_random_bursty_input(seed: int) -> None:
    """Random series (several label sets, counters and totals, duplicates and bursts in one
    tick, resets, out-of-order and equal times, granularities longer than the interval)
    give exactly the rates the plain rule gives."""
    import random

    rnd = random.Random(seed)
    interval = rnd.choice([0.01, 0.1, 1.0])
    specs = [
        MetricSpec("c.fast", "s", "counter", rate_scale=100.0, rate_max=150.0),
        MetricSpec("c.coarse", "1", "counter", granularity_s=interval * rnd.choice([0.5, 3])),
        MetricSpec("t.total", "1", "total"),
        MetricSpec("g.gauge", "1", "gauge"),
    ]
    by_name = {m.name: m for m in specs}
    labelsets = [labels_of(target=f"t{i}") for i in range(3)] + [()]
    step = int(interval * 1e9)
    last: dict[tuple[str, Labels], float] = {}
    ticks: list[list[Sample]] = []
    for k in range(60):
        now = (k + 1) * step + rnd.randint(-step // 3, step // 3)
        batch = []
        for _ in range(rnd.randint(0, 9)):
            m = rnd.choice(specs)
            lab = rnd.choice(labelsets)
            prev = last.get((m.name, lab), 0.0)
            v = 0.0 if rnd.random() < 0.05 else prev + rnd.choice([0, 0, 1, 2.5, 40])
            if m.kind == "total" and rnd.random() < 0.1:
                v = prev - 1  # a total may go down
            last[(m.name, lab)] = v
            t = now + rnd.choice([0, 0, 0, -step // 2, -step, step // 5])
            batch.append(Sample(m.name, lab, t, v))
        ticks.append(batch)
    want = _reference_rates(by_name, interval, ticks)
    s, _ = _sampler([Scripted(specs, [list(b) for b in ticks])], interval_s=interval)
    for k, batch in enumerate(ticks):
        got = s.tick((k + 1) * step)
        assert got[: len(batch)] == batch  # the samples themselves, as they came
        assert got[len(batch) :] == want[k], f"tick {k}"


class Foreign(BaseCollector):
    """A collector of the library's user (not edgeprof's module): some samples are bad."""

    group = "container"

    def __init__(self, script: list[list[Sample]]) -> None:
        self.script = script
        self.calls = 0

    def metrics(self) -> list[MetricSpec]:
        return [MetricSpec("frames", "1", "counter"), MetricSpec("temp", "C")]

    def open(self, ctx: CollectContext) -> None:
        pass

    def sample(self, now_ns: int) -> list[Sample]:
        self.calls += 1
        return self.script.pop(0) if self.script else []

    def close(self) -> None:
        pass


def test_a_foreign_collectors_bad_samples_are_left_out_and_sampling_goes_on() -> None:
    """None, text and a bad time never reach the rates or the sink; a float time is rounded;
    one event per metric; the next ticks (and edgeprof's own collectors) go on."""
    s = 10**9
    script = [
        [Sample("frames", LAB, 1 * s, 1.0), Sample("temp", LAB, 1 * s, 20.0)],
        [Sample("frames", LAB, 2 * s, None), Sample("temp", LAB, 2 * s, "hot")],  # type: ignore[arg-type]
        [Sample("frames", LAB, 3.0e9, 3.0), ("temp", [("target", "t1")], 3 * s, 21.0)],  # type: ignore[list-item]
        [Sample("frames", LAB, None, 4.0), "garbage"],  # type: ignore[arg-type, list-item]
        [Sample("frames", LAB, 5 * s, 5.0), Sample("temp", LAB, 5 * s, 22)],
    ]
    foreign = Foreign(script)
    own = FakeCollector(labels=labels_of(target="t2"))
    sink = ListSink()
    sampler = Sampler([foreign, own], 1.0, Clock(), sink)
    batches = [sampler.tick((k + 1) * s) for k in range(5)]
    got = [(x.metric, x.t_ns, x.value) for b in batches for x in b if x.labels == LAB]
    assert got == [
        ("frames", 1 * s, 1.0),
        ("temp", 1 * s, 20.0),
        ("frames", 3 * s, 3.0),
        ("frames_per_second", 3 * s, 1.0),  # over 2 s: the None left no gap
        ("frames", 5 * s, 5.0),
        ("temp", 5 * s, 22.0),
        ("frames_per_second", 5 * s, 1.0),
    ]
    assert all(type(x.t_ns) is int and type(x.value) is float for b in batches for x in b)
    assert sampler.rejected == {"frames": 2, "temp": 2, "?": 1}
    ev = [(e.data["metric"], e.data["reason"]) for e in sink.events if e.kind == "samples_rejected"]
    assert ev == [
        ("frames", "value None is not a number"),
        ("temp", "value 'hot' is not a number"),
        ("?", "'garbage' is not a (metric, labels, time, value) sample"),
    ]
    assert sum(1 for b in batches for x in b if x.metric == "cpu.percent") == 4


def test_foreign_samples_numpy_decimal_huge_and_bad_labels() -> None:
    """numpy times and values, Decimal and bool values are kept as int/float; a value too
    big for a float and labels that are not (str, str) pairs are left out; the run gets
    one closing event with every count."""
    from decimal import Decimal

    import numpy as np

    s = 10**9
    script = [
        [
            Sample("temp", LAB, np.int64(1 * s), np.float32(20.5)),
            Sample("temp", LAB, 2 * s, Decimal("21.25")),
            Sample("ok", LAB, 2 * s, True),
            Sample("temp", LAB, 3 * s, 10**400),
            Sample("temp", (("target",),), 4 * s, 1.0),  # type: ignore[arg-type]
            Sample("temp", LAB, "5", 1.0),  # type: ignore[arg-type]
        ]
    ]
    sink = ListSink()
    sampler = Sampler([Foreign(script)], 60.0, Clock(), sink)
    sampler.start()
    time.sleep(0.2)
    sampler.stop(final_sample=True)
    got = [(x.metric, x.t_ns, x.value) for b in sink.batches for x in b]
    assert got == [("temp", 1 * s, 20.5), ("temp", 2 * s, 21.25), ("ok", 2 * s, 1.0)]
    assert all(type(x.t_ns) is int and type(x.value) is float for b in sink.batches for x in b)
    rejected = [e for e in sink.events if e.kind == "samples_rejected"]
    (first,) = [e.data["reason"] for e in rejected[:-1]]  # one per metric: temp's first
    assert first.startswith("value 1000") and first.endswith("… is not a number")
    assert rejected[-1].data == {"counts": {"temp": 3}}
    assert rejected[-1].message.startswith("3 samples of collectors outside edgeprof")


def test_a_failing_tick_is_reported_and_sampling_goes_on() -> None:
    """A tick that raises outside any collector (here the sink refuses two batches) loses
    only its own samples: the thread goes on, one event at once, the count at the end."""

    class Refuses(ListSink):
        refused = 0

        def write(self, batch) -> None:  # type: ignore[no-untyped-def]
            if self.refused < 2:
                self.refused += 1
                raise RuntimeError("disk full")
            super().write(batch)

    sink = Refuses()
    sampler = Sampler([FakeCollector()], 0.02, Clock(), sink)
    sampler.start()
    time.sleep(0.3)
    sampler.stop(final_sample=False)
    assert sampler.failed_ticks == 2
    assert len(sink.batches) >= 5  # the ticks after the failures were written
    failed = [e for e in sink.events if e.kind == "collector_failed"]
    assert len(failed) == 2
    assert "RuntimeError: disk full" in failed[0].message
    assert failed[1].data == {"failed_ticks": 2}
