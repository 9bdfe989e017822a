"""``edgeprof attach`` on the real engine, against containers the test starts itself
(``docker run -d``), checked against ground truth: a burner limited to ``--cpus 0.5`` reads
about 50 %; a ``docker restart`` is followed; SIGTERM stores every sample up to the signal,
SIGKILL loses at most the last second, and the containers keep running in every case."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .helpers import EDGEPROF, docker, edgeprof, summary, target

pytestmark = pytest.mark.integration

BUSYBOX = "edgeprof-test/busybox:latest"
BURN = ["sh", "-c", "while :; do :; done"]


@contextmanager
def burners(n: int, cpus: float, labels: dict[str, str] | None = None) -> Iterator[list[str]]:
    """``n`` CPU burners limited to ``cpus`` each, removed afterwards whatever happens."""
    tag = secrets.token_hex(3)
    names = [f"ep-attach-{tag}-{i}" for i in range(n)]
    try:
        for name in names:
            start(name, cpus, labels)
        yield names
    finally:
        for name in names:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


def start(name: str, cpus: float, labels: dict[str, str] | None = None) -> None:
    lab = [x for k, v in (labels or {}).items() for x in ("--label", f"{k}={v}")]
    docker("run", "-d", "--name", name, "--cpus", str(cpus), *lab, BUSYBOX, *BURN)


def running(name: str) -> bool:
    return docker("inspect", "-f", "{{.State.Running}}", name).strip() == "true"


def samples(db: str, name: str, metric: str) -> list[int]:
    """Timestamps of every stored sample of ``metric`` of target ``name``."""
    out = subprocess.run(
        [*EDGEPROF, "export", "latest", "-f", "jsonl", "--db", db],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return sorted(r["t_ns"] for r in rows if r["target"] == name and r["metric"] == metric)


def _kinds(t: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in t["events"]]


def test_two_burners_at_half_a_core(engine: str, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with burners(2, 0.5) as names:
        time.sleep(1)
        res = edgeprof("attach", *names, "--duration", "6s", "--interval", "0.2", db=db, check=0)
        assert all(running(n) for n in names)  # attach never stops what it did not start
    assert "run id:" in res.stdout
    for n in names:  # app metrics are not available: said once per container
        assert res.stderr.count(f"{n}: app: app metrics need the socket") == 1, res.stderr
    s = summary(db)
    assert s["run"]["spec_name"] == "attach" and s["run"]["status"] == "completed"
    assert s["run"]["image"] == BUSYBOX
    for n in names:
        t = target(s, n)
        cpu = t["metrics"]["cpu.percent"]
        assert 45 <= cpu["mean"] <= 55, cpu
        assert cpu["count"] >= 20
        assert t["status"] == "detached"
        assert t["config"]["container_name"] == n and t["config"]["limits"]["cpus"] == 0.5


def test_restart_is_followed(engine: str, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with burners(1, 0.3) as (name,):
        p = subprocess.Popen(
            [*EDGEPROF, "attach", name, "--duration", "9", "-i", "0.2", "--db", f"sqlite:///{db}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(3)
        docker("restart", "-t", "1", name)  # sh ignores SIGTERM: SIGKILL after 1 s
        t_back = time.time_ns()
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert running(name)
    t = target(summary(db), name)
    kinds = _kinds(t)
    assert "container_restarted" in kinds, kinds
    assert kinds.index("exited") < kinds.index("container_restarted")
    ts = samples(f"sqlite:///{db}", name, "cpu.percent")
    assert sum(1 for x in ts if x > t_back + 1_000_000_000) >= 10  # sampled after it came back
    assert "started again" in err


def test_all_with_label_picks_up_new_containers(engine: str, tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    tag = {"ep-attach-test": secrets.token_hex(3)}
    with burners(1, 0.1, tag) as (first,):
        late = first + "-late"
        try:
            p = subprocess.Popen(
                [
                    *EDGEPROF,
                    "attach",
                    "--all",
                    "--label",
                    f"ep-attach-test={tag['ep-attach-test']}",
                    "--duration",
                    "6",
                    "-i",
                    "0.2",
                    "--db",
                    f"sqlite:///{db}",
                    "-q",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(2)
            start(late, 0.1, tag)
            start(late + "-other", 0.1, {"ep-attach-test": "other"})
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
        finally:
            for n in (late, late + "-other"):
                subprocess.run(["docker", "rm", "-f", n], capture_output=True, timeout=60)
    s = summary(db)
    assert sorted(t["name"] for t in s["targets"]) == [first, late]
    assert target(s, late)["metrics"]["cpu.percent"]["count"] >= 5


def test_sigterm_stores_every_sample(engine: str, tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with burners(2, 0.2) as names:
        p = subprocess.Popen(
            [*EDGEPROF, "attach", *names, "-i", "0.1", "--db", f"sqlite:///{db}", "-q"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(4)
        t_sig = time.time_ns()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 130, err
        assert "Traceback" not in err
        assert all(running(n) for n in names)
    s = summary(db)
    assert s["run"]["status"] == "interrupted"
    for n in names:
        assert target(s, n)["status"] == "detached"
        ts = samples(f"sqlite:///{db}", n, "cpu.usage_seconds")
        # from the first sample to one taken after the signal, none missing
        assert ts[-1] >= t_sig
        gaps = [b - a for a, b in zip(ts, ts[1:], strict=False)]
        assert max(gaps) < 0.25e9, max(gaps)
        assert len(ts) >= 25


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_loses_at_most_a_second(
    engine: str, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'k.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    with burners(1, 0.2) as (name,):
        p = subprocess.Popen(
            [*EDGEPROF, "attach", name, "-i", "0.1", "--db", url, "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(4)
        t_kill = time.time_ns()
        p.send_signal(signal.SIGKILL)
        p.wait()
        time.sleep(2)
        assert running(name)  # neither the profiler nor its reaper touched it
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            res = edgeprof("summary", "latest", "--json", "--db", url)
            if res.returncode == 0 and json.loads(res.stdout)["run"]["status"] == "crashed":
                break
            time.sleep(0.3)
        s = json.loads(edgeprof("summary", "latest", "--json", "--db", url, check=0).stdout)
        assert running(name)
    assert s["run"]["status"] == "crashed"
    ts = samples(url, name, "cpu.usage_seconds")
    assert ts and ts[-1] >= t_kill - 1_000_000_000, (t_kill - ts[-1]) / 1e9
    assert len(ts) >= 20


def test_missing_or_stopped_container_is_one_sentence(engine: str, tmp_path: Path) -> None:
    res = edgeprof("attach", "ep-attach-no-such-container", db=tmp_path / "m.db")
    assert res.returncode == 2
    assert res.stderr.startswith("edgeprof: error: no container named or with id")
    assert len(res.stderr.strip().splitlines()) == 1
    name = f"ep-attach-stopped-{secrets.token_hex(3)}"
    try:
        docker("create", "--name", name, BUSYBOX, "true")
        res = edgeprof("attach", name, db=tmp_path / "m.db")
        assert res.returncode == 2
        assert f"container {name!r} is not running" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


def test_attach_in_a_log_prints_lines_and_serves_prometheus(engine: str, tmp_path: Path) -> None:
    """Not on a terminal: a plain line per container every 5 s; --prometheus serves the
    container's CPU counter (cAdvisor's name) while attached, and frees its port after."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "p.db"
    with burners(1, 0.5) as (name,):
        p = subprocess.Popen(
            [*EDGEPROF, "attach", name, "--duration", "11", "-i", "0.5",
             "--prometheus", f"127.0.0.1:{port}", "--db", f"sqlite:///{db}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.time() + 30
            scraped = ""
            while time.time() < deadline and "container_cpu_usage_seconds_total{" not in scraped:
                time.sleep(1)
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                        scraped = r.read().decode()
                except OSError:
                    continue
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
    assert p.returncode == 0, err
    line = next(
        x for x in scraped.splitlines() if x.startswith("container_cpu_usage_seconds_total{")
    )
    assert f'name="{name}"' in line and float(line.rsplit(" ", 1)[1]) > 0
    cpu_lines = [x for x in out.splitlines() if x.startswith(f"{name} cpu ")]
    assert len(cpu_lines) >= 1, out  # one every 5 s
    assert "/50%" in cpu_lines[0]
    with socket.socket() as s:  # the endpoint is gone with the profiler
        assert s.connect_ex(("127.0.0.1", port)) != 0
