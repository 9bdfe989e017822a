"""The same store on PostgreSQL: the library round trip and a real CLI run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeprof.analyze.summary import summarize
from edgeprof.model import Event, MetricSpec, Sample, labels_of
from edgeprof.store import BatchWriter, open_store
from edgeprof.store.base import RunInfo, TargetInfo
from edgeprof.store.schema import SCHEMA_VERSION

from .helpers import edgeprof

pytestmark = pytest.mark.integration


def test_store_round_trip(pg_url: str) -> None:
    store = open_store(pg_url)
    run = store.begin_run(
        RunInfo(
            spec_name="s", image="i:1", spec_text="x", started_ns=1, interval_s=0.1, host={"a": 1}
        )
    )
    tid = store.begin_target(TargetInfo(run, 0, "t1", ["--x"], {"timeout": 0}))
    w = BatchWriter(store, run, tid)
    w.describe([MetricSpec("cpu.percent", "%")])
    lab = labels_of(target="t1")
    for i in range(1000):
        w.write([Sample("cpu.percent", lab, 1_000 + i, float(i % 100))])
    w.close()
    store.add_event(run, tid, Event(5, "exited", "exit code 0", "t1", {"exit_code": 0}))
    # an app's output may hold NUL bytes, which PostgreSQL text cannot: they must not fail
    store.add_log(tid, "stdout", "frame\x00 done\n")
    store.add_event(run, tid, Event(6, "app_event", "ev\x00t", "t1", {"text": "a\x00b"}))
    store.update_target(tid, status="exited", exit_code=0, oom_killed=False, duration_s=1.5)
    store.end_run(run, "completed", 10)
    store.close()

    again = open_store(pg_url)  # reopen: schema already there, version checked
    s = summarize(again, "latest").to_json()
    cpu = s["targets"][0]["metrics"]["cpu.percent"]
    assert cpu["count"] == 1000
    assert cpu["mean"] == pytest.approx(49.5)
    assert cpu["p50"] == pytest.approx(49.5)
    assert s["targets"][0]["events"][0]["data"] == {"exit_code": 0}
    assert s["run"]["host"] == {"a": 1}
    assert again.logs(tid)["stdout"] == "frame\ufffd done\n"
    ev = [e for e in s["targets"][0]["events"] if e["kind"] == "app_event"][0]
    assert ev["message"] == "ev\ufffdt" and ev["data"] == {"text": "a\x00b"}
    again.close()


def test_live_reader_sees_final_chunks_and_open_blocks(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Series finalizing at different flushes share open blocks: another connection reads
    every flushed sample once, in write order, through every read of the store."""
    from edgeprof.store import chunks

    monkeypatch.setattr(chunks, "CHUNK_SAMPLES", 7)
    store = open_store(pg_url)
    run = store.begin_run(RunInfo(spec_name="s", image="i", started_ns=1, interval_s=0.1))
    tids = [store.begin_target(TargetInfo(run, i, f"t{i}", [])) for i in range(2)]
    w = BatchWriter(store, run, None, flush_s=3600)
    for i, tid in enumerate(tids):
        w.add_target(f"t{i}", tid)
    reader = open_store(pg_url, readonly=True)
    sent: dict[tuple[str, str], list[tuple[int, float]]] = {}

    def check() -> None:
        ids = {(x.metric, x.labels["target"]): x.id for x in reader.series(run)}
        arrays = reader.series_arrays(run)
        rows = list(reader.iter_samples(run, chunk=5))
        for key, want in sent.items():
            for t, v in (reader.series_samples(ids[key]), arrays[ids[key]]):
                assert list(zip(t.tolist(), v.tolist(), strict=True)) == want, key
            assert [(t, v) for sid, t, v in rows if sid == ids[key]] == want, key
        assert reader.sample_count(run) == len(rows) == sum(len(v) for v in sent.values())

    for tick in range(1, 40):
        batch = []
        for m, start in (("a", 1), ("b", 4)):
            for i in range(2):
                if tick >= start and not (tick > 25 and i == 1):
                    sample = (tick * 1000 + i, float(tick * 10 + i))
                    sent.setdefault((m, f"t{i}"), []).append(sample)
                    batch.append(Sample(m, labels_of(target=f"t{i}"), *sample))
        w.write(batch)
        if tick == 25:
            w.end_target(tids[1])
        if tick % 3 == 0:
            w.flush()
            check()
    w.close()
    check()
    with store.conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute("SELECT COUNT(*) FROM open_blocks")
        assert cur.fetchone()[0] == 0
    reader.close()
    store.close()


