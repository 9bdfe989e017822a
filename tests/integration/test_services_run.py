"""``edgeprof run`` with services and scenarios on the real engine, against ground truth.

* a busybox web server serving a file the test wrote is a service; an app fetches
  ``http://web:8090/x`` by the service's name and prints it: the stored app log holds the
  file's content, and the data-config mounted at pywaggle's path names the service's URL;
* a service that never gets ready makes its target an ``error`` with its last log lines,
  and the next target still runs;
* two CPU burners at ``cpus: 0.5`` each, run together in one session, each use half a
  core, and their rows say which scenario they belong to;
* after each run no container or network of the run is left.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edgeprof.reaper import RUN_UID_LABEL
from edgeprof.services import DATA_CONFIG_PATH
from edgeprof.store import open_store

from .helpers import edgeprof, summary, target

pytestmark = pytest.mark.integration

SERVICES = f"""
name: svcrun
image: edgeprof-test/busybox:latest
profiling:
  interval: 0.25
  grace: 1
  metrics: [container, system]
  services:
    - name: web
      image: edgeprof-test/busybox:latest
      args: ["sh", "-c", "mkdir -p /w && echo frame-42 > /w/x && echo serving && exec httpd -f -p 8090 -h /w"]
      ready: {{http: {{port: 8090, path: /x}}}}
      start_timeout: 30
      profile: true
  data_config: {{bottom_camera: "http://web:8090/x"}}
  targets:
    - name: fetch
      args: ["sh", "-c", "wget -qO- http://web:8090/x && cat {DATA_CONFIG_PATH} && sleep 1"]
      timeout: 20
    - name: deaf
      args: ["sh", "-c", "echo never started"]
      services:
        - name: mute
          image: edgeprof-test/busybox:latest
          args: ["sh", "-c", "echo booting; echo still booting; exec sleep 1000"]
          ready: {{tcp: 9999}}
          start_timeout: 2
    - name: after
      args: ["sh", "-c", "wget -qO- http://web:8090/x"]
      timeout: 20
"""

TOGETHER = """
name: together
image: edgeprof-test/busybox:latest
profiling:
  interval: 0.25
  grace: 1
  metrics: [container, system]
  targets:
    - name: b1
      args: ["sh", "-c", "while :; do :; done"]
      timeout: 6
      resources: {cpus: 0.5}
    - name: b2
      args: ["sh", "-c", "while :; do :; done"]
      timeout: 6
      resources: {cpus: 0.5}
  scenarios:
    - {name: both, together: [b1, b2]}
