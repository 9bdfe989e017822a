"""Store: bytes per sample, ingest rate, summary and series read time (a benchmark: prints
figures, asserts nothing).

A real ``edgeprof run`` at 100 Hz with the container, system and process groups gives the
shape of one tick (its series) and real values. The synthetic part then pushes 1,000,000
samples of that shape through the real ``BatchWriter`` into a fresh database, and reads it
back through the store: ``edgeprof summary RUN --json`` (a subprocess, wall clock) and one
series of 1,000,000 samples into numpy arrays.

The peer, measured in the same run, is the previous layout (schema 2: one row per sample,
``(series_id, t_ns, value)`` with an index on ``(series_id, t_ns)``), written with the same
batching (``executemany`` + commit every 0.5 s) and read the way its summary read it (all
values of the run grouped by series, sorted, percentiles in Python).

    python bench/store.py [--quick|--smoke] [--pg]      # --pg: the sizes on PostgreSQL too
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BUSY_CMD, EDGEPROF, banner, dump, parse_mode, pct, start_edgeprof, table  # noqa: E402


def _size(path: str) -> int:
    return sum(
        os.path.getsize(p) for p in (path, path + "-wal", path + "-shm") if os.path.exists(p)
    )


def real_run(wd: str, seconds: float) -> dict[str, Any]:
    """A real 100 Hz run; its size per sample, and the series and values of its ticks."""
    run = start_edgeprof(wd, "store-shape", BUSY_CMD, 0.01, timeout=seconds)
    run.wait()
    size = _size(run.db_path)
    with run.store() as s:
        rid = s.resolve_run("latest").id
        series = s.series(rid)
        n = s.sample_count(rid)
        arrays = s.series_arrays(rid)
    tmpl = [(x.metric, tuple(sorted(x.labels.items())), x.unit, x.kind) for x in series]
    return {
        "samples": n,
        "bytes": size,
        "per_sample": size / n,
        "tmpl": tmpl,
        "arrays": arrays,
        "series": series,
    }


def batches(real: dict[str, Any], n_samples: int) -> list[list[Any]]:
    """Ticks of the real run's shape, values replayed from it (cycled), times advancing."""
    from edgeprof.model import Sample

    rows = []
    for x in real["series"]:
        t, v = real["arrays"].get(x.id, ([], []))
        if len(v):
            rows.append((x.metric, tuple(sorted(x.labels.items())), [float(a) for a in v]))
    ticks = max(1, n_samples // len(rows))
    t0 = time.time_ns()
    out = []
    for k in range(ticks):
        t = t0 + k * 10_000_000 + (k * 7919) % 100_000  # jitter like a real sampler's
        out.append([Sample(m, lab, t, vals[k % len(vals)]) for m, lab, vals in rows])
    return out


def ingest_chunks(db: str, real: dict[str, Any], bs: list[list[Any]]) -> dict[str, Any]:
    from edgeprof.model import MetricSpec
    from edgeprof.store import BatchWriter, open_store
    from edgeprof.store.base import RunInfo, TargetInfo

    store = open_store(db)
    run_id = store.begin_run(
        RunInfo(spec_name="bench", image="synthetic", started_ns=1, interval_s=0.01)
    )
    tid = store.begin_target(TargetInfo(run_id, 0, "t", []))
    w = BatchWriter(store, run_id, tid)
    w.describe([MetricSpec(m, u or "1", k or "gauge") for m, _, u, k in real["tmpl"]])
    c0, t0 = time.process_time(), time.perf_counter()
    for b in bs:
        w.write(b)
    w.close()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    store.update_target(tid, status="exited", exit_code=0)
    store.end_run(run_id, "completed", time.time_ns())
    store.close()
    n = sum(len(b) for b in bs)
    return {"run_id": run_id, "samples": n, "rate": n / wall, "cpu_rate": n / cpu}


def ingest_rows(path: str, bs: list[list[Any]]) -> dict[str, Any]:
    """The previous layout, written with the previous writer's batching."""
    c = sqlite3.connect(path)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")
    c.execute(
        "CREATE TABLE series (id INTEGER PRIMARY KEY AUTOINCREMENT, metric TEXT, labels TEXT)"
    )
    c.execute(
        "CREATE TABLE samples (series_id BIGINT NOT NULL, t_ns BIGINT NOT NULL, value REAL NOT NULL)"
    )
    c.execute("CREATE INDEX samples_series ON samples (series_id, t_ns)")
    ids: dict[Any, int] = {}
    c0, t0 = time.process_time(), time.perf_counter()
    last = time.monotonic()
    rows = []
    for b in bs:
        for s in b:
            key = (s.metric, s.labels)
            sid = ids.get(key)
            if sid is None:
                sid = ids[key] = c.execute(
                    "INSERT INTO series (metric, labels) VALUES (?, ?) RETURNING id",
                    (s.metric, str(s.labels)),
                ).fetchone()[0]
            rows.append((sid, s.t_ns, float(s.value)))
        if time.monotonic() - last >= 0.5:
            c.executemany("INSERT INTO samples VALUES (?, ?, ?)", rows)
            c.commit()
            rows, last = [], time.monotonic()
    c.executemany("INSERT INTO samples VALUES (?, ?, ?)", rows)
    c.commit()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    c.close()
    n = sum(len(b) for b in bs)
    return {"samples": n, "rate": n / wall, "cpu_rate": n / cpu}


def summary_rows(path: str) -> float:
    """The previous summary's reading: every value of the run, grouped, sorted, percentiles."""
    t0 = time.perf_counter()
    with contextlib.closing(sqlite3.connect(path)) as c:
        vals: dict[int, list[float]] = {}
        for sid, v in c.execute("SELECT series_id, value FROM samples"):
            vals.setdefault(sid, []).append(v)
        for v in vals.values():
            s = sorted(v)
            _ = (sum(s) / len(s), pct(s, 0.5), pct(s, 0.95), pct(s, 0.99))
    return time.perf_counter() - t0


def summarize_in_process(db: str, run_id: int) -> float:
    """The library's summarize(), interpreter and numpy already loaded: the work itself."""
    from edgeprof.analyze.summary import summarize
    from edgeprof.store import open_store

    store = open_store(db, readonly=True)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        summarize(store, run_id)
        best = min(best, time.perf_counter() - t0)
    store.close()
    return best


def time_summary(db: str, run_id: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        p = subprocess.run(
            [*EDGEPROF, "summary", str(run_id), "--db", db, "--json"],
            capture_output=True,
            text=True,
        )
        dt = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-500:])
        best = min(best, dt)
    return best