def test_a_version_3_database_reads_and_migrates(pg_url: str) -> None:
    """A schema-3 database (open chunks of a crashed run) reads as it is and migrates."""
    import numpy as np

    store = open_store(pg_url)
    run = store.begin_run(RunInfo(spec_name="c", image="i", started_ns=1, interval_s=0.1))
    sid = store.series_id(run, None, "m", labels_of(k="b"))
    t = np.array([10, 20, 30], dtype="<i8")
    v = np.array([1.5, -0.0, 2.5], dtype="<f8")
    with store.conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute(
            "INSERT INTO chunks (series_id, timeblock_id, n, t0_ns, t1_ns, mode, ts, vals)"
            " VALUES (%s, NULL, 3, 10, 30, 0, %s, %s)",
            (sid, t.tobytes(), v.tobytes()),
        )
        cur.execute("DROP TABLE open_blocks")
        cur.execute("ALTER TABLE series DROP COLUMN final_block")
        cur.execute("DROP TABLE code_samples")
        cur.execute("DROP TABLE code_stacks")
        cur.execute("DROP INDEX runs_uuid")
        cur.execute("ALTER TABLE runs DROP COLUMN uuid")
        cur.execute("ALTER TABLE runs DROP COLUMN meta")
        cur.execute("UPDATE schema_version SET version = 3")
    store.conn.commit()  # type: ignore[attr-defined]
    store.close()
    v = SCHEMA_VERSION
    for readonly, migrated in ((True, (3, 3)), (False, (3, v)), (True, (v, v))):
        s = open_store(pg_url, readonly=readonly)
        assert s.migrated == migrated
        got_t, got_v = s.series_arrays(run)[sid]
        assert got_t.tolist() == [10, 20, 30] and got_v.tolist() == [1.5, -0.0, 2.5]
        assert [(x, y) for _, x, y in s.iter_samples(run)] == [(10, 1.5), (20, -0.0), (30, 2.5)]
        assert s.sample_count(run) == 3
        s.close()


def test_cli_run_on_postgres(engine: str, pg_url: str, tmp_path: Path) -> None:
    spec = tmp_path / "p.yaml"
    spec.write_text(
        "name: pg\nimage: edgeprof-test/busybox:latest\nprofiling:\n  interval: 0.2\n  targets:\n"
        "    - name: short\n"
        "      args: [sh, -c, 'end=$(($(date +%s)+2)); while [ $(date +%s) -lt $end ]; do :; done']\n"
        "      timeout: 20\n"
    )
    edgeprof("run", str(spec), "--db", pg_url, "--quiet", check=0)
    res = edgeprof("summary", "latest", "--json", "--db", pg_url, check=0)
    t = json.loads(res.stdout)["targets"][0]
    assert t["exit_code"] == 0, t
    assert t["metrics"]["cpu.percent"]["count"] >= 5, t["metrics"].get("cpu.percent")
    assert "pg" in edgeprof("runs", "--db", pg_url, check=0).stdout


def test_password_masked_everywhere_with_a_real_server(
    engine: str, pg_url: str, tmp_path: Path
) -> None:
    """The private server trusts every connection, so a password in the URL is accepted
    (and ignored): every command succeeds, and the password shows nowhere."""
    secret = "Pa55-w0rd-xyz"
    url = pg_url.replace("postgres@", f"postgres:{secret}@", 1)
    spec = tmp_path / "p.yaml"
    spec.write_text(
        "name: pw\nimage: edgeprof-test/busybox:latest\nprofiling:\n  interval: 0.2\n"
        "  targets:\n    - {name: t, args: [sh, -c, 'echo hello; sleep 1'], timeout: 20}\n"
    )
    outs = [edgeprof("runs", "--db", url, check=2)]  # an empty database: nothing to read yet
    assert "postgres:***@" in outs[0].stderr and "no edgeprof data" in outs[0].stderr
    outs.append(edgeprof("run", str(spec), "--db", url, check=0))
    for args in (
        ["runs"],
        ["runs", "--json"],
        ["summary", "latest"],
        ["summary", "latest", "--json"],
        ["export", "latest"],
        ["logs", "latest"],
        ["migrate"],
        ["cleanup"],
    ):
        outs.append(edgeprof(*args, "--db", url, check=0))
    outs.append(edgeprof("summary", "999", "--db", url, check=2))
    for res in outs:
        assert secret not in res.stdout + res.stderr, res.args
    import psycopg

    with psycopg.connect(pg_url) as c:  # nor is it stored anywhere
        for table in ("runs", "targets", "series", "events", "logs"):
            for row in c.execute(f"SELECT * FROM {table}"):
                assert secret not in repr(row), (table, row)


def test_unreachable_postgres_is_a_user_error() -> None:
    res = edgeprof("runs", "--db", "postgresql://nobody@127.0.0.1:1/none", check=2)
    assert "cannot connect to PostgreSQL" in res.stderr
    assert "Traceback" not in res.stderr
