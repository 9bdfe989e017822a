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

A store that can lose its connection (PostgreSQL) raises
:class:`~edgeprof.errors.StoreUnavailable`: the flush's transaction did not happen, and the
writer's own state is put back as it was before the flush from an *undo log* taken at its
start (list lengths and the lists themselves, no copies of samples), so the same pending
items are written again once the store reconnects — retried with exponential backoff
(0.5 s doubling to 30 s, jittered). Meanwhile new items gather; beyond
``EDGEPROF_PG_BUFFER_SAMPLES`` samples (default 2,000,000) the oldest sample batches are
dropped (never events or controls), counted, and reported by a ``samples_dropped`` event.
A connection lost *during the commit* leaves the transaction's fate unknown: the store
gives its id (PostgreSQL's ``txid_status`` tells after reconnecting), and the undo log is
kept until then — applied if it did not commit, dropped if it did, so nothing is written
twice. Any other error stops the writer (fail-stop). When the database is still away when
the writer closes (after ``EDGEPROF_PG_FINAL_RETRY_S``, default 30 s, of retries) what was
not written is handed to the store (:class:`~.resilient.ResilientStore`), which spools it
to a local SQLite file.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from itertools import chain
from typing import Any

from edgeprof.errors import StoreError, StoreUnavailable
from edgeprof.model import Event, Labels, MetricSpec, Sample, storable
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
    """What one series gathered and not yet wrote as a final chunk.

    Timestamps and values are kept as machine arrays (``int64``, ``float64``), not lists
    of Python numbers: a series of two minutes at 10 Hz is 19 KiB rather than 65, open
    blocks are cut from them without a Python loop, and the garbage collector has nothing
    to walk in them (it walked every sample of a list at each full collection)."""

    __slots__ = ("sid", "tid", "t", "v", "written", "blocks", "hint")

    def __init__(self, sid: int, tid: int | None) -> None:
        self.sid = sid
        self.tid = tid
        self.t = array("q")
        self.v = array("d")
        self.written = 0  # samples of t/v already in open blocks
        self.blocks: list[int] = []  # the open blocks holding them
        self.hint: int | None = None  # the last encoding chosen (tried first next time)

    def full(self) -> bool:
        t = self.t
        return len(t) >= chunks.CHUNK_SAMPLES or (
            len(t) > 1 and t[-1] - t[0] >= chunks.CHUNK_SPAN_NS
        )


BUFFER_SAMPLES = 2_000_000
"""Samples kept in memory while the database is unreachable (``EDGEPROF_PG_BUFFER_SAMPLES``)."""
FINAL_RETRY_S = 30.0
"""How long ``close`` keeps retrying an unreachable database (``EDGEPROF_PG_FINAL_RETRY_S``)."""
BACKOFF_S = (0.5, 30.0)
"""The first wait before reconnecting, and the longest (doubling in between, jittered)."""


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise StoreError(f"${name}={raw!r} is not a number; unset it or give one") from None
    if value < 0:
        raise StoreError(f"${name}={raw!r} is negative; give 0 or more")
    return value


def _utc(t_ns: int) -> str:
    """A sample's time (Unix ns) as a UTC clock time to the millisecond."""
    t = datetime.fromtimestamp(t_ns // 1_000_000 / 1000, timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t_ns // 1_000_000 % 1000:03d}"


def _is_batch(item: Any) -> bool:
    return not isinstance(item, (_Control, _Code, Event))


class _Undo:
    """The writer's state before a flush: what the flush changed is put back from it."""

    __slots__ = (
        "series",
        "state",
        "rejected",
        "written",
        "live",
        "last_block",
        "describe",
        "targets",
        "default",
    )

    def __init__(self, w: BatchWriter) -> None:
        self.series = dict(w._series)
        self.state = [
            (b, len(b.t), b.t, b.v, b.written, len(b.blocks), b.blocks, b.hint)
            for b in self.series.values()
        ]
        self.rejected = dict(w.rejected)
        self.written = dict(w._written)
        self.live = dict(w._live)
        self.last_block = w._last_block
        # copied on write by _apply: the references are enough
        self.describe = w._describe
        self.targets = w._targets
        self.default = w._default

    def restore(self, w: BatchWriter) -> None:
        for b, n, t, v, written, nb, blocks, hint in self.state:
            del t[n:]  # what the flush appended (the lists _finalize replaced come back)
            del v[n:]
            del blocks[nb:]
            b.t, b.v, b.written, b.blocks, b.hint = t, v, written, blocks, hint
        w._series = self.series  # series the flush registered are forgotten, ended ones back
        w._by_labels = {}
        w._written = self.written
        w.rejected = self.rejected
        w._live = self.live
        w._last_block = self.last_block
        w._describe = self.describe
        w._targets = self.targets
        w._default = self.default


class _Outage:
    """What the writer keeps while the database is unreachable."""

    def __init__(self, error: StoreUnavailable, now: float) -> None:
        self.error = error
        self.since = now
        self.delay = BACKOFF_S[0]
        self.next_try = now + self.delay * random.uniform(0.5, 1.0)
        self.tries = 0
        # a commit whose answer was lost: its transaction id, undo log, items and the
        # count of the store's deferred writes it held, until the store tells whether it
        # committed
        self.xid: int | None = None
        self.undo: _Undo | None = None
        self.inflight: list[Any] = []
        self.deferred = 0
        self.reported: tuple[int, int, int] | None = None  # a drop report in that commit

    def failed(self, error: StoreUnavailable, now: float) -> None:
        self.error = error
        self.tries += 1
        self.delay = min(self.delay * 2, BACKOFF_S[1])
        self.next_try = now + self.delay * random.uniform(0.5, 1.0)


class BatchWriter:
    """Buffers samples and events and writes them from its own thread (a :class:`Sink`)."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        default_target: int | None = None,
        flush_s: float = 0.5,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.flush_s = flush_s
        self.warn = warn or (lambda msg: print(f"edgeprof: warning: {msg}", file=sys.stderr))
        # a store that can lose its connection gets an undo log per flush (SQLite: none)
        self._undo_on = bool(getattr(store, "can_lose_connection", False))
        # the EDGEPROF_PG_* variables concern such a store only (a SQLite run ignores them)
        self.buffer_samples = BUFFER_SAMPLES
        self.final_retry_s = FINAL_RETRY_S
        if self._undo_on:
            self.buffer_samples = int(_env_number("EDGEPROF_PG_BUFFER_SAMPLES", BUFFER_SAMPLES))
            self.final_retry_s = _env_number("EDGEPROF_PG_FINAL_RETRY_S", FINAL_RETRY_S)
        self._deferred = getattr(store, "has_deferred", None)
        self.dropped = 0
        """Samples dropped while the database was unreachable (the oldest, beyond the
        bound); ``dropped_span`` their first and last timestamps."""
        self.dropped_span: tuple[int, int] | None = None
        self._drop_report: tuple[int, int, int] | None = None  # not yet in an event
        self.outages = 0
        self.outage_log: list[tuple[float, int]] = []
        """Each outage the writer recovered from: (seconds unreachable, reconnect tries)."""
        self.spooled = False
        self._outage: _Outage | None = None
        self._pending_n = 0
        # Everything goes through one queue, in order; only what must not wait for the next
        # flush (a flush request, close) wakes the writer's thread: the sampler's batches do
        # not, so the writer sleeps until its flush deadline (no wake-up per tick).
        self._q: deque[Any] = deque()
        self._wake = threading.Event()
        # the writer thread's own state:
        self._series: dict[tuple[str, Labels], _Series] = {}
        # labels → metric → series: a memo of ``_series`` for ``_gather`` (a batch's
        # samples come a collector at a time, so one labels tuple is looked up, not hashed,
        # per sample); emptied whenever ``_series`` loses entries or is put back
        self._by_labels: dict[Labels, dict[str, _Series]] = {}
        self._describe: dict[str, tuple[str, str]] = {}
        self._targets: dict[str, int] = {}
        self._default = default_target
        self._written: dict[int | None, int] = {}
        self._live: dict[int, int] = {}  # open block id → its series not yet final
        self._last_block = 0  # the newest open block written
        self.rejected: dict[str, int] = {}
        """Samples left out because their time or value could not be stored, per metric."""
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
        finish within ``timeout`` seconds, plus the final retries of an unreachable
        database: a database that stopped answering)."""
        self._q.append(None)
        self._wake.set()
        if self._undo_on:  # the final retries (and the hand-over to the spool) are waited for
            timeout += self.final_retry_s
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.error = self.error or TimeoutError(f"still writing after {timeout:g} s")
        if self.dropped and self.dropped_span is not None:
            a, z = (_utc(t) for t in self.dropped_span)
            self.warn(
                f"{self.dropped} samples were dropped while the database at {self.store.url}"
                f" was unreachable (more than {self.buffer_samples} waited; taken from"
                f" {a} to {z} UTC; EDGEPROF_PG_BUFFER_SAMPLES keeps more)"
            )
        if self.rejected:
            what = ", ".join(f"{n} of {m}" for m, n in sorted(self.rejected.items()))
            self.warn(
                f"{sum(self.rejected.values())} samples were not stored because their time or"
                f" value is not a number ({what}): a collector gave them"
            )
        if self.error is not None:
            raise StoreError(f"writing samples to {self.store.url} failed: {self.error}")

    # -- the writer's thread ----------------------------------------------------------------
    def _gather(
        self, batch: Sequence[Sample], touched: set[_Series], events: list[tuple[int | None, Event]]
    ) -> None:
        by_labels = self._by_labels
        add = touched.add
        last: Labels | None = None
        per: dict[str, _Series] = {}
        for metric, labels, t, v in batch:
            if labels is not last:  # a new collector's samples
                known = by_labels.get(labels)
                if known is None:
                    known = by_labels[labels] = {}
                per, last = known, labels
            buf = per.get(metric)
            if buf is None:
                key = (metric, labels)
                buf = self._series.get(key)
                if buf is None:
                    buf = self._new_series(key, self._default)
                per[metric] = buf
            try:  # free unless it raises (a number that is not an int64 / a float)
                buf.t.append(t)
                buf.v.append(v)
            except (TypeError, ValueError, OverflowError):
                if not self._odd_sample(buf, metric, labels, t, v, events):
                    continue
            add(buf)

    def _odd_sample(
        self,
        buf: _Series,
        metric: str,
        labels: Labels,
        t: Any,
        v: Any,
        events: list[tuple[int | None, Event]],
    ) -> bool:
        """A sample whose time is not an int64 or whose value is not a float (a caller's
        collector or sink user): kept when :func:`~edgeprof.model.storable` can convert it;
        otherwise left out, counted per metric, and the first of each metric reported by an
        event, rather than stopping the writer (which would lose every sample to come)."""
        if len(buf.t) > len(buf.v):
            buf.t.pop()  # the time went in, the value did not
        got = storable(t, v)
        if not isinstance(got, str):
            buf.t.append(got[0])
            buf.v.append(got[1])
            return True
        reason = got
        n = self.rejected.get(metric, 0)
        self.rejected[metric] = n + 1
        if not n:
            target = dict(labels).get("target")
            msg = (
                f"a sample of {metric} was not stored: its {reason}; later ones of this "
                "metric that cannot be stored are counted, not reported one by one"
            )
            data = {"metric": metric, "labels": dict(labels), "reason": reason}
            ev = Event(time.time_ns(), "samples_rejected", msg, target, data)
            events.append((self._targets.get(target) if target else None, ev))
        return False

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
                by_times.setdefault(b.t.tobytes(), []).append(b)
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
                b.t, b.v, b.written, b.blocks = array("q"), array("d"), 0, []
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
        ts = array("q")
        vs = array("d")
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
        if gone:
            self._by_labels = {}

    def _apply(self, c: _Control) -> None:
        # copied on write: an undo log keeps the old dicts by reference
        if c.op == "describe":
            self._describe = {**self._describe, **{n: (u, k) for n, u, k in c.args[0]}}
        elif c.op == "target":
            self._targets = {**self._targets, c.args[0]: c.args[1]}
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
        not written, or a series registered but not its samples.

        A lost connection raises :class:`StoreUnavailable` with the writer's state put back
        as it was before; when the commit's fate is unknown (``xid`` set) the undo log is
        left in ``self._pending_undo`` (and the count of the store's deferred writes in
        ``self._pending_deferred``) until the store can tell."""
        undo = _Undo(self) if self._undo_on else None
        apply = getattr(self.store, "apply_deferred", None)
        n = 0
        try:
            with self.store.transaction():
                if apply is not None:
                    n = apply()  # what the store deferred while unreachable goes first
                self._flush_in_transaction(pending, last)
        except StoreUnavailable as e:
            if undo is not None and e.xid is not None:
                self._pending_undo, self._pending_deferred = undo, n
                raise
            if apply is not None:
                self.store.deferred_done(n, False)  # type: ignore[attr-defined]
            if undo is not None:
                undo.restore(self)  # it did not commit
            raise
        except BaseException:
            if apply is not None:
                self.store.deferred_done(n, False)  # type: ignore[attr-defined]
            raise
        if apply is not None:
            self.store.deferred_done(n, True)  # type: ignore[attr-defined]

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
                targets = self._targets  # copied on write by _apply
            elif isinstance(item, Event):
                events.append((targets.get(item.target) if item.target else None, item))
            else:
                self._gather(item, touched, events)
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
            if self._outage is None:
                timeout = self.flush_s - (time.monotonic() - last)
            else:  # the next retry, but every flush_s at least: the buffer's bound is kept
                timeout = min(self.flush_s, self._outage.next_try - time.monotonic())
            wake.wait(max(0.0, timeout))
            wake.clear()  # before taking: what is queued after this is seen now or next time
            while q:  # take everything already queued
                item = q.popleft()
                if item is None:
                    done = True
                    break
                pending.append(item)
                if isinstance(item, _Control) and item.op == "flush":
                    waiting.append(item)
                elif self._outage is not None and _is_batch(item):
                    self._pending_n += len(item)
            if self._outage is not None:
                try:
                    if self._pending_n > self.buffer_samples:
                        pending = self._drop_oldest(pending)
                    if done:
                        pending = self._last_tries(pending)
                    elif time.monotonic() >= self._outage.next_try:
                        pending = self._try_again(pending)
                except Exception as e:  # noqa: BLE001 - reported by close()
                    self.error, self._outage, pending = e, None, []
            elif done or (
                (pending or (self._deferred is not None and self._deferred()))
                and (waiting or time.monotonic() - last >= self.flush_s)
            ):
                if self.error is None:
                    try:
                        self._flush(pending, last=done)
                        pending = []
                    except StoreUnavailable as e:
                        if not self._undo_on:  # a store that does not say it may retry
                            self.error = e
                            pending = []
                        else:
                            pending = self._went_away(e, pending)
                            if done:
                                pending = self._last_tries(pending)
                    except Exception as e:  # noqa: BLE001 - reported by close()
                        # the transaction was rolled back: the series ids this writer
                        # knows may not exist any more, so it stops writing (fail-stop)
                        # rather than file samples under the wrong series
                        self.error = e
                        pending = []
                else:
                    pending = []
            for c in waiting:  # also while the database is away: flush() does not hang
                c.done.set()
            waiting = []
            if not pending:
                last = time.monotonic()

    # -- while the database is unreachable (the writer's thread) ----------------------------
    _pending_undo: _Undo | None = None
    _pending_deferred = 0

    def _went_away(self, e: StoreUnavailable, pending: list[Any]) -> list[Any]:
        """The flush of ``pending`` failed with the connection lost: keep it for later."""
        mark = getattr(self.store, "mark_down", None)
        if mark is not None:
            mark()
        out = self._outage = _Outage(e, time.monotonic())
        self.outages += 1
        return self._keep(out, e, pending)

    def _keep(self, out: _Outage, e: StoreUnavailable, pending: list[Any]) -> list[Any]:
        """After a failed flush of ``pending``: what still waits (all of it, unless the
        commit's fate is unknown: then it waits apart, neither written again nor dropped,
        until the store tells)."""
        if e.xid is not None and self._pending_undo is not None:
            out.xid, out.undo, out.inflight = e.xid, self._pending_undo, pending
            out.deferred = self._pending_deferred
            pending = []
        self._pending_undo, self._pending_deferred = None, 0
        self._pending_n = sum(len(x) for x in pending if _is_batch(x))
        return pending

    def _drop_oldest(self, pending: list[Any]) -> list[Any]:
        """Drop the oldest sample batches until at most the bound is left (events and
        controls stay), counting them."""
        excess = self._pending_n - self.buffer_samples
        keep: list[Any] = []
        gone = 0
        t0: int | None = None
        t1: int | None = None
        for item in pending:
            if gone < excess and _is_batch(item):
                if len(item):
                    ts = [x[2] for x in item]
                    lo, hi = min(ts), max(ts)
                    t0 = lo if t0 is None else min(t0, lo)
                    t1 = hi if t1 is None else max(t1, hi)
                gone += len(item)
                continue
            keep.append(item)
        self._pending_n -= gone
        self.dropped += gone
        if t0 is not None and t1 is not None:
            span = self.dropped_span
            self.dropped_span = (t0, t1) if span is None else (min(span[0], t0), max(span[1], t1))
            r = self._drop_report
            self._drop_report = (
                (gone, t0, t1) if r is None else (r[0] + gone, min(r[1], t0), max(r[2], t1))
            )
        return keep

    def _dropped_event(self) -> Event | None:
        if self._drop_report is None:
            return None
        n, t0, t1 = self._drop_report
        return Event(
            t1,
            "samples_dropped",
            f"{n} samples were dropped while the database was unreachable (more than"
            f" {self.buffer_samples} waited to be written)",
            None,
            {"count": n, "from_ns": t0, "to_ns": t1, "bound": self.buffer_samples},
        )

    def _try_again(self, pending: list[Any], last: bool = False) -> list[Any]:
        """Reconnect and write what waited (``last``: and end every series); on failure,
        wait longer (backoff) and return what still waits."""
        out = self._outage
        assert out is not None
        try:
            self.store.reconnect()  # type: ignore[attr-defined]
            if out.xid is not None:
                committed = self.store.committed(out.xid)  # type: ignore[attr-defined]
                if committed is None:  # still in progress on the server: ask again later
                    raise StoreUnavailable(f"transaction {out.xid} is still in progress")
                if getattr(self.store, "deferred_done", None) is not None:
                    self.store.deferred_done(out.deferred, committed)  # type: ignore[attr-defined]
                if not committed:
                    assert out.undo is not None
                    out.undo.restore(self)
                    pending = out.inflight + pending
                elif out.reported is not None and out.reported == self._drop_report:
                    self._drop_report = None  # its samples_dropped event is stored
                out.xid, out.undo, out.inflight, out.deferred = None, None, [], 0
                out.reported = None
        except StoreUnavailable as e:
            out.failed(e, time.monotonic())
            return pending
        except Exception as e:  # noqa: BLE001 - e.g. a server without txid_status: stop
            self.error = e
            self._outage = None
            return []
        report = self._dropped_event()
        away = time.monotonic() - out.since
        back = Event(
            time.time_ns(),
            "note",
            f"the database at {self.store.url} was unreachable for {away:.1f} s"
            f" ({out.tries + 1} tries to reconnect); what waited is written now",
            None,
            {"unreachable_s": round(away, 3), "tries": out.tries + 1},
        )
        try:
            self._flush([*pending, back] + ([report] if report is not None else []), last=last)
        except StoreUnavailable as e:
            pending = self._keep(out, e, pending)  # the report is made anew next time
            if out.xid is not None:
                out.reported = self._drop_report
            out.failed(e, time.monotonic())
            return pending
        except Exception as e:  # noqa: BLE001 - reported by close()
            self.error = e
            self._outage = None
            return []
        self.outage_log.append((away, out.tries + 1))
        self._drop_report = None
        self._outage = None
        self._pending_n = 0
        return []

    def _last_tries(self, pending: list[Any]) -> list[Any]:
        """Closing while the database is away: retry for ``final_retry_s``; then hand
        what was not written to the store to spool (or fail, for a store that cannot)."""
        out = self._outage
        assert out is not None
        if self.final_retry_s > 0:  # the run's end waits: say why
            then = (
                "keeping the rest of the run in a local spool file"
                if getattr(self.store, "spool_later", None) is not None
                else "giving up"
            )
            self.warn(
                f"the database at {self.store.url} is unreachable ({out.error}); retrying for"
                f" up to {self.final_retry_s:g} s (EDGEPROF_PG_FINAL_RETRY_S) before {then}"
            )
        deadline = time.monotonic() + self.final_retry_s
        while True:
            pending = self._try_again(pending, last=True)
            if self._outage is None:
                return []
            now = time.monotonic()
            if now >= deadline:
                break
            time.sleep(max(0.0, min(out.next_try, deadline) - now))
        uncertain = out.xid is not None
        if uncertain:  # unknown whether it committed: spooled too (the spool says so)
            assert out.undo is not None
            out.undo.restore(self)
            pending = out.inflight + pending
        keep = getattr(self.store, "spool_later", None)
        if keep is None:
            self.error = out.error
            self._outage = None
            return []
        keep(
            items=pending,
            describe=dict(self._describe),
            targets=dict(self._targets),
            default=self._default,
            dropped=self._dropped_event(),
            uncertain=uncertain,
        )
        self.spooled = True
        self._outage = None
        return []
