"""The one portable SQL schema (SQLite and PostgreSQL), its version and its migrations.

A new database is created at :data:`SCHEMA_VERSION` directly; an older one is brought up
step by step with :data:`MIGRATIONS` (``version → statements from version-1``), in place,
when it is opened for writing (or by ``edgeprof migrate``). ``{pk}`` and ``{real}`` are
filled in per dialect.

Versions: 1 — runs, targets, series, samples (one row each), events, logs. 2 — the run's
``owner`` (host, pid and its start time, boot id), to tell a run whose profiler died.
"""

from __future__ import annotations

SCHEMA_VERSION = 2


class Dialect:
    name = "sqlite"
    pk = "INTEGER PRIMARY KEY AUTOINCREMENT"
    real = "REAL"
    param = "?"


class PgDialect(Dialect):
    name = "postgresql"
    pk = "BIGSERIAL PRIMARY KEY"
    real = "DOUBLE PRECISION"
    param = "%s"


SCHEMA = [
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
        edgeprof_version TEXT,
        owner TEXT
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

MIGRATIONS: dict[int, list[str]] = {
    2: ["ALTER TABLE runs ADD COLUMN owner TEXT"],
}
