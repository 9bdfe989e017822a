"""The same store on PostgreSQL: the library round trip and a real CLI run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeprof.analyze.summary import summarize
from edgeprof.model import Event, Sample, labels_of
from edgeprof.store import BatchWriter, open_store

from .helpers import edgeprof

pytestmark = pytest.mark.integration


def test_store_round_trip(pg_url: str) -> None:
    store = open_store(pg_url)
    run = store.begin_run(
        spec_name="s",
        image="i:1",
        spec_path=None,
        spec_text="x",
        started_ns=1,
        interval_s=0.1,
        host={"a": 1},
        version="t",
    )
    tid = store.begin_target(run, 0, "t1", ["--x"], {"timeout": 0})
    w = BatchWriter(store, run, tid, {"cpu.percent": ("%", "gauge")})
    lab = labels_of(target="t1")
    for i in range(1000):
        w([Sample("cpu.percent", lab, 1_000 + i, float(i % 100))])
    w.close()
    store.add_event(run, tid, Event(5, "exited", "exit code 0", "t1", {"exit_code": 0}))
    store.update_target(tid, status="exited", exit_code=0, oom_killed=False, duration_s=1.5)
    store.end_run(run, "completed", 10)
    store.close()

    again = open_store(pg_url)  # reopen: schema already there, version checked
    s = summarize(again, "latest")
    cpu = s["targets"][0]["metrics"]["cpu.percent"]
    assert cpu["count"] == 1000
    assert cpu["mean"] == pytest.approx(49.5)
    assert cpu["p50"] == pytest.approx(49.5)
    assert s["targets"][0]["events"][0]["data"] == {"exit_code": 0}
    assert s["run"]["host"] == {"a": 1}
    again.close()


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
    assert t["exit_code"] == 0 and t["metrics"]["cpu.percent"]["count"] >= 5
    assert "pg" in edgeprof("runs", "--db", pg_url, check=0).stdout


def test_unreachable_postgres_is_a_user_error() -> None:
    res = edgeprof("runs", "--db", "postgresql://nobody@127.0.0.1:1/none", check=2)
    assert "cannot connect to PostgreSQL" in res.stderr
    assert "Traceback" not in res.stderr
