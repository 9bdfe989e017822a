"""The store's batch writer: the sampler's primary sink.

Samples, metric descriptions and events are queued by the sampler (and any other thread)
and written from the writer's own thread, committed at least every ``flush_s`` seconds, so
a crash loses at most that much and a clean stop (``close``) loses nothing. The sampler
never waits on the database.

Samples gather per series in memory. At every flush, what the series gathered since the
last one is written as one *open block* for all of them (raw arrays in one row, cheap: the
write-ahead form); once a series holds :data:`~.chunks.CHUNK_SAMPLES` samples, spans two
minutes or its target ends, its samples are written as one *final*, compressed chunk, whose
timestamps are stored once for every series finalized with the same ticks (see
:mod:`.chunks`), and its samples in open blocks are superseded (``series.final_block``); a
block is deleted once every series in it is (see :mod:`.schema`).

Samples are attributed to a target by their ``target`` label; samples without one (host
metrics) go to the current default target (the target being run, in a sequential run), or
to the run itself. Events go to the target they name, or to the run itself. Sampled
stacks (``code``) go to the target they name, written at the same flush.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np

from edgeprof.errors import StoreError
from edgeprof.model import Event, Labels, MetricSpec, Sample
from edgeprof.store import chunks
from edgeprof.store.base import Store


class _Control:
    """An in-order instruction to the writer's thread."""

    __slots__ = ("op", "args", "done")

    def __init__(self, op: str, *args: Any) -> None:
        self.op = op
        self.args = args
        self.done = threading.Event()


class _Code:
    """Sampled stacks of the named target, queued with the data."""

    __slots__ = ("target", "rows")

    def __init__(self, target: str, rows: list[Any]) -> None:
        self.target = target
        self.rows = rows


