"""Several devices on one PostgreSQL, and runs that outlive it (issue 15).

The app of every run sends ``frames:1|c`` over its StatsD socket a known number of times
(the ground truth: the counter's total), and the container's CPU is sampled every 0.1 s
(its ticks: the run's sampler writes one sample per tick, so a gap shows a lost sample).
The outage tests stop their OWN PostgreSQL server (scripts/postgres.sh with a private
folder and port), never the shared test server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import EDGEPROF

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

APP = r"""
import os, socket, sys, time
n = int(sys.argv[1])
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(os.environ["EDGEPROF_METRICS_SOCKET"])
time.sleep(0.5)
for i in range(n):
    s.send(b"frames:1|c")
    x = 0
    end = time.time() + 0.1
    while time.time() < end:
        x += 1
print("sent", n, flush=True)
"""


def _spec(tmp: Path, name: str, n: int) -> Path:
    (tmp / "app.py").write_text(APP)
    for p in (tmp, *tmp.rglob("*")):
        p.chmod(0o755 if p.is_dir() else 0o644)
    path = tmp / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nimage: edgeprof-test/python:latest\n"
        f"run:\n  volumes: ['{tmp}:/work:ro']\n"
        "profiling:\n  interval: 0.1\n  targets:\n"
        f"    - {{name: app, args: [python3, /work/app.py, '{n}'], timeout: 120}}\n"
    )
    return path


def _run(spec: Path, url: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*EDGEPROF, "run", str(spec), "--db", url, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnServer:
    """A private PostgreSQL this test may stop and start."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="edgeprof-pgfarm-")
        os.chmod(self.dir, 0o755)
        self.env = {
            **os.environ,
            "EDGEPROF_PG_DIR": self.dir,
            "EDGEPROF_PG_PORT": str(_free_port()),
        }
        self.url = ""

    def ctl(self, *args: str) -> None:
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(bindir / "pg_ctl"),
                "-D",
                f"{self.dir}/data",
                *args,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        res = subprocess.run(
            [str(ROOT / "scripts" / "postgres.sh"), "start"],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )
        assert res.returncode == 0, res.stderr[-2000:]
        self.url = res.stdout.strip().splitlines()[-1].split("=", 1)[1]

    def stop(self, mode: str = "immediate") -> None:
        self.ctl("-m", mode, "stop")


@pytest.fixture
def own_pg() -> Iterator[OwnServer]:
    if not shutil.which("runuser") or not list(Path("/usr/lib/postgresql").glob("*/bin")):
        pytest.skip("needs Debian's postgresql server binaries (scripts/postgres.sh installs them)")
    pytest.importorskip("psycopg")
    srv = OwnServer()
    srv.start()
    try:
        yield srv
    finally:
        subprocess.run(
            [str(ROOT / "scripts" / "postgres.sh"), "stop"], env=srv.env, capture_output=True
        )
        shutil.rmtree(srv.dir, ignore_errors=True)


def _read(url: str) -> Any:
    from edgeprof.store import open_store

    return open_store(url, readonly=True)


def _check_run(store: Any, run_id: int, n: int, max_gap_s: float = 0.35) -> None:
    """The counter's total is exact and the CPU series has a sample at every tick (0.1 s
    apart; ``max_gap_s`` allows for a loaded machine's late ticks, not for a lost one)."""
    import numpy as np

    arrays = store.series_arrays(run_id)
    by_metric: dict[str, list[Any]] = {}
    for s in store.series(run_id):
        by_metric.setdefault(s.metric, []).append(s)
    (frames,) = by_metric["app.frames.total"]
    t, v = arrays[frames.id]
    assert float(v[-1]) == n, f"app.frames.total ends at {v[-1]}, sent {n}"
    assert len(set(np.asarray(t).tolist())) == len(t), "a sample stored twice"
    cpu = [s for s in by_metric["cpu.percent"] if s.target_id is not None]
    assert cpu
    t, _ = arrays[cpu[0].id]
    t = np.asarray(t)
    gaps = np.diff(t) / 1e9
    assert len(t) >= n  # the app ran n × 0.1 s
    assert gaps.min() > 0, "a tick stored twice"
    assert gaps.max() < max_gap_s, f"a gap of {gaps.max():.2f} s in the CPU ticks: samples lost"


