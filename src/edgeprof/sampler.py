"""The timing loop: calls every collector at each tick, timestamps, derives counter rates.

Ticks are scheduled on absolute monotonic deadlines (``start + k * interval``), so jitter
never accumulates; a tick that is late by more than one interval skips the missed ones and
counts them. Rates of counters are derived here, once, for every collector: each counter
sample is also emitted under its rate name (``cpu.usage_seconds`` → ``cpu.percent``).
Samples go to a sink (the store's batch writer) from the sampler's own thread.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from edgeprof.collect.base import Collector
from edgeprof.model import Clock, Labels, Sample


@dataclass(frozen=True)
class _Rate:
    name: str
    scale: float


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


def _pct(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return 0.0
    k = min(len(sorted_vals) - 1, max(0, round(q * (len(sorted_vals) - 1))))
    return sorted_vals[k]


class Sampler:
    def __init__(
        self,
        collectors: list[Collector],
        interval_s: float,
        clock: Clock,
        sink: Callable[[list[Sample]], None],
        on_error: Callable[[Collector, BaseException], None] | None = None,
        realtime: bool = False,
        describe: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self.collectors = list(collectors)
        self.interval_s = interval_s
        self.clock = clock
        self.sink = sink
        self.on_error = on_error
        self._rates: dict[str, _Rate] = {}
        self.describe: dict[str, tuple[str, str]] = describe if describe is not None else {}
        """metric → (unit, kind) of every metric seen declared, rates included (for the store)."""
        # Collectors that discover metrics as they arrive (app metrics) bump metrics_version.
        self._dynamic = {id(c): -1 for c in self.collectors if getattr(c, "dynamic_metrics", False)}
        for c in self.collectors:
            self.learn(c)
        self._prev: dict[tuple[str, Labels], tuple[int, float]] = {}
        self.latest: dict[str, float] = {}
        self._stop = threading.Event()
        self._saved_switch: float | None = None
        self.realtime = realtime
        self.realtime_active = False
        self.realtime_error: str | None = None
        self._thread: threading.Thread | None = None
        self._tick_mono = array("q")
        self.missed = 0
        self._cpu = 0.0
        self._wall = 0.0

    def learn(self, c: Collector) -> None:
        """Record the metrics of ``c`` (units, kinds, counter rates)."""
        for m in c.metrics():
            self.describe[m.name] = (m.unit, m.kind)
            if m.kind == "counter":
                self._rates[m.name] = _Rate(m.rate_metric, m.rate_scale)
                self.describe[m.rate_metric] = (m.rate_unit or f"{m.unit}/s", "gauge")

    # -- one tick -------------------------------------------------------------------------
    def tick(self, now_ns: int) -> list[Sample]:
        out: list[Sample] = []
        dynamic = self._dynamic
        for c in self.collectors:
            try:
                got = c.sample(now_ns)
                if dynamic and id(c) in dynamic:
                    version = c.metrics_version  # type: ignore[attr-defined]
                    if version != dynamic[id(c)]:
                        dynamic[id(c)] = version
                        self.learn(c)
            except Exception as e:  # noqa: BLE001 - a failing collector never stops the run
                if self.on_error is not None:
                    self.on_error(c, e)
                continue
            if got:
                out.extend(got)
        if not out:
            return out
        rates = self._rates
        prev = self._prev
        derived: list[Sample] = []
        latest = self.latest
        for s in out:
            r = rates.get(s.metric)
            if r is None:
                if not s.labels or len(s.labels) == 1:
                    latest[s.metric] = s.value
                continue
            key = (s.metric, s.labels)
            p = prev.get(key)
            prev[key] = (s.t_ns, s.value)
            if p is not None and s.t_ns > p[0] and s.value >= p[1]:
                v = (s.value - p[1]) * 1e9 / (s.t_ns - p[0]) * r.scale
                derived.append(Sample(r.name, s.labels, s.t_ns, v))
                if len(s.labels) <= 1:
                    latest[r.name] = v
        if derived:
            out.extend(derived)
        return out

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
        sink = self.sink
        stop = self._stop
        while True:
            now = time.monotonic_ns()
            ticks.append(now)
            batch = self.tick(clock.from_monotonic(now))
            if batch:
                sink(batch)
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
                    self.sink(batch)

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
            period_p50_s=_pct(periods, 0.5),
            period_p99_s=_pct(periods, 0.99),
            period_max_dev_s=max(devs) if devs else 0.0,
            lateness_p99_s=_pct(late, 0.99),
            cpu_seconds=self._cpu,
            wall_seconds=self._wall,
            realtime=self.realtime_active,
        )
