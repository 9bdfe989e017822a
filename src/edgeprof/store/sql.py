"""One portable SQL store for SQLite and PostgreSQL (see :mod:`.schema` for the tables).

(Longer than most modules: it is the one class that implements the Store protocol, and
every statement against the schema is here, so that a schema change is read in one file.)

A :class:`SQLStore` wraps one DB-API connection (sqlite3 or psycopg). Driver errors roll
back and become one :class:`~edgeprof.errors.StoreError` sentence naming the database, its
password masked. Opened read-only (``readonly=True``) it never writes: no file is created,
no schema is migrated, and a database on a read-only mount can be read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from edgeprof.codeprof.model import SLICE_NS, CodeSample, decode_stack, encode_stack
from edgeprof.errors import StoreError, StoreUnavailable
from edgeprof.model import Event, Labels
from edgeprof.store import chunks
from edgeprof.store.base import (
    TARGET_FIELDS,
    EventRecord,
    RunInfo,
    RunRecord,
    RunRow,
    SeriesRecord,
    TargetInfo,
    TargetRecord,
)
from edgeprof.store.chunks import ChunkRow
from edgeprof.store.migrate import STEPS, Progress, legacy_run_uuid
from edgeprof.store.schema import (
    MIGRATIONS,
    MOVES_DATA,
    READABLE_FROM,
    SCHEMA,
    SCHEMA_VERSION,
    Dialect,
)
from edgeprof.urls import redact_text


def _is_db_error(e: BaseException) -> bool:
    """sqlite3's and psycopg's errors both derive from their module's ``Error`` (DB-API)."""
    if isinstance(e, sqlite3.Error):
        return True
    mod = type(e).__module__
    return mod.startswith("psycopg") and any(c.__name__ == "Error" for c in type(e).__mro__)


_MIGRATE_LOCK = 0x6564676570726F66  # "edgeprof": PostgreSQL's advisory lock for migrations
_LOST_STATES = ("57P01", "57P02", "57P03")
"""PostgreSQL's SQLSTATEs of a server shutting down or not accepting connections; class
``08`` (connection exceptions) is lost too."""


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


_UUID_PREFIX = re.compile(r"[0-9a-f]{8}[0-9a-f-]{0,28}")


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, default=str)


def labels_json(labels: Labels) -> str:
    return dumps(dict(labels))


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else {}


def _bool(v: Any) -> bool | None:
    return None if v is None else bool(v)


_OPEN_IDS = 1 << 62
"""The sweep's chunk ids for the open samples of a series in a block: above any real chunk
id (they were written after every final chunk of the series), in block order."""


