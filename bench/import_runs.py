"""Import and export speed of run files (``edgeprof import``, ``export --format sqlite``).

A run file as a device leaves it: 30 targets × 30 series at 10 Hz for 111 s (1,000,800
samples), written through the real ``BatchWriter`` (flushed every 0.5 s of data, closed:
one final chunk per series, shared time blocks), plus events. A second file holds the
same run cut off before the writer closed (the profiler killed: every sample still in
open blocks, which import decodes and writes as final chunks). Each is imported into a
fresh SQLite file and into a fresh database on the test PostgreSQL server
(``scripts/postgres.sh start``; the database is created and dropped here), three times,
best time shown: the transfer alone (``import_files``, the destination's schema already
made) and the command as users run it (``edgeprof import … --json``, a new process:
start-up, schema creation). Then ``export RUN --format sqlite`` out of PostgreSQL and out
of SQLite. Goal: ≥ 200,000 samples/s into PostgreSQL.

    python bench/import_runs.py [--smoke] [--json FILE]     # --smoke: 45,000 samples, once (CI)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import EDGEPROF, banner, dump, parse_mode, table  # noqa: E402
from writer import ticks  # noqa: E402

from edgeprof.model import Event  # noqa: E402
from edgeprof.store import BatchWriter, open_store  # noqa: E402
from edgeprof.store.base import RunInfo, TargetInfo  # noqa: E402
from edgeprof.store.transfer import copy_run, import_files  # noqa: E402

CONTAINERS, SERIES, HZ = 30, 30, 10.0
REPEATS = 3
GOAL = 200_000


def make_file(path: str, seconds: float, killed: bool) -> int:
    """The run file; its sample count. ``killed``: the process is killed after its last
    flush (call it in a child process)."""
    data = ticks(CONTAINERS, SERIES, HZ, seconds)
    store = open_store(f"sqlite:///{path}")
    t0 = data[0][0].t_ns
    rid = store.begin_run(RunInfo("bench-import", "synthetic:1", t0, 1 / HZ))
    w = BatchWriter(store, rid, None, flush_s=3600.0)  # flushed by us, every 0.5 s of data
    tids = []
    for c in range(CONTAINERS):
        tid = store.begin_target(TargetInfo(rid, c, f"c{c}", []))
        tids.append(tid)
        w.add_target(f"c{c}", tid)
        w.event(Event(t0, "target_started", f"c{c} started", f"c{c}", {}))
    per_flush = max(1, round(0.5 * HZ))
    for a in range(0, len(data), per_flush):
        for b in data[a : a + per_flush]:
            w.write(b)
        w.flush()
    n = sum(len(b) for b in data)
    if killed:
        os.kill(os.getpid(), signal.SIGKILL)
    w.close()
    t1 = data[-1][0].t_ns
    for tid in tids:
        store.update_target(tid, status="exited", exit_code=0, ended_ns=t1)
    store.end_run(rid, "completed", t1)
    store.close()
    return n


@contextlib.contextmanager
def pg_base() -> Iterator[str | None]:
    res = subprocess.run(
        [str(Path(__file__).resolve().parents[1] / "scripts" / "postgres.sh"), "start"],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        print(f"PostgreSQL not started: {res.stderr.strip()[-300:]}", file=sys.stderr)
        yield None
        return
    yield res.stdout.strip().splitlines()[-1].split("=", 1)[1]


@contextlib.contextmanager
def pg_database(base: str, tag: str) -> Iterator[str]:
    import psycopg

    name = f"edgeprof_bench_import_{os.getpid()}_{tag}"
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(base, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def transfer(src: str, url: str) -> tuple[float, int]:
    """Seconds and samples of ``import_files`` into a store whose schema exists."""
    dst = open_store(url)
    try:
        t0 = time.perf_counter()
        [r] = import_files([src], dst)
        wall = time.perf_counter() - t0
    finally:
        dst.close()
    assert r.action == "added", r
    return wall, r.samples


def command(args: list[str]) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    res = subprocess.run([*EDGEPROF, *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"edgeprof {' '.join(args)} failed: {res.stderr.strip()}")
    return wall, json.loads(res.stdout) if res.stdout.strip().startswith("{") else {}


def measure(src: str, wd: str, pg: str | None, label: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    runs: list[tuple[float, int]] = []
    cli: list[float] = []
    for k in range(REPEATS):
        url = f"sqlite:///{wd}/{label}-dst{k}.db"
        open_store(url).close()
        runs.append(transfer(src, url))
        wall, got = command(["import", src, "--db", f"sqlite:///{wd}/{label}-cli{k}.db", "--json"])
        assert got["samples"] == runs[0][1], got  # the command moved every sample too
        cli.append(wall)
    n = runs[0][1]
    out["samples"] = n
    out["sqlite_s"] = min([t for t, _ in runs])
    out["sqlite_cli_s"] = min(cli)
    if pg is not None:
        runs, cli = [], []
        for k in range(REPEATS):
            with pg_database(pg, f"{label}{k}") as url:
                open_store(url).close()
                runs.append(transfer(src, url))
            with pg_database(pg, f"{label}cli{k}") as url:
                wall, got = command(["import", src, "--db", url, "--json"])
                assert got["samples"] == n, got
                cli.append(wall)
        out["pg_s"] = min([t for t, _ in runs])
        out["pg_cli_s"] = min(cli)
    return out


def export_times(src: str, wd: str, pg: str | None) -> dict[str, Any]:
    """``export --format sqlite``: from SQLite (the CLI), and from PostgreSQL (the
    transfer, and the CLI)."""
    out: dict[str, Any] = {}
    lite = f"sqlite:///{wd}/exp-src.db"
    open_store(lite).close()
    transfer(src, lite)
    times = []
    for k in range(REPEATS):
        times.append(
            command(["export", "1", "-f", "sqlite", "-o", f"{wd}/exp-lite{k}.db", "--db", lite])[0]
        )
    out["from_sqlite_cli_s"] = min(times)
    if pg is not None:
        with pg_database(pg, "export") as url:
            open_store(url).close()
            transfer(src, url)
            s = open_store(url, readonly=True)
            rid = s.resolve_run("latest").id
            tt = []
            for k in range(REPEATS):
                d = open_store(f"sqlite:///{wd}/exp-pg{k}.db")
                t0 = time.perf_counter()
                copy_run(s, rid, d)
                tt.append(time.perf_counter() - t0)
                d.close()
            s.close()
            out["from_pg_s"] = min(tt)
            cli = [
                command(
                    ["export", str(rid), "-f", "sqlite", "-o", f"{wd}/exp-pgcli{k}.db", "--db", url]
                )[0]
                for k in range(REPEATS)
            ]
            out["from_pg_cli_s"] = min(cli)
    return out


def run(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgeprof-bench-import-") as wd, pg_base() as pg:
        done = f"{wd}/run.db"
        t0 = time.perf_counter()
        n = make_file(done, seconds, killed=False)
        made = time.perf_counter() - t0
        cut = f"{wd}/killed.db"
        subprocess.run([sys.executable, __file__, "--make-killed", cut, str(seconds)], check=False)
        res: dict[str, Any] = {
            "shape": f"{CONTAINERS} targets x {SERIES} series at {HZ:g} Hz, {seconds:g} s",
            "samples": n,
            "file_mb": os.path.getsize(done) / 1e6,
            "killed_file_mb": sum(
                os.path.getsize(p) for p in (cut, cut + "-wal") if os.path.exists(p)
            )
            / 1e6,
            "make_s": made,
            "postgresql": pg is not None,
        }
        res["complete"] = measure(done, wd, pg, "done")
        res["killed"] = measure(cut, wd, pg, "cut")
        res["export"] = export_times(done, wd, pg)
    return res


def print_results(res: dict[str, Any]) -> None:
    banner(f"import / export of a run file ({res['shape']}, {res['samples']:,} samples)")
    print(
        f"file: {res['file_mb']:.1f} MB complete, {res['killed_file_mb']:.1f} MB cut off "
        f"(open blocks, with its -wal); best of {REPEATS}"
    )
    rows = []
    for key, what in (("complete", "complete run file"), ("killed", "cut-off file (open blocks)")):
        r = res[key]
        n = r["samples"]
        for dst, k in (("SQLite", "sqlite"), ("PostgreSQL", "pg")):
            if f"{k}_s" not in r:
                continue
            rows.append([f"import {what} -> {dst}", "transfer", n, r[f"{k}_s"], n / r[f"{k}_s"]])
            rows.append(
                [
                    f"import {what} -> {dst}",
                    "edgeprof import",
                    n,
                    r[f"{k}_cli_s"],
                    n / r[f"{k}_cli_s"],
                ]
            )
    e = res["export"]
    n = res["samples"]
    rows.append(
        [
            "export --format sqlite from SQLite",
            "edgeprof export",
            n,
            e["from_sqlite_cli_s"],
            n / e["from_sqlite_cli_s"],
        ]
    )
    if "from_pg_s" in e:
        rows.append(
            [
                "export --format sqlite from PostgreSQL",
                "transfer",
                n,
                e["from_pg_s"],
                n / e["from_pg_s"],
            ]
        )
        rows.append(
            [
                "export --format sqlite from PostgreSQL",
                "edgeprof export",
                n,
                e["from_pg_cli_s"],
                n / e["from_pg_cli_s"],
            ]
        )
    table(["what", "measured", "samples", "seconds", "samples/s"], rows)
    if res["samples"] < 500_000:
        print(f"goal >= {GOAL:,} samples/s into PostgreSQL: not judged on a file this small")
    elif "pg_s" in res["complete"]:
        rate = res["samples"] / res["complete"]["pg_s"]
        cli = res["samples"] / res["complete"]["pg_cli_s"]
        verdict = "met" if min(rate, cli) >= GOAL else "NOT met"
        print(
            f"goal >= {GOAL:,} samples/s into PostgreSQL: {verdict} ({rate:,.0f} transfer, "
            f"{cli:,.0f} with the command's start-up)"
        )
    else:
        print("PostgreSQL not measured (scripts/postgres.sh start failed)")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--make-killed"]:
        make_file(argv[1], float(argv[2]), killed=True)
        return
    ns = parse_mode(__doc__ or "", argv)
    global REPEATS
    seconds = 5.0 if ns.mode == "smoke" else 111.2
    REPEATS = 1 if ns.mode == "smoke" else REPEATS
    res = run(seconds)
    print_results(res)
    dump(ns.json_out, res)


if __name__ == "__main__":
    main()