def test_four_runs_at_once_into_one_database(engine: str, pg_url: str, tmp_path: Path) -> None:
    counts = [11, 17, 23, 29]
    procs = []
    for i, n in enumerate(counts):
        d = tmp_path / f"dev{i}"
        d.mkdir()
        procs.append(_run(_spec(d, f"dev{i}", n), pg_url))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    store = _read(pg_url)
    runs = {r.spec_name: r for r in store.list_runs(limit=10)}
    assert sorted(runs) == [f"dev{i}" for i in range(4)]
    assert len({r.uuid for r in runs.values()}) == 4
    containers: set[str] = set()
    for i, n in enumerate(counts):
        run = runs[f"dev{i}"]
        _check_run(store, run.id, n, max_gap_s=1.0)  # 4 runs on a small machine: late ticks
        targets = store.targets(run.id)
        own = {t.id for t in targets}
        (cid,) = [t.container_id for t in targets]
        assert cid and cid not in containers
        containers.add(cid)
        # every run's series are its own targets' (or its host's); each run's counter total
        # (11, 17, 23, 29) is exact, so no run's samples landed in another's series
        for s in store.series(run.id):
            assert s.target_id is None or s.target_id in own
    store.close()


def _wait_for_samples(url: str, min_samples: int, timeout: float = 120) -> int:
    """The running run's id once it stored at least ``min_samples`` samples."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            store = _read(url)
        except Exception:  # noqa: BLE001 - the schema may not be there yet
            time.sleep(0.2)
            continue
        try:
            rows = store.list_runs(limit=1)
            if rows and store.sample_count(rows[0].id) >= min_samples:
                return rows[0].id
        finally:
            store.close()
        time.sleep(0.2)
    raise AssertionError("the run stored no samples in time")


def test_database_stopped_and_started_mid_run_loses_nothing(
    engine: str, own_pg: OwnServer, tmp_path: Path
) -> None:
    n = 60  # about 6 s of app
    p = _run(_spec(tmp_path, "outage", n), own_pg.url, {"EDGEPROF_SPOOL_DIR": str(tmp_path)})
    run_id = _wait_for_samples(own_pg.url, 50)
    own_pg.stop("immediate")
    time.sleep(3)
    own_pg.start()
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    assert not list(tmp_path.glob("edgeprof-spool-*.db"))
    store = _read(own_pg.url)
    assert store.resolve_run(run_id).status == "completed"
    _check_run(store, run_id, n)
    assert store.targets(run_id)[0].status == "exited"
    # the outage was met (not slept through between two flushes) and ridden out
    back = [e for e in store.events(run_id) if "unreachable_s" in (e.data or {})]
    assert len(back) >= 1 and back[0].data["unreachable_s"] > 0, back
    store.close()


def test_database_never_back_spools_and_imports_completely(
    engine: str, own_pg: OwnServer, tmp_path: Path
) -> None:
    n = 40
    env = {"EDGEPROF_SPOOL_DIR": str(tmp_path), "EDGEPROF_PG_FINAL_RETRY_S": "2"}
    p = _run(_spec(tmp_path, "gone", n), own_pg.url, env)
    run_id = _wait_for_samples(own_pg.url, 30)
    own_pg.stop("fast")
    _, err = p.communicate(timeout=300)
    # the run finished; its summary cannot be computed without the database: exit 2
    assert p.returncode == 2, err[-3000:]
    (spool,) = tmp_path.glob("edgeprof-spool-*.db")
    assert f"edgeprof import {spool} --db {own_pg.url}" in err
    assert "cannot be computed" in err
    own_pg.start()
    res = subprocess.run(
        [*EDGEPROF, "import", str(spool), "--db", own_pg.url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if res.returncode != 0 and "invalid choice" in res.stderr:
        pytest.skip("'edgeprof import' is not there yet")
    assert res.returncode == 0, res.stderr[-3000:]
    store = _read(own_pg.url)
    rec = store.resolve_run(run_id)
    assert rec.status == "completed" and rec.ended_ns is not None
    _check_run(store, run_id, n)
    assert store.targets(run_id)[0].status == "exited"
    store.close()


def test_password_from_the_environment_is_never_shown(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    port = _free_port()  # nothing listens there
    res = subprocess.run(
        [*EDGEPROF, "runs", "--db", f"postgresql://farm@127.0.0.1:{port}/edgeprof"],
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": "s3cr3t-env-pw"},
        timeout=60,
    )
    assert res.returncode == 2
    assert "s3cr3t-env-pw" not in res.stderr + res.stdout
    assert f"127.0.0.1:{port}" in res.stderr
    res = subprocess.run(
        [*EDGEPROF, "runs", "--db", f"postgresql://farm:url-pw-9@127.0.0.1:{port}/edgeprof"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "url-pw-9" not in res.stderr + res.stdout
    assert sys.executable  # (the CLI ran in this interpreter)


def test_credentials_from_pg_variables(pg_url: str, tmp_path: Path) -> None:
    """``postgresql:///DB`` (or ``postgresql://user@host/DB``) with the rest from PGHOST,
    PGPORT, PGUSER, PGPASSFILE: libpq finds them; the password file is never shown."""
    from urllib.parse import urlparse

    u = urlparse(pg_url)
    db = u.path.lstrip("/")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{u.hostname}:{u.port}:{db}:{u.username}:pf-s3cret\n")
    passfile.chmod(0o600)
    env = {
        **os.environ,
        "PGHOST": str(u.hostname),
        "PGPORT": str(u.port),
        "PGUSER": str(u.username),
        "PGPASSFILE": str(passfile),
    }
    urls = (f"postgresql:///{db}", f"postgresql://{u.username}@{u.hostname}/{db}")
    for cmd, url in (("migrate", urls[0]), ("runs", urls[0]), ("runs", urls[1])):
        res = subprocess.run(
            [*EDGEPROF, cmd, "--db", url], capture_output=True, text=True, env=env, timeout=60
        )
        assert res.returncode == 0, res.stderr
        assert "pf-s3cret" not in res.stdout + res.stderr


def test_committed_tells_the_fate_of_a_transaction(pg_url: str) -> None:
    """What the writer asks after a commit whose answer was lost (txid_status)."""
    from edgeprof.store import open_store

    store = open_store(pg_url)
    xids = {}
    for fate in ("committed", "aborted"):
        with store.conn.cursor() as cur:
            cur.execute("SELECT txid_current()")
            xids[fate] = int(cur.fetchone()[0])
        store.conn.commit() if fate == "committed" else store.conn.rollback()
    store.reconnect()  # a new connection, as after the loss
    assert store.committed(xids["committed"]) is True
    assert store.committed(xids["aborted"]) is False
    store.close()


def test_lost_connection_is_store_unavailable_and_reconnects(pg_url: str) -> None:
    import psycopg

    from edgeprof.errors import StoreUnavailable
    from edgeprof.store import open_store
    from edgeprof.store.base import RunInfo

    store = open_store(pg_url)
    run_id = store.begin_run(RunInfo("s", "i", 0, 0.1))
    pid = store.conn.info.backend_pid
    with psycopg.connect(pg_url, autocommit=True) as c:  # the server drops our connection
        c.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StoreUnavailable):
        store.resolve_run(run_id)
    store.reconnect()
    assert store.resolve_run(run_id).id == run_id
    with pytest.raises(Exception) as bad:  # other errors stay StoreError (fail-stop)
        store._exec("SELECT * FROM no_such_table")
    assert not isinstance(bad.value, StoreUnavailable)
    store.close()
