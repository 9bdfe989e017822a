"""Storage of runs, targets, series, samples, events and logs, picked by URL.

``open_store("sqlite:///path/to.db")`` or ``open_store("postgresql://user@host/db")``;
``readonly=True`` for every command that only reads: it never creates, migrates or writes.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from edgeprof.errors import StoreError, StoreUnavailable
from edgeprof.store.base import Store
from edgeprof.store.migrate import Progress
from edgeprof.store.schema import Dialect, PgDialect
from edgeprof.store.sql import SQLStore, _first_line
from edgeprof.store.writer import BatchWriter
from edgeprof.urls import redact_text, redact_url

DEFAULT_DB = "sqlite:///./edgeprof.db"

__all__ = [
    "DEFAULT_DB",
    "BatchWriter",
    "SQLStore",
    "Store",
    "absolute_url",
    "open_store",
    "redact_url",
    "sqlite_path",
]


def open_store(url: str, readonly: bool = False, progress: Progress | None = None) -> SQLStore:
    """Open (and, unless ``readonly``, create or migrate) the store named by ``url``;
    ``progress(done, total)`` follows a migration that moves data."""
    if url.startswith("sqlite://"):
        return _open_sqlite(url, readonly, progress)
    if url.startswith(("postgresql://", "postgres://")):
        return _open_postgres(url, readonly, progress)
    hint = "use sqlite:///path/to/file.db or postgresql://user@host/db"
    if "=" in url and "://" not in url:
        hint = "edgeprof takes a URL: postgresql://user@host:port/db (a password is best kept in PGPASSFILE)"
    elif url and "://" not in url:
        p = os.path.abspath(url)
        hint = (
            f"for a SQLite file write sqlite:///{p}"
            if url.startswith("/")
            else (f"for a SQLite file write sqlite:///{url} (relative) or sqlite:///{p} (absolute)")
        )
    raise StoreError(redact_url(f"database URL {url!r} is not supported; {hint}"))


def _store(conn: Any, dialect: Any, url: str, **kw: Any) -> SQLStore:
    """The store over ``conn``; the connection is closed if opening fails (or is interrupted)."""
    try:
        return SQLStore(conn, dialect, url, **kw)
    except BaseException:
        with contextlib.suppress(Exception):
            conn.close()
        raise


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite://`` URL (``:memory:`` for none); None for other URLs.

    ``sqlite:///rel.db`` → ``rel.db``; ``sqlite:////abs/x.db`` → ``/abs/x.db``."""
    if not url.startswith("sqlite://"):
        return None
    path = url[len("sqlite://") :]
    if path.startswith("/"):
        path = path[1:]
    return ":memory:" if path in ("", ":memory:") else path


def absolute_url(url: str) -> str:
    """The same database named so that it means the same from any working directory."""
    path = sqlite_path(url)
    if path is None or path == ":memory:":
        return url
    return "sqlite:///" + os.path.abspath(path)


def _sqlite_path(url: str) -> str:
    path = sqlite_path(url)
    assert path is not None
    return path


def _open_sqlite(url: str, readonly: bool, progress: Progress | None = None) -> SQLStore:
    path = _sqlite_path(url)
    if path != ":memory:" and readonly:
        return _open_sqlite_readonly(url, path)
    if path != ":memory:":
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
        if conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0:
            # a new file: pages freed (open blocks replaced by final chunks) can be given back
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # SQLite builds that default to secure_delete zero every freed page, writing a
        # deleted open block (~0.1 MB each, 240 of them at a 120 s chunk's end) through the
        # log once more: FAST clears deleted rows only where that costs no extra page write
        conn.execute("PRAGMA secure_delete=FAST")
        return _store(conn, Dialect, url, progress=progress)
    except sqlite3.DatabaseError as e:
        raise StoreError(
            f"cannot open database {path}: {e}; is it an edgeprof SQLite file?"
        ) from None


