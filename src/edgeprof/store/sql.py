"""One portable SQL schema for SQLite and PostgreSQL, picked by URL.

``open_store("sqlite:///path/to.db")`` or ``open_store("postgresql://user@host/db")``.
The schema carries a version number in ``schema_version``; ``MIGRATIONS`` lists the SQL
that brings a database from one version to the next, applied in order at open.

Writes of samples are batched by :class:`BatchWriter`, which commits at least every
``flush_s`` seconds from its own thread, so a crash loses at most that much and a clean stop
(``close``) loses nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edgeprof.errors import StoreError
from edgeprof.model import Event, Labels, Sample

SCHEMA_VERSION = 1

_SCHEMA_V1 = [
    """CREATE TABLE IF NOT EXISTS runs (
        id {pk},
        spec_name TEXT NOT NULL,
        image TEXT NOT NULL,
        spec_path TEXT,
        spec_text TEXT,
        started_ns BIGINT NOT NULL,
        ended_ns BIGINT,
        status TEXT NOT NULL,
        interval_s {real} NOT NULL,
        host TEXT,
        edgeprof_version TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS targets (
        id {pk},
        run_id BIGINT NOT NULL REFERENCES runs(id),
        idx INTEGER NOT NULL,
        name TEXT NOT NULL,
        args TEXT NOT NULL,
        config TEXT,
        container_id TEXT,
        started_ns BIGINT,
        ended_ns BIGINT,
        status TEXT NOT NULL,
        exit_code INTEGER,
        oom_killed INTEGER,
        timed_out INTEGER,
        duration_s {real},
        error TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS series (
        id {pk},
        run_id BIGINT NOT NULL REFERENCES runs(id),
        target_id BIGINT REFERENCES targets(id),
        metric TEXT NOT NULL,
        labels TEXT NOT NULL,
        unit TEXT,
        kind TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS samples (
        series_id BIGINT NOT NULL,
        t_ns BIGINT NOT NULL,
        value {real} NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS samples_series ON samples (series_id, t_ns)",
    "CREATE INDEX IF NOT EXISTS series_run ON series (run_id, target_id)",
    "CREATE INDEX IF NOT EXISTS targets_run ON targets (run_id)",
    """CREATE TABLE IF NOT EXISTS events (
        id {pk},
        run_id BIGINT NOT NULL REFERENCES runs(id),
        target_id BIGINT,
        t_ns BIGINT NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        data TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS events_run ON events (run_id)",
    """CREATE TABLE IF NOT EXISTS logs (
        target_id BIGINT NOT NULL REFERENCES targets(id),
        stream TEXT NOT NULL,
        text TEXT NOT NULL
    )""",
]

# version → statements that migrate version-1 → version. Version 1 is the base schema.
MIGRATIONS: dict[int, list[str]] = {}


class _Dialect:
    name = "sqlite"
    pk = "INTEGER PRIMARY KEY AUTOINCREMENT"
    real = "REAL"
    param = "?"


class _PgDialect(_Dialect):
    name = "postgresql"
    pk = "BIGSERIAL PRIMARY KEY"
    real = "DOUBLE PRECISION"
    param = "%s"


def _is_db_error(e: BaseException) -> bool:
    """sqlite3's and psycopg's errors both derive from their module's ``Error`` (DB-API)."""
    if isinstance(e, sqlite3.Error):
        return True
    mod = type(e).__module__
    return mod.startswith("psycopg") and any(c.__name__ == "Error" for c in type(e).__mro__)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, default=str)


def labels_json(labels: Labels) -> str:
    return _dumps(dict(labels))


class SQLStore:
    """A store over a DB-API connection (sqlite3 or psycopg)."""

    def __init__(self, conn: Any, dialect: type[_Dialect], url: str) -> None:
        self.conn = conn
        self.d = dialect
        self.url = url
        self.lock = threading.RLock()
        self._migrate()

    # -- helpers --------------------------------------------------------------------------
    def _q(self, sql: str) -> str:
        return sql if self.d.param == "?" else sql.replace("?", "%s")

    @contextlib.contextmanager
    def _cursor(self, commit: bool = False) -> Iterator[Any]:
        """A cursor under the lock; driver errors roll back and become one StoreError."""
        with self.lock:
            try:
                cur = self.conn.cursor()
                yield cur
                if commit:
                    self.conn.commit()
            except StoreError:
                raise
            except Exception as e:
                if not _is_db_error(e):
                    raise
                with contextlib.suppress(Exception):
                    self.conn.rollback()
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise StoreError(f"the database at {self.url} failed: {first}") from None

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

    def _migrate(self) -> None:
        with self._cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            cur.execute("SELECT version FROM schema_version")
            row = cur.fetchone()
            if row is None:
                for stmt in _SCHEMA_V1:
                    cur.execute(stmt.format(pk=self.d.pk, real=self.d.real))
                version = 1
                cur.execute(self._q("INSERT INTO schema_version (version) VALUES (?)"), (version,))
            else:
                version = int(row[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the database at {self.url} has schema version {version}, newer than this "
                    f"edgeprof ({SCHEMA_VERSION}); upgrade edgeprof"
                )
            while version < SCHEMA_VERSION:
                version += 1
                for stmt in MIGRATIONS[version]:
                    cur.execute(stmt.format(pk=self.d.pk, real=self.d.real))
                cur.execute(self._q("UPDATE schema_version SET version = ?"), (version,))
            self.conn.commit()

    # -- writing --------------------------------------------------------------------------
    def begin_run(
        self,
        *,
        spec_name: str,
        image: str,
        spec_path: str | None,
        spec_text: str | None,
        started_ns: int,
        interval_s: float,
        host: dict[str, Any],
        version: str,
    ) -> int:
        return self._insert(
            "INSERT INTO runs (spec_name, image, spec_path, spec_text, started_ns, status, interval_s,"
            " host, edgeprof_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                spec_name,
                image,
                spec_path,
                spec_text,
                started_ns,
                "running",
                interval_s,
                _dumps(host),
                version,
            ),
        )

    def end_run(self, run_id: int, status: str, ended_ns: int) -> None:
        self._exec(
            "UPDATE runs SET status = ?, ended_ns = ? WHERE id = ?", (status, ended_ns, run_id)
        )

    def begin_target(
        self, run_id: int, idx: int, name: str, args: list[str], config: dict[str, Any]
    ) -> int:
        return self._insert(
            "INSERT INTO targets (run_id, idx, name, args, config, status) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, idx, name, _dumps(args), _dumps(config), "pending"),
        )

    def update_target(self, target_id: int, **fields: Any) -> None:
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
        """Register a series (not committed; the BatchWriter caches the ids)."""
        return self._insert(
            "INSERT INTO series (run_id, target_id, metric, labels, unit, kind) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, target_id, metric, labels_json(labels), unit, kind),
            commit=False,
        )

    def write_rows(self, rows: Sequence[tuple[int, int, float]]) -> None:
        """Insert ``(series_id, t_ns, value)`` rows; not committed (see ``commit``)."""
        self._exec_many("INSERT INTO samples (series_id, t_ns, value) VALUES (?, ?, ?)", rows)

    def commit(self) -> None:
        with self._cursor(commit=True):
            pass

    def add_event(self, run_id: int, target_id: int | None, ev: Event) -> None:
        self.write_events(run_id, target_id, [ev])
        self.commit()

    def write_events(self, run_id: int, target_id: int | None, events: Sequence[Event]) -> None:
        """Insert events; not committed (see ``commit``)."""
        self._exec_many(
            "INSERT INTO events (run_id, target_id, t_ns, kind, message, data) VALUES (?, ?, ?, ?, ?, ?)",
            [(run_id, target_id, ev.t_ns, ev.kind, ev.message, _dumps(ev.data)) for ev in events],
        )

    def add_log(self, target_id: int, stream: str, text: str) -> None:
        self._exec(
            "INSERT INTO logs (target_id, stream, text) VALUES (?, ?, ?)", (target_id, stream, text)
        )

    # -- reading --------------------------------------------------------------------------
    def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT r.id, r.spec_name, r.image, r.started_ns, r.ended_ns, r.status,"
            " (SELECT COUNT(*) FROM targets t WHERE t.run_id = r.id) AS targets"
            " FROM runs r ORDER BY r.id DESC LIMIT ?",
            (limit,),
        )

    def resolve_run(self, run_ref: str | int) -> dict[str, Any]:
        ref = str(run_ref).strip()
        if ref == "latest":
            rows = self._rows("SELECT * FROM runs ORDER BY id DESC LIMIT 1")
            if not rows:
                raise StoreError(
                    f"no runs are stored in {self.url} yet; run 'edgeprof run SPEC' first"
                )
        else:
            if not ref.isdigit():
                raise StoreError(
                    f"run id {ref!r} is not a number; use a number from 'edgeprof runs' or 'latest'"
                )
            rows = self._rows("SELECT * FROM runs WHERE id = ?", (int(ref),))
            if not rows:
                raise StoreError(
                    f"no run with id {ref} in {self.url}; see 'edgeprof runs' for stored runs"
                )
        run = rows[0]
        run["host"] = json.loads(run["host"] or "{}")
        return run

    def targets(self, run_id: int) -> list[dict[str, Any]]:
        rows = self._rows("SELECT * FROM targets WHERE run_id = ? ORDER BY idx", (run_id,))
        for r in rows:
            r["args"] = json.loads(r["args"])
            r["config"] = json.loads(r["config"] or "{}")
            r["oom_killed"] = None if r["oom_killed"] is None else bool(r["oom_killed"])
            r["timed_out"] = None if r["timed_out"] is None else bool(r["timed_out"])
        return rows

    def series(self, run_id: int) -> list[dict[str, Any]]:
        rows = self._rows("SELECT * FROM series WHERE run_id = ? ORDER BY id", (run_id,))
        for r in rows:
            r["labels"] = json.loads(r["labels"])
        return rows

    def series_values(self, run_id: int) -> dict[int, list[float]]:
        """All sample values of a run, grouped by series id (one query, one pass)."""
        out: dict[int, list[float]] = {}
        with self._cursor() as cur:
            cur.execute(
                self._q(
                    "SELECT s.series_id, s.value FROM samples s JOIN series se ON se.id = s.series_id"
                    " WHERE se.run_id = ?"
                ),
                (run_id,),
            )
            while True:
                chunk = cur.fetchmany(65536)
                if not chunk:
                    break
                for sid, v in chunk:
                    lst = out.get(sid)
                    if lst is None:
                        lst = out[sid] = []
                    lst.append(v)
        return out

    def ordered_values(self, series_id: int) -> list[float]:
        """One series' values in time order (served by the (series_id, t_ns) index)."""
        with self._cursor() as cur:
            cur.execute(
                self._q("SELECT value FROM samples WHERE series_id = ? ORDER BY t_ns"), (series_id,)
            )
            return [r[0] for r in cur.fetchall()]

    def iter_samples(self, run_id: int, chunk: int = 65536) -> Iterator[tuple[int, int, float]]:
        """Samples of a run in time order, streamed in chunks (exports of any size)."""
        with self._cursor() as cur:
            cur.execute(
                self._q(
                    "SELECT s.series_id, s.t_ns, s.value FROM samples s JOIN series se"
                    " ON se.id = s.series_id WHERE se.run_id = ? ORDER BY s.t_ns, s.series_id"
                ),
                (run_id,),
            )
            while rows := cur.fetchmany(chunk):
                yield from rows

    def events(self, run_id: int) -> list[dict[str, Any]]:
        rows = self._rows("SELECT * FROM events WHERE run_id = ? ORDER BY t_ns, id", (run_id,))
        for r in rows:
            r["data"] = json.loads(r["data"] or "{}")
        return rows

    def logs(self, target_id: int) -> dict[str, str]:
        return {
            r["stream"]: r["text"]
            for r in self._rows("SELECT * FROM logs WHERE target_id = ?", (target_id,))
        }

    def close(self) -> None:
        with self.lock:
            try:
                with contextlib.suppress(Exception):
                    self.conn.commit()
            finally:
                self.conn.close()


class BatchWriter:
    """Buffers samples from the sampler and writes them from its own thread.

    Committed at least every ``flush_s`` seconds; ``close()`` drains and commits everything.
    Series are registered on first sight with the unit/kind given by ``describe``.
    """

    def __init__(
        self,
        store: SQLStore,
        run_id: int,
        target_id: int | None,
        describe: dict[str, tuple[str, str]] | None = None,
        flush_s: float = 0.5,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.target_id = target_id
        self.describe = (
            describe if describe is not None else {}
        )  # shared with the sampler: keep the object
        self.flush_s = flush_s
        self._q: queue.SimpleQueue[list[Sample] | Event | None] = queue.SimpleQueue()
        self._series: dict[tuple[str, Labels], int] = {}
        self.written = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="edgeprof-writer", daemon=True)
        self._thread.start()

    def __call__(self, batch: list[Sample]) -> None:
        self._q.put(batch)

    def event(self, ev: Event) -> None:
        """Store an event from the writer's thread (callers never wait on the database)."""
        self._q.put(ev)

    def _flush(self, pending: list[list[Sample] | Event]) -> None:
        store = self.store
        run_id, target_id = self.run_id, self.target_id
        cache = self._series
        desc = self.describe
        rows: list[tuple[int, int, float]] = []
        events: list[Event] = []
        for item in pending:
            if isinstance(item, Event):
                events.append(item)
                continue
            for s in item:
                key = (s.metric, s.labels)
                sid = cache.get(key)
                if sid is None:
                    unit, kind = desc.get(s.metric, (None, None))
                    sid = cache[key] = store.series_id(
                        run_id, target_id, s.metric, s.labels, unit, kind
                    )
                rows.append((sid, s.t_ns, float(s.value)))
        store.write_rows(rows)
        if events:
            store.write_events(run_id, target_id, events)
        store.commit()
        self.written += len(rows)

    def _run(self) -> None:
        pending: list[list[Sample] | Event] = []
        last = time.monotonic()
        done = False
        while not done:
            try:
                item = self._q.get(timeout=max(0.0, self.flush_s - (time.monotonic() - last)))
                while item is not None:  # take everything already queued without waiting
                    pending.append(item)
                    item = self._q.get_nowait()
                done = True
            except queue.Empty:
                pass
            if pending and (done or time.monotonic() - last >= self.flush_s):
                try:
                    self._flush(pending)
                except Exception as e:  # noqa: BLE001 - reported by close()
                    self.error = self.error or e
                pending = []
            if not pending:
                last = time.monotonic()

    def close(self) -> None:
        self._q.put(None)
        self._thread.join()
        if self.error is not None:
            raise StoreError(f"writing samples to {self.store.url} failed: {self.error}")


def open_store(url: str) -> SQLStore:
    """Open (and create or migrate) the store named by ``url``."""
    if url.startswith("sqlite://"):
        return _open_sqlite(url)
    if url.startswith(("postgresql://", "postgres://")):
        return _open_postgres(url)
    raise StoreError(
        f"database URL {url!r} is not supported; use sqlite:///path/to/file.db or postgresql://user@host/db"
    )


def _open_sqlite(url: str) -> SQLStore:
    path = url[len("sqlite://") :]
    # sqlite:///rel.db → rel.db ; sqlite:////abs/x.db → /abs/x.db ; sqlite:///:memory:
    if path.startswith("/"):
        path = path[1:]
    if path in ("", ":memory:"):
        path = ":memory:"
    else:
        p = Path(path)
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.exists():
            raise StoreError(
                f"cannot create database {path}: folder {parent} does not exist; create it or pick another --db"
            )
        if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
            raise StoreError(
                f"cannot write database {path}: permission denied; pick a writable --db path"
            )
    try:
        conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return SQLStore(conn, _Dialect, url)
    except sqlite3.DatabaseError as e:
        raise StoreError(
            f"cannot open database {path}: {e}; is it an edgeprof SQLite file?"
        ) from None


def _open_postgres(url: str) -> SQLStore:
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "PostgreSQL needs the 'psycopg' package; pip install 'edgeprof[postgres]'"
        ) from None
    try:
        conn = psycopg.connect(url.replace("postgres://", "postgresql://", 1), connect_timeout=10)
    except psycopg.Error as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StoreError(f"cannot connect to PostgreSQL at {_redact(url)}: {first}") from None
    return SQLStore(conn, _PgDialect, _redact(url))


def _redact(url: str) -> str:
    if "@" in url and ":" in url.split("@", 1)[0].split("//", 1)[-1]:
        scheme, rest = url.split("//", 1)
        cred, host = rest.split("@", 1)
        return f"{scheme}//{cred.split(':', 1)[0]}:***@{host}"
    return url