"""


def _left(db: Path) -> tuple[list[str], list[str]]:
    """Containers and networks on the engine that carry the latest run's uid."""
    store = open_store(f"sqlite:///{db}", readonly=True)
    try:
        uid = store.resolve_run("latest").owner["run_uid"]
    finally:
        store.close()
    flt = f"label={RUN_UID_LABEL}={uid}"
    cs = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", flt], capture_output=True, text=True, check=True
    ).stdout.split()
    ns = subprocess.run(
        ["docker", "network", "ls", "-q", "--filter", flt],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return cs, ns


def _rows(db: Path) -> dict[str, Any]:
    store = open_store(f"sqlite:///{db}", readonly=True)
    try:
        run = store.resolve_run("latest")
        return {t.name: t for t in store.targets(run.id)}
    finally:
        store.close()


@pytest.fixture(scope="module")
def services_run(engine: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    d = tmp_path_factory.mktemp("svc")
    spec = d / "profile.yaml"
    spec.write_text(SERVICES)
    db = d / "svc.db"
    res = edgeprof("run", str(spec), "--db", f"sqlite:///{db}")
    return db, res


def test_the_app_reaches_the_service_by_its_name(services_run: tuple[Path, Any]) -> None:
    db, res = services_run
    assert res.returncode == 1, res.stderr  # deaf is an error; the others ran
    assert "deaf (error)" in res.stderr and "Traceback" not in res.stderr
    s = summary(db)
    assert target(s, "fetch")["status"] == "exited"
    assert target(s, "after")["status"] == "exited"
    out = edgeprof("logs", "latest", "fetch", db=db, check=0).stdout
    assert "frame-42" in out  # the file the service served, fetched by its name
    # the data-config at pywaggle's default path names the service's URL
    assert '"url": "http://web:8090/x"' in out and '"id": "bottom_camera"' in out
    assert "frame-42" in edgeprof("logs", "latest", "after", db=db, check=0).stdout


def test_service_rows_hold_their_logs_and_samples(services_run: tuple[Path, Any]) -> None:
    db, _ = services_run
    rows = _rows(db)
    web = rows["fetch/web"]
    assert web.status == "exited"
    assert web.config["role"] == "service" and web.config["for"] == "fetch"
    assert 0 < web.config["ready_s"] < 30
    print(f"web ready after {web.config['ready_s']} s")
    # profile: true: the service was sampled in the app's session, under its own row
    s = summary(db)
    (web_s,) = [t for t in s["services"] if t["name"] == "fetch/web"]  # shown apart
    assert "cpu.percent" in web_s["metrics"]
    out = edgeprof("logs", "latest", "--service", "web", "--target", "fetch", db=db, check=0)
    assert "==> fetch/web (stdout) <==" in out.stdout and "serving" in out.stdout
    assert "after/web" not in out.stdout
    both = edgeprof("logs", "latest", "--service", "web", db=db, check=0).stdout
    assert "fetch/web" in both and "after/web" in both
    bad = edgeprof("logs", "latest", "--service", "nope", db=db, check=2).stderr
    assert "no service named 'nope'" in bad and "web" in bad


def test_a_service_never_ready_fails_its_target_only(services_run: tuple[Path, Any]) -> None:
    db, _ = services_run
    rows = _rows(db)
    deaf = rows["deaf"]
    assert deaf.status == "error"
    assert "'mute'" in deaf.error and "not ready after 2 s" in deaf.error
    assert "still booting" in deaf.error  # its last log lines
    assert deaf.container_id is None  # the app never started
    mute = rows["deaf/mute"]
    assert mute.status == "error" and "still booting" in mute.error
    out = edgeprof("logs", "latest", "--service", "mute", db=db, check=0).stdout
    assert "still booting" in out
    assert rows["after"].status == "exited"  # the run went on


def test_nothing_of_the_services_run_is_left(services_run: tuple[Path, Any]) -> None:
    db, _ = services_run
    assert _left(db) == ([], [])


def test_two_burners_together_each_get_half_a_core(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "profile.yaml"
    spec.write_text(TOGETHER)
    db = tmp_path / "t.db"
    edgeprof("run", str(spec), "--db", f"sqlite:///{db}", check=0)
    assert _left(db) == ([], [])
    s = summary(db)
    rows = _rows(db)
    assert list(rows) == ["b1", "b2", "both/b1", "both/b2"]
    means = {}
    for name in rows:
        t = target(s, name)
        assert t["status"] == "timed_out"
        cpu = t["metrics"]["cpu.percent"]
        assert cpu["count"] >= 15
        means[name] = round(cpu["mean"], 2)
    with capsys.disabled():
        print(f"\ncpu.percent means (cpus: 0.5 each): {json.dumps(means)}")
    for name, mean in means.items():
        assert 45 <= mean <= 55, (name, means)
    for m, base in (("both/b1", "b1"), ("both/b2", "b2")):
        cfg = rows[m].config
        assert (cfg["scenario"], cfg["base_target"], cfg["together"]) == (
            "both",
            base,
            ["b1", "b2"],
        )
    # together: one session, so the two ran at the same time
    a, b = rows["both/b1"], rows["both/b2"]
    assert abs(a.started_ns - b.started_ns) < 1e9
    assert a.started_ns < b.ended_ns and b.started_ns < a.ended_ns
