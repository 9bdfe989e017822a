"""The SQLite store, the batch writer, summary statistics and CSV/JSONL export."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeprof.analyze.summary import series_key, summarize
from edgeprof.errors import StoreError
from edgeprof.model import Event, MetricSpec, Sample, labels_of
from edgeprof.report.export import COLUMNS, export_run
from edgeprof.stats import describe, percentile
from edgeprof.store import BatchWriter, SQLStore, open_store
from edgeprof.store.base import RunInfo, TargetInfo
from edgeprof.store.schema import SCHEMA_VERSION

T1 = labels_of(target="t1")
GAUGE = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0]
COUNTER = [10.0, 12.5, 15.0, 20.0]
DESCRIBE = [MetricSpec("memory.usage_bytes", "B"), MetricSpec("cpu.usage_seconds", "s", "counter")]


def _url(tmp_path: Path, name: str = "e.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def _begin(store: SQLStore, name: str = "objcounter", started_ns: int = 1_000) -> int:
    return store.begin_run(
        RunInfo(
            spec_name=name,
            image=f"waggle/{name}:0.0.0",
            spec_path="sage.yaml",
            spec_text="name: x\n",
            started_ns=started_ns,
            interval_s=0.5,
            host={"cpus": 4, "hostname": "edge"},
            version="0.0.test",
        )
    )


def _writer(store: SQLStore, run_id: int, tid: int | None, flush_s: float = 0.5) -> BatchWriter:
    w = BatchWriter(store, run_id, tid, flush_s=flush_s)
    w.describe(DESCRIBE)
    return w


def _populate(store: SQLStore) -> tuple[int, int, int]:
    """A run with two targets: t1 has a gauge, a counter and a labelled gauge; t2 one gauge."""
    run_id = _begin(store)
    t1 = store.begin_target(TargetInfo(run_id, 0, "t1", ["--use-gpu"], {"timeout": 120}))
    t2 = store.begin_target(TargetInfo(run_id, 1, "t2", ["--use-cpu"], {"timeout": 0}))
    w = _writer(store, run_id, t1, flush_s=0.05)
    for i, (g, c) in enumerate(zip(GAUGE, COUNTER + [COUNTER[-1]] * 7, strict=True)):
        t = 1_000_000_000 * (i + 1)
        batch = [Sample("memory.usage_bytes", T1, t, g)]
        if i < len(COUNTER):
            batch.append(Sample("cpu.usage_seconds", T1, t, c))
        batch.append(Sample("process.threads", labels_of(target="t1", pid="7"), t, 2.0))
        w.write(batch)
    w.close()
    w2 = _writer(store, run_id, t2)
    w2.write([Sample("memory.usage_bytes", labels_of(target="t2"), 5, 100.0)])
    w2.close()
    store.update_target(
        t1,
        status="exited",
        exit_code=0,
        oom_killed=False,
        timed_out=True,
        duration_s=11.0,
        container_id="abc",
        started_ns=1,
        ended_ns=2,
    )
    store.update_target(t2, status="failed", exit_code=137, oom_killed=True, timed_out=False)
    store.add_event(run_id, t1, Event(5, "target_started", "t1 started", "t1", {"pid": 7}))
    store.add_event(run_id, None, Event(3, "collector_unavailable", "no GPU", None, {}))
    store.add_log(t1, "stdout", "hello\n")
    store.add_log(t1, "stderr", "warn\n")
    store.end_run(run_id, "completed", 99)
    return run_id, t1, t2


# -- the store ------------------------------------------------------------------------------


def test_run_target_series_events_logs_roundtrip(tmp_path: Path) -> None:
    store = open_store(_url(tmp_path))
    run_id, t1, t2 = _populate(store)
    run = store.resolve_run(run_id)
    assert run.spec_name == "objcounter" and run.image == "waggle/objcounter:0.0.0"
    assert run.host == {"cpus": 4, "hostname": "edge"}
    assert (run.status, run.ended_ns, run.interval_s) == ("completed", 99, 0.5)
    assert run.spec_text == "name: x\n" and run.edgeprof_version == "0.0.test"

    targets = store.targets(run_id)
    assert [t.name for t in targets] == ["t1", "t2"]
    assert targets[0].args == ["--use-gpu"] and targets[0].config == {"timeout": 120}
    assert targets[0].oom_killed is False and targets[0].timed_out is True
    assert targets[1].oom_killed is True and targets[1].exit_code == 137

    series = store.series(run_id)
    keys = {(s.target_id, s.metric, json.dumps(s.labels, sort_keys=True)) for s in series}
    assert len(series) == len(keys) == 4
    mem = next(s for s in series if s.metric == "memory.usage_bytes" and s.target_id == t1)
    assert (mem.unit, mem.kind, mem.labels) == ("B", "gauge", {"target": "t1"})
    thr = next(s for s in series if s.metric == "process.threads")
    assert thr.unit is None and thr.labels == {"pid": "7", "target": "t1"}

    values = store.series_values(run_id)
    assert values[mem.id].tolist() == GAUGE
    assert sum(len(v) for v in values.values()) == 11 + 4 + 11 + 1
    assert len(list(store.iter_samples(run_id))) == 27

    events = store.events(run_id)
    assert [(e.kind, e.target_id, e.data) for e in events] == [
        ("collector_unavailable", None, {}),
        ("target_started", t1, {"pid": 7}),
    ]
    assert store.logs(t1) == {"stdout": "hello\n", "stderr": "warn\n"}
    assert store.logs(t2) == {}
    store.close()


def test_list_runs_and_resolve(tmp_path: Path) -> None:
    store = open_store(_url(tmp_path))
    with pytest.raises(StoreError, match="no runs"):
        store.resolve_run("latest")
    assert store.list_runs() == []
    a = _begin(store, "a")
    b = _begin(store, "b")
    store.begin_target(TargetInfo(b, 0, "t1", []))
    runs = store.list_runs()
    assert [(r.id, r.spec_name, r.targets, r.status) for r in runs] == [
        (b, "b", 1, "running"),
        (a, "a", 0, "running"),
    ]
    assert [r.id for r in store.list_runs(limit=1)] == [b]
    assert store.resolve_run("latest").id == b
    assert store.resolve_run(a).spec_name == "a"
    assert store.resolve_run(f" {a} ").id == a
    with pytest.raises(StoreError, match="no run with id 999"):
        store.resolve_run("999")
    with pytest.raises(StoreError, match="not a number"):
        store.resolve_run("abc")
    with pytest.raises(StoreError):
        store.resolve_run("-1")
    store.close()


def test_schema_version_and_reopen(tmp_path: Path) -> None:
    url = _url(tmp_path)
    store = open_store(url)
    run_id, _, _ = _populate(store)
    store.close()
    db = sqlite3.connect(tmp_path / "e.db")
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    db.close()
    store = open_store(url)  # reopening neither re-creates nor duplicates anything
    assert store.resolve_run("latest").id == run_id
    assert len(store.series(run_id)) == 4
    assert store.conn.execute("SELECT COUNT(*) FROM schema_version").fetchone() == (1,)
    assert _begin(store) == run_id + 1
    store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    open_store(_url(tmp_path)).close()
    db = sqlite3.connect(tmp_path / "e.db")
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        open_store(_url(tmp_path))


def test_memory_url() -> None:
    store = open_store("sqlite:///:memory:")
    assert _begin(store) == 1
    store.close()


def test_batch_writer_commits_while_running(tmp_path: Path) -> None:
    store = open_store(_url(tmp_path))
    run_id = _begin(store)
    tid = store.begin_target(TargetInfo(run_id, 0, "t1", []))
    w = _writer(store, run_id, tid, flush_s=0.2)
    w.add_target("t1", tid)
    w.write([Sample("memory.usage_bytes", T1, 1, 1.0), Sample("memory.usage_bytes", T1, 2, 2.0)])
    reader = open_store(_url(tmp_path), readonly=True)  # another connection
    seen = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3:
        seen = reader.sample_count()
        if seen:
            break
        time.sleep(0.02)
    elapsed = time.monotonic() - t0
    assert seen == 2
    assert elapsed < 1.5  # committed within about flush_s, not only at close
    w.flush()
    assert w.written(tid) == 2 == w.written()
    w.write([Sample("memory.usage_bytes", T1, 3, 3.0)])
    w.close()  # a clean stop loses nothing
    assert reader.sample_count() == 3
    reader.close()
    other = sqlite3.connect(tmp_path / "e.db")
    assert other.execute("SELECT SUM(n) FROM chunks").fetchone()[0] == 3
    # and leaves only final (compressed) chunks behind: no write-ahead form
    assert other.execute("SELECT COUNT(*) FROM chunks WHERE mode = 0").fetchone()[0] == 0
    assert other.execute("SELECT COUNT(*) FROM open_blocks").fetchone()[0] == 0
    other.close()
    store.close()


def test_batch_writer_flushes_everything_on_close(tmp_path: Path) -> None:
    store = open_store(_url(tmp_path))
    run_id = _begin(store)
    w = BatchWriter(store, run_id, None, flush_s=60)
    for i in range(100):
        w.write([Sample("app.fps", (), i, float(i))])
    w.close()
    assert w.written() == 100
    ((sid, values),) = store.series_values(run_id).items()
    assert sid == store.series(run_id)[0].id and values.tolist() == [float(i) for i in range(100)]
    store.close()


def test_batch_writer_error_surfaces_on_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(_url(tmp_path))
    run_id = _begin(store)

    def broken(*a: object, **kw: object) -> None:
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(store, "write_open_block", broken)
    w = BatchWriter(store, run_id, None, flush_s=60)
    w.write([Sample("app.fps", (), 1, 30.0)])
    with pytest.raises(StoreError, match="writing samples.*malformed"):
        w.close()
    store.close()


# -- opening errors -------------------------------------------------------------------------


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        open_store(f"sqlite:///{tmp_path}/no/such/dir/e.db")


def test_read_only_file(tmp_path: Path) -> None:
    p = tmp_path / "ro.db"
    open_store(f"sqlite:///{p}").close()
    p.chmod(0o444)
    try:
        if os.access(p, os.W_OK):
            pytest.skip("running as root: a read-only mode does not stop writes")
        with pytest.raises(StoreError, match="permission denied"):
            open_store(f"sqlite:///{p}")
    finally:
        p.chmod(0o644)


def test_read_only_folder(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        if os.access(d, os.W_OK):
            pytest.skip("running as root: a read-only folder does not stop writes")
        with pytest.raises(StoreError, match="permission denied"):
            open_store(f"sqlite:///{d}/e.db")
    finally:
        d.chmod(0o755)


def test_not_a_database(tmp_path: Path) -> None:
    p = tmp_path / "junk.db"
    p.write_bytes(b"this is not sqlite" * 200)
    with pytest.raises(StoreError, match="cannot open database"):
        open_store(f"sqlite:///{p}")


@pytest.mark.parametrize("url", ["ftp://x", "mysql://u@h/db", "edgeprof.db", ""])
def test_unsupported_url(url: str) -> None:
    with pytest.raises(StoreError, match="not supported"):
        open_store(url)


# -- summary ----------------------------------------------------------------------------------


def test_percentile_matches_numpy_linear() -> None:
    np = pytest.importorskip("numpy")
    vals = sorted(GAUGE)
    for q in (0.0, 0.1, 0.5, 0.95, 0.99, 1.0):
        assert percentile(vals, q) == pytest.approx(float(np.percentile(vals, q * 100)))
    assert percentile([7.0], 0.99) == 7.0


def test_stats_exact() -> None:
    st = describe(GAUGE)
    # sorted: 1 1 2 3 3 4 5 5 5 6 9
    assert st == {
        "mean": 4.0,
        "min": 1.0,
        "p50": 4.0,
        "p95": pytest.approx(7.5),  # pos 9.5 between 6 and 9
        "p99": pytest.approx(8.7),  # pos 9.9
        "max": 9.0,
        "count": 11,
    }


def test_series_key() -> None:
    assert series_key("cpu.percent", {"target": "t1"}) == "cpu.percent"
    assert series_key("process.threads", {"target": "t1", "pid": "7", "a": "b"}) == (
        "process.threads{a=b,pid=7}"
    )


def test_summarize(tmp_path: Path) -> None:
    store = open_store(_url(tmp_path))
    run_id, _, _ = _populate(store)
    s = summarize(store, "latest").to_json()
    store.close()
    assert s["run"]["id"] == run_id and s["run"]["status"] == "completed"
    assert [e["kind"] for e in s["run"]["events"]] == ["collector_unavailable"]
    t1, t2 = s["targets"]
    assert (t1["name"], t1["args"], t1["exit_code"], t1["timed_out"]) == (
        "t1",
        ["--use-gpu"],
        0,
        True,
    )
    assert t2["oom_killed"] is True
    mem = t1["metrics"]["memory.usage_bytes"]
    assert mem["unit"] == "B"
    assert {k: mem[k] for k in ("mean", "min", "p50", "max", "count")} == {
        "mean": 4.0,
        "min": 1.0,
        "p50": 4.0,
        "max": 9.0,
        "count": 11,
    }
    assert mem["p95"] == pytest.approx(7.5) and mem["p99"] == pytest.approx(8.7)
    cpu = t1["metrics"]["cpu.usage_seconds"]
    assert cpu == {"total": 10.0, "last": 20.0, "count": 4, "unit": "s", "kind": "counter"}
    assert t1["metrics"]["process.threads{pid=7}"]["mean"] == 2.0
    assert list(t1["metrics"]) == sorted(t1["metrics"])
    assert [e["kind"] for e in t1["events"]] == ["target_started"]
    assert t2["metrics"]["memory.usage_bytes"]["count"] == 1
    assert t2["events"] == []
    json.dumps(s)  # JSON-serializable as the CLI prints it


# -- export ---------------------------------------------------------------------------------


def test_export_csv(tmp_path: Path) -> None:
    store = open_store(_url(tmp_path))
    run_id, _, _ = _populate(store)
    buf = io.StringIO()
    n = export_run(store, run_id, "csv", buf)
    store.close()
    rows = list(csv.reader(io.StringIO(buf.getvalue())))
    assert rows[0] == COLUMNS
    assert n == len(rows) - 1 == 27
    by_metric: dict[str, list[list[str]]] = {}
    for r in rows[1:]:
        by_metric.setdefault(r[2], []).append(r)
    assert by_metric["process.threads"][0][3] == "pid=7"
    assert by_metric["memory.usage_bytes"][0][3] == ""  # the target label has its own column
    assert {r[1] for r in by_metric["memory.usage_bytes"]} == {"t1", "t2"}
    first = by_metric["cpu.usage_seconds"][0]
    assert first == [str(run_id), "t1", "cpu.usage_seconds", "", "s", "1000000000", "10.0"]
    t_ns = [int(r[5]) for r in rows[1:]]
    assert t_ns == sorted(t_ns)


def test_export_jsonl(tmp_path: Path) -> None:
    store = open_store(_url(tmp_path))
    _populate(store)
    buf = io.StringIO()
    n = export_run(store, "latest", "jsonl", buf)
    with pytest.raises(ValueError, match="xml"):
        export_run(store, "latest", "xml", io.StringIO())
    store.close()
    lines = buf.getvalue().splitlines()
    assert n == len(lines) == 27
    recs = [json.loads(line) for line in lines]
    assert all(list(r) == COLUMNS for r in recs)
    thr = [r for r in recs if r["metric"] == "process.threads"]
    assert thr[0]["labels"] == {"pid": "7"} and thr[0]["target"] == "t1"
    assert [
        r["value"] for r in recs if r["metric"] == "memory.usage_bytes" and r["target"] == "t1"
    ] == GAUGE


def test_driver_errors_become_one_store_error(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/e.db")
    run = store.begin_run(RunInfo(spec_name="s", image="i", started_ns=1, interval_s=1.0))
    store.conn.close()  # as if the database went away under a running profile
    with pytest.raises(StoreError, match="the database at .* failed"):
        store.end_run(run, "completed", 2)


def test_batch_writer_learns_units_in_order_with_the_data(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/d.db")
    run = store.begin_run(RunInfo(spec_name="s", image="i", started_ns=1, interval_s=1.0))
    w = BatchWriter(store, run, None)
    w.describe([MetricSpec("app.frames.total", "1", "total")])  # before its first sample
    w.write([Sample("app.frames.total", (), 5, 3.0)])
    w.event(Event(6, "note", "an event through the writer"))
    w.close()
    (s,) = store.series(run)
    assert (s.unit, s.kind) == ("1", "total")
    assert [e.kind for e in store.events(run)] == ["note"]


# -- totals of app counters ----------------------------------------------------------------


def test_running_total_summary_is_the_sum_of_what_was_sent(tmp_path: Path) -> None:
    """200 increments total 200; 50 × 1024 bytes 51,200; ten decrements -10."""
    store = open_store(_url(tmp_path))
    run_id = _begin(store)
    tid = store.begin_target(TargetInfo(run_id, 0, "t1", []))
    w = BatchWriter(store, run_id, tid)
    w.describe([MetricSpec(f"app.{n}.total", "1", "total") for n in ("a", "b", "c", "d")])
    cases = {"a": [1.0] * 200, "b": [1024.0] * 50, "c": [200.0], "d": [-1.0] * 10}
    for name, incs in cases.items():
        total = 0.0
        for i, inc in enumerate(incs):
            total += inc
            w.write([Sample(f"app.{name}.total", T1, 1_000 + i, total)])
    w.close()
    metrics = summarize(store, run_id).target("t1").metrics
    store.close()
    assert {n: metrics[f"app.{n}.total"].total for n in cases} == {  # type: ignore[union-attr]
        "a": 200.0,
        "b": 51_200.0,
        "c": 200.0,
        "d": -10.0,
    }


# -- reading never writes ------------------------------------------------------------------


def test_readonly_open_of_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database at"):
        open_store(_url(tmp_path, "none.db"), readonly=True)
    assert list(tmp_path.iterdir()) == []


def test_readonly_open_never_writes(tmp_path: Path) -> None:
    store = open_store(_url(tmp_path))
    _populate(store)
    store.close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    ro = open_store(_url(tmp_path), readonly=True)
    assert ro.resolve_run("latest").spec_name == "objcounter"
    with pytest.raises(StoreError, match="failed"):
        ro.end_run(1, "x", 5)
    # SQLite's locks are taken (not immutable): a writer may start while we read
    assert ro.conn.execute("PRAGMA query_only").fetchone()[0] == 1  # type: ignore[attr-defined]
    ro.close()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_readonly_reader_sees_a_writer_that_starts_after_it(tmp_path: Path) -> None:
    """A run that begins (and checkpoints) while a reader is open never corrupts its view."""
    store = open_store(_url(tmp_path))
    _populate(store)
    store.close()
    ro = open_store(_url(tmp_path), readonly=True)
    n0 = len(ro.list_runs())
    w = open_store(_url(tmp_path))
    _populate(w)
    w.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[attr-defined]
    assert len(ro.list_runs()) == n0 + 1  # sees the committed run, through the locks
    assert ro.resolve_run("latest").spec_name == "objcounter"
    w.close()
    ro.close()


READ_ON_RO_MOUNT = r"""
set -e
mount --bind "$SRC" "$MNT"
mount -o remount,bind,ro "$MNT"
exec "$PY" -c '
import sys
from edgeprof.store import open_store
s = open_store("sqlite:///" + sys.argv[1], readonly=True)
print(s.resolve_run("latest").spec_name, len(s.series(1)), s.warning or "-")
' "$MNT/e.db"
"""


def _on_read_only_mount(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to make a read-only mount")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = dict(os.environ, SRC=str(tmp_path / "src"), MNT=str(mnt), PY=sys.executable)
    # a private mount namespace: the mount is gone with the process, whatever happens
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", READ_ON_RO_MOUNT], env=env, capture_output=True, text=True
    )


def test_database_on_a_read_only_mount_can_be_read(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    store = open_store(f"sqlite:///{tmp_path}/src/e.db")
    _populate(store)
    store.close()
    res = _on_read_only_mount(tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["objcounter", "4", "-"]


KILLED_WRITER = r"""
import os, sys
from edgeprof.store import open_store
from edgeprof.store.base import RunInfo
store = open_store("sqlite:///" + sys.argv[1])
store.begin_run(RunInfo(spec_name="late", image="i", started_ns=9, interval_s=1.0))
os.kill(os.getpid(), 9)  # killed with its write-ahead log unmerged
"""


def test_read_only_mount_of_a_killed_writers_database(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    db = tmp_path / "src" / "e.db"
    store = open_store(f"sqlite:///{db}")
    _populate(store)
    store.close()
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(db)], check=False)
    assert Path(str(db) + "-wal").stat().st_size > 0  # the last run is only in the log
    res = _on_read_only_mount(tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["late", "4", "-"]  # read through the log: nothing missing


# -- an older database ---------------------------------------------------------------------


V1_SCHEMA = [
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "INSERT INTO schema_version VALUES (1)",
    """CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, spec_name TEXT NOT NULL,
        image TEXT NOT NULL, spec_path TEXT, spec_text TEXT, started_ns BIGINT NOT NULL,
        ended_ns BIGINT, status TEXT NOT NULL, interval_s REAL NOT NULL, host TEXT,
        edgeprof_version TEXT)""",
    """CREATE TABLE targets (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id BIGINT NOT NULL,
        idx INTEGER NOT NULL, name TEXT NOT NULL, args TEXT NOT NULL, config TEXT,
        container_id TEXT, started_ns BIGINT, ended_ns BIGINT, status TEXT NOT NULL,
        exit_code INTEGER, oom_killed INTEGER, timed_out INTEGER, duration_s REAL, error TEXT)""",
    """CREATE TABLE series (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id BIGINT NOT NULL,
        target_id BIGINT, metric TEXT NOT NULL, labels TEXT NOT NULL, unit TEXT, kind TEXT)""",
    "CREATE TABLE samples (series_id BIGINT NOT NULL, t_ns BIGINT NOT NULL, value REAL NOT NULL)",
    """CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id BIGINT NOT NULL,
        target_id BIGINT, t_ns BIGINT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL,
        data TEXT)""",
    "CREATE TABLE logs (target_id BIGINT NOT NULL, stream TEXT NOT NULL, text TEXT NOT NULL)",
    "INSERT INTO runs VALUES (1, 'old', 'i:1', NULL, NULL, 5, 9, 'completed', 1.0, '{}', '0.1.0')",
    "INSERT INTO targets (run_id, idx, name, args, status) VALUES (1, 0, 't1', '[]', 'exited')",
    """INSERT INTO series VALUES (1, 1, 1, 'cpu.percent', '{"target":"t1"}', '%', 'gauge')""",
    "INSERT INTO samples VALUES (1, 6, 50.0), (1, 7, 25.0)",
]


def _v1_database(db: Path) -> Path:
    """A database as the first release wrote it (schema version 1)."""
    c = sqlite3.connect(db)
    for stmt in V1_SCHEMA:
        c.execute(stmt)
    c.commit()
    c.close()
    return db


def test_a_version_1_database_is_migrated_in_place_and_reads_back(tmp_path: Path) -> None:
    db = _v1_database(tmp_path / "old.db")
    with pytest.raises(StoreError, match="edgeprof migrate"):
        open_store(f"sqlite:///{db}", readonly=True)  # reading never migrates
    store = open_store(f"sqlite:///{db}")
    assert store.migrated == (1, SCHEMA_VERSION)
    s = summarize(store, 1)
    assert s.target("t1").metrics["cpu.percent"].mean == 37.5  # type: ignore[union-attr]
    assert store.resolve_run(1).owner == {}
    store.close()
    assert open_store(f"sqlite:///{db}", readonly=True).migrated == (SCHEMA_VERSION,) * 2


def _v3_database(db: Path) -> tuple[int, list[tuple[int, float]], list[tuple[int, float]]]:
    """A database as schema 3 left it: a finished run (final chunks) and a crashed one whose
    newest samples are in open chunks (raw arrays in ``chunks``, mode 0); the two runs' ids
    and samples."""
    import numpy as np

    store = open_store(f"sqlite:///{db}")
    done = _begin(store, "done")
    w = BatchWriter(store, done, None)
    old = [(t, float(t % 13)) for t in range(1, 3001)]
    w.write([Sample("m", labels_of(k="a"), t, v) for t, v in old])
    w.close()
    crashed = _begin(store, "crashed")
    sid = store.series_id(crashed, None, "m", labels_of(k="b"))
    open_part = [[(10, 1.5), (20, 2.5)], [(30, -0.0), (40, float("inf"))]]
    for part in open_part:  # two flushes' open chunks, as the schema-3 writer left them
        t = np.array([x for x, _ in part], dtype="<i8")
        v = np.array([x for _, x in part], dtype="<f8")
        store.conn.execute(
            "INSERT INTO chunks (series_id, timeblock_id, n, t0_ns, t1_ns, vmin, vmax, vsum,"
            " mode, ts, vals) VALUES (?, NULL, ?, ?, ?, NULL, NULL, NULL, 0, ?, ?)",
            (sid, len(t), int(t.min()), int(t.max()), t.tobytes(), v.tobytes()),
        )
    for stmt in (
        "DROP TABLE open_blocks",
        "ALTER TABLE series DROP COLUMN final_block",
        "DROP TABLE code_samples",
        "DROP TABLE code_stacks",
        "DROP INDEX runs_uuid",
        "ALTER TABLE runs DROP COLUMN uuid",
        "ALTER TABLE runs DROP COLUMN meta",
        "UPDATE schema_version SET version = 3",
    ):
        store.conn.execute(stmt)
    store.conn.commit()
    store.close()
    return crashed, old, [x for part in open_part for x in part]


def test_a_version_3_database_reads_as_it_is_and_migrates(tmp_path: Path) -> None:
    """Schemas 4 and 5 only add tables (open blocks, stacks): a schema-3 database (open chunks of a crashed run
    included) reads without migrating, and migrating moves nothing."""
    db = tmp_path / "v3.db"
    crashed, old, opened = _v3_database(db)
    v = SCHEMA_VERSION
    for readonly, migrated in ((True, (3, 3)), (False, (3, v)), (True, (v, v))):
        store = open_store(f"sqlite:///{db}", readonly=readonly)
        assert store.migrated == migrated
        done = store.series_arrays(1)
        [(t, v)] = done.values()
        assert list(zip(t.tolist(), v.tolist(), strict=True)) == old
        [(sid, (t, v))] = store.series_arrays(crashed).items()
        assert list(zip(t.tolist(), v.tolist(), strict=True)) == opened
        assert [(x, y) for _s, x, y in store.iter_samples(crashed)] == opened
        st, sv = store.series_samples(sid)
        assert st.tolist() == [x for x, _ in opened] and sv.tolist() == [y for _, y in opened]
        assert store.sample_count() == len(old) + len(opened)
        store.close()
    c = sqlite3.connect(db)
    assert c.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    c.close()


def test_runs_have_uuids_and_metadata_and_older_runs_get_stable_ones(tmp_path: Path) -> None:
    """Schema 6: a new run keeps the UUID and metadata it began with; runs of an older
    database read (read-only) and migrate with the same derived UUID in every copy, so
    that importing one twice cannot add it twice; a UUID prefix names a run."""
    db = tmp_path / "v3.db"
    crashed, _old, _opened = _v3_database(db)
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    ro = open_store(f"sqlite:///{db}", readonly=True)
    legacy = {r.id: r.uuid for r in ro.list_runs()}
    assert len(set(legacy.values())) == 2 and ro.resolve_run(crashed).uuid == legacy[crashed]
    ro.close()
    for path in (db, copy):
        store = open_store(f"sqlite:///{path}")
        assert {r.id: r.uuid for r in store.list_runs()} == legacy
        store.close()
    store = open_store(f"sqlite:///{db}")
    meta = {"device": {"model": "NVIDIA Jetson AGX Orin"}, "tags": {"build": "42"}}
    rid = store.begin_run(
        RunInfo(
            "objcounter", "img", 5_000, 1.0, uuid="0a1b2c3d-0000-4000-8000-000000000001", meta=meta
        )
    )
    rec = store.resolve_run("0a1b2c3d")
    assert (rec.id, rec.meta) == (rid, meta)
    assert store.list_runs()[0].uuid == "0a1b2c3d-0000-4000-8000-000000000001"
    assert store.list_runs()[0].meta == meta
    with pytest.raises(StoreError, match="no run with a UUID starting"):
        store.resolve_run("ffffffff")
    with pytest.raises(StoreError, match="UNIQUE|unique"):
        store.begin_run(RunInfo("x", "img", 6_000, 1.0, uuid=rec.uuid))
    store.close()


def test_live_readers_see_final_chunks_and_open_blocks_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Series that finalize at different flushes share open blocks: a reader on another
    connection sees every flushed sample once, in write order, through every read."""
    from edgeprof.store import chunks

    monkeypatch.setattr(chunks, "CHUNK_SAMPLES", 7)  # finalize often, at different ticks
    url = _url(tmp_path)
    store = open_store(url)
    run_id = _begin(store)
    tids = [store.begin_target(TargetInfo(run_id, i, f"t{i}", [])) for i in range(2)]
    w = BatchWriter(store, run_id, None, flush_s=3600)
    for i, tid in enumerate(tids):
        w.add_target(f"t{i}", tid)
    reader = open_store(url, readonly=True)
    sent: dict[tuple[str, str], list[tuple[int, float]]] = {}
    ended = False

    def check() -> None:
        by_key = {(s.metric, s.labels["target"]): s.id for s in reader.series(run_id)}
        arrays = reader.series_arrays(run_id)
        for key, want in sent.items():
            t, v = reader.series_samples(by_key[key])
            assert list(zip(t.tolist(), v.tolist(), strict=True)) == want, key
            t, v = arrays[by_key[key]]
            assert list(zip(t.tolist(), v.tolist(), strict=True)) == want, key
        rows = list(reader.iter_samples(run_id, chunk=5))
        assert [r[1] for r in rows] == sorted(r[1] for r in rows)
        got: dict[int, list[tuple[int, float]]] = {}
        for sid, t_ns, val in rows:
            got.setdefault(sid, []).append((t_ns, val))
        assert got == {by_key[k]: v for k, v in sent.items() if v}
        assert reader.sample_count(run_id) == sum(len(v) for v in sent.values())

    for tick in range(1, 80):
        batch = []
        for m, start, every in (("a", 1, 1), ("b", 4, 1), ("c", 1, 3)):
            for i in range(2):
                if tick >= start and tick % every == 0 and not (ended and i == 1):
                    sample = (tick * 1000 + i, float(tick * 10 + i))
                    sent.setdefault((m, f"t{i}"), []).append(sample)
                    batch.append(Sample(m, labels_of(target=f"t{i}"), *sample))
        w.write(batch)
        if tick == 50:
            w.end_target(tids[1])  # its series become final; the blocks they share stay
            ended = True
        if tick % 3 == 0:
            w.flush()
            check()
    w.flush()
    check()
    blocks = store.conn.execute("SELECT COUNT(*) FROM open_blocks").fetchone()[0]
    assert 0 < blocks <= 7  # blocks whose every series is final are gone
    kept = "SELECT COUNT(*) FROM series WHERE final_block IS NOT NULL"
    assert store.conn.execute(kept).fetchone()[0] > 0  # and some stay with final series
    w.close()
    check()
    assert store.conn.execute("SELECT COUNT(*) FROM open_blocks").fetchone()[0] == 0
    reader.close()
    store.close()


