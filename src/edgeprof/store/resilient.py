"""A PostgreSQL store that outlives an unreachable database (farm runs; SQLite needs none).

:class:`ResilientStore` wraps a :class:`~.sql.SQLStore` whose connection can be lost. The
batch writer retries its own flushes (see :mod:`.writer`); this class covers the writes the
runner makes directly (``begin_target``, ``update_target``, ``add_log``, ``add_event``,
``end_run``): while the database is unreachable they are *deferred*, in order, and applied
at the start of the writer's next successful flush, in its transaction. A target begun
meanwhile gets a *provisional* id (negative), mapped to its real id when its insert lands;
every method that takes a target id maps it.

If the database is still away when the run ends, the writer hands over what it could not
write and ``end_run`` writes a *spool*: an ordinary edgeprof SQLite database
(``edgeprof-spool-<run uuid prefix>.db`` in ``$EDGEPROF_SPOOL_DIR`` or the current folder)
holding the run (same UUID; ``meta["spool"] = {"id", "of_url"}``), every target with its
final status, and the samples, events, logs and stacks that did not reach PostgreSQL, for
``edgeprof import SPOOL --db URL`` to merge (see :mod:`.transfer`).
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import uuid4

from edgeprof.errors import StoreError, StoreUnavailable
from edgeprof.model import Event, Labels
from edgeprof.store.base import RunInfo, Store, TargetInfo
from edgeprof.store.writer import BACKOFF_S, FINAL_RETRY_S, BatchWriter, _Control, _env_number

_PASS = (
    "add_timeblock",
    "write_chunks",
    "write_open_block",
    "supersede_open",
    "drop_open_blocks",
    "transaction",
    "commit",
    "reconnect",
    "committed",
    "mark_crashed",
)


def resilient(store: Store, warn: Callable[[str], None] | None = None) -> Store:
    """``store`` wrapped in a :class:`ResilientStore` when it can lose its connection."""
    if (
        isinstance(store, ResilientStore)
        or getattr(store, "can_lose_connection", False) is not True
    ):
        return store
    return ResilientStore(store, warn)


class ResilientStore:
    """The Store protocol over a PostgreSQL :class:`SQLStore`, deferring direct writes
    while the database is unreachable and spooling what never reached it."""

    can_lose_connection = True

    def __init__(self, inner: Any, warn: Callable[[str], None] | None = None) -> None:
        # checked now, before the run begins (not when it ends, with its data waiting)
        _env_number("EDGEPROF_PG_BUFFER_SAMPLES", 0)
        _env_number("EDGEPROF_PG_FINAL_RETRY_S", FINAL_RETRY_S)
        self.inner = inner
        self.url: str = inner.url
        self.warn = warn or (lambda msg: print(f"edgeprof: warning: {msg}", file=sys.stderr))
        self.down = False
        self.spool_path: str | None = None
        self._lock = threading.Lock()
        self._deferred: list[tuple[str, tuple[Any, ...]]] = []
        self._ids: dict[int, int] = {}  # provisional id → real id
        self._landed: list[int] = []  # provisional ids mapped by the application in flight
        self._next = -1
        self._run: RunInfo | None = None
        self._run_id: int | None = None
        self._targets: dict[int, TargetInfo] = {}  # every target handed out, in order
        self._fields: dict[int, dict[str, Any]] = {}  # their status fields so far
        self._end: tuple[str, int] | None = None
        self._leftovers: dict[str, Any] | None = None
        for name in _PASS:  # the writer's hot path: no lookup through __getattr__
            setattr(self, name, getattr(inner, name))

    def __getattr__(self, name: str) -> Any:  # readers and the rest
        if name == "inner":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    # -- ids ------------------------------------------------------------------------------
    def _map(self, tid: int | None) -> int | None:
        if tid is None or tid >= 0:
            return tid
        return self._ids[tid]

    # -- the writer's side (its thread) ---------------------------------------------------
    def mark_down(self) -> None:
        self.down = True

    def has_deferred(self) -> bool:
        return bool(self._deferred)

    def apply_deferred(self) -> int:
        """Write the deferred operations, in order, inside the caller's transaction; how
        many (for :meth:`deferred_done`)."""
        with self._lock:
            ops = list(self._deferred)
        self._landed = []
        for op, args in ops:
            self._apply(op, args)
        return len(ops)

    def deferred_done(self, n: int, committed: bool) -> None:
        """The transaction that applied the first ``n`` deferred operations committed (they
        are done), or did not (provisional ids it mapped are forgotten again)."""
        if committed:
            with self._lock:
                del self._deferred[:n]
                if not self._deferred:
                    self.down = False
        else:
            for p in self._landed:
                self._ids.pop(p, None)
        self._landed = []

    def spool_later(self, **leftovers: Any) -> None:
        """The writer closed with the database away: what it did not write (items in
        order, its target/describe/default state) goes to the spool at ``end_run``."""
        self._leftovers = leftovers
        self.down = True

    def _apply(self, op: str, args: tuple[Any, ...]) -> None:
        inner = self.inner
        if op == "begin_target":
            prov, info = args
            # a first try whose commit's answer was lost may have stored it: not twice
            rows = inner._rows(
                "SELECT id FROM targets WHERE run_id = ? AND idx = ? AND name = ?",
                (info.run_id, info.index, info.name),
            )
            self._ids[prov] = int(rows[0]["id"]) if rows else inner.begin_target(info)
            self._landed.append(prov)
        elif op == "update_target":
            tid, fields = args
            inner.update_target(self._map(tid), **fields)
        elif op == "add_log":
            tid, stream, text = args
            inner.add_log(self._map(tid), stream, text)
        elif op == "add_event":
            run_id, tid, ev = args
            inner.add_event(run_id, self._map(tid), ev)
        elif op == "end_run":
            inner.end_run(*args)

    # -- direct writes (any thread) -------------------------------------------------------
    def _write(self, op: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            if self.down or self._deferred:
                self._deferred.append((op, args))
                return
        try:
            self._apply(op, args)
        except StoreUnavailable:
            with self._lock:
                self.down = True
                self._deferred.append((op, args))

    def begin_run(self, info: RunInfo) -> int:
        try:
            run_id = int(self.inner.begin_run(info))
        except StoreUnavailable as e:
            raise StoreError(
                f"{e}; nothing ran yet: start the run again once the database is reachable"
            ) from None
        self._run, self._run_id = info, run_id
        return run_id

    def begin_target(self, info: TargetInfo) -> int:
        with self._lock:
            direct = not (self.down or self._deferred)
        if direct:
            try:
                tid = int(self.inner.begin_target(info))
            except StoreUnavailable:
                self.down = True
            else:
                self._targets[tid], self._fields[tid] = info, {}
                return tid
        with self._lock:
            prov = self._next
            self._next -= 1
            self._targets[prov], self._fields[prov] = info, {}
            self._deferred.append(("begin_target", (prov, info)))
        return prov

    def update_target(self, target_id: int, **fields: Any) -> None:
        self._fields.setdefault(target_id, {}).update(fields)
        self._write("update_target", (target_id, fields))

    def add_log(self, target_id: int, stream: str, text: str) -> None:
        self._write("add_log", (target_id, stream, text))

    def add_event(self, run_id: int, target_id: int | None, ev: Event) -> None:
        self._write("add_event", (run_id, target_id, ev))

    def series_id(
        self,
        run_id: int,
        target_id: int | None,
        metric: str,
        labels: Labels,
        unit: str | None = None,
        kind: str | None = None,
    ) -> int:
        return int(self.inner.series_id(run_id, self._map(target_id), metric, labels, unit, kind))

    def write_events(self, run_id: int, rows: Sequence[tuple[int | None, Event]]) -> None:
        self.inner.write_events(run_id, [(self._map(t), ev) for t, ev in rows])

    def add_code_samples(self, target_id: int, rows: Sequence[Any]) -> None:
        self.inner.add_code_samples(self._map(target_id), rows)

    def end_run(self, run_id: int, status: str, ended_ns: int) -> None:
        """The run's end; with the database away (after a bounded retry when the writer
        did not already spend it) the run is spooled to a local SQLite file."""
        self._end = (status, ended_ns)
        if self._leftovers is None and self._finish(run_id, status, ended_ns):
            return
        self._spool()

    def _finish(self, run_id: int, status: str, ended_ns: int) -> bool:
        """Write the deferred operations and the run's end, retrying for a while. A commit
        whose answer was lost is asked about (after reconnecting) before anything is
        written again, so that nothing is written twice; unanswered by the deadline, its
        operations go to the spool too (its import skips what the database has)."""
        deadline = time.monotonic() + _env_number("EDGEPROF_PG_FINAL_RETRY_S", FINAL_RETRY_S)
        delay = BACKOFF_S[0]
        first = not (self.down or self._deferred)
        lost: tuple[int, int] | None = None  # a commit without answer: (xid, operations)
        while True:
            try:
                if not first:
                    self.inner.reconnect()
                first = False
                if lost is not None:
                    done = self.inner.committed(lost[0])
                    if done is None:  # still in progress on the server: ask again later
                        raise StoreUnavailable(f"transaction {lost[0]} is still in progress")
                    self.deferred_done(lost[1], done)
                    lost = None
                    if done and not self._deferred:
                        self.down = False
                        return True
                n = 0
                try:
                    with self.inner.transaction():
                        n = self.apply_deferred()
                        self.inner.end_run(run_id, status, ended_ns)
                except StoreUnavailable as e:
                    if e.xid is None:
                        self.deferred_done(n, False)
                    else:  # done or not: told after reconnecting
                        lost = (e.xid, n)
                    raise
                self.deferred_done(n, True)
                self.down = False
                return True
            except StoreUnavailable:
                self.down = True
                now = time.monotonic()
                if now >= deadline:
                    return False
                time.sleep(min(delay * random.uniform(0.5, 1.0), max(0.0, deadline - now)))
                delay = min(delay * 2, BACKOFF_S[1])

    # -- the spool ------------------------------------------------------------------------
    def _spool(self) -> None:
        from edgeprof.store import open_store

        run = self._run
        if run is None or self.spool_path is not None:
            return
        spool_id = str(uuid4())
        left = self._leftovers or {}
        meta = {**run.meta, "spool": {"id": spool_id, "of_url": self.url}}
        if left.get("uncertain"):
            meta["spool"]["uncertain_commit"] = True
        # the folder asked for (created if missing); when it cannot hold the file, the
        # system's temporary folder: the run's data must not be lost for a folder's sake
        asked = Path(os.environ.get("EDGEPROF_SPOOL_DIR") or ".")
        tried: list[str] = []
        for folder in dict.fromkeys([asked, Path(tempfile.gettempdir())]):
            path = folder / f"edgeprof-spool-{run.uuid[:8]}.db"
            if path.exists():
                path = folder / f"edgeprof-spool-{run.uuid[:8]}-{spool_id[:8]}.db"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                sp = open_store(f"sqlite:///{path}")
            except (OSError, StoreError) as e:
                tried.append(f"{path}: {e}")
                continue
            break
        else:
            raise StoreError(
                f"the database at {self.url} stayed unreachable and the rest of run "
                f"{run.uuid} could not be kept in a spool file ({'; '.join(tried)}); set "
                "EDGEPROF_SPOOL_DIR to a writable folder"
            )
        if tried:
            self.warn(f"the spool file could not be written where asked ({tried[0]})")
        try:
            rid = sp.begin_run(replace(run, meta=meta))
            ids: dict[int, int] = {}
            for hid, info in list(self._targets.items()):
                ids[hid] = sp.begin_target(replace(info, run_id=rid))
                if self._fields.get(hid):
                    sp.update_target(ids[hid], **self._fields[hid])
            items = left.get("items") or []
            dropped = left.get("dropped")
            if items or dropped is not None:
                self._replay(sp, rid, ids, left, items, dropped)
            with self._lock:
                ops, self._deferred = list(self._deferred), []
            for op, args in ops:  # what the run wrote directly and never reached the db
                if op == "add_log":
                    tid, stream, text = args
                    sp.add_log(ids[tid], stream, text)
                elif op == "add_event":
                    _, tid, ev = args
                    sp.add_event(rid, None if tid is None else ids[tid], ev)
            status, ended = self._end or ("interrupted", time.time_ns())
            sp.end_run(rid, status, ended)
        finally:
            sp.close()
        self.spool_path = str(path)
        extra = (
            " (its last batch before the outage may be in the database too: the commit's"
            " answer was lost)"
            if left.get("uncertain")
            else ""
        )
        self.warn(
            f"the database at {self.url} stayed unreachable; the rest of run {run.uuid} is"
            f" kept in {path}{extra}; load it later with: edgeprof import {path} --db {self.url}"
        )

    @staticmethod
    def _replay(
        sp: Any,
        rid: int,
        ids: dict[int, int],
        left: dict[str, Any],
        items: list[Any],
        dropped: Event | None,
    ) -> None:
        """The writer's unwritten items through a writer of the spool, its state first."""
        w = BatchWriter(sp, rid)
        q: list[Any] = [_Control("describe", [(n, u, k) for n, (u, k) in left["describe"].items()])]
        q += [_Control("target", name, ids[tid]) for name, tid in left["targets"].items()]
        default = left.get("default")
        q.append(_Control("default", None if default is None else ids[default]))
        for item in items:
            if isinstance(item, _Control) and item.op in ("target", "default", "end"):
                tid = item.args[-1]
                mapped = None if tid is None else ids[tid]
                item = _Control(item.op, *item.args[:-1], mapped)
            q.append(item)
        if dropped is not None:
            q.append(dropped)
        w._q.extend(q)
        w.close()

    def close(self) -> None:
        if self._leftovers is not None and self.spool_path is None:
            with contextlib.suppress(Exception):
                self._spool()
        self.inner.close()
