"""Runs travel as files: copy a run from one database into another (``edgeprof import``,
``edgeprof export --format sqlite``).

A run is copied whole, in one transaction of the destination (an import that fails leaves
nothing behind): its row (same UUID and metadata, a new id), targets, series, final chunks
and time blocks as they are (the compressed blobs are not decoded; their series and time
block ids are mapped), the samples still in open blocks (a run cut off by a power loss or
a killed profiler has them) written as final chunks (:mod:`.chunks`, :mod:`.codec`), so
that the destination holds none, events, logs and sampled stacks.

Idempotent by UUID. A run whose UUID the destination already holds is skipped, except:

* a *spool* (a run written locally while PostgreSQL was unreachable; its meta has
  ``"spool": {"id": ...}``) is *merged* into the destination's copy: targets matched by
  ``idx``, series by (target idx, metric, labels), its samples appended after the
  destination's (whose open-block samples become final chunks first, so that time order
  holds), its status taken; the spool's id is added to the run's ``meta["spools"]`` and a
  second import of the same spool adds nothing. What the destination has already (a
  spool's first batch whose commit reached PostgreSQL though its answer was lost:
  ``meta["spool"]["uncertain_commit"]``) is not added twice: a series' samples at or
  before the destination's newest, events and stack samples identical to one there. The
  run's row is locked (PostgreSQL: ``FOR UPDATE``) so two imports of one spool or one
  file at once do it once;
* a destination copy that is partial (``running``, ``crashed``, ``interrupted``) while the
  source's is complete (``completed``/``error`` with an end) is *replaced* (deleted and
  imported anew, keeping its id).

A source run still marked ``running`` (its device lost power or its profiler was killed)
is imported with what it holds (everything committed) and marked ``crashed``, ending at
its last sample, as ``edgeprof cleanup`` marks such runs.

Ids: into PostgreSQL, rows that others point at (targets, series, time blocks, stacks) get
ids reserved from their tables' sequences (``nextval`` over ``generate_series``: a sequence
never hands a value out twice, whatever other sessions do meanwhile) and are written with
``COPY ... FROM STDIN (FORMAT BINARY)``, as are chunks, events, logs and code samples (their
ids come from the column default, in the order written: a series' chunks keep their
order). Into SQLite, the write lock is taken first (``BEGIN IMMEDIATE``), so the next ids
are known (one above the larger of the table's largest id and its AUTOINCREMENT counter)
and rows are written with ``executemany``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from edgeprof.errors import StoreError, UserError
from edgeprof.store import chunks
from edgeprof.store.base import TARGET_FIELDS
from edgeprof.store.schema import READABLE_FROM, SCHEMA_VERSION
from edgeprof.store.sql import SQLStore, dumps

PARTIAL = frozenset({"running", "crashed", "interrupted"})
"""Statuses of a copy that a complete one replaces."""
COMPLETE = frozenset({"completed", "error"})
BATCH = 2000
"""Rows read and written at a time (chunks of ~1,000 samples each, time blocks, events)."""

Progress = Callable[[int, int], None]
"""``progress(samples_done, samples_total)``."""


@dataclass
class ImportResult:
    """What became of one run."""

    uuid: str
    action: str
    """``added``, ``merged``, ``skipped`` or ``replaced``."""
    dst_run_id: int | None
    samples: int
    """Samples written (0 when skipped)."""
    note: str = ""
    spec_name: str = ""
    targets: int = 0
    source: str = ""
    src_run_id: int | None = None
    status: str = ""
    """The run's status in the destination."""
    partial: bool = False
    """The source run was still ``running`` (imported as ``crashed``)."""
    live: bool = False
    """...and its profiler still runs on this host (a file being written)."""
    last_ns: int | None = None
    """Its newest sample (None without samples)."""
    seconds: float = 0.0
    events: int = 0
    code_samples: int = 0
    already: int = 0
    """Merge: the spool's samples the destination held already (not added twice)."""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- reading the source ------------------------------------------------------------------------


@dataclass
class _Run:
    row: dict[str, Any]
    uuid: str
    meta: dict[str, Any]
    spool_id: str | None
    targets: list[dict[str, Any]] = field(default_factory=list)
    series: list[dict[str, Any]] = field(default_factory=list)


def _loads(text: Any) -> Any:
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return {}


def _read_run(src: SQLStore, run_id: int) -> _Run:
    rows = src._rows("SELECT * FROM runs WHERE id = ?", (run_id,))
    if not rows:
        raise StoreError(f"no run with id {run_id} in {src.url}; see 'edgeprof runs'")
    row = rows[0]
    meta = _loads(row.get("meta"))
    meta = meta if isinstance(meta, dict) else {}
    spool = meta.get("spool")
    spool_id = str(spool["id"]) if isinstance(spool, dict) and spool.get("id") else None
    run = _Run(row, src._uuid_of(row), meta, spool_id)
    run.targets = src._rows("SELECT * FROM targets WHERE run_id = ? ORDER BY id", (run_id,))
    run.series = src._rows(
        "SELECT id, target_id, metric, labels, unit, kind FROM series WHERE run_id = ? ORDER BY id",
        (run_id,),
    )
    return run


