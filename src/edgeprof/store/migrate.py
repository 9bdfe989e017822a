"""Migration steps that move data (the rest of a migration is SQL in :mod:`.schema`).

Each step is ``step(store, cursor, progress)``, run inside the migration's transaction;
``progress(done, total)`` is called as it goes, for a progress bar on large databases.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgeprof.store import chunks

Progress = Callable[[int, int], None]


def samples_to_chunks(store: Any, cur: Any, progress: Progress | None) -> None:
    """Version 3: every series' rows of ``samples`` → final chunks, in the order the old
    readers returned them (time, then insertion); series of one target sampled at the same
    ticks share their time blocks."""
    q = store._q
    cur.execute("SELECT COUNT(*) FROM samples")
    total = int(cur.fetchone()[0])
    cur.execute("SELECT id, target_id FROM series ORDER BY target_id, id")
    series = [(int(r[0]), r[1]) for r in cur.fetchall()]
    order = "t_ns, rowid" if store.d.name == "sqlite" else "t_ns"
    done = 0
    blocks: dict[tuple[Any, bytes], int] = {}
    current_target: Any = object()
    for sid, target in series:
        if target != current_target:  # time blocks are shared within one target
            blocks.clear()
            current_target = target
        cur.execute(
            q(f"SELECT t_ns, value FROM samples WHERE series_id = ? ORDER BY {order}"), (sid,)
        )
        hint: int | None = None
        while rows := cur.fetchmany(chunks.CHUNK_SAMPLES * 16):
            t_all = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            v_all = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
            out = []
            for a, z in chunks.pieces(t_all):
                t = t_all[a:z]
                key = (target, t.tobytes())
                tb = blocks.get(key)
                if tb is None:
                    tb = blocks[key] = store.add_timeblock(*chunks.timeblock(t))
                row, hint = chunks.final_row(sid, tb, t, v_all[a:z], hint)
                out.append(row)
            store.write_chunks(out)
            done += len(rows)
            if progress is not None:
                progress(done, total)


def _columns(store: Any, cur: Any, table: str) -> set[str]:
    if store.d.name == "sqlite":
        cur.execute(f"PRAGMA table_info({table})")
        return {str(r[1]) for r in cur.fetchall()}
    cur.execute(
        store._q(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ?"
        ),
        (table,),
    )
    return {str(r[0]) for r in cur.fetchall()}


def ensure_open_blocks(store: Any, cur: Any, progress: Progress | None) -> None:
    """Version 5: what version 4 adds (``open_blocks``, ``series.final_block``), where it is
    missing. A database stamped 4 by commit 516ca7d, where 4 meant the stack tables, lacks
    them; on a real version 4 this does nothing."""
    from edgeprof.store.schema import OPEN_BLOCKS

    fmt = {"pk": store.d.pk, "real": store.d.real, "blob": store.d.blob}
    for stmt in OPEN_BLOCKS:  # CREATE ... IF NOT EXISTS
        cur.execute(stmt.format(**fmt))
    if "final_block" not in _columns(store, cur, "series"):
        cur.execute("ALTER TABLE series ADD COLUMN final_block BIGINT")


def legacy_run_uuid(started_ns: int, spec_name: str, image: str, owner: str | None) -> str:
    """The UUID of a run stored before runs had one: derived from what the run row holds
    (its start to the nanosecond, spec, image and owner — host, pid, boot id and a random
    run uid where recorded), so that every copy of an older database, migrated or imported
    anywhere, names its runs alike and ``import`` adds each once."""
    import uuid

    key = f"edgeprof-run:{started_ns}:{spec_name}:{image}:{owner or ''}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))


def fill_run_uuids(store: Any, cur: Any, progress: Progress | None) -> None:
    """Version 6: every stored run gets its UUID (:func:`legacy_run_uuid`)."""
    cur.execute("SELECT id, started_ns, spec_name, image, owner FROM runs WHERE uuid IS NULL")
    rows = [
        (legacy_run_uuid(int(r[1]), str(r[2]), str(r[3]), r[4]), int(r[0])) for r in cur.fetchall()
    ]
    if rows:
        cur.executemany(store._q("UPDATE runs SET uuid = ? WHERE id = ?"), rows)


STEPS: dict[str, Callable[[Any, Any, Progress | None], None]] = {
    "samples_to_chunks": samples_to_chunks,
    "ensure_open_blocks": ensure_open_blocks,
    "fill_run_uuids": fill_run_uuids,
}
