"""The one portable SQL schema (SQLite and PostgreSQL), its version and its migrations.

A new database is created at :data:`SCHEMA_VERSION` directly; an older one is brought up
step by step with :data:`MIGRATIONS` (``version → statements from version-1``; a step that
moves data names a function of :mod:`.migrate`), in place, when it is opened for writing
or by ``edgeprof migrate``. ``{pk}``, ``{real}`` and ``{blob}`` are filled in per dialect.

Versions: 1 — runs, targets, series, samples (one row each), events, logs. 2 — the run's
``owner`` (host, pid and its start time, boot id), to tell a run whose profiler died.
3 — samples in compressed chunks (:mod:`.codec`): ``chunks`` holds a series' values,
``timeblocks`` the timestamp arrays that series sampled at the same ticks share; the
``samples`` table is converted and dropped. 4 — ``open_blocks``: the write-ahead form of
the newest samples, one row per flush for all series of a run (was: one open chunk per
series and flush, whose ~840 rows a flush at 30 containers landed on as many index pages);
``series.final_block``. 5 — sampled stacks (``profiling.code``): ``code_stacks`` holds each
distinct stack once per run, ``code_samples`` the counts per target, process, thread and
1 s slice (:data:`CODE_TABLES`). 6 — ``runs.uuid`` (a run's identity across databases: ``import``
adds a run once) and ``runs.meta`` (device, CI and ``--tag`` metadata, JSON: see
:mod:`edgeprof.farm.meta`).

A chunk is *final* (values encoded, timestamps in a time block). The newest samples of a
run are in *open blocks* (:func:`.chunks.open_block`: per series, raw arrays of what it
gathered since the last flush), written at every flush of the batch writer. Once a series
has gathered enough samples (or its target ended) they become a final chunk, and in the
same transaction ``series.final_block`` is set to the newest open block written so far:
the series' samples in that block and older ones are superseded (readers skip them); an
open block is deleted once every series in it is superseded. A series' samples are its
final chunks in ``id`` order, then its samples in the open blocks above ``final_block`` in
block order. Version 3 wrote open chunks instead (raw little-endian arrays in ``chunks``,
``mode`` 0, timestamps inline; replaced by deleting them): read like final chunks.
"""

from __future__ import annotations

SCHEMA_VERSION = 6
READABLE_FROM = 3
"""The oldest version read without migrating (read-only); 3 and 4 differ only in what they
lack (open blocks, stacks), and readers of what is missing find nothing."""


class Dialect:
    name = "sqlite"
    pk = "INTEGER PRIMARY KEY AUTOINCREMENT"
    real = "REAL"
    blob = "BLOB"
    param = "?"


class PgDialect(Dialect):
    name = "postgresql"
    pk = "BIGSERIAL PRIMARY KEY"
    real = "DOUBLE PRECISION"
    blob = "BYTEA"
    param = "%s"


CHUNK_TABLES = [
    """CREATE TABLE IF NOT EXISTS timeblocks (
        id {pk},
        n INTEGER NOT NULL,
        t0_ns BIGINT NOT NULL,
        t1_ns BIGINT NOT NULL,
        ts {blob} NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS chunks (
        id {pk},
        series_id BIGINT NOT NULL,
        timeblock_id BIGINT,
        n INTEGER NOT NULL,
        t0_ns BIGINT NOT NULL,
        t1_ns BIGINT NOT NULL,
        vmin {real},
        vmax {real},
        vsum {real},
        mode INTEGER NOT NULL,
        ts {blob},
        vals {blob} NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS chunks_series ON chunks (series_id, id)",
]

OPEN_BLOCKS = [
    """CREATE TABLE IF NOT EXISTS open_blocks (
        id {pk},
        run_id BIGINT NOT NULL,
        n INTEGER NOT NULL,
        payload {blob} NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS open_blocks_run ON open_blocks (run_id, id)",
]


CODE_TABLES = [
    """CREATE TABLE IF NOT EXISTS code_stacks (
        id {pk},
        run_id BIGINT NOT NULL,
        hash TEXT NOT NULL,
        stack TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS code_stacks_run ON code_stacks (run_id, hash)",
    """CREATE TABLE IF NOT EXISTS code_samples (
        id {pk},
        target_id BIGINT NOT NULL,
        t_ns BIGINT NOT NULL,
        pid INTEGER NOT NULL,
        process TEXT NOT NULL,
        thread TEXT,
        kind TEXT NOT NULL,
        stack_id BIGINT NOT NULL,
        count INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS code_samples_target ON code_samples (target_id, t_ns)",
]
"""Sampled stacks: a stack is one line per frame, root first (``function\\tfile\\tline``,
see :func:`edgeprof.codeprof.model.encode_stack`), stored once per run and found again by
its ``hash``; ``code_samples`` rows name it."""


RUNS_UUID_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS runs_uuid ON runs (uuid)"

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
        owner TEXT,
        uuid TEXT,
        meta TEXT
    )""",
    RUNS_UUID_INDEX,
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
        kind TEXT,
        final_block BIGINT
    )""",
    *CHUNK_TABLES,
    *OPEN_BLOCKS,
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
    *CODE_TABLES,
]

MIGRATIONS: dict[int, list[str]] = {
    2: ["ALTER TABLE runs ADD COLUMN owner TEXT"],
    3: [*CHUNK_TABLES, "@samples_to_chunks", "DROP TABLE samples"],
    4: [*OPEN_BLOCKS, "ALTER TABLE series ADD COLUMN final_block BIGINT"],
    5: [*CODE_TABLES, "@ensure_open_blocks"],  # 4 meant the stack tables in commit 516ca7d
    6: [
        "ALTER TABLE runs ADD COLUMN uuid TEXT",
        "ALTER TABLE runs ADD COLUMN meta TEXT",
        "@fill_run_uuids",
        RUNS_UUID_INDEX,
    ],
}
"""Statements per version; ``@name`` runs the function ``name`` of :mod:`.migrate`."""

MOVES_DATA = frozenset({"@samples_to_chunks"})
"""Steps that rewrite data: a SQLite file is compacted (``VACUUM``) after them, not after
steps that only add what is missing."""
