"""A session observes a set of containers under one sampler thread and one clock.

Each :class:`Member` is one container with a role (``app``: a target edgeprof runs;
``service``: something an app needs; ``attached``: started by somebody else), its own
labels and its opened collectors. :meth:`Session.run` samples until every app and
attached container has exited, a duration has passed, or Ctrl-C (``KeyboardInterrupt``
propagates to the caller, which decides what to stop). An app that reaches its timeout
is stopped (SIGTERM, grace, SIGKILL) in the background while the others go on being
observed. The session never creates or removes a container: that is the runner's job
(and attaching is the same session without either).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from edgeprof.collect.base import Collector
from edgeprof.engine.base import Engine, Handle
from edgeprof.model import Clock, Event, EventKind, Labels
from edgeprof.sampler import Sampler
from edgeprof.sinks import Sink

Role = Literal["app", "service", "attached"]


@dataclass
class Member:
    """One container of a session."""

    name: str
    role: Role
    handle: Handle
    labels: Labels
    collectors: list[Collector] = field(default_factory=list)
    timeout_s: float = 0.0
    """Stop it after this many seconds (0: let it run until it exits)."""
    grace_s: float = 5.0
    # -- filled in by the session --
    exited: threading.Event = field(default_factory=threading.Event)
    exit_code: int | None = None
    timed_out: bool = False
    started_mono: float = 0.0
    elapsed_s: float = 0.0
    _stopper: threading.Thread | None = None


class Session:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        sink: Sink,
        interval_s: float,
        *,
        realtime: bool = False,
        host_collectors: Sequence[Collector] = (),
        on_error: Callable[[Collector, BaseException], None] | None = None,
        on_tick: Callable[[Session], None] | None = None,
        tick_s: float = 0.25,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.sink = sink
        self.members: list[Member] = []
        self.sampler = Sampler(host_collectors, interval_s, clock, sink, on_error, realtime)
        self.host_collectors = list(host_collectors)
        self._wake = threading.Event()
        self._on_tick = on_tick
        self._tick_s = min(tick_s, max(0.05, interval_s))
        self._closed = False
        self.started = False

    # -- members ----------------------------------------------------------------------------
    def add(self, m: Member) -> None:
        """Observe one more container (any time, also while running)."""
        m.started_mono = time.monotonic()
        self.members.append(m)
        self.sampler.add(m.collectors)
        t = threading.Thread(
            target=self._wait, args=(m,), name=f"edgeprof-wait-{m.name}", daemon=True
        )
        t.start()

    def _wait(self, m: Member) -> None:
        code = self.engine.wait(m.handle, None)
        if m.exit_code is None:
            m.exit_code = code
        m.elapsed_s = time.monotonic() - m.started_mono
        m.exited.set()
        self._wake.set()

    def _event(self, m: Member, kind: EventKind, message: str, **data: object) -> None:
        self.sink.event(Event(self.clock.now_ns(), kind, message, m.name, dict(data)))

    # -- running ----------------------------------------------------------------------------
    def start(self) -> None:
        if not self.started:
            self.sampler.start()
            self.started = True

    def run(self, duration_s: float | None = None) -> None:
        """Sample until every app/attached container exited, ``duration_s`` passed, or
        Ctrl-C; stop apps at their timeouts on the way."""
        self.start()
        t0 = time.monotonic()
        while True:
            watched = [m for m in self.members if m.role != "service" and not m.exited.is_set()]
            if not watched:
                break
            now = time.monotonic()
            if duration_s is not None and now - t0 >= duration_s:
                break
            for m in watched:
                if m.timeout_s > 0 and m._stopper is None and now - m.started_mono >= m.timeout_s:
                    self._stop_at_timeout(m)
            if self._on_tick is not None:
                self._on_tick(self)
            self._wake.wait(self._tick_s)
            self._wake.clear()
        for m in self.members:
            if m._stopper is not None:
                m._stopper.join(m.grace_s + 15)
                m.exited.wait(10)
        if self._on_tick is not None:
            self._on_tick(self)

    def _stop_at_timeout(self, m: Member) -> None:
        m.timed_out = True
        self._event(
            m,
            "timed_out",
            f"timeout of {m.timeout_s:g} s reached; stopping (SIGTERM, {m.grace_s:g} s grace, SIGKILL)",
        )

        def stop() -> None:
            try:
                self.engine.stop(m.handle, m.grace_s)
            except Exception as e:  # noqa: BLE001 - reported; the remove at the end still runs
                self._event(m, "target_error", f"stopping the container failed: {e}")

        m._stopper = threading.Thread(target=stop, name=f"edgeprof-stop-{m.name}", daemon=True)
        m._stopper.start()

    def elapsed(self, m: Member) -> float:
        return m.elapsed_s if m.exited.is_set() else time.monotonic() - m.started_mono

    # -- closing ----------------------------------------------------------------------------
    def close(self, target: str | None = None) -> None:
        """Stop sampling (one last sample), then close every collector and store what it
        still had (app messages drained at close). Each step runs even if one fails."""
        if self._closed:
            return
        self._closed = True
        if self.started:
            self.sampler.stop(final_sample=True)
            timing = self.sampler.timing()
            self.sink.event(
                Event(
                    self.clock.now_ns(),
                    "sampler_timing",
                    "sampler schedule and own CPU use",
                    target,
                    {**timing.as_dict(), "realtime_error": self.sampler.realtime_error},
                )
            )
        for c in [c for m in self.members for c in m.collectors] + self.host_collectors:
            close_collector(c, self.sampler)


def close_collector(c: Collector, sampler: Sampler) -> None:
    """Close ``c``; one that drains at close is sampled once more and its tail written."""
    try:
        c.close()
    except Exception:  # noqa: BLE001 - closing goes on for the others
        return
    if c.sample_after_close:
        try:
            batch = sampler.screened(c, c.sample(sampler.clock.now_ns()))
            sampler.learn(c)
            if batch:
                sampler.sink.write(batch)
        except Exception:  # noqa: BLE001
            return