def read_series(db: str, n: int) -> tuple[float, float]:
    """Seconds to read one series of ``n`` samples into numpy arrays: edgeprof, and the peer's
    query of the same into Python lists then arrays."""
    import numpy as np

    from edgeprof.model import Sample
    from edgeprof.store import BatchWriter, open_store
    from edgeprof.store.base import RunInfo

    store = open_store(db)
    run_id = store.begin_run(RunInfo(spec_name="one", image="i", started_ns=1, interval_s=0.01))
    w = BatchWriter(store, run_id, None)
    t0 = time.time_ns()
    for k in range(0, n, 10_000):
        w.write(
            [
                Sample("cpu.percent", (), t0 + (k + i) * 10_000_000, ((k + i) * 37 % 1000) / 10)
                for i in range(10_000)
            ]
        )
    w.close()
    (sid,) = [s.id for s in store.series(run_id)]
    best = float("inf")
    for _ in range(3):
        t1 = time.perf_counter()
        t, v = store.series_samples(sid)
        best = min(best, time.perf_counter() - t1)
    assert len(t) == n
    store.close()
    path = db[len("sqlite:///") :] + ".rows"
    with contextlib.closing(sqlite3.connect(path)) as c:
        c.execute("CREATE TABLE samples (series_id BIGINT, t_ns BIGINT, value REAL)")
        c.execute("CREATE INDEX samples_series ON samples (series_id, t_ns)")
        c.executemany(
            "INSERT INTO samples VALUES (1, ?, ?)", zip(t.tolist(), v.tolist(), strict=True)
        )
        c.commit()
        peer = float("inf")
        for _ in range(3):
            t1 = time.perf_counter()
            rows = c.execute(
                "SELECT t_ns, value FROM samples WHERE series_id = 1 ORDER BY t_ns"
            ).fetchall()
            _ = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
            peer = min(peer, time.perf_counter() - t1)
    return best, peer