# -- passwords ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p%40ss@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            "postgresql://u@h/db?password=pw&sslmode=off",
            "postgresql://u@h/db?password=***&sslmode=off",
        ),
        ("postgresql://h/db", "postgresql://h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    from edgeprof.store import redact_url

    assert redact_url(url) == shown


# -- the chunked layout --------------------------------------------------------------------


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_bits = st.integers(min_value=0, max_value=2**64 - 1).map(
    lambda b: float(__import__("numpy").array([b], dtype="uint64").view("float64")[0])
)
_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), _bits, st.integers(-(2**60), 2**60).map(float)
)
_times = st.integers(min_value=946_684_800 * 10**9, max_value=7_258_118_399 * 10**9)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(_times, _values), min_size=1, max_size=3000), min_size=1, max_size=4
    )
)
def test_exact_round_trip_of_random_series(series: list[list[tuple[int, float]]]) -> None:
    """Every value comes back bit for bit, every timestamp to the nanosecond, in order."""
    import numpy as np

    store = open_store("sqlite:///:memory:")
    run_id = _begin(store)
    w = BatchWriter(store, run_id, None, flush_s=0.05)
    for i, samples in enumerate(series):
        lab = labels_of(k=str(i))
        for j in range(0, len(samples), 700):  # several batches: open and final chunks
            w.write([Sample("m", lab, t, v) for t, v in samples[j : j + 700]])
    w.close()
    by_key = {tuple(sorted(s.labels.items())): s.id for s in store.series(run_id)}
    for i, samples in enumerate(series):
        t, v = store.series_samples(by_key[(("k", str(i)),)])
        assert t.tolist() == [x for x, _ in samples]
        want = np.array([x for _, x in samples], dtype=np.float64).view(np.uint64)
        assert np.array_equal(v.view(np.uint64), want)
    arrays = store.series_arrays(run_id)  # the whole run at once: the reference order
    ref = sorted(
        (
            (int(ti), sid, k, float(vi))
            for sid, (t, v) in arrays.items()
            for k, (ti, vi) in enumerate(zip(t.tolist(), v.tolist(), strict=True))
        ),
        key=lambda x: (x[0], x[1], x[2]),
    )
    want_rows = [(sid, t, v) for t, sid, _k, v in ref]
    for chunk in (1, 333, 65536):  # a sweep in small steps gives the same rows
        exported = list(store.iter_samples(run_id, chunk=chunk))
        assert len(exported) == sum(len(s) for s in series)
        assert [(a, b, np.float64(c).view(np.uint64)) for a, b, c in exported] == [
            (a, b, np.float64(c).view(np.uint64)) for a, b, c in want_rows
        ]
    store.close()


