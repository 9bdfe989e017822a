"""The timing loop: calls every collector at each tick, timestamps, derives counter rates.

Ticks are scheduled on absolute monotonic deadlines (``start + k * interval``), so jitter
never accumulates; a tick that is late by more than one interval skips the missed ones and
counts them. Samples and metric descriptions go to one sink from the sampler's own thread.

Rates of counters are derived here, once, for every collector: each counter sample is also
emitted under its rate name (``cpu.usage_seconds`` → ``cpu.percent``). A rate is taken over
a window of at least ten steps of the counter's real granularity (``/proc/stat`` advances
in 10 ms jiffies, a busy task's CPU time in scheduler ticks), so a 10 ms sample never reads
an impossible 400 %; the raw counters stay exact, and ``rate_windows()`` says which rates
are coarser than the sampling interval. A rate is never above the metric's ``rate_max``
(all cores busy).

Samples of a collector that is not edgeprof's own (one passed in through the library) are
checked before use: a time that is not a whole number of nanoseconds or a value that is not
a number is left out, counted, and reported once per metric (``samples_rejected``), so one
bad sample never stops sampling. Nor does a tick that raises outside any collector (a bug,
a sink that refuses the batch): only that tick's samples are lost, said by a
``collector_failed`` event at once and counted at the end.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from edgeprof.collect.base import Collector
from edgeprof.model import Clock, Event, EventKind, Labels, MetricSpec, Sample, storable
from edgeprof.sinks import Sink
from edgeprof.stats import percentile

STEPS_PER_WINDOW = 10
"""A rate's window spans at least this many steps of its counter's granularity."""


@dataclass(frozen=True)
class _Rate:
    name: str
    scale: float
    min_age_ns: int
    """The rate is taken from the newest earlier sample at least this old."""
    max: float | None
    resets: bool
    """A drop is a reset (a ``counter``); a ``total`` may go down."""
    window_s: float
    granularity_s: float | None


@dataclass
class TimingStats:
    """How well the sampler kept its schedule."""

    ticks: int
    missed: int
    interval_s: float
    period_p50_s: float
    period_p99_s: float
    period_max_dev_s: float
    lateness_p99_s: float
    cpu_seconds: float
    wall_seconds: float
    realtime: bool = False

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def _good_labels(labels: object) -> bool:
    return isinstance(labels, tuple) and all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], str)
        for p in labels
    )


class Sampler:
    def __init__(
        self,
        collectors: Iterable[Collector],
        interval_s: float,
        clock: Clock,
        sink: Sink,
        on_error: Callable[[Collector, BaseException], None] | None = None,
        realtime: bool = False,
    ) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.sink = sink
        self.on_error = on_error
        self._rates: dict[str, _Rate] = {}
        self._described: dict[str, MetricSpec] = {}
        self._versions: dict[int, int] = {}
        self._lock = threading.Lock()
        self._learn_lock = threading.Lock()
        self._collectors: tuple[Collector, ...] = ()
        self._foreign: set[int] = set()  # ids of collectors whose samples are checked
        self.rejected: dict[str, int] = {}
        """Samples of foreign collectors left out (bad time or value), per metric."""
        # labels → metric → recent samples: a collector's samples share one labels tuple,
        # so a tick looks it up once per collector rather than hashing it for every sample
        self._history: dict[Labels, dict[str, deque[tuple[int, float]]]] = {}
        self._stop = threading.Event()
        self._saved_switch: float | None = None
        self.realtime = realtime
        self.realtime_active = False
        self.realtime_error: str | None = None
        self._thread: threading.Thread | None = None
        self._tick_mono = array("q")
        self.missed = 0
        self.failed_ticks = 0
        """Ticks that raised outside any collector (their samples lost)."""
        self._cpu = 0.0
        self._wall = 0.0
        self.add(collectors)

    # -- collectors -----------------------------------------------------------------------
    def add(self, collectors: Iterable[Collector]) -> None:
        """Sample these (opened) collectors from the next tick on; any thread."""
        new = list(collectors)
        for c in new:
            self.learn(c)
            if not type(c).__module__.startswith("edgeprof."):
                self._foreign.add(id(c))
        with self._lock:
            self._collectors = (*self._collectors, *new)

    def remove(self, collectors: Iterable[Collector]) -> None:
        gone = {id(c) for c in collectors}
        with self._lock:
            self._collectors = tuple(c for c in self._collectors if id(c) not in gone)
            self._foreign -= gone

    @property
    def collectors(self) -> tuple[Collector, ...]:
        return self._collectors

    def learn(self, c: Collector) -> None:
        """Describe the metrics of ``c`` to the sink (units, kinds, derived rates); from the
        sampling thread (dynamic metrics) or the thread adding ``c``."""
        with self._learn_lock:
            self._versions[id(c)] = c.metrics_version
            fresh: list[MetricSpec] = []
            for m in c.metrics():
                if self._described.get(m.name) == m:
                    continue
                self._described[m.name] = m
                fresh.append(m)
                if m.kind in ("counter", "total"):
                    rate = self._rate_for(m)
                    self._rates[m.name] = rate
                    fresh.append(m.rate_spec())
            if fresh:
                self.sink.describe(fresh)

    def _rate_for(self, m: MetricSpec) -> _Rate:
        window = self.interval_s
        if m.granularity_s:
            window = max(window, STEPS_PER_WINDOW * m.granularity_s)
        min_age = window - self.interval_s / 2
        return _Rate(
            m.rate_metric,
            m.rate_scale,
            int(min_age * 1e9),
            m.rate_max,
            m.kind == "counter",
            window,
            m.granularity_s,
        )

    def rate_windows(self) -> dict[str, dict[str, float | None]]:
        """Rates derived over a window longer than the interval: name → granularity, window."""
        return {
            r.name: {"granularity_s": r.granularity_s, "window_s": round(r.window_s, 6)}
            for r in self._rates.values()
            if r.window_s > self.interval_s * 1.0001
        }

    # -- one tick -------------------------------------------------------------------------
    def tick(self, now_ns: int) -> list[Sample]:
        out: list[Sample] = []
        versions = self._versions
        foreign = self._foreign
        for c in self._collectors:
            try:
                got = c.sample(now_ns)
                if c.dynamic_metrics and c.metrics_version != versions.get(id(c)):
                    self.learn(c)
            except Exception as e:  # noqa: BLE001 - a failing collector never stops the run
                if self.on_error is not None:
                    self.on_error(c, e)
                continue
            if got:
                if foreign and id(c) in foreign:
                    got = self._checked(c, got)
                out.extend(got)
        if not out:
            return out
        rates = self._rates
        history = self._history
        new = tuple.__new__  # a Sample without NamedTuple's Python-level __new__
        # one rate per series and tick: the last, where the series' first one went
        derived: dict[int, Sample] = {}  # id of the series' history → its rate
        last: Labels | None = None
        per: dict[str, deque[tuple[int, float]]] = {}
        for s in out:
            metric, labels, t, v = s
            r = rates.get(metric)
            if r is None:
                continue
            if labels is not last:  # a new collector's samples
                known = history.get(labels)
                if known is None:
                    known = history[labels] = {}
                per, last = known, labels
            hist = per.get(metric)
            if hist is None:
                hist = per[metric] = deque()
            elif hist:
                t_last, v_last = hist[-1]
                if t <= t_last:  # out of order (an app's own timestamps): no rate
                    continue
                if r.resets and v < v_last:
                    hist.clear()  # a reset: the counter started again from zero
            hist.append((t, v))
            min_age = r.min_age_ns
            while len(hist) >= 3 and t - hist[1][0] >= min_age:
                hist.popleft()
            t0, v0 = hist[0]
            if t0 < t and t - t0 >= min_age:
                rate = (v - v0) * 1e9 / (t - t0) * r.scale
                if r.max is not None and rate > r.max:
                    rate = r.max
                derived[id(hist)] = new(Sample, (r.name, labels, t, rate))
        if derived:
            out.extend(derived.values())
        return out

    def screened(self, c: Collector, got: list[Sample]) -> list[Sample]:
        """``got`` as :meth:`tick` would pass it on (checked when ``c`` is not edgeprof's)."""
        return self._checked(c, got) if got and id(c) in self._foreign else got

    def _checked(self, c: Collector, got: Iterable[Sample]) -> list[Sample]:
        """A foreign collector's samples, each made a ``Sample`` of str, tuple, int, float
        (:func:`~edgeprof.model.storable`), or left out and counted."""
        out: list[Sample] = []
        for s in got:
            try:
                metric, labels, t, v = s
            except (TypeError, ValueError):
                self._reject(c, "?", None, f"{s!r} is not a (metric, labels, time, value) sample")
                continue
            if not isinstance(metric, str) or not _good_labels(labels):
                why = "its metric is not text or its labels not a tuple of (str, str) pairs"
                self._reject(c, metric if isinstance(metric, str) else "?", None, why)
                continue
            tv = storable(t, v)
            if isinstance(tv, str):
                self._reject(c, metric, labels, tv)
                continue
            out.append(Sample(metric, labels, tv[0], tv[1]))
        return out

    def _reject(self, c: Collector, metric: str, labels: Labels | None, reason: str) -> None:
        n = self.rejected.get(metric, 0)
        self.rejected[metric] = n + 1
        if n:
            return
        msg = (
            f"collector {type(c).__name__} gave a sample of {metric} that was not stored: "
            f"{reason}; later ones of this metric that cannot be stored are counted, not "
            "reported one by one"
        )
        data = {"collector": type(c).__name__, "metric": metric, "reason": reason}
        self._say("samples_rejected", msg, dict(labels or ()).get("target"), data)

    def _say(
        self,
        kind: EventKind,
        msg: str,
        target: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """An event of the sampler's own; reporting never stops sampling."""
        try:
            self.sink.event(Event(self.clock.now_ns(), kind, msg, target, data or {}))
        except Exception:  # noqa: BLE001
            pass

    # -- the loop -------------------------------------------------------------------------
    def _enter_realtime(self) -> None:
        """Run this thread at the lowest real-time priority (SCHED_FIFO 1).

        Under load the normal scheduler may let a waking thread wait a few ms for a busy
        core; at 100 Hz that is the whole error budget. SCHED_FIFO 1 wakes it on time. It
        costs no extra CPU (the thread sleeps between ticks) and the kernel's RT throttling
        still bounds it. Needs root or CAP_SYS_NICE; without, the normal scheduler is kept.
        """
        try:
            os.sched_setscheduler(threading.get_native_id(), os.SCHED_FIFO, os.sched_param(1))
            self.realtime_active = True
        except (OSError, AttributeError) as e:
            self.realtime_error = str(e)

    def _run(self) -> None:
        if self.realtime:
            self._enter_realtime()
        interval_ns = int(self.interval_s * 1e9)
        cpu0 = time.thread_time()
        wall0 = time.monotonic()
        start = time.monotonic_ns()
        k = 0
        ticks = self._tick_mono
        clock = self.clock
        write = self.sink.write
        stop = self._stop
        while True:
            now = time.monotonic_ns()
            ticks.append(now)
            try:  # free unless it raises
                batch = self.tick(clock.from_monotonic(now))
                if batch:
                    write(batch)
            except Exception as e:  # noqa: BLE001 - a bad tick never ends sampling
                self._tick_failed(e)
            k += 1
            deadline = start + k * interval_ns
            now = time.monotonic_ns()
            if now > deadline + interval_ns:
                skipped = (now - deadline) // interval_ns
                self.missed += int(skipped)
                k += int(skipped)
                deadline = start + k * interval_ns
            if stop.wait(max(0.0, (deadline - time.monotonic_ns()) / 1e9)):
                break
        self._cpu = time.thread_time() - cpu0
        self._wall = time.monotonic() - wall0

    def start(self) -> None:
        # Python hands the GIL to a waiting thread only every 5 ms by default, so a busy
        # writer or main thread could delay a 10 ms tick by up to 5 ms. At fast rates, ask
        # for hand-offs every 0.5 ms while sampling (restored by stop()).
        if self.interval_s < 0.1 and self._saved_switch is None:
            self._saved_switch = sys.getswitchinterval()
            sys.setswitchinterval(min(self._saved_switch, 0.0005))
        self._thread = threading.Thread(target=self._run, name="edgeprof-sampler", daemon=True)
        self._thread.start()

    def _tick_failed(self, e: BaseException) -> None:
        """A tick raised outside any collector (a bug, or a sink that cannot take the
        batch): that tick's samples are lost; say so once, count the rest, go on."""
        self.failed_ticks += 1
        if self.failed_ticks > 1:
            return
        self._say(
            "collector_failed",
            f"a sampling tick failed and its samples were lost ({type(e).__name__}: {e}); "
            "sampling goes on, and the count of such ticks is reported at the end",
        )

    def stop(self, final_sample: bool = True) -> None:
        """Stop the loop; with ``final_sample`` take one last sample right now."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            if self._saved_switch is not None:
                sys.setswitchinterval(self._saved_switch)
                self._saved_switch = None
            if final_sample:
                batch = self.tick(self.clock.now_ns())
                if batch:
                    self.sink.write(batch)
            n = self.failed_ticks
            if n > 1:
                msg = f"{n} sampling ticks failed; their samples were lost"
                self._say("collector_failed", msg, data={"failed_ticks": n})
            if self.rejected:
                what = ", ".join(f"{n} of {m}" for m, n in sorted(self.rejected.items()))
                msg = (
                    f"{sum(self.rejected.values())} samples of collectors outside edgeprof "
                    f"could not be stored (a bad time, value or labels): {what}"
                )
                self._say("samples_rejected", msg, data={"counts": dict(self.rejected)})

    def timing(self) -> TimingStats:
        t = self._tick_mono
        periods = sorted((t[i] - t[i - 1]) / 1e9 for i in range(1, len(t)))
        devs = [abs(p - self.interval_s) for p in periods]
        interval_ns = self.interval_s * 1e9
        late = sorted(
            max(0.0, (t[i] - t[0] - round((t[i] - t[0]) / interval_ns) * interval_ns) / 1e9)
            for i in range(len(t))
        )
        return TimingStats(
            ticks=len(t),
            missed=self.missed,
            interval_s=self.interval_s,
            period_p50_s=percentile(periods, 0.5) if periods else 0.0,
            period_p99_s=percentile(periods, 0.99) if periods else 0.0,
            period_max_dev_s=max(devs) if devs else 0.0,
            lateness_p99_s=percentile(late, 0.99) if late else 0.0,
            cpu_seconds=self._cpu,
            wall_seconds=self._wall,
            realtime=self.realtime_active,
        )


def windows_message(windows: dict[str, dict[str, float | None]], interval: float) -> str:
    """The note that says which rates are taken over windows longer than the interval."""
    parts = []
    for name, w in sorted(windows.items()):
        g = w.get("granularity_s")
        step = f" (its counter advances in {g * 1000:g} ms steps)" if g else ""
        parts.append(f"{name} over {(w['window_s'] or 0) * 1000:g} ms windows{step}")
    return (
        f"rates at this {interval * 1000:g} ms interval are taken over longer windows, so "
        "that no sample shows more than the hardware can do: " + "; ".join(parts)
    )