def _open_sqlite_readonly(url: str, path: str) -> SQLStore:
    """Open for reading only: no table or row is ever written, no schema migrated.

    Where the database and its folder are writable, the connection is SQLite's usual one
    with ``query_only`` set: it takes SQLite's locks, so a run that starts writing while we
    read (and checkpoints its log into the file) never shows us a half-written page, and
    the -wal/-shm files SQLite makes for the read are removed again when it closes. (If it
    is the last connection to close, SQLite first copies a log left by a killed run into
    the database file, as any SQLite reader would; the content stays the same.)
    Elsewhere (a read-only mount, someone else's file) it is opened read-only through the
    write-ahead log when there is one, which needs the log's index (-shm); else as
    immutable (nothing can be writing to it there), with a warning when a log that cannot
    be read holds the newest writes.
    """
    p = Path(path)
    if not p.is_file():
        raise StoreError(
            f"no database at {path}; run 'edgeprof run SPEC --db {url}' first, or point "
            "--db (or $EDGEPROF_DB) at an existing database"
        )
    uri = "file:" + quote(str(p.resolve()))
    wal = Path(str(p) + "-wal")
    has_log = wal.exists() and wal.stat().st_size > 0
    modes = ["?mode=ro", "?mode=ro&immutable=1"] if wal.exists() else ["?mode=ro&immutable=1"]
    if os.access(p, os.W_OK) and os.access(p.resolve().parent, os.W_OK):
        modes.insert(0, "?mode=rw")
    last: Exception | None = None
    for suffix in modes:
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(uri + suffix, uri=True, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA query_only=1")
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            store = _store(conn, Dialect, url, readonly=True)
        except (sqlite3.DatabaseError, StoreError) as e:
            last = e
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            continue
        if "immutable" in suffix and has_log:
            store.warning = (
                f"the write-ahead log of {path} ({wal.stat().st_size} bytes) cannot be read "
                "here (a read-only file system without its -shm file); the newest writes may "
                "be missing: copy the database with its -wal file somewhere writable"
            )
        return store
    if has_log:
        raise StoreError(
            f"cannot read {path}: its newest writes are in a write-ahead log "
            f"({wal.stat().st_size} bytes) that cannot be read here (a read-only file system "
            "without its -shm file); copy the database with its -wal file somewhere writable"
        )
    if isinstance(last, StoreError):
        raise last
    raise StoreError(f"cannot open database {path}: {last}; is it an edgeprof SQLite file?")


def _keepalive(psycopg: Any) -> dict[str, Any]:
    """TCP settings that notice a server gone without a word (a cable, a partition) in
    about half a minute instead of the system's two hours: the writer then retries."""
    kw: dict[str, Any] = {
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }
    if psycopg.pq.version() >= 120000:  # libpq 12: unacknowledged sends time out too
        kw["tcp_user_timeout"] = 30000
    return kw


def _open_postgres(url: str, readonly: bool, progress: Progress | None = None) -> SQLStore:
    """Credentials come from the URL, or as libpq finds them itself: ``PGPASSWORD``,
    ``PGPASSFILE`` (default ``~/.pgpass``), ``PGUSER``, ``PGHOST`` … (a URL like
    ``postgresql:///edgeprof`` leaves everything else to them). Messages never show a
    password, from the URL or from the environment."""
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "PostgreSQL needs the 'psycopg' package; pip install 'edgeprof[postgres]'"
        ) from None
    shown = redact_url(url)
    target = url.replace("postgres://", "postgresql://", 1)

    def connect() -> Any:
        try:
            conn = psycopg.connect(target, connect_timeout=10, **_keepalive(psycopg))
        except psycopg.Error as e:
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {shown}: {redact_text(_first_line(e), url)}"
            ) from None
        if readonly:
            conn.read_only = True
        return conn

    try:
        conn = connect()
    except StoreUnavailable as e:
        raise StoreError(str(e)) from None
    store = _store(conn, PgDialect, shown, readonly=readonly, progress=progress)
    store.connect = connect
    return store