def test_iter_samples_holds_only_overlapping_chunks() -> None:
    """Export of a long run never decodes the whole run at once."""
    store = open_store("sqlite:///:memory:")
    run_id = _begin(store)
    w = BatchWriter(store, run_id, None, flush_s=3600)
    step = 10_000_000  # 100 Hz, 20 series, 100,000 ticks: 2M samples
    for i in range(0, 100_000, 5000):
        t = range((i + 1) * step, (i + 5001) * step, step)
        w.write([Sample("m", labels_of(k=str(k)), x, float(x % 97)) for x in t for k in range(20)])
    w.close()
    sizes: list[int] = []
    real = store._decode  # type: ignore[attr-defined]

    def counting(*a: object, **kw: object) -> object:
        got = real(*a, **kw)
        sizes.append(sum(len(t) for t, _ in got.values()))
        return got

    store._decode = counting  # type: ignore[attr-defined]
    n = last = 0
    for _sid, t, _v in store.iter_samples(run_id):
        assert t >= last
        last = t
        n += 1
    assert n == 2_000_000
    assert max(sizes) <= 100_000  # a chunk's span across 20 series, not the run
    store.close()


KILLED_AT_100HZ = r"""
import os, sys, time
from edgeprof.model import Sample, labels_of, MetricSpec
from edgeprof.store import BatchWriter, open_store
from edgeprof.store.base import RunInfo
store = open_store("sqlite:///" + sys.argv[1])
run = store.begin_run(RunInfo(spec_name="k", image="i", started_ns=1, interval_s=0.01))
w = BatchWriter(store, run, None)   # flushes every 0.5 s, as in a run
lab = labels_of(target="t")
t0 = time.time_ns()
for k in range(100_000):
    t = t0 + k * 10_000_000
    w.write([Sample(f"m{i}", lab, t, float(k)) for i in range(37)])
    if k == 300:  # 3 s of ticks written: die without warning
        print(k, flush=True)
        time.sleep(0.02)
        os.kill(os.getpid(), 9)
    time.sleep(0.01)
"""