class SQLStore:
    """A store over a DB-API connection (sqlite3 or psycopg)."""

    def __init__(
        self,
        conn: Any,
        dialect: type[Dialect],
        url: str,
        readonly: bool = False,
        progress: Progress | None = None,
    ) -> None:
        self.conn = conn
        self.d = dialect
        self.url = url
        self.readonly = readonly
        self.warning: str | None = None
        self.migrated: tuple[int, int] = (0, 0)
        """Schema versions before and after opening (equal when nothing was migrated)."""
        self.lock = threading.RLock()
        self._stacks: dict[tuple[int, str], int] = {}
        """(run id, stack text) → its ``code_stacks`` id, for the stacks this store wrote."""
        self._runs_of: dict[int, int] = {}
        self._snapshots = 0
        self._new_stacks: list[tuple[int, str]] | None = None
        """Stack cache keys added inside the current transaction (forgotten on rollback)."""
        self._hold = 0
        """Inside :meth:`transaction`: statements that commit by themselves do not."""
        self.connect: Callable[[], Any] | None = None
        """Makes a new connection to the same database (PostgreSQL: :meth:`reconnect`)."""
        self._migrate(progress)
        self._blocks = self.migrated[1] >= 4
        """Whether the database has open blocks (a version 3 one, read as it is, has not)."""
        self._code = self.migrated[1] >= 5
        """Whether it has the stack tables (one of version 3 or 4, read as it is, has not)."""
        self._meta = self.migrated[1] >= 6
        """Whether runs have ``uuid`` and ``meta`` (older versions, read as they are, have
        not: their runs read with the UUID :func:`.migrate.legacy_run_uuid` gives them)."""

    # -- helpers --------------------------------------------------------------------------
    def _q(self, sql: str) -> str:
        return sql if self.d.param == "?" else sql.replace("?", "%s")

    def _lost(self, e: BaseException) -> bool:
        """Whether ``e`` (a driver error) means the connection to the server is gone: the
        statement did not happen and may be retried on a new connection (PostgreSQL only;
        SQLite has no connection to lose)."""
        if self.d.name != "postgresql":
            return False
        conn = self.conn
        if getattr(conn, "closed", False) or getattr(conn, "broken", False):
            return True
        state = getattr(e, "sqlstate", None) or ""
        return state.startswith("08") or state in _LOST_STATES

    def _fail(self, e: Exception, xid: int | None = None) -> StoreError:
        """The StoreError (StoreUnavailable for a lost connection) for driver error ``e``."""
        first = redact_text(_first_line(e), self.url)
        if self._lost(e):
            return StoreUnavailable(
                f"the connection to the database at {self.url} was lost: {first}", xid
            )
        return StoreError(f"the database at {self.url} failed: {first}")

    @contextlib.contextmanager
    def _cursor(self, commit: bool = False) -> Iterator[Any]:
        """A cursor under the lock; driver errors roll back and become one StoreError
        (:class:`StoreUnavailable` when the connection was lost)."""
        with self.lock:
            try:
                cur = self.conn.cursor()
                yield cur
                if commit and not self._hold:
                    self.conn.commit()
            except StoreError:
                raise
            except BaseException as e:  # Ctrl-C mid-statement too: nothing half-written stays
                with contextlib.suppress(Exception):
                    self.conn.rollback()
                if not (isinstance(e, Exception) and _is_db_error(e)):
                    raise
                raise self._fail(e) from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside is committed together, or not at all: no other thread's
        statement (and commit) can come between (the batch writer's flushes).

        On PostgreSQL the transaction's id is read before its commit: when the connection
        is lost during the commit (it may or may not have happened), the
        :class:`StoreUnavailable` raised carries it, for :meth:`committed` to tell after
        reconnecting."""
        with self.lock:
            self._new_stacks = []
            xid: int | None = None
            self._hold += 1
            try:
                try:
                    yield
                finally:
                    self._hold -= 1
                if self.d.name == "postgresql":
                    with self.conn.cursor() as cur:
                        cur.execute("SELECT txid_current()")
                        xid = int(cur.fetchone()[0])
                self.conn.commit()
                self._new_stacks = None
            except BaseException as e:
                with contextlib.suppress(Exception):
                    self.conn.rollback()
                for key in self._new_stacks or ():  # ids of stacks not stored after all
                    self._stacks.pop(key, None)
                self._new_stacks = None
                if isinstance(e, Exception) and _is_db_error(e):
                    raise self._fail(e, xid) from None
                raise

    @property
    def can_lose_connection(self) -> bool:
        """PostgreSQL: :class:`StoreUnavailable` may be raised (SQLite never does)."""
        return self.d.name == "postgresql"

    def reconnect(self) -> None:
        """A new connection to the same database in place of a lost one (PostgreSQL);
        :class:`StoreUnavailable` while the server cannot be reached."""
        if self.connect is None:
            raise StoreUnavailable(f"the database at {self.url} cannot be reconnected")
        with self.lock:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = self.connect()

    def committed(self, xid: int) -> bool | None:
        """Whether PostgreSQL transaction ``xid`` committed (after a connection lost during
        its commit): True, False (aborted: a server restart aborts what was in progress),
        or None while it is still in progress."""
        with self._cursor() as cur:
            cur.execute("SELECT txid_status(%s)", (xid,))
            status = cur.fetchone()[0]
        self.conn.rollback()
        if status == "in progress":
            return None
        return status == "committed"

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside sees one state of the database, though a run may be writing
        meanwhile (replacing open blocks by final chunks): a read transaction, rolled back."""
        with self.lock:
            if self._snapshots or (self.d.name == "sqlite" and self.conn.in_transaction):
                yield  # inside a snapshot, or a write: it already sees one state
                return
            if self.d.name == "sqlite":
                self.conn.execute("BEGIN")
            else:
                try:
                    self.conn.rollback()  # the driver's implicit transaction: start a new one
                    self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                except Exception as e:  # a lost connection too: one StoreError sentence
                    if not _is_db_error(e):
                        raise
                    raise self._fail(e) from None
            self._snapshots += 1
            try:
                yield
            finally:
                self._snapshots -= 1
                with contextlib.suppress(Exception):
                    self.conn.rollback()

    def _exec(self, sql: str, params: Sequence[Any] = (), commit: bool = True) -> None:
        with self._cursor(commit) as cur:
            cur.execute(self._q(sql), params)

    def _exec_many(self, sql: str, rows: Sequence[Sequence[Any]], commit: bool = False) -> None:
        if rows:
            with self._cursor(commit) as cur:
                cur.executemany(self._q(sql), rows)

    def _insert(self, sql: str, params: Sequence[Any], commit: bool = True) -> int:
        with self._cursor(commit) as cur:
            cur.execute(self._q(sql + " RETURNING id"), params)
            return int(cur.fetchone()[0])

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._cursor() as cur:
            cur.execute(self._q(sql), params)
            cols = [c[0] for c in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def schema_version(self) -> int | None:
        """The database's schema version; None for an empty database."""
        with self._cursor() as cur:
            try:
                cur.execute("SELECT version FROM schema_version")
            except Exception as e:
                if not _is_db_error(e):
                    raise
                with contextlib.suppress(Exception):
                    self.conn.rollback()
                return None
            row = cur.fetchone()
            return None if row is None else int(row[0])

    def _migrate(self, progress: Progress | None) -> None:
        version = self.schema_version()
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(
                f"the database at {self.url} has schema version {version}, newer than this "
                f"edgeprof ({SCHEMA_VERSION}); upgrade edgeprof"
            )
        if self.readonly:
            if version is None:
                raise StoreError(
                    f"{self.url} has no edgeprof data yet (no schema_version table); run "
                    "'edgeprof run SPEC --db URL' first"
                )
            if version < READABLE_FROM:
                raise StoreError(
                    f"the database at {self.url} has schema version {version} (an older "
                    f"edgeprof); run 'edgeprof migrate --db URL' once to bring it to "
                    f"version {SCHEMA_VERSION}"
                )
            self.migrated = (version, version)
            return
        self.migrated = self.migrate(progress)

    def migrate(self, progress: Progress | None = None) -> tuple[int, int]:
        """Create or upgrade the schema in place; (version before, version after).

        One transaction: a migration that fails leaves the database as it was. A SQLite
        file is compacted afterwards (``VACUUM``) when data was moved."""
        fmt = {"pk": self.d.pk, "real": self.d.real, "blob": self.d.blob}
        moved = False
        version = self.schema_version()
        before = version or 0
        with self._cursor() as cur:
            if self.d.name == "sqlite":
                # sqlite3 begins transactions only before DML: the DDL too must be in this one,
                # so that an interrupted migration leaves the file as it was
                self.conn.commit()
                cur.execute("BEGIN")
            else:
                # several devices may open a new (or older) database at once: one creates or
                # migrates it, the others wait here and then find it done
                self.conn.rollback()
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
                cur.execute("SELECT to_regclass('schema_version') IS NOT NULL")
                version = None
                if cur.fetchone()[0]:
                    cur.execute("SELECT version FROM schema_version")
                    row = cur.fetchone()
                    version = None if row is None else int(row[0])
                before = version or 0
            if version is None:
                cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                for stmt in SCHEMA:
                    cur.execute(stmt.format(**fmt))
                cur.execute(
                    self._q("INSERT INTO schema_version (version) VALUES (?)"), (SCHEMA_VERSION,)
                )
                version = SCHEMA_VERSION
            while version < SCHEMA_VERSION:
                version += 1
                for stmt in MIGRATIONS[version]:
                    if stmt.startswith("@"):
                        STEPS[stmt[1:]](self, cur, progress)
                        moved = moved or stmt in MOVES_DATA
                    else:
                        cur.execute(stmt.format(**fmt))
                cur.execute(self._q("UPDATE schema_version SET version = ?"), (version,))
            self.conn.commit()
        if moved and self.d.name == "sqlite":
            with self._cursor() as cur:
                cur.execute("VACUUM")
        return before, version

    # -- writing --------------------------------------------------------------------------
    def begin_run(self, info: RunInfo) -> int:
        return self._insert(
            "INSERT INTO runs (spec_name, image, spec_path, spec_text, started_ns, status,"
            " interval_s, host, edgeprof_version, owner, uuid, meta)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                info.spec_name,
                info.image,
                info.spec_path,
                info.spec_text,
                info.started_ns,
                "running",
                info.interval_s,
                dumps(info.host),
                info.version,
                dumps(info.owner),
                info.uuid,
                dumps(info.meta),
            ),
        )

    def end_run(self, run_id: int, status: str, ended_ns: int) -> None:
        self._exec(
            "UPDATE runs SET status = ?, ended_ns = ? WHERE id = ?", (status, ended_ns, run_id)
        )
        self.release_free_space()

    def release_free_space(self) -> None:
        """Give the pages of replaced open blocks back to the file system (SQLite files
        created with incremental auto-vacuum; PostgreSQL reuses them by itself)."""
        if self.d.name == "sqlite" and not self.readonly:
            with self._cursor(commit=True):
                # executescript steps the pragma to the end (execute frees one page a call)
                self.conn.executescript("PRAGMA incremental_vacuum;")

    def begin_target(self, info: TargetInfo) -> int:
        return self._insert(
            "INSERT INTO targets (run_id, idx, name, args, config, status) VALUES (?, ?, ?, ?, ?, ?)",
            (info.run_id, info.index, info.name, dumps(info.args), dumps(info.config), info.status),
        )

    def update_target(self, target_id: int, **fields: Any) -> None:
        unknown = set(fields) - TARGET_FIELDS
        if unknown:
            raise ValueError(f"not a target field: {', '.join(sorted(unknown))}")
        if fields:
            cols = ", ".join(f"{k} = ?" for k in fields)
            vals = [int(v) if isinstance(v, bool) else v for v in fields.values()]
            self._exec(f"UPDATE targets SET {cols} WHERE id = ?", (*vals, target_id))

    def series_id(
        self,
        run_id: int,
        target_id: int | None,
        metric: str,
        labels: Labels,
        unit: str | None = None,
        kind: str | None = None,
    ) -> int:
        """Register a series (not committed; the batch writer caches the ids)."""
        return self._insert(
            "INSERT INTO series (run_id, target_id, metric, labels, unit, kind) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, target_id, metric, labels_json(labels), unit, kind),
            commit=False,
        )

    def add_timeblock(self, n: int, t0_ns: int, t1_ns: int, ts: bytes) -> int:
        """Store a timestamp array (not committed); its id for the chunks that share it."""
        return self._insert(
            "INSERT INTO timeblocks (n, t0_ns, t1_ns, ts) VALUES (?, ?, ?, ?)",
            (n, t0_ns, t1_ns, ts),
            commit=False,
        )

    def write_chunks(self, rows: Sequence[ChunkRow]) -> None:
        """Insert chunk rows (see :mod:`.chunks`); not committed."""
        self._exec_many(
            "INSERT INTO chunks (series_id, timeblock_id, n, t0_ns, t1_ns, vmin, vmax, vsum,"
            " mode, ts, vals) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def write_open_block(self, run_id: int, n: int, payload: bytes) -> int:
        """Insert an open block of ``n`` samples (:func:`.chunks.open_block`); its id. Not
        committed."""
        return self._insert(
            "INSERT INTO open_blocks (run_id, n, payload) VALUES (?, ?, ?)",
            (run_id, n, payload),
            commit=False,
        )

    def supersede_open(self, series_ids: Sequence[int], block_id: int) -> None:
        """These series' samples in open block ``block_id`` and older ones are in final
        chunks now: readers skip them. Not committed."""
        self._exec_many(
            "UPDATE series SET final_block = ? WHERE id = ?",
            [(block_id, sid) for sid in series_ids],
        )

    def drop_open_blocks(self, block_ids: Sequence[int]) -> None:
        """Delete open blocks whose every series is superseded. Not committed."""
        self._exec_many("DELETE FROM open_blocks WHERE id = ?", [(b,) for b in block_ids])

    def commit(self) -> None:
        with self._cursor(commit=True):
            pass

    def add_event(self, run_id: int, target_id: int | None, ev: Event) -> None:
        self.write_events(run_id, [(target_id, ev)])
        self.commit()

    def _text(self, text: str) -> str:
        """PostgreSQL's text cannot hold NUL: it becomes U+FFFD there (SQLite keeps it)."""
        if self.d.name == "postgresql" and "\x00" in text:
            return text.replace("\x00", "\ufffd")
        return text

    def write_events(self, run_id: int, rows: Sequence[tuple[int | None, Event]]) -> None:
        self._exec_many(
            "INSERT INTO events (run_id, target_id, t_ns, kind, message, data) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (run_id, tid, ev.t_ns, ev.kind, self._text(ev.message), dumps(ev.data))
                for tid, ev in rows
            ],
        )

    def add_log(self, target_id: int, stream: str, text: str) -> None:
        self._exec(
            "INSERT INTO logs (target_id, stream, text) VALUES (?, ?, ?)",
            (target_id, stream, self._text(text)),
        )

    def add_code_samples(self, target_id: int, rows: Sequence[CodeSample]) -> None:
        """Sampled stacks of a target (not committed): each distinct stack text once per
        run in ``code_stacks``, the counts in ``code_samples``."""
        if not rows:
            return
        with self._cursor() as cur:
            run_id = self._runs_of.get(target_id)
            if run_id is None:
                cur.execute(self._q("SELECT run_id FROM targets WHERE id = ?"), (target_id,))
                got = cur.fetchone()
                if got is None:
                    raise ValueError(f"no target with id {target_id}")
                run_id = self._runs_of[target_id] = int(got[0])
            out = []
            for r in rows:
                text = self._text(encode_stack(r.stack))
                sid = self._stacks.get((run_id, text))
                if sid is None:
                    sid = self._stack_id(cur, run_id, text)
                out.append(
                    (target_id, r.t_ns, r.pid, self._text(r.process),
                     None if r.thread is None else self._text(r.thread), r.kind, sid, r.count)
                )  # fmt: skip
            cur.executemany(
                self._q(
                    "INSERT INTO code_samples (target_id, t_ns, pid, process, thread, kind,"
                    " stack_id, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                out,
            )

    def _stack_id(self, cur: Any, run_id: int, text: str) -> int:
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
        cur.execute(
            self._q("SELECT id, stack FROM code_stacks WHERE run_id = ? AND hash = ?"),
            (run_id, digest),
        )
        sid = next((int(i) for i, t in cur.fetchall() if t == text), None)
        if sid is None:
            cur.execute(
                self._q(
                    "INSERT INTO code_stacks (run_id, hash, stack) VALUES (?, ?, ?) RETURNING id"
                ),
                (run_id, digest, text),
            )
            sid = int(cur.fetchone()[0])
        self._stacks[(run_id, text)] = sid
        if self._new_stacks is not None:
            self._new_stacks.append((run_id, text))
        return sid

    def mark_crashed(self, run_id: int, ended_ns: int) -> bool:
        with self._cursor(commit=True) as cur:
            cur.execute(
                self._q(
                    "UPDATE runs SET status = 'crashed', ended_ns = ? WHERE id = ? AND status = 'running'"
                ),
                (ended_ns, run_id),
            )
            changed = cur.rowcount > 0
            if changed:
                cur.execute(
                    self._q(
                        "UPDATE targets SET status = CASE WHEN status = 'running' THEN 'crashed'"
                        " ELSE 'not_run' END WHERE run_id = ? AND status IN ('running', 'pending')"
                    ),
                    (run_id,),
                )
        return changed

    # -- reading --------------------------------------------------------------------------
    def list_runs(
        self,
        limit: int = 50,
        *,
        spec: str | None = None,
        status: str | None = None,
        image: str | None = None,
        since_ns: int | None = None,
        keep: Callable[[RunRow], bool] | None = None,
    ) -> list[RunRow]:
        """The newest ``limit`` runs, newest first; only those of this spec name, status
        and image (when given, tested in SQL), started at or after ``since_ns``, and for
        which ``keep(row)`` holds: a test of the row's metadata made here, on rows read
        newest first a page at a time (``spec_text`` is never read; the row's target
        counts are filled in after it, for the runs kept)."""
        where: list[str] = []
        params: list[Any] = []
        for col, value in (("spec_name", spec), ("status", status), ("image", image)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        if since_ns is not None:
            where.append("started_ns >= ?")
            params.append(int(since_ns))
        page = limit if keep is None else max(500, limit)
        rows: list[dict[str, Any]] = []
        before: int | None = None
        while len(rows) < limit:
            cond = where + ([] if before is None else ["id < ?"])
            sql = f"SELECT {self._run_row_columns()} FROM runs"
            if cond:
                sql += " WHERE " + " AND ".join(cond)
            got = self._rows(
                sql + " ORDER BY id DESC LIMIT ?",
                (*params, *([] if before is None else [before]), page),
            )
            for r in got:
                if keep is None or keep(self._run_row(r, (0, 0, 0))):
                    rows.append(r)
                    if len(rows) == limit:
                        break
            if len(got) < page or keep is None:
                break
            before = int(got[-1]["id"])
        # Apps and services counted apart (a service row's config has role "service").
        tally: dict[int, list[int]] = {int(r["id"]): [0, 0, 0] for r in rows}
        if rows:
            if not where and keep is None:
                # the newest ``limit`` runs: exactly those with an id at least the smallest
                # listed, whose targets one query reads
                batches: list[tuple[str, list[Any]]] = [("run_id >= ?", [min(tally)])]
            else:
                ids = sorted(tally)
                batches = [
                    (f"run_id IN ({', '.join('?' * len(ids[i : i + 500]))})", ids[i : i + 500])
                    for i in range(0, len(ids), 500)
                ]
            for clause, args in batches:
                for t in self._rows(
                    f"SELECT run_id, status, config FROM targets WHERE {clause}", args
                ):
                    c = tally.get(int(t["run_id"]))
                    if c is None:
                        continue
                    config = _loads(t["config"])
                    if isinstance(config, dict) and config.get("role") == "service":
                        c[2] += 1
                    else:
                        c[0] += 1
                        c[1] += t["status"] in ("failed", "oom_killed", "error")
        counts = {k: (v[0], v[1], v[2]) for k, v in tally.items()}
        return [self._run_row(r, counts[int(r["id"])]) for r in rows]

    def _run_row(self, r: dict[str, Any], counts: tuple[int, int, int]) -> RunRow:
        """A row of ``runs`` (the columns of :meth:`_run_row_columns`) as a RunRow with
        ``(apps, failed apps, services)``."""
        return RunRow(
            id=int(r["id"]),
            spec_name=r["spec_name"],
            image=r["image"],
            started_ns=int(r["started_ns"]),
            ended_ns=None if r["ended_ns"] is None else int(r["ended_ns"]),
            status=r["status"],
            targets=counts[0],
            failed_targets=counts[1],
            owner=_loads(r["owner"]),
            services=counts[2],
            uuid=self._uuid_of(r),
            meta=_loads(r.get("meta")),
        )

    def resolve_run(self, run_ref: str | int) -> RunRecord:
        ref = str(run_ref).strip()
        if ref == "latest":
            rows = self._rows("SELECT * FROM runs ORDER BY id DESC LIMIT 1")
            if not rows:
                raise StoreError(
                    f"no runs are stored in {self.url} yet; run 'edgeprof run SPEC' first"
                )
        elif not ref.isdigit() and self._meta and _UUID_PREFIX.fullmatch(ref.lower()):
            # a run's UUID, or its first 8 or more characters (as 'runs --json' shows them)
            rows = self._rows(
                "SELECT * FROM runs WHERE uuid >= ? AND uuid < ? ORDER BY id LIMIT 2",
                (ref.lower(), ref.lower() + "~"),
            )
            if len(rows) != 1:
                what = "no run" if not rows else "more than one run"
                raise StoreError(
                    f"{what} with a UUID starting {ref!r} in {self.url}; give more of the UUID"
                    " or a run id from 'edgeprof runs'"
                )
        else:
            if not ref.isdigit():
                raise StoreError(
                    f"run id {ref!r} is not a number; use a number or UUID from 'edgeprof runs'"
                    " or 'latest'"
                )
            rows = self._rows("SELECT * FROM runs WHERE id = ?", (int(ref),))
            if not rows:
                raise StoreError(
                    f"no run with id {ref} in {self.url}; see 'edgeprof runs' for stored runs"
                )
        r = rows[0]
        return RunRecord(
            id=int(r["id"]),
            spec_name=r["spec_name"],
            image=r["image"],
            spec_path=r["spec_path"],
            spec_text=r["spec_text"],
            started_ns=int(r["started_ns"]),
            ended_ns=None if r["ended_ns"] is None else int(r["ended_ns"]),
            status=r["status"],
            interval_s=float(r["interval_s"]),
            host=_loads(r["host"]),
            edgeprof_version=r["edgeprof_version"],
            owner=_loads(r.get("owner")),
            uuid=self._uuid_of(r),
            meta=_loads(r.get("meta")),
        )

    def _run_row_columns(self) -> str:
        cols = "id, spec_name, image, started_ns, ended_ns, status, owner"
        return cols + ", uuid, meta" if self._meta else cols

    @staticmethod
    def _uuid_of(r: dict[str, Any]) -> str:
        """A run row's UUID; one stored before runs had one (a database read without
        migrating) gets the one migrating would give it."""
        if r.get("uuid"):
            return str(r["uuid"])
        return legacy_run_uuid(int(r["started_ns"]), r["spec_name"], r["image"], r.get("owner"))

    def targets(self, run_id: int) -> list[TargetRecord]:
        rows = self._rows("SELECT * FROM targets WHERE run_id = ? ORDER BY idx", (run_id,))
        return [
            TargetRecord(
                id=int(r["id"]),
                run_id=int(r["run_id"]),
                idx=int(r["idx"]),
                name=r["name"],
                args=json.loads(r["args"]),
                config=_loads(r["config"]),
                container_id=r["container_id"],
                started_ns=r["started_ns"],
                ended_ns=r["ended_ns"],
                status=r["status"],
                exit_code=r["exit_code"],
                oom_killed=_bool(r["oom_killed"]),
                timed_out=_bool(r["timed_out"]),
                duration_s=r["duration_s"],
                error=r["error"],
            )
            for r in rows
        ]

    def series(self, run_id: int) -> list[SeriesRecord]:
        rows = self._rows("SELECT * FROM series WHERE run_id = ? ORDER BY id", (run_id,))
        return [
            SeriesRecord(
                id=int(r["id"]),
                run_id=int(r["run_id"]),
                target_id=r["target_id"],
                metric=r["metric"],
                labels=json.loads(r["labels"]),
                unit=r["unit"],
                kind=r["kind"],
            )
            for r in rows
        ]

    def _decode(
        self, where: str, params: Sequence[Any], keep_chunks: bool = False
    ) -> dict[Any, tuple[Any, Any]]:
        """series id → (timestamps, values) of the chunks ``where`` selects (write order);
        with ``keep_chunks``, (series id, chunk id) → the chunk's own arrays."""
        with self._cursor() as cur:
            cur.execute(
                self._q(
                    "SELECT c.id, c.series_id, c.timeblock_id, c.n, c.mode, c.ts, c.vals"
                    f" FROM chunks c WHERE {where} ORDER BY c.series_id, c.id"
                ),
                params,
            )
            rows = cur.fetchall()
            ids = sorted({r[2] for r in rows if r[2] is not None})
            blocks: dict[int, tuple[int, bytes]] = {}
            for i in range(0, len(ids), 500):
                part = ids[i : i + 500]
                marks = ", ".join("?" * len(part))
                cur.execute(
                    self._q(f"SELECT id, n, ts FROM timeblocks WHERE id IN ({marks})"), part
                )
                blocks.update({int(r[0]): (int(r[1]), r[2]) for r in cur.fetchall()})
        try:
            return chunks.decode(rows, blocks, keep_chunks)
        except (ValueError, zlib.error) as e:
            raise self._layout_error(e) from None

    def _open_entries(
        self, run_id: int | None, series_id: int | None = None
    ) -> list[tuple[int, int, Any, Any]]:
        """``(series id, block id, t, v)`` of the samples in open blocks that no final chunk
        supersedes, in block order: of the run (of every run with None), or of one series
        (``run_id`` its run). Call it in the snapshot that reads the chunks."""
        if not self._blocks:
            return []
        with self._cursor() as cur:
            if run_id is None:
                cur.execute("SELECT id, run_id, payload FROM open_blocks ORDER BY id")
            else:
                cur.execute(
                    self._q(
                        "SELECT id, run_id, payload FROM open_blocks WHERE run_id = ? ORDER BY id"
                    ),
                    (run_id,),
                )
            blocks = cur.fetchall()
            if not blocks:
                return []
            if series_id is not None:
                cur.execute(
                    self._q("SELECT id, final_block FROM series WHERE id = ?"), (series_id,)
                )
            elif run_id is not None:
                cur.execute(
                    self._q(
                        "SELECT id, final_block FROM series"
                        " WHERE run_id = ? AND final_block IS NOT NULL"
                    ),
                    (run_id,),
                )
            else:
                cur.execute(
                    "SELECT id, final_block FROM series WHERE final_block IS NOT NULL"
                    " AND run_id IN (SELECT run_id FROM open_blocks)"
                )
            final = {int(r[0]): int(r[1]) for r in cur.fetchall() if r[1] is not None}
        out: list[tuple[int, int, Any, Any]] = []
        try:
            for bid, _run, payload in blocks:
                bid = int(bid)
                sids, offs, t, v = chunks.read_block(payload)
                idx: Sequence[int] = (
                    range(len(sids))
                    if series_id is None
                    else np.flatnonzero(sids == series_id).tolist()
                )
                sid_list = sids.tolist()
                for i in idx:
                    sid = sid_list[i]
                    if bid > final.get(sid, 0):
                        a, z = int(offs[i]), int(offs[i + 1])
                        out.append((sid, bid, t[a:z], v[a:z]))
        except ValueError as e:
            raise self._layout_error(e) from None
        return out

    def _layout_error(self, e: BaseException) -> StoreError:
        return StoreError(
            f"cannot decode the samples stored in {self.url} ({e}): they were written in "
            "a layout this edgeprof does not read (a development build's); profile again "
            "with this version"
        )

    @staticmethod
    def _with_open(
        got: dict[Any, tuple[Any, Any]], entries: list[tuple[int, int, Any, Any]]
    ) -> dict[Any, tuple[Any, Any]]:
        """Final chunks' arrays followed by the open samples of each series (write order)."""
        if not entries:
            return got
        parts: dict[int, tuple[list[Any], list[Any]]] = {}
        for sid, _bid, t, v in entries:
            p = parts.get(sid)
            if p is None:
                old = got.get(sid)
                p = parts[sid] = ([old[0]], [old[1]]) if old is not None else ([], [])
            p[0].append(t)
            p[1].append(v)
        for sid, (ts, vs) in parts.items():
            got[sid] = (np.concatenate(ts), np.concatenate(vs))
        return got

    def series_arrays(self, run_id: int) -> dict[int, tuple[Any, Any]]:
        with self.snapshot():  # final chunks and open blocks of one state
            got = self._decode("c.series_id IN (SELECT id FROM series WHERE run_id = ?)", (run_id,))
            return self._with_open(got, self._open_entries(run_id))

    def series_values(self, run_id: int) -> dict[int, Any]:
        return {sid: v for sid, (_, v) in self.series_arrays(run_id).items()}

    def series_samples(self, series_id: int) -> tuple[Any, Any]:
        with self.snapshot():
            got = self._decode("c.series_id = ?", (series_id,))
            if self._blocks:
                run = self._rows("SELECT run_id FROM series WHERE id = ?", (series_id,))
                if run:
                    entries = self._open_entries(int(run[0]["run_id"]), series_id)
                    got = self._with_open(got, entries)
        found = got.get(series_id)
        if found is None:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        return found

    def iter_samples(self, run_id: int, chunk: int = 65536) -> Iterator[tuple[int, int, float]]:
        """Every sample of the run as ``(series_id, t_ns, value)``, by time, then series.

        Memory stays bounded by the chunks that overlap in time, not by the run: chunks are
        loaded in order of their first timestamp, about ``chunk`` samples at a time, and a
        sample is yielded once no chunk still unread can hold an earlier one (an unread
        chunk starts at or after its ``t0_ns``). Equal times keep write order per series.
        """
        with self.snapshot():  # chunks replaced while we read are read as they were
            yield from self._sweep(run_id, chunk)

    def _sweep(self, run_id: int, chunk: int) -> Iterator[tuple[int, int, float]]:
        rows = self._rows(
            "SELECT c.id, c.n, c.t0_ns FROM chunks c JOIN series s ON s.id = c.series_id"
            " WHERE s.run_id = ?",
            (run_id,),
        )
        meta = [(int(r["t0_ns"]), int(r["id"]), int(r["n"])) for r in rows]
        # the open samples (at most a chunk's worth per series) are read at once, each
        # series' part of a block as a chunk of its own, after every final chunk in write
        # order: its id is _OPEN_IDS + its place in block order
        opened: dict[int, tuple[int, Any, Any]] = {}
        for k, (sid, _bid, t, v) in enumerate(self._open_entries(run_id)):
            if len(t):
                opened[_OPEN_IDS + k] = (sid, t, v)
        meta += [(int(t.min()), cid, len(t)) for cid, (_, t, _v) in opened.items()]
        meta.sort()
        pending: tuple[Any, ...] | None = None  # sid, t, v, chunk id, index in chunk
        i = 0
        while i < len(meta):
            j, n = i, 0
            while j < len(meta) and (n < chunk or meta[j][0] == meta[j - 1][0]):
                n += meta[j][2]
                j += 1
            ids = [m[1] for m in meta[i:j] if m[1] < _OPEN_IDS]
            bound = meta[j][0] if j < len(meta) else None
            parts = [pending] if pending is not None else []
            for cid in (m[1] for m in meta[i:j] if m[1] >= _OPEN_IDS):
                sid, t, v = opened.pop(cid)
                m = len(t)
                parts.append(
                    (
                        np.full(m, sid, dtype=np.int64),
                        t,
                        v,
                        np.full(m, cid, dtype=np.int64),
                        np.arange(m, dtype=np.int64),
                    )
                )
            i = j
            for part_ids in (ids[k : k + 500] for k in range(0, len(ids), 500)):
                marks = ", ".join("?" * len(part_ids))
                got = self._decode(f"c.id IN ({marks})", part_ids, keep_chunks=True)
                for (sid, cid), (t, v) in got.items():
                    m = len(t)
                    parts.append(
                        (
                            np.full(m, sid, dtype=np.int64),
                            t,
                            v,
                            np.full(m, cid, dtype=np.int64),
                            np.arange(m, dtype=np.int64),
                        )
                    )
            if not parts:
                continue
            cols = [np.concatenate([p[k] for p in parts]) for k in range(5)]
            order = np.lexsort((cols[4], cols[3], cols[0], cols[1]))  # time, series, write
            sids, ts, vs, cids, idx = (c[order] for c in cols)
            cut = len(ts) if bound is None else int(np.searchsorted(ts, bound, side="left"))
            for a in range(0, cut, chunk):
                b = min(a + chunk, cut)
                yield from zip(sids[a:b].tolist(), ts[a:b].tolist(), vs[a:b].tolist(), strict=True)
            rest = (sids, ts, vs, cids, idx)
            pending = tuple(c[cut:] for c in rest) if cut < len(ts) else None

    def sample_count(self, run_id: int | None = None) -> int:
        with self.snapshot():
            if run_id is None:
                rows = self._rows("SELECT COALESCE(SUM(n), 0) AS n FROM chunks")
            else:
                rows = self._rows(
                    "SELECT COALESCE(SUM(c.n), 0) AS n FROM chunks c JOIN series s"
                    " ON s.id = c.series_id WHERE s.run_id = ?",
                    (run_id,),
                )
            opened = sum(len(t) for _, _, t, _ in self._open_entries(run_id))
        return int(rows[0]["n"]) + opened

    def events(self, run_id: int) -> list[EventRecord]:
        rows = self._rows("SELECT * FROM events WHERE run_id = ? ORDER BY t_ns, id", (run_id,))
        return [
            EventRecord(
                id=int(r["id"]),
                run_id=int(r["run_id"]),
                target_id=r["target_id"],
                t_ns=int(r["t_ns"]),
                kind=r["kind"],
                message=r["message"],
                data=_loads(r["data"]),
            )
            for r in rows
        ]

    def logs(self, target_id: int) -> dict[str, str]:
        return {
            r["stream"]: r["text"]
            for r in self._rows("SELECT * FROM logs WHERE target_id = ?", (target_id,))
        }

    def code_samples(
        self, target_id: int, t_from_ns: int | None = None, t_to_ns: int | None = None
    ) -> list[CodeSample]:
        if not self._code:  # an older database read as it is: no stacks were taken
            return []
        where, params = ["c.target_id = ?"], [target_id]
        if t_from_ns is not None:
            where.append("c.t_ns > ?")
            params.append(t_from_ns - SLICE_NS)
        if t_to_ns is not None:
            where.append("c.t_ns < ?")
            params.append(t_to_ns)
        rows = self._rows(
            "SELECT c.t_ns, c.pid, c.process, c.thread, c.kind, c.count, c.stack_id, s.stack"
            " FROM code_samples c JOIN code_stacks s ON s.id = c.stack_id"
            f" WHERE {' AND '.join(where)} ORDER BY c.t_ns, c.id",
            params,
        )
        stacks: dict[int, Any] = {}
        out = []
        for r in rows:
            sid = int(r["stack_id"])
            stack = stacks.get(sid)
            if stack is None:
                stack = stacks[sid] = decode_stack(r["stack"])
            out.append(
                CodeSample(
                    pid=int(r["pid"]),
                    process=r["process"],
                    t_ns=int(r["t_ns"]),
                    stack=stack,
                    count=int(r["count"]),
                    kind=r["kind"],
                    thread=r["thread"],
                )
            )
        return out

    def close(self) -> None:
        with self.lock:
            try:
                if not self.readonly:
                    with contextlib.suppress(Exception):
                        self.conn.commit()
            finally:
                self.conn.close()
