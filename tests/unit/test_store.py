"""The SQLite store, the batch writer, summary statistics and CSV/JSONL export."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from edgeprof.analyze.summary import percentile, series_key, stats, summarize
from edgeprof.errors import StoreError
from edgeprof.model import Event, Sample, labels_of
from edgeprof.report.export import COLUMNS, export_run
from edgeprof.store import open_store
from edgeprof.store.sql import SCHEMA_VERSION, BatchWriter, SQLStore

T1 = labels_of(target="t1")
GAUGE = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0]
COUNTER = [10.0, 12.5, 15.0, 20.0]
DESCRIBE = {"memory.usage_bytes": ("B", "gauge"), "cpu.usage_seconds": ("s", "counter")}


def _url(tmp_path: Path, name: str = "e.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def _begin(store: SQLStore, name: str = "objcounter", started_ns: int = 1_000) -> int:
    return store.begin_run(
        spec_name=name,
        image=f"waggle/{name}:0.0.0",
        spec_path="sage.yaml",
        spec_text="name: x\n",
        started_ns=started_ns,
        interval_s=0.5,
        host={"cpus": 4, "hostname": "edge"},
        version="0.0.test",
    )


def _populate(store: SQLStore) -> tuple[int, int, int]:
    """A run with two targets: t1 has a gauge, a counter and a labelled gauge; t2 one gauge."""
    run_id = _begin(store)
    t1 = store.begin_target(run_id, 0, "t1", ["--use-gpu"], {"timeout": 120})
    t2 = store.begin_target(run_id, 1, "t2", ["--use-cpu"], {"timeout": 0})
    w = BatchWriter(store, run_id, t1, describe=DESCRIBE, flush_s=0.05)
    for i, (g, c) in enumerate(zip(GAUGE, COUNTER + [COUNTER[-1]] * 7, strict=True)):
        t = 1_000_000_000 * (i + 1)
        batch = [Sample("memory.usage_bytes", T1, t, g)]
        if i < len(COUNTER):
            batch.append(Sample("cpu.usage_seconds", T1, t, c))
        batch.append(Sample("process.threads", labels_of(target="t1", pid="7"), t, 2.0))
        w(batch)
    w.close()
    w2 = BatchWriter(store, run_id, t2, describe=DESCRIBE)
    w2([Sample("memory.usage_bytes", labels_of(target="t2"), 5, 100.0)])
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
    assert run["spec_name"] == "objcounter" and run["image"] == "waggle/objcounter:0.0.0"
    assert run["host"] == {"cpus": 4, "hostname": "edge"}
    assert (run["status"], run["ended_ns"], run["interval_s"]) == ("completed", 99, 0.5)
    assert run["spec_text"] == "name: x\n" and run["edgeprof_version"] == "0.0.test"

    targets = store.targets(run_id)
    assert [t["name"] for t in targets] == ["t1", "t2"]
    assert targets[0]["args"] == ["--use-gpu"] and targets[0]["config"] == {"timeout": 120}
    assert targets[0]["oom_killed"] is False and targets[0]["timed_out"] is True
    assert targets[1]["oom_killed"] is True and targets[1]["exit_code"] == 137

    series = store.series(run_id)
    keys = {(s["target_id"], s["metric"], json.dumps(s["labels"], sort_keys=True)) for s in series}
    assert len(series) == len(keys) == 4
    mem = next(s for s in series if s["metric"] == "memory.usage_bytes" and s["target_id"] == t1)
    assert (mem["unit"], mem["kind"], mem["labels"]) == ("B", "gauge", {"target": "t1"})
    thr = next(s for s in series if s["metric"] == "process.threads")
    assert thr["unit"] is None and thr["labels"] == {"pid": "7", "target": "t1"}

    values = store.series_values(run_id)
    assert values[mem["id"]] == GAUGE
    assert sum(len(v) for v in values.values()) == 11 + 4 + 11 + 1
    assert len(list(store.iter_samples(run_id))) == 27

    events = store.events(run_id)
    assert [(e["kind"], e["target_id"], e["data"]) for e in events] == [
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
    store.begin_target(b, 0, "t1", [], {})
    runs = store.list_runs()
    assert [(r["id"], r["spec_name"], r["targets"], r["status"]) for r in runs] == [
        (b, "b", 1, "running"),
        (a, "a", 0, "running"),
    ]
    assert [r["id"] for r in store.list_runs(limit=1)] == [b]
    assert store.resolve_run("latest")["id"] == b
    assert store.resolve_run(a)["spec_name"] == "a"
    assert store.resolve_run(f" {a} ")["id"] == a
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
    assert store.resolve_run("latest")["id"] == run_id
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
    tid = store.begin_target(run_id, 0, "t1", [], {})
    w = BatchWriter(store, run_id, tid, describe=DESCRIBE, flush_s=0.2)
    w([Sample("memory.usage_bytes", T1, 1, 1.0), Sample("memory.usage_bytes", T1, 2, 2.0)])
    other = sqlite3.connect(tmp_path / "e.db")
    seen = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3:
        seen = other.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        if seen:
            break
        time.sleep(0.02)
    elapsed = time.monotonic() - t0
    assert seen == 2
    assert elapsed < 1.5  # committed within about flush_s, not only at close
    assert w.written == 2
    w([Sample("memory.usage_bytes", T1, 3, 3.0)])
    w.close()  # a clean stop loses nothing
    assert other.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 3
    other.close()
    store.close()


def test_batch_writer_flushes_everything_on_close(tmp_path: Path) -> None:
    store = open_store(_url(tmp_path))
    run_id = _begin(store)
    w = BatchWriter(store, run_id, None, flush_s=60)
    for i in range(100):
        w([Sample("app.fps", (), i, float(i))])
    w.close()
    assert w.written == 100
    assert store.series_values(run_id) == {
        store.series(run_id)[0]["id"]: [float(i) for i in range(100)]
    }
    store.close()


def test_batch_writer_error_surfaces_on_close(tmp_path: Path) -> None:
    store = open_store(_url(tmp_path))
    run_id = _begin(store)
    w = BatchWriter(store, run_id, None, flush_s=60)
    w([Sample("app.fps", (), 1, "not a number")])  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="writing samples"):
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
    st = stats(GAUGE)
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
    s = summarize(store, "latest")
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
    run = store.begin_run(
        spec_name="s",
        image="i",
        spec_path=None,
        spec_text=None,
        started_ns=1,
        interval_s=1.0,
        host={},
        version="t",
    )
    store.conn.close()  # as if the database went away under a running profile
    with pytest.raises(StoreError, match="the database at .* failed"):
        store.end_run(run, "completed", 2)


def test_batch_writer_shares_the_samplers_describe_dict(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/d.db")
    run = store.begin_run(
        spec_name="s",
        image="i",
        spec_path=None,
        spec_text=None,
        started_ns=1,
        interval_s=1.0,
        host={},
        version="t",
    )
    describe: dict[str, tuple[str, str]] = {}  # empty now, filled by the sampler later
    w = BatchWriter(store, run, None, describe)
    assert w.describe is describe
    describe["app.frames.total"] = ("1", "counter")
    w([Sample("app.frames.total", (), 5, 3.0)])
    w.event(Event(6, "note", "an event through the writer"))
    w.close()
    (s,) = store.series(run)
    assert (s["unit"], s["kind"]) == ("1", "counter")
    assert [e["kind"] for e in store.events(run)] == ["note"]