def test_sigkill_loses_at_most_the_last_second(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    res = subprocess.run(
        [sys.executable, "-c", KILLED_AT_100HZ, str(db)], capture_output=True, text=True
    )
    assert res.returncode == -9, res.stderr
    store = open_store(f"sqlite:///{db}", readonly=True)
    run = store.resolve_run("latest").id
    values = store.series_values(run)
    store.close()
    assert len(values) == 37
    kept = [len(v) for v in values.values()]
    assert min(kept) >= 301 - 100  # at most one second (100 ticks) missing
    assert all(v.tolist() == [float(k) for k in range(len(v))] for v in values.values())


def test_a_100hz_run_takes_few_bytes_per_sample(tmp_path: Path) -> None:
    """The timestamps of a tick are stored once; counters and constants cost next to nothing."""
    import random

    db = tmp_path / "dense.db"
    store = open_store(f"sqlite:///{db}")
    run_id = _begin(store)
    w = BatchWriter(store, run_id, None)
    rng = random.Random(7)
    t, cpu = 1_700_000_000 * 10**9, 0.0
    for _ in range(6000):  # 60 s at 100 Hz, 30 series
        t += 10_000_000 + rng.randint(-50_000, 50_000)
        cpu += rng.randint(2, 3) * 0.004
        batch = [
            Sample("cpu.usage_seconds", T1, t, cpu),
            Sample("cpu.percent", T1, t, rng.random() * 100),
        ]
        batch += [Sample(f"g{i}", T1, t, float(1000 + i)) for i in range(28)]
        w.write(batch)
    w.close()
    n = store.sample_count(run_id)
    store.close()
    size = sum(p.stat().st_size for p in tmp_path.iterdir() if p.name.startswith("dense.db"))
    assert n == 6000 * 30
    assert size / n < 8.0, size / n


def test_an_interrupted_migration_leaves_the_old_database_as_it_was(tmp_path: Path) -> None:
    db = _v1_database(tmp_path / "old.db")

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the samples are converted

    with pytest.raises(KeyboardInterrupt):
        open_store(f"sqlite:///{db}", progress=interrupt)
    c = sqlite3.connect(db)
    assert c.execute("SELECT version FROM schema_version").fetchone() == (1,)
    assert "owner" not in [r[1] for r in c.execute("PRAGMA table_info(runs)")]
    assert c.execute("SELECT COUNT(*) FROM samples").fetchone() == (2,)
    c.close()
    store = open_store(f"sqlite:///{db}")  # and it migrates fine afterwards
    assert store.migrated == (1, SCHEMA_VERSION)
    assert store.series_samples(1)[1].tolist() == [50.0, 25.0]
    store.close()


def test_a_failed_flush_stops_the_writer_instead_of_mixing_series(tmp_path: Path) -> None:
    store = open_store(_url(tmp_path))
    run_id = _begin(store)
    w = BatchWriter(store, run_id, None, flush_s=0.05)
    real = store.write_open_block  # what the first flush writes
    calls = {"n": 0}

    def failing(*a):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise StoreError("the database at x failed: disk I/O error")
        return real(*a)

    store.write_open_block = failing  # type: ignore[method-assign]
    w.write([Sample("cpu", labels_of(k="a"), 1, 1.0)])
    w.flush()
    w.write([Sample("mem", labels_of(k="b"), 2, 777.0)])
    with pytest.raises(StoreError, match="disk I/O error"):
        w.close()
    store.write_open_block = real  # type: ignore[method-assign]
    series = {s.id: (s.metric, s.labels) for s in store.series(run_id)}
    for sid, (_t, v) in store.series_arrays(run_id).items():  # nothing filed under a wrong series
        assert series[sid] == ("mem", {"k": "b"}) or v.tolist() != [777.0]
    assert ("cpu", {"k": "a"}) not in [series[sid] for sid in store.series_arrays(run_id)]
    store.close()


def test_chunks_never_exceed_their_size_or_span_whatever_the_flush_interval() -> None:
    from edgeprof.store import chunks

    store = open_store("sqlite:///:memory:")
    run_id = _begin(store)
    w = BatchWriter(store, run_id, None, flush_s=3600)  # everything in one flush
    fast = range(1, 10_001)  # 10,000 samples 1 ns apart
    slow = range(0, 600 * 10**9, 7 * 10**9)  # one every 7 s for 10 minutes
    w.write([Sample("fast", labels_of(k="f"), t, float(t)) for t in fast])
    w.write([Sample("slow", labels_of(k="s"), t, 1.0) for t in slow])
    w.close()
    rows = store._rows("SELECT n, t0_ns, t1_ns FROM chunks")  # type: ignore[attr-defined]
    assert sum(r["n"] for r in rows) == 10_000 + len(slow)
    for r in rows:
        assert r["n"] <= chunks.CHUNK_SAMPLES
        assert r["t1_ns"] - r["t0_ns"] <= chunks.CHUNK_SPAN_NS + 7 * 10**9
    fast_chunks = -(-10_000 // chunks.CHUNK_SAMPLES)
    assert len(rows) == fast_chunks + 5  # 120 s (18 samples of 7 s) per slow chunk
    store.close()


def test_export_while_a_run_replaces_its_open_chunks_reads_one_state(tmp_path: Path) -> None:
    """A reader mid-export never loses the samples whose open chunks were just finalized."""
    url = _url(tmp_path)
    store = open_store(url)
    run_id = _begin(store)
    w = BatchWriter(store, run_id, None, flush_s=3600)
    for start in (1, 101, 201):  # open chunks only, one per flush: three start times
        for k in range(3):
            w.write(
                [Sample("m", labels_of(k=str(k)), t, float(t)) for t in range(start, start + 100)]
            )
        w.flush()
    reader = open_store(url, readonly=True)
    rows = reader.iter_samples(run_id, chunk=100)
    got = [next(rows) for _ in range(3)]
    w.close()  # finalizes: the open chunks are deleted, final ones written
    got += list(rows)
    assert len(got) == 900
    assert sorted(got) == sorted((sid, t, float(t)) for sid in range(1, 4) for t in range(1, 301))
    assert len(list(reader.iter_samples(run_id))) == 900  # and the new state reads the same
    reader.close()
    store.close()


def test_a_chunk_in_an_unknown_layout_is_one_sentence(tmp_path: Path) -> None:
    store = open_store(_url(tmp_path))
    run_id = _begin(store)
    w = BatchWriter(store, run_id, None)
    w.write([Sample("m", labels_of(k="a"), t, 0.5) for t in range(1, 3000)])
    w.close()
    store.conn.execute("UPDATE chunks SET vals = CAST(X'07' || vals AS BLOB) WHERE mode != 0")  # type: ignore[attr-defined]
    store.conn.commit()  # type: ignore[attr-defined]
    with pytest.raises(StoreError, match="cannot decode the samples stored in .*profile again"):
        store.series_arrays(run_id)
    store.close()


@pytest.mark.parametrize("rows_per_group", [5, 262_144])
def test_export_parquet_matches_jsonl_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows_per_group: int
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    from edgeprof.report import export as export_mod

    monkeypatch.setattr(export_mod, "PARQUET_ROWS", rows_per_group)
    store = open_store(_url(tmp_path))
    run_id, _, _ = _populate(store)
    buf = io.StringIO()
    export_run(store, run_id, "jsonl", buf)
    out = tmp_path / "run.parquet"
    n = export_mod.export_parquet(store, run_id, str(out))
    store.close()
    want = [json.loads(line) for line in buf.getvalue().splitlines()]
    table = pq.read_table(out)
    assert n == table.num_rows == len(want) == 27
    assert table.schema.field("t_ns").type == "int64"
    assert table.schema.field("value").type == "double"
    got = table.to_pylist()
    for g, w in zip(got, want, strict=True):
        assert dict(g["labels"]) == w["labels"]
        g["labels"] = w["labels"]
        assert g == w
        assert struct.pack("<d", g["value"]) == struct.pack("<d", w["value"])


def test_export_parquet_of_a_run_without_samples(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    from edgeprof.report.export import export_parquet

    store = open_store(_url(tmp_path))
    run_id = store.begin_run(RunInfo("empty", "img", 1, 1.0))
    out = tmp_path / "empty.parquet"
    assert export_parquet(store, run_id, str(out)) == 0
    store.close()
    table = pq.read_table(out)
    assert table.num_rows == 0 and table.column_names == COLUMNS


def test_writer_series_follow_default_target_and_ended_targets(tmp_path: Path) -> None:
    """Host samples (no target label) go to the default target of the moment, and a target's
    series end with it: the same labels after a switch or an end start a new series, even
    though the writer looks series up by labels from a memo."""
    store = open_store(_url(tmp_path))
    run_id = _begin(store)
    a = store.begin_target(TargetInfo(run_id, 0, "a", []))
    b = store.begin_target(TargetInfo(run_id, 1, "b", []))
    w = _writer(store, run_id, a, flush_s=0.05)
    w.add_target("a", a)
    host = ()
    ta = labels_of(target="a")
    sec = 1_000_000_000
    for i in range(3):
        w.write([Sample("memory.usage_bytes", host, i * sec, 1.0 + i), Sample("x", ta, i * sec, i)])
    w.flush()
    w.set_default_target(b)
    w.end_target(a)
    for i in range(3, 5):
        w.write([Sample("memory.usage_bytes", host, i * sec, 1.0 + i)])
    w.add_target("a", b)  # the same labels, now another target's
    w.write([Sample("x", ta, 9 * sec, 2**53 + 1)])
    w.close()
    got = {
        (s.target_id, s.metric): store.series_values(run_id)[s.id].tolist()
        for s in store.series(run_id)
    }
    assert got == {
        (a, "memory.usage_bytes"): [1.0, 2.0, 3.0],
        (a, "x"): [0.0, 1.0, 2.0],
        (b, "memory.usage_bytes"): [4.0, 5.0],
        (b, "x"): [float(2**53 + 1)],
    }


def test_samples_that_cannot_be_stored_are_left_out_counted_and_reported(tmp_path: Path) -> None:
    """A bad time or value (a collector passed in through the library) never stops the
    writer: a finite float time is rounded, a None / text value or a time that is not a
    number is left out, counted per metric, the first of each metric an event."""
    import numpy as np

    warned: list[str] = []
    store = open_store(_url(tmp_path))
    run_id = _begin(store)
    w = BatchWriter(store, run_id, None, flush_s=60, warn=warned.append)
    lab = labels_of(target="t1")
    w.write([Sample("x", lab, 1_000_000_000, 1.0), Sample("y", lab, 1_000_000_000, 5.0)])
    w.write([Sample("x", lab, 2_000_000_000, None), Sample("y", lab, 2_000_000_000, 6.0)])  # type: ignore[arg-type]
    w.write([Sample("x", lab, 3.0e9, np.float32(3.0)), Sample("y", lab, float("nan"), 7.0)])  # type: ignore[arg-type]
    w.write([Sample("x", lab, 2**64, 4.0), Sample("y", lab, 4_000_000_000, "8")])  # type: ignore[arg-type]
    w.write([Sample("x", lab, 5_000_000_000, 5), Sample("y", lab, 5_000_000_000, 9.0)])
    w.close()
    assert w.rejected == {"x": 2, "y": 2}
    got = {s.metric: store.series_samples(s.id) for s in store.series(run_id)}
    assert got["x"][0].tolist() == [10**9, 3 * 10**9, 5 * 10**9]
    assert got["x"][1].tolist() == [1.0, 3.0, 5.0]
    assert got["y"][0].tolist() == [10**9, 2 * 10**9, 5 * 10**9]
    assert np.array_equal(got["y"][1], [5.0, 6.0, 9.0])
    ev = [e for e in store.events(run_id) if e.kind == "samples_rejected"]
    assert [(e.data["metric"], e.data["reason"]) for e in ev] == [
        ("x", "value None is not a number"),
        ("y", "time nan is not a whole number of nanoseconds within int64"),
    ]
    assert warned == [
        "4 samples were not stored because their time or value is not a number "
        "(2 of x, 2 of y): a collector gave them"
    ]