def _failed(store: SQLStore, e: Exception) -> Exception:
    """A driver error of ``store`` as one StoreError naming it (as :meth:`SQLStore._cursor`)."""
    from edgeprof.store.sql import _is_db_error

    if not _is_db_error(e):
        return e
    with contextlib.suppress(Exception):
        store.conn.rollback()
    return store._fail(e)


@contextlib.contextmanager
def _reading(
    store: SQLStore, sql: str, params: Sequence[Any] = ()
) -> Iterator[Iterator[list[Any]]]:
    """Batches of the rows of a query, read while the destination is written: only the
    source's own errors are reported as the source's."""
    with store.lock:
        cur = store.conn.cursor()
        try:
            cur.execute(store._q(sql), params)
        except Exception as e:
            raise _failed(store, e) from None

        def batches() -> Iterator[list[Any]]:
            while True:
                try:
                    rows = cur.fetchmany(BATCH)
                except Exception as e:
                    raise _failed(store, e) from None
                if not rows:
                    return
                yield rows

        yield batches()


def _open_arrays(store: SQLStore, run_id: int) -> dict[int, tuple[Any, Any]]:
    """series id → (t, v) of the run's samples still in open blocks (those no final chunk
    supersedes), in write order."""
    parts: dict[int, tuple[list[Any], list[Any]]] = {}
    for sid, _bid, t, v in store._open_entries(run_id):
        p = parts.setdefault(sid, ([], []))
        p[0].append(t)
        p[1].append(v)
    return {
        sid: (np.concatenate(ts).astype(np.int64), np.concatenate(vs).astype(np.float64))
        for sid, (ts, vs) in parts.items()
        if sum(len(t) for t in ts)
    }


# -- writing the destination -------------------------------------------------------------------

_TYPES = {
    "targets": {
        "id": "int8",
        "run_id": "int8",
        "idx": "int4",
        "name": "text",
        "args": "text",
        "config": "text",
        "container_id": "text",
        "started_ns": "int8",
        "ended_ns": "int8",
        "status": "text",
        "exit_code": "int4",
        "oom_killed": "int4",
        "timed_out": "int4",
        "duration_s": "float8",
        "error": "text",
    },
    "series": {
        "id": "int8",
        "run_id": "int8",
        "target_id": "int8",
        "metric": "text",
        "labels": "text",
        "unit": "text",
        "kind": "text",
    },
    "timeblocks": {"id": "int8", "n": "int4", "t0_ns": "int8", "t1_ns": "int8", "ts": "bytea"},
    "chunks": {
        "series_id": "int8",
        "timeblock_id": "int8",
        "n": "int4",
        "t0_ns": "int8",
        "t1_ns": "int8",
        "vmin": "float8",
        "vmax": "float8",
        "vsum": "float8",
        "mode": "int4",
        "ts": "bytea",
        "vals": "bytea",
    },
    "events": {
        "run_id": "int8",
        "target_id": "int8",
        "t_ns": "int8",
        "kind": "text",
        "message": "text",
        "data": "text",
    },
    "logs": {"target_id": "int8", "stream": "text", "text": "text"},
    "code_stacks": {"id": "int8", "run_id": "int8", "hash": "text", "stack": "text"},
    "code_samples": {
        "target_id": "int8",
        "t_ns": "int8",
        "pid": "int4",
        "process": "text",
        "thread": "text",
        "kind": "text",
        "stack_id": "int8",
        "count": "int4",
    },
}
_CHUNK_COLS = list(_TYPES["chunks"])
_TARGET_COLS = [c for c in _TYPES["targets"] if c not in ("id", "run_id")]
_TARGET_STATUS = sorted(TARGET_FIELDS)  # what the runner sets on a target as it runs