def pg_sizes(bs: list[list[Any]], real: dict[str, Any]) -> dict[str, Any] | None:
    """The same ingest into a private PostgreSQL (scripts/postgres.sh): bytes per sample."""
    res = subprocess.run(
        [str(Path(__file__).resolve().parents[1] / "scripts" / "postgres.sh"), "start"],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        return None
    base = res.stdout.strip().splitlines()[-1].split("=", 1)[1]
    import psycopg

    name = f"edgeprof_bench_{os.getpid()}"
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        ing = ingest_chunks(url, real, bs)
        with psycopg.connect(url) as c:
            chunk_bytes = sum(
                c.execute(f"SELECT pg_total_relation_size('{t}')").fetchone()[0]
                for t in ("chunks", "timeblocks", "series")
            )
            c.execute(
                "CREATE TABLE samples_rows (series_id BIGINT NOT NULL, t_ns BIGINT NOT NULL, value DOUBLE PRECISION NOT NULL)"
            )
            c.execute("CREATE INDEX ON samples_rows (series_id, t_ns)")
            with c.cursor().copy("COPY samples_rows FROM STDIN") as cp:
                for b in bs:
                    for i, s in enumerate(b):
                        cp.write_row((i, s.t_ns, float(s.value)))
            c.commit()
            row_bytes = c.execute("SELECT pg_total_relation_size('samples_rows')").fetchone()[0]
        n = ing["samples"]
        return {"chunks": chunk_bytes / n, "rows": row_bytes / n, "rate": ing["rate"]}
    finally:
        with psycopg.connect(base, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run(n_samples: int, real_seconds: float, pg: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgeprof-bench-") as wd:
        real = real_run(wd, real_seconds)
        bs = batches(real, n_samples)
        db_path = os.path.join(wd, "chunks.db")
        ing = ingest_chunks(f"sqlite:///{db_path}", real, bs)
        chunk_size = _size(db_path)
        rows_path = os.path.join(wd, "rows.db")
        peer = ingest_rows(rows_path, bs)
        rows_size = _size(rows_path)
        summ = time_summary(f"sqlite:///{db_path}", ing["run_id"])
        summ_lib = summarize_in_process(f"sqlite:///{db_path}", ing["run_id"])
        summ_peer = summary_rows(rows_path)
        small = os.path.join(wd, "small.db")
        ing_small = ingest_chunks(f"sqlite:///{small}", real, bs[:10])
        summ_small = time_summary(f"sqlite:///{small}", ing_small["run_id"])
        one, one_peer = read_series(
            f"sqlite:///{os.path.join(wd, 'one.db')}", min(n_samples, 1_000_000)
        )
        pgs = pg_sizes(bs, real) if pg else None
        del real["arrays"], real["series"], real["tmpl"]
    n = ing["samples"]
    return {
        "real_s": real_seconds,
        "real": real,
        "samples": n,
        "bytes_per_sample": chunk_size / n,
        "rows_bytes_per_sample": rows_size / n,
        "ingest": ing["rate"],
        "ingest_cpu": ing["cpu_rate"],
        "rows_ingest": peer["rate"],
        "summary_s": summ,
        "summary_lib_s": summ_lib,
        "summary_small_s": summ_small,
        "summary_rows_s": summ_peer,
        "read_series_s": one,
        "read_series_rows_s": one_peer,
        "read_series_n": min(n_samples, 1_000_000),
        "pg": pgs,
    }


def print_store(res: dict[str, Any]) -> None:
    banner("4. Store: compressed chunks (schema 3) vs one row per sample (schema 2)")
    n = res["samples"]
    r = res["real"]
    rows = [
        [
            f"a real {res['real_s']:g} s run at 100 Hz (container, system, process): bytes/sample, SQLite file incl. WAL",
            r["per_sample"],
            "(43)",
            "<= 8",
            # a run of a few seconds is mostly the database's fixed pages: not the goal's case
            ("met" if r["per_sample"] <= 8 else "MISSED")
            if res["real_s"] >= 10
            else "(too short to judge)",
        ],
        [
            f"{n:,} samples of that shape (values replayed): bytes/sample",
            res["bytes_per_sample"],
            res["rows_bytes_per_sample"],
            "<= 8",
            f"{res['rows_bytes_per_sample'] / res['bytes_per_sample']:.0f}x smaller",
        ],
        [
            "ingest, samples/s (wall)",
            res["ingest"],
            res["rows_ingest"],
            ">= 1,000,000",
            f"{res['ingest'] / res['rows_ingest']:.1f}x",
        ],
        [
            "ingest, samples per CPU-second (one core)",
            res["ingest_cpu"],
            "-",
            ">= 1,000,000",
            ("met" if res["ingest_cpu"] >= 1e6 else "MISSED")
            if n >= 500_000
            else "(too few samples to judge)",
        ],
        [
            f"summarize() of {n:,} samples, in process (s)",
            res["summary_lib_s"],
            res["summary_rows_s"],
            "<= 0.2",
            f"{res['summary_rows_s'] / res['summary_lib_s']:.0f}x",
        ],
        [f"`edgeprof summary` of {n:,} samples, wall (s)", res["summary_s"], "-", "-", "-"],
        ["  of which start-up (summary of a tiny run, s)", res["summary_small_s"], "-", "-", "-"],
        [
            f"one series of {res['read_series_n']:,} samples into arrays (s)",
            res["read_series_s"],
            res["read_series_rows_s"],
            "<= 0.1",
            f"{res['read_series_rows_s'] / res['read_series_s']:.0f}x",
        ],
    ]
    if res["pg"]:
        rows.append(
            [
                "PostgreSQL: bytes/sample (tables + indexes)",
                res["pg"]["chunks"],
                res["pg"]["rows"],
                "-",
                f"{res['pg']['rows'] / res['pg']['chunks']:.0f}x smaller",
            ]
        )
        rows.append(["PostgreSQL: ingest, samples/s", res["pg"]["rate"], "-", "-", "-"])
    table(["what", "edgeprof (chunks)", "previous (rows)", "goal", "ratio"], rows)
    print("summary (s): `edgeprof summary RUN --json` in a subprocess, wall clock, best of 3 (the")
    print("previous layout's time is its reading and statistics alone, without CLI start-up)")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    pg = "--pg" in argv
    if pg:
        argv.remove("--pg")
    ns = parse_mode(__doc__ or "", argv)
    n = 30_000 if ns.mode == "smoke" else 1_000_000
    res = run(n, {"smoke": 2.0, "quick": 15.0}.get(ns.mode, 60.0), pg)
    print_store(res)
    dump(ns.json_out, res)
    return res


if __name__ == "__main__":
    main()
