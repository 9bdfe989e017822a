"""The store's batch writer: the sampler's primary sink.

Samples, metric descriptions and events are queued by the sampler (and any other thread)
and written from the writer's own thread, committed at least every ``flush_s`` seconds, so
a crash loses at most that much and a clean stop (``close``) loses nothing. The sampler
never waits on the database.

Samples are attributed to a target by their ``target`` label; samples without one (host
metrics) go to the current default target (the target being run, in a sequential run), or
to the run itself. Events go to the target they name, or to the run itself.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from edgeprof.errors import StoreError
from edgeprof.model import Event, Labels, MetricSpec, Sample
from edgeprof.store.base import Store


class _Control:
    """An in-order instruction to the writer's thread."""

    __slots__ = ("op", "args", "done")

    def __init__(self, op: str, *args: Any) -> None:
        self.op = op
        self.args = args
        self.done = threading.Event()


class BatchWriter:
    """Buffers samples and events and writes them from its own thread (a :class:`Sink`)."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        default_target: int | None = None,
        flush_s: float = 0.5,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.flush_s = flush_s
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # the writer thread's own state:
        self._series: dict[tuple[int | None, str, Labels], int] = {}
        self._describe: dict[str, tuple[str, str]] = {}
        self._targets: dict[str, int] = {}
        self._default = default_target
        self._written: dict[int | None, int] = {}
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="edgeprof-writer", daemon=True)
        self._thread.start()

    # -- the Sink protocol (any thread) -----------------------------------------------------
    def describe(self, specs: Sequence[MetricSpec]) -> None:
        self._q.put(_Control("describe", [(m.name, m.unit, m.kind) for m in specs]))

    def write(self, batch: Sequence[Sample]) -> None:
        self._q.put(batch)

    def event(self, ev: Event) -> None:
        self._q.put(ev)

    # -- control (any thread; applied in order with the data) -------------------------------
    def add_target(self, name: str, target_id: int) -> None:
        """Samples labelled ``target=name`` and events of target ``name`` belong to it."""
        self._q.put(_Control("target", name, target_id))

    def set_default_target(self, target_id: int | None) -> None:
        self._q.put(_Control("default", target_id))

    def flush(self, timeout: float = 30.0) -> None:
        """Write and commit everything queued so far; wait until done."""
        c = _Control("flush")
        self._q.put(c)
        c.done.wait(timeout)

    def written(self, target_id: int | None = None) -> int:
        """Samples written so far for this target (all targets with None): after ``flush``."""
        if target_id is None:
            return sum(self._written.values())
        return self._written.get(target_id, 0)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join()
        if self.error is not None:
            raise StoreError(f"writing samples to {self.store.url} failed: {self.error}")

    # -- the writer's thread ----------------------------------------------------------------
    def _apply(self, c: _Control) -> None:
        if c.op == "describe":
            for name, unit, kind in c.args[0]:
                self._describe[name] = (unit, kind)
        elif c.op == "target":
            self._targets[c.args[0]] = c.args[1]
        elif c.op == "default":
            self._default = c.args[0]

    def _flush(self, pending: list[Any]) -> None:
        store = self.store
        run_id = self.run_id
        cache = self._series
        desc = self._describe
        targets = self._targets
        rows: list[tuple[int, int, float]] = []
        events: list[tuple[int | None, Event]] = []
        written = self._written
        for item in pending:
            if isinstance(item, _Control):
                self._apply(item)
                continue
            if isinstance(item, Event):
                events.append((targets.get(item.target) if item.target else None, item))
                continue
            default = self._default
            for s in item:
                tid = default
                for k, v in s.labels:
                    if k == "target":
                        tid = targets.get(v, default)
                        break
                key = (tid, s.metric, s.labels)
                sid = cache.get(key)
                if sid is None:
                    unit, kind = desc.get(s.metric, (None, None))
                    sid = cache[key] = store.series_id(run_id, tid, s.metric, s.labels, unit, kind)
                rows.append((sid, s.t_ns, float(s.value)))
                written[tid] = written.get(tid, 0) + 1
        store.write_rows(rows)
        if events:
            store.write_events(run_id, events)
        store.commit()

    def _run(self) -> None:
        pending: list[Any] = []
        waiting: list[_Control] = []
        last = time.monotonic()
        done = False
        while not done:
            try:
                item = self._q.get(timeout=max(0.0, self.flush_s - (time.monotonic() - last)))
                while item is not None:  # take everything already queued without waiting
                    pending.append(item)
                    if isinstance(item, _Control) and item.op == "flush":
                        waiting.append(item)
                    item = self._q.get_nowait()
                done = True
            except queue.Empty:
                pass
            if pending and (done or waiting or time.monotonic() - last >= self.flush_s):
                try:
                    self._flush(pending)
                except Exception as e:  # noqa: BLE001 - reported by close()
                    self.error = self.error or e
                pending = []
            for c in waiting:
                c.done.set()
            waiting = []
            if not pending:
                last = time.monotonic()