class _Dst:
    """Writes into the destination inside its transaction."""

    def __init__(self, store: SQLStore) -> None:
        self.s = store
        self.pg = store.d.name == "postgresql"
        self.cur = store.conn.cursor()

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self.cur.execute(self.s._q(sql), params)
        return self.cur.fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        self.cur.execute(self.s._q(sql), params)
        return list(self.cur.fetchall())

    def exec(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.cur.execute(self.s._q(sql), params)

    def text(self, v: Any) -> Any:
        """PostgreSQL's text cannot hold NUL (as :meth:`SQLStore._text`)."""
        return self.s._text(v) if self.pg and isinstance(v, str) else v

    def reserve(self, table: str, n: int) -> list[int]:
        """``n`` new ids of ``table``, ascending."""
        if n <= 0:
            return []
        if self.pg:
            got = self.all(
                f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))"
                " FROM generate_series(1, ?)",
                (n,),
            )
            return sorted(int(r[0]) for r in got)
        # SQLite, write lock held (BEGIN IMMEDIATE): AUTOINCREMENT gives the next row one
        # above the larger of the table's largest id and its counter
        top = int(self.one(f"SELECT COALESCE(MAX(id), 0) FROM {table}")[0])
        seq = self.one("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,))
        base = max(top, int(seq[0]) if seq else 0)
        return list(range(base + 1, base + n + 1))

    def insert(self, table: str, cols: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Write rows (COPY into PostgreSQL); how many."""
        n = 0
        if self.pg:
            types = [_TYPES[table][c] for c in cols]
            texts = [i for i, t in enumerate(types) if t == "text"]
            with self.cur.copy(
                f"COPY {table} ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)"
            ) as cp:
                cp.set_types(types)
                for r in rows:
                    if texts:
                        r = list(r)
                        for i in texts:
                            r[i] = self.text(r[i])
                    cp.write_row(r)
                    n += 1
            return n
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        batch: list[Sequence[Any]] = []
        for r in rows:
            batch.append(r)
            if len(batch) >= BATCH:
                self.cur.executemany(sql, batch)
                n += len(batch)
                batch = []
        if batch:
            self.cur.executemany(sql, batch)
            n += len(batch)
        return n

    def final_chunks(self, arrays: dict[int, tuple[Any, Any]]) -> int:
        """Samples (series id → t, v, in the destination's ids) as final chunks; series
        with the same timestamps share time blocks (as the batch writer's); how many."""
        by_times: dict[bytes, list[int]] = {}
        for sid, (t, _v) in arrays.items():
            by_times.setdefault(np.asarray(t, dtype=np.int64).tobytes(), []).append(sid)
        blocks: list[tuple[int, int, int, bytes]] = []
        pending: list[tuple[int, list[int], int, int]] = []  # block index, sids, a, z
        for group in by_times.values():
            t_all = arrays[group[0]][0]
            for a, z in chunks.pieces(t_all):
                pending.append((len(blocks), group, a, z))
                blocks.append(chunks.timeblock(t_all[a:z]))
        ids = self.reserve("timeblocks", len(blocks))
        self.insert(
            "timeblocks",
            ["id", "n", "t0_ns", "t1_ns", "ts"],
            ((i, *b) for i, b in zip(ids, blocks, strict=True)),
        )
        rows: list[chunks.ChunkRow] = []
        n = 0
        for k, group, a, z in pending:
            t = arrays[group[0]][0][a:z]
            for sid in group:
                row, _mode = chunks.final_row(sid, ids[k], t, arrays[sid][1][a:z])
                rows.append(row)
                n += z - a
        # in series-then-piece order, as written: a series' chunks keep their order
        rows.sort(key=lambda r: r[0])
        self.insert("chunks", _CHUNK_COLS, rows)
        return n


def _merge_log(old: str, new: str) -> str:
    """A stream's text when a spool brings more of it."""
    if new.startswith(old):
        return new
    if new in old:
        return old
    return old + new


# -- one run -----------------------------------------------------------------------------------


def _find(dst: _Dst, uuid: str) -> dict[str, Any] | None:
    if not dst.s._meta:
        return None
    # PostgreSQL: the run's row locked until this import commits; another import of the
    # same run (the same spool, the same complete file) waits here and then sees what this
    # one did (a spool id recorded: skipped; a replaced row: gone, so its INSERT meets the
    # unique UUID index and it looks again). SQLite: BEGIN IMMEDIATE serializes imports.
    lock = " FOR UPDATE" if dst.pg else ""
    got = dst.all(f"SELECT id, status, ended_ns, meta FROM runs WHERE uuid = ?{lock}", (uuid,))
    if not got:
        return None
    rid, status, ended, meta = got[0]
    m = _loads(meta)
    return {
        "id": int(rid),
        "status": status,
        "ended_ns": ended,
        "meta": m if isinstance(m, dict) else {},
    }


def _decide(run: _Run, have: dict[str, Any] | None) -> tuple[str, str]:
    if have is None:
        return "added", ""
    if run.spool_id is not None:
        if run.spool_id in (have["meta"].get("spools") or []):
            return "skipped", f"already there as run {have['id']} (this spool was merged before)"
        return "merged", ""
    complete = run.row["status"] in COMPLETE and run.row["ended_ns"] is not None
    if have["status"] in PARTIAL and complete:
        return "replaced", (
            f"run {have['id']} there was {have['status']}: replaced by this complete copy"
        )
    return "skipped", f"already there as run {have['id']}"


def copy_run(
    src: SQLStore, run_id: int, dst: SQLStore, progress: Progress | None = None
) -> ImportResult:
    """Copy run ``run_id`` of ``src`` into ``dst`` (see the module's docstring): added,
    merged (a spool), replaced (a partial copy) or skipped (already there)."""
    if dst.readonly:
        raise StoreError(f"{dst.url} is open read-only; cannot import into it")
    t0 = time.perf_counter()
    try:
        with src.snapshot():
            res = _copy(src, run_id, dst, progress)
    except StoreError as e:
        # PostgreSQL: another import added the same run meanwhile (the unique UUID index
        # refused ours); look again: it is skipped now
        if "runs_uuid" not in str(e):
            raise
        with src.snapshot():
            res = _copy(src, run_id, dst, progress)
    res.seconds = time.perf_counter() - t0
    return res


def _copy(src: SQLStore, run_id: int, dst: SQLStore, progress: Progress | None) -> ImportResult:
    run = _read_run(src, run_id)
    row = run.row
    res = ImportResult(
        uuid=run.uuid,
        action="skipped",
        dst_run_id=None,
        samples=0,
        spec_name=row["spec_name"],
        targets=len(run.targets),
        src_run_id=run_id,
        status=row["status"],
    )
    with dst.transaction():
        w = _Dst(dst)
        if not w.pg:
            if dst.conn.in_transaction:
                dst.conn.commit()
            w.exec("BEGIN IMMEDIATE")  # the write lock now: the next ids are ours
        have = _find(w, run.uuid)
        res.action, res.note = _decide(run, have)
        if res.action == "skipped":
            assert have is not None
            res.dst_run_id, res.status = have["id"], have["status"]
            return res
        _write(src, run, w, have, res, progress)
    return res


def _write(
    src: SQLStore,
    run: _Run,
    w: _Dst,
    have: dict[str, Any] | None,
    res: ImportResult,
    progress: Progress | None,
) -> None:
    row = run.row
    rid = int(row["id"])
    opened = _open_arrays(src, rid)
    total = int(
        src._rows(
            "SELECT COALESCE(SUM(c.n), 0) AS n FROM chunks c JOIN series s"
            " ON s.id = c.series_id WHERE s.run_id = ?",
            (rid,),
        )[0]["n"]
    ) + sum(len(t) for t, _ in opened.values())
    last = src._rows(
        "SELECT MAX(c.t1_ns) AS t FROM chunks c JOIN series s ON s.id = c.series_id"
        " WHERE s.run_id = ?",
        (rid,),
    )[0]["t"]
    last_ns = None if last is None else int(last)
    for t, _v in opened.values():
        last_ns = max(int(t.max()), last_ns or int(t.max()))
    res.last_ns = last_ns
    status, ended_ns = row["status"], row["ended_ns"]
    res.partial = status == "running"
    if res.partial:  # crashed (nothing will finish it in the destination), at its last sample
        from edgeprof.owner import owner_gone

        owner = _loads(row.get("owner"))
        res.live = isinstance(owner, dict) and owner_gone(owner) is False
        ends = [x for x in (last_ns, row["ended_ns"]) if x is not None]
        if not ends:
            ev = src._rows("SELECT MAX(t_ns) AS t FROM events WHERE run_id = ?", (rid,))
            ends = [int(ev[0]["t"])] if ev and ev[0]["t"] is not None else []
        status, ended_ns = "crashed", max(ends) if ends else int(row["started_ns"])
    res.status = status

    meta = dict(run.meta)
    if run.spool_id is not None:
        meta.pop("spool", None)
    if res.action == "merged":
        assert have is not None
        dst_id = have["id"]
        _finalize_open(w, dst_id)
        meta = dict(have["meta"])
        meta["spools"] = [*(meta.get("spools") or []), run.spool_id]
        w.exec(
            "UPDATE runs SET status = ?, ended_ns = ?, meta = ? WHERE id = ?",
            (status, ended_ns, dumps(meta), dst_id),
        )
    else:
        if run.spool_id is not None:
            meta["spools"] = [run.spool_id]
        keep_id: int | None = None
        if res.action == "replaced":
            assert have is not None
            keep_id = have["id"]
            _delete_run(w, keep_id)
        cols = [
            "spec_name", "image", "spec_path", "spec_text", "started_ns", "ended_ns",
            "status", "interval_s", "host", "edgeprof_version", "owner", "uuid", "meta",
        ]  # fmt: skip
        vals = [
            row["spec_name"], row["image"], row.get("spec_path"), row.get("spec_text"),
            row["started_ns"], ended_ns, status, row["interval_s"], row.get("host"),
            row.get("edgeprof_version"), row.get("owner"), run.uuid, dumps(meta),
        ]  # fmt: skip
        vals = [w.text(v) for v in vals]
        if keep_id is not None:
            cols.insert(0, "id")
            vals.insert(0, keep_id)
        marks = ", ".join("?" * len(cols))
        got = w.one(f"INSERT INTO runs ({', '.join(cols)}) VALUES ({marks}) RETURNING id", vals)
        dst_id = int(got[0])
    res.dst_run_id = dst_id

    merge = res.action == "merged"
    tmap = _copy_targets(run, w, dst_id, merge, res.partial)
    smap = _copy_series(run, w, dst_id, tmap, merge)
    redo: dict[int, tuple[Any, Any]] = {}
    if merge:
        # a spool's first batch may have reached the database after all (its commit's
        # answer was lost: meta["spool"]["uncertain_commit"]): the series whose samples
        # start at or before the destination's newest are decoded and only what is newer
        # is written, so nothing is there twice and time order holds
        for sid, last in _overlaps(src, rid, w, smap, opened).items():
            t, v = src.series_samples(sid)
            keep = np.asarray(t) > last
            res.already += int(len(t) - int(keep.sum()))
            if keep.any():
                redo[smap[sid]] = (np.asarray(t)[keep], np.asarray(v)[keep])
            else:
                redo[smap[sid]] = (t[:0], v[:0])
            opened.pop(sid, None)
        total -= res.already
    skip = {sid for sid, d in smap.items() if d in redo}
    done = _copy_chunks(src, rid, w, smap, total, progress, skip)
    more = {smap[sid]: a for sid, a in opened.items() if sid in smap}
    more.update((d, a) for d, a in redo.items() if len(a[0]))
    if more:
        done += w.final_chunks(more)
        if progress is not None:
            progress(done, total)
    res.samples = done
    res.events = _copy_events(src, rid, w, dst_id, tmap, merge)
    _copy_logs(src, rid, w, tmap, merge)
    res.code_samples = _copy_code(src, rid, w, dst_id, tmap, merge)
    if res.already:
        res.note = (
            f"{res.already:,} of the spool's samples were in the database already (its first "
            "batch had reached it): not added twice"
        )
    if res.partial:
        why = (
            "it was still being recorded"
            if res.live
            else "its device lost power or its profiler was killed"
        )
        message = (
            f"the run was not finished in the file it was imported from ({why}); imported "
            "up to its last complete batch"
        )
        data = dumps({"samples": done, "last_sample_ns": last_ns})
        w.insert(
            "events", list(_TYPES["events"]), [(dst_id, None, ended_ns, "crashed", message, data)]
        )
        res.events += 1
    # forget what the store cached of ids that no longer mean the same (a replaced run)
    dst = w.s
    for key in [k for k in dst._stacks if k[0] == dst_id]:
        del dst._stacks[key]
    dst._runs_of.clear()


def _overlaps(
    src: SQLStore, run_id: int, w: _Dst, smap: dict[int, int], opened: dict[int, tuple[Any, Any]]
) -> dict[int, int]:
    """source series id → the destination series' newest timestamp, for the series of a
    merge whose samples start at or before it (the destination's samples are all in final
    chunks by now)."""
    dst_ids = sorted(set(smap.values()))
    last: dict[int, int] = {}
    for i in range(0, len(dst_ids), 500):
        part = dst_ids[i : i + 500]
        for sid, t in w.all(
            "SELECT series_id, MAX(t1_ns) FROM chunks WHERE series_id IN"
            f" ({', '.join('?' * len(part))}) GROUP BY series_id",
            part,
        ):
            if t is not None:
                last[int(sid)] = int(t)
    if not last:
        return {}
    first: dict[int, int] = {
        int(r["series_id"]): int(r["t"])
        for r in src._rows(
            "SELECT c.series_id, MIN(c.t0_ns) AS t FROM chunks c JOIN series s"
            " ON s.id = c.series_id WHERE s.run_id = ? GROUP BY c.series_id",
            (run_id,),
        )
    }
    for sid, (t, _v) in opened.items():
        first[sid] = min(int(t.min()), first.get(sid, int(t.min())))
    return {
        sid: last[smap[sid]]
        for sid, t0 in first.items()
        if sid in smap and smap[sid] in last and t0 <= last[smap[sid]]
    }


def _finalize_open(w: _Dst, run_id: int) -> None:
    """The destination run's samples in open blocks → final chunks (after which what a
    merge appends comes after them)."""
    arrays = _open_arrays(w.s, run_id)
    if arrays:
        w.final_chunks(arrays)
    w.exec("DELETE FROM open_blocks WHERE run_id = ?", (run_id,))
    w.exec("UPDATE series SET final_block = NULL WHERE run_id = ?", (run_id,))


def _delete_run(w: _Dst, run_id: int) -> None:
    """Everything of a run (its id to be used again in the same transaction)."""
    tbs = {
        int(r[0])
        for r in w.all(
            "SELECT DISTINCT timeblock_id FROM chunks WHERE timeblock_id IS NOT NULL AND"
            " series_id IN (SELECT id FROM series WHERE run_id = ?)",
            (run_id,),
        )
    }
    targets = "SELECT id FROM targets WHERE run_id = ?"
    for sql in (
        "DELETE FROM chunks WHERE series_id IN (SELECT id FROM series WHERE run_id = ?)",
        "DELETE FROM open_blocks WHERE run_id = ?",
        "DELETE FROM series WHERE run_id = ?",
        "DELETE FROM events WHERE run_id = ?",
        f"DELETE FROM logs WHERE target_id IN ({targets})",
        f"DELETE FROM code_samples WHERE target_id IN ({targets})",
        "DELETE FROM code_stacks WHERE run_id = ?",
        "DELETE FROM targets WHERE run_id = ?",
        "DELETE FROM runs WHERE id = ?",
    ):
        w.exec(sql, (run_id,))
    if tbs:
        # a time block is one run's (a schema-1 database migrated may share one between
        # runs' host series): keep those other chunks still use
        lo, hi = min(tbs), max(tbs)
        used = {
            int(r[0])
            for r in w.all(
                "SELECT DISTINCT timeblock_id FROM chunks WHERE timeblock_id BETWEEN ? AND ?",
                (lo, hi),
            )
        }
        gone = sorted(tbs - used)
        for i in range(0, len(gone), 500):
            part = gone[i : i + 500]
            w.exec(f"DELETE FROM timeblocks WHERE id IN ({', '.join('?' * len(part))})", part)


def _crash_target(status: str) -> str:
    return {"running": "crashed", "pending": "not_run"}.get(status, status)


def _copy_targets(
    run: _Run, w: _Dst, dst_id: int, merge: bool, partial: bool
) -> dict[int, tuple[int, int]]:
    """source target id → (destination target id, idx)."""
    out: dict[int, tuple[int, int]] = {}
    existing: dict[int, dict[str, Any]] = {}
    if merge:
        for r in w.all(
            f"SELECT id, idx, {', '.join(_TARGET_STATUS)} FROM targets WHERE run_id = ?",
            (dst_id,),
        ):
            existing[int(r[1])] = {"id": int(r[0]), **dict(zip(_TARGET_STATUS, r[2:], strict=True))}
    new: list[dict[str, Any]] = []
    for t in run.targets:
        t = dict(t)
        if partial:
            t["status"] = _crash_target(t["status"])
        have = existing.get(int(t["idx"]))
        if have is None:
            new.append(t)
            continue
        sets = {k: t[k] if t.get(k) is not None else have[k] for k in _TARGET_STATUS}
        w.exec(
            f"UPDATE targets SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
            [w.text(v) for v in sets.values()] + [have["id"]],
        )
        out[int(t["id"])] = (have["id"], int(t["idx"]))
    ids = w.reserve("targets", len(new))
    w.insert(
        "targets",
        ["id", "run_id", *_TARGET_COLS],
        [(i, dst_id, *(t.get(c) for c in _TARGET_COLS)) for i, t in zip(ids, new, strict=True)],
    )
    for i, t in zip(ids, new, strict=True):
        out[int(t["id"])] = (i, int(t["idx"]))
    return out


def _labels_key(text: str) -> str:
    with contextlib.suppress(ValueError):
        return dumps(json.loads(text))
    return text


def _copy_series(
    run: _Run, w: _Dst, dst_id: int, tmap: dict[int, tuple[int, int]], merge: bool
) -> dict[int, int]:
    """source series id → destination series id."""
    out: dict[int, int] = {}
    existing: dict[tuple[int | None, str, str], int] = {}
    if merge:
        idx_of = {
            int(r[0]): int(r[1])
            for r in w.all("SELECT id, idx FROM targets WHERE run_id = ?", (dst_id,))
        }
        for sid, tid, metric, labels in w.all(
            "SELECT id, target_id, metric, labels FROM series WHERE run_id = ?", (dst_id,)
        ):
            idx = None if tid is None else idx_of.get(int(tid))
            existing.setdefault((idx, metric, _labels_key(labels)), int(sid))
    new: list[tuple[dict[str, Any], int | None]] = []
    for s in run.series:
        tid = s["target_id"]
        mapped = None if tid is None else tmap.get(int(tid))
        key = (None if mapped is None else mapped[1], s["metric"], _labels_key(s["labels"]))
        got = existing.get(key)
        if got is not None:
            out[int(s["id"])] = got
        else:
            new.append((s, None if mapped is None else mapped[0]))
    ids = w.reserve("series", len(new))
    w.insert(
        "series",
        ["id", "run_id", "target_id", "metric", "labels", "unit", "kind"],
        [
            (i, dst_id, tid, s["metric"], s["labels"], s["unit"], s["kind"])
            for i, (s, tid) in zip(ids, new, strict=True)
        ],
    )
    for i, (s, _tid) in zip(ids, new, strict=True):
        out[int(s["id"])] = i
    return out


def _copy_chunks(
    src: SQLStore,
    run_id: int,
    w: _Dst,
    smap: dict[int, int],
    total: int,
    progress: Progress | None,
    skip: set[int] | None = None,
) -> int:
    """The run's chunks and their time blocks as they are (ids mapped), but those of the
    series in ``skip``; samples copied."""
    tbmap: dict[int, int] = {}
    skip = skip or set()
    but = (
        f" AND c.series_id NOT IN ({', '.join(str(int(i)) for i in sorted(skip))})" if skip else ""
    )
    with _reading(
        src,
        "SELECT id, n, t0_ns, t1_ns, ts FROM timeblocks WHERE id IN (SELECT c.timeblock_id"
        " FROM chunks c JOIN series s ON s.id = c.series_id WHERE s.run_id = ?" + but + ")"
        " ORDER BY id",
        (run_id,),
    ) as batches:
        for rows in batches:
            ids = w.reserve("timeblocks", len(rows))
            w.insert(
                "timeblocks",
                ["id", "n", "t0_ns", "t1_ns", "ts"],
                [(i, r[1], r[2], r[3], bytes(r[4])) for i, r in zip(ids, rows, strict=True)],
            )
            tbmap.update((int(r[0]), i) for i, r in zip(ids, rows, strict=True))
    done = 0
    with _reading(
        src,
        "SELECT c.series_id, c.timeblock_id, c.n, c.t0_ns, c.t1_ns, c.vmin, c.vmax, c.vsum,"
        " c.mode, c.ts, c.vals FROM chunks c JOIN series s ON s.id = c.series_id"
        " WHERE s.run_id = ?" + but + " ORDER BY c.id",
        (run_id,),
    ) as batches:
        for rows in batches:
            out = [
                (
                    smap[int(r[0])],
                    None if r[1] is None else tbmap[int(r[1])],
                    r[2],
                    r[3],
                    r[4],
                    r[5],
                    r[6],
                    r[7],
                    r[8],
                    None if r[9] is None else bytes(r[9]),
                    bytes(r[10]),
                )  # fmt: skip
                for r in rows
            ]
            w.insert("chunks", _CHUNK_COLS, out)
            done += sum(int(r[2]) for r in rows)
            if progress is not None:
                progress(done, total)
    return done


def _tid(tmap: dict[int, tuple[int, int]], tid: Any) -> int | None:
    if tid is None:
        return None
    got = tmap.get(int(tid))
    return None if got is None else got[0]


def _copy_events(
    src: SQLStore,
    run_id: int,
    w: _Dst,
    dst_id: int,
    tmap: dict[int, tuple[int, int]],
    merge: bool = False,
) -> int:
    """The run's events; a merge adds none the destination has already (the same target,
    time, kind, message and data: a spool's first batch that reached it)."""
    have: Counter[tuple[Any, ...]] = Counter()
    if merge:
        have.update(
            tuple(r)
            for r in w.all(
                "SELECT target_id, t_ns, kind, message, data FROM events WHERE run_id = ?",
                (dst_id,),
            )
        )
    n = 0
    with _reading(
        src,
        "SELECT target_id, t_ns, kind, message, data FROM events WHERE run_id = ? ORDER BY id",
        (run_id,),
    ) as batches:
        for rows in batches:
            out = []
            for r in rows:
                row = (_tid(tmap, r[0]), r[1], r[2], w.text(r[3]), w.text(r[4]))
                if have[row] > 0:
                    have[row] -= 1
                    continue
                out.append((dst_id, *row))
            n += w.insert("events", list(_TYPES["events"]), out)
    return n


def _copy_logs(
    src: SQLStore, run_id: int, w: _Dst, tmap: dict[int, tuple[int, int]], merge: bool
) -> None:
    got = [
        (_tid(tmap, r["target_id"]), r["stream"], r["text"])
        for r in src._rows(
            "SELECT l.target_id, l.stream, l.text FROM logs l JOIN targets t"
            " ON t.id = l.target_id WHERE t.run_id = ?",
            (run_id,),
        )
    ]
    rows = [(t, s, x) for t, s, x in got if t is not None]
    if merge and rows:
        ids = sorted({r[0] for r in rows})
        marks = ", ".join("?" * len(ids))
        old = {
            (int(t), s): x
            for t, s, x in w.all(
                f"SELECT target_id, stream, text FROM logs WHERE target_id IN ({marks})", ids
            )
        }
        fresh = []
        for tid, stream, raw in rows:
            text = w.text(raw)  # as the destination stores it (PostgreSQL: no NUL)
            before = old.get((tid, stream))
            if before is None:
                fresh.append((tid, stream, text))
            else:
                w.exec(
                    "UPDATE logs SET text = ? WHERE target_id = ? AND stream = ?",
                    (_merge_log(before, text), tid, stream),
                )
        rows = fresh
    w.insert("logs", ["target_id", "stream", "text"], rows)


def _copy_code(
    src: SQLStore,
    run_id: int,
    w: _Dst,
    dst_id: int,
    tmap: dict[int, tuple[int, int]],
    merge: bool,
) -> int:
    if not src._code:  # an older database read as it is: no stacks were taken
        return 0
    stacks = src._rows(
        "SELECT id, hash, stack FROM code_stacks WHERE run_id = ? ORDER BY id", (run_id,)
    )
    kmap: dict[int, int] = {}
    if merge and stacks:
        have = {
            (h, s): int(i)
            for i, h, s in w.all(
                "SELECT id, hash, stack FROM code_stacks WHERE run_id = ?", (dst_id,)
            )
        }
        fresh = []
        for r in stacks:
            got = have.get((r["hash"], w.text(r["stack"])))
            if got is None:
                fresh.append(r)
            else:
                kmap[int(r["id"])] = got
        stacks = fresh
    ids = w.reserve("code_stacks", len(stacks))
    w.insert(
        "code_stacks",
        ["id", "run_id", "hash", "stack"],
        [(i, dst_id, r["hash"], r["stack"]) for i, r in zip(ids, stacks, strict=True)],
    )
    kmap.update((int(r["id"]), i) for i, r in zip(ids, stacks, strict=True))
    seen: Counter[tuple[Any, ...]] = Counter()
    if merge:  # none the destination has already (a spool's first batch that reached it)
        seen.update(
            tuple(r)
            for r in w.all(
                "SELECT c.target_id, c.t_ns, c.pid, c.process, c.thread, c.kind, c.stack_id,"
                " c.count FROM code_samples c JOIN targets t ON t.id = c.target_id"
                " WHERE t.run_id = ?",
                (dst_id,),
            )
        )
    n = 0
    with _reading(
        src,
        "SELECT c.target_id, c.t_ns, c.pid, c.process, c.thread, c.kind, c.stack_id, c.count"
        " FROM code_samples c JOIN targets t ON t.id = c.target_id WHERE t.run_id = ?"
        " ORDER BY c.id",
        (run_id,),
    ) as batches:
        for rows in batches:
            out = []
            for r in rows:
                tid = _tid(tmap, r[0])
                if tid is None:
                    continue
                row = (tid, r[1], r[2], w.text(r[3]), w.text(r[4]), r[5], kmap[int(r[6])], r[7])
                if seen[row] > 0:
                    seen[row] -= 1
                    continue
                out.append(row)
            n += w.insert("code_samples", list(_TYPES["code_samples"]), out)
    return n


# -- files -------------------------------------------------------------------------------------


def file_version(path: str) -> int | None:
    """The schema version of an edgeprof SQLite file, read without writing; raises a
    one-sentence UserError for what is not one."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{path} does not exist; give the path of an edgeprof .db file")
    if not p.is_file():
        raise UserError(f"{path} is not a file; give the path of an edgeprof .db file")
    with open(p, "rb") as fh:
        head = fh.read(16)
    if head != b"SQLite format 3\x00":
        what = "an empty file" if not head else "not a SQLite database"
        raise UserError(
            f"{path} is not an edgeprof database ({what}); give a file that 'edgeprof run --db sqlite:///FILE' wrote"
        )
    conn = None
    try:
        # without a log beside it the file is all there is: read it as immutable (SQLite
        # then makes no -wal/-shm files beside it)
        has_log = os.path.exists(path + "-wal")
        uri = f"file:{quote(os.path.abspath(path))}?mode=ro" + ("" if has_log else "&immutable=1")
        conn = sqlite3.connect(uri, uri=True)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not names and not has_log:
            raise UserError(
                f"{path} is an empty SQLite database: a run cut off before its first "
                f"checkpoint keeps everything in {os.path.basename(path)}-wal; copy that "
                "file beside it (archive run.db*) and import again"
            )
        if "schema_version" not in names or "runs" not in names:
            raise UserError(
                f"{path} is a SQLite file but not an edgeprof database (it has no runs or schema_version table)"
            )
        got = conn.execute("SELECT version FROM schema_version").fetchone()
        return None if got is None else int(got[0])
    except sqlite3.DatabaseError as e:
        raise UserError(_damaged(path, str(e))) from None
    finally:
        if conn is not None:
            conn.close()


def _damaged(path: str, detail: str) -> str:
    return (
        f"{path} cannot be read as an edgeprof database ({detail.strip().rstrip('.')}): "
        "it may be truncated or damaged; copy it again from the device, or check it with "
        "'sqlite3 FILE \"PRAGMA integrity_check\"'"
    )


@contextlib.contextmanager
def open_source(path: str) -> Iterator[SQLStore]:
    """An edgeprof SQLite file to import from: opened read-only when its schema is read
    as it is (3 or newer); an older one is copied to a temporary folder and the copy
    migrated (the file itself is never written)."""
    from edgeprof.store import open_store

    version = file_version(path)
    if version is not None and version > SCHEMA_VERSION:
        raise UserError(
            f"{path} has schema version {version}, newer than this edgeprof's "
            f"({SCHEMA_VERSION}); upgrade edgeprof to import it"
        )
    if version is not None and version >= READABLE_FROM:
        try:
            store = open_store("sqlite:///" + os.path.abspath(path), readonly=True)
        except StoreError as e:
            raise UserError(_damaged(path, str(e))) from None
        try:
            yield store
        finally:
            store.close()
        return
    with tempfile.TemporaryDirectory(prefix="edgeprof-import-") as tmp:
        copy = os.path.join(tmp, "old.db")
        shutil.copyfile(path, copy)
        for ext in ("-wal",):  # the newest writes of a killed writer, if any
            if os.path.exists(path + ext):
                shutil.copyfile(path + ext, copy + ext)
        try:
            store = open_store("sqlite:///" + copy)
        except StoreError as e:
            raise UserError(_damaged(path, str(e))) from None
        try:
            yield store
        finally:
            store.close()


def import_files(
    paths: Sequence[str],
    dst: SQLStore,
    warn: Callable[[str], None] = lambda s: None,
    error: Callable[[str], None] | None = None,
    report: Callable[[ImportResult], None] | None = None,
) -> list[ImportResult]:
    """Import every run of every file into ``dst``, in the files' order (runs by id).

    A run that was still ``running`` calls ``warn(sentence)``. A file that cannot be read
    (not an edgeprof database, truncated, too new) raises a one-sentence UserError, or,
    with ``error``, calls ``error(sentence)`` and goes on with the next file. ``report``
    is called with each result as it comes."""
    from edgeprof.report.terminal import fmt_time as fmt_ns

    out: list[ImportResult] = []
    for path in paths:
        try:
            with open_source(path) as src:
                ids = [int(r["id"]) for r in src._rows("SELECT id FROM runs ORDER BY id")]
                if not ids:
                    warn(f"{path} holds no runs; nothing imported from it")
                for rid in ids:
                    try:
                        res = copy_run(src, rid, dst)
                    except StoreError as e:
                        if dst.url in str(e) and src.url not in str(e):
                            raise  # the destination failed: not this file's fault
                        raise UserError(_damaged(path, str(e))) from None
                    res.source = path
                    if res.partial and res.live:
                        warn(
                            f"run {res.uuid} in {path} is still being recorded (its profiler "
                            "runs on this host): imported what it holds so far "
                            f"({res.samples:,} samples, last at {fmt_ns(res.last_ns)}) as "
                            "crashed; import the file again when the run has ended to "
                            "replace it"
                        )
                    elif res.partial:
                        warn(
                            f"run {res.uuid} in {path} was not finished (the device lost power "
                            "or the profiler was killed): imported up to its last complete "
                            f"batch ({res.samples:,} samples, last at {fmt_ns(res.last_ns)})"
                        )
                    out.append(res)
                    if report is not None:
                        report(res)
        except UserError as e:
            if error is None or (isinstance(e, StoreError) and dst.url in str(e)):
                raise
            error(str(e))
    return out