class _Series:
    """What one series gathered and not yet wrote as a final chunk."""

    __slots__ = ("sid", "tid", "t", "v", "written", "blocks", "hint")

    def __init__(self, sid: int, tid: int | None) -> None:
        self.sid = sid
        self.tid = tid
        self.t: list[int] = []
        self.v: list[float] = []
        self.written = 0  # samples of t/v already in open blocks
        self.blocks: list[int] = []  # the open blocks holding them
        self.hint: int | None = None  # the last encoding chosen (tried first next time)

    def full(self) -> bool:
        t = self.t
        return len(t) >= chunks.CHUNK_SAMPLES or (
            len(t) > 1 and t[-1] - t[0] >= chunks.CHUNK_SPAN_NS
        )


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
        # Everything goes through one queue, in order; only what must not wait for the next
        # flush (a flush request, close) wakes the writer's thread: the sampler's batches do
        # not, so the writer sleeps until its flush deadline (no wake-up per tick).
        self._q: deque[Any] = deque()
        self._wake = threading.Event()
        # the writer thread's own state:
        self._series: dict[tuple[str, Labels], _Series] = {}
        self._describe: dict[str, tuple[str, str]] = {}
        self._targets: dict[str, int] = {}
        self._default = default_target
        self._written: dict[int | None, int] = {}
        self._live: dict[int, int] = {}  # open block id → its series not yet final
        self._last_block = 0  # the newest open block written
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="edgeprof-writer", daemon=True)
        self._thread.start()

    # -- the Sink protocol (any thread) -----------------------------------------------------
    def describe(self, specs: Sequence[MetricSpec]) -> None:
        self._q.append(_Control("describe", [(m.name, m.unit, m.kind) for m in specs]))

    def write(self, batch: Sequence[Sample]) -> None:
        self._q.append(batch)

    def event(self, ev: Event) -> None:
        self._q.append(ev)

    def code(self, target_name: str, rows: Sequence[Any]) -> None:
        """Sampled stacks (:class:`~edgeprof.codeprof.model.CodeSample`) of a target; any
        thread."""
        if rows:
            self._q.append(_Code(target_name, list(rows)))

    # -- control (any thread; applied in order with the data) -------------------------------
    def add_target(self, name: str, target_id: int) -> None:
        """Samples labelled ``target=name`` and events of target ``name`` belong to it."""
        self._q.append(_Control("target", name, target_id))

    def set_default_target(self, target_id: int | None) -> None:
        self._q.append(_Control("default", target_id))

    def end_target(self, target_id: int) -> None:
        """The target's series get no more samples: write them as final chunks."""
        self._q.append(_Control("end", target_id))

    def flush(self, timeout: float = 30.0) -> None:
        """Write and commit everything queued so far; wait until done."""
        c = _Control("flush")
        self._q.append(c)
        self._wake.set()
        c.done.wait(timeout)

    def written(self, target_id: int | None = None) -> int:
        """Samples written so far for this target (all targets with None): after ``flush``."""
        if target_id is None:
            return sum(self._written.values())
        return self._written.get(target_id, 0)

    def close(self, timeout: float = 120.0) -> None:
        """Write everything still queued and stop; raises when writing failed (or did not
        finish within ``timeout`` seconds: a database that stopped answering)."""
        self._q.append(None)
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.error = self.error or TimeoutError(f"still writing after {timeout:g} s")
        if self.error is not None:
            raise StoreError(f"writing samples to {self.store.url} failed: {self.error}")

    # -- the writer's thread ----------------------------------------------------------------
    def _gather(self, batch: Sequence[Sample], touched: set[_Series]) -> None:
        cache = self._series
        default = self._default
        add = touched.add
        for metric, labels, t, v in batch:
            key = (metric, labels)
            buf = cache.get(key)
            if buf is None:
                buf = self._new_series(key, default)
            buf.t.append(t)
            buf.v.append(v)
            add(buf)

    def _new_series(self, key: tuple[str, Labels], default: int | None) -> _Series:
        metric, labels = key
        tid = default
        for k, v in labels:
            if k == "target":
                tid = self._targets.get(v, default)
                break
        unit, kind = self._describe.get(metric, (None, None))
        sid = self.store.series_id(self.run_id, tid, metric, labels, unit, kind)
        buf = self._series[key] = _Series(sid, tid)
        return buf

    def _finalize(self, bufs: list[_Series]) -> None:
        """Final chunks of these series; series with the same timestamps share a block."""
        by_times: dict[bytes, list[_Series]] = {}
        for b in bufs:
            if b.t:
                by_times.setdefault(np.asarray(b.t, dtype=np.int64).tobytes(), []).append(b)
        rows: list[chunks.ChunkRow] = []
        superseded: list[tuple[int, list[int]]] = []
        for group in by_times.values():
            t_all = group[0].t
            for a, z in chunks.pieces(t_all):  # a long flush interval gathers many chunks
                t = t_all[a:z]
                tb = self.store.add_timeblock(*chunks.timeblock(t))
                for b in group:
                    row, b.hint = chunks.final_row(b.sid, tb, t, b.v[a:z], b.hint)
                    rows.append(row)
            for b in group:
                if b.blocks:
                    superseded.append((b.sid, b.blocks))
                self._count(b, len(b.t) - b.written)
                b.t, b.v, b.written, b.blocks = [], [], 0, []
        self.store.write_chunks(rows)
        if superseded:
            self._supersede(superseded)

    def _supersede(self, series: list[tuple[int, list[int]]]) -> None:
        """These series' samples in open blocks are in final chunks now: delete the blocks
        left with no other series; readers skip the series in those that stay."""
        live = self._live
        dropped: list[int] = []
        for bid, k in Counter(chain.from_iterable(b for _, b in series)).items():
            left = live[bid] - k
            if left:
                live[bid] = left
            else:
                del live[bid]
                dropped.append(bid)
        gone = set(dropped)
        kept = [sid for sid, blocks in series if not gone.issuperset(blocks)]
        if kept:
            self.store.supersede_open(kept, self._last_block)
        if dropped:
            self.store.drop_open_blocks(dropped)

    def _count(self, b: _Series, n: int) -> None:
        self._written[b.tid] = self._written.get(b.tid, 0) + n

    def _write_open(self, bufs: set[_Series]) -> None:
        """What these series gathered since the last flush, as one open block."""
        sids: list[int] = []
        counts: list[int] = []
        ts: list[int] = []
        vs: list[float] = []
        got: list[_Series] = []
        written = self._written
        for b in bufs:
            a, n = b.written, len(b.t)
            if n > a:
                sids.append(b.sid)
                counts.append(n - a)
                if a:
                    ts += b.t[a:]
                    vs += b.v[a:]
                else:
                    ts += b.t
                    vs += b.v
                written[b.tid] = written.get(b.tid, 0) + n - a
                b.written = n
                got.append(b)
        if not got:
            return
        bid = self.store.write_open_block(
            self.run_id, len(ts), chunks.open_block(sids, counts, ts, vs)
        )
        for b in got:
            b.blocks.append(bid)
        self._live[bid] = len(got)
        self._last_block = bid

    def _end(self, pred: Any) -> None:
        """Finalize and forget the series matching ``pred(key, series)``."""
        gone = [(k, b) for k, b in self._series.items() if pred(k, b)]
        self._finalize([b for _, b in gone])
        for k, _ in gone:
            del self._series[k]

    def _apply(self, c: _Control) -> None:
        if c.op == "describe":
            for name, unit, kind in c.args[0]:
                self._describe[name] = (unit, kind)
        elif c.op == "target":
            self._targets[c.args[0]] = c.args[1]
        elif c.op == "default":
            old = self._default
            self._default = c.args[0]
            # series without a target label were the old default's: they are done
            self._end(lambda k, b: b.tid == old and not any(x == "target" for x, _ in k[1]))
        elif c.op == "end":
            self._end(lambda k, b: b.tid == c.args[0])

    def _flush(self, pending: list[Any], last: bool = False) -> None:
        """Write what is pending in one transaction: other threads' statements (and their
        commits) wait, so a crash never finds open samples superseded but the final chunk
        not written, or a series registered but not its samples."""
        with self.store.transaction():
            self._flush_in_transaction(pending, last)

    def _flush_in_transaction(self, pending: list[Any], last: bool) -> None:
        touched: set[_Series] = set()
        events: list[tuple[int | None, Event]] = []
        code: dict[int, list[Any]] = {}
        targets = self._targets
        for item in pending:
            if isinstance(item, _Code):
                tid = targets.get(item.target, self._default)
                if tid is not None:
                    code.setdefault(tid, []).extend(item.rows)
            elif isinstance(item, _Control):
                if touched:  # what came before the control is theirs
                    self._settle(touched)
                    touched = set()
                self._apply(item)
            elif isinstance(item, Event):
                events.append((targets.get(item.target) if item.target else None, item))
            else:
                self._gather(item, touched)
        self._settle(touched)
        if last:
            self._end(lambda k, b: True)
        if events:
            self.store.write_events(self.run_id, events)
        for tid, rows in code.items():
            self.store.add_code_samples(tid, rows)

    def _settle(self, touched: set[_Series]) -> None:
        cap, span = chunks.CHUNK_SAMPLES, chunks.CHUNK_SPAN_NS  # _Series.full(), inlined
        full = [b for b in touched if b.t and (len(b.t) >= cap or b.t[-1] - b.t[0] >= span)]
        if full:
            self._finalize(full)
        self._write_open(touched)

    def _run(self) -> None:
        pending: list[Any] = []
        waiting: list[_Control] = []
        q = self._q
        wake = self._wake
        last = time.monotonic()
        done = False
        while not done:
            wake.wait(max(0.0, self.flush_s - (time.monotonic() - last)))
            wake.clear()  # before taking: what is queued after this is seen now or next time
            while q:  # take everything already queued
                item = q.popleft()
                if item is None:
                    done = True
                    break
                pending.append(item)
                if isinstance(item, _Control) and item.op == "flush":
                    waiting.append(item)
            if done or (pending and (waiting or time.monotonic() - last >= self.flush_s)):
                if self.error is None:
                    try:
                        self._flush(pending, last=done)
                    except Exception as e:  # noqa: BLE001 - reported by close()
                        # the transaction was rolled back: the series ids this writer
                        # knows may not exist any more, so it stops writing (fail-stop)
                        # rather than file samples under the wrong series
                        self.error = e
                pending = []
            for c in waiting:
                c.done.set()
            waiting = []
            if not pending:
                last = time.monotonic()
