"""Services and scenarios in the runner, driven through the scripted engine (no Docker):
a service is ready before its app starts and removed after it; the data-config is mounted;
a service that is not ready fails its target and the run goes on; Ctrl-C while waiting for
one; a scenario's members run in one session — and no container or network is left."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edgeprof.analyze.summary import summarize
from edgeprof.cli.logs import service_logs
from edgeprof.engine.base import ContainerRequest, Handle
from edgeprof.engine.fake import FakeEngine, Script
from edgeprof.errors import EngineError, UserError
from edgeprof.hostinfo import HostCaps
from edgeprof.runner import RunResult, RunSettings, run_profile
from edgeprof.services import DATA_CONFIG_PATH
from edgeprof.spec import parse_spec
from edgeprof.store import open_store

SPEC = """
name: svc
image: fake:latest
profiling:
  interval: 0.05
  grace: 0.3
  metrics: [container, system]
{body}
"""


class Listener:
    """A TCP port on this host that records when it was first connected to (the fake
    engine's containers have the address 127.0.0.1, so a ``tcp`` probe lands here)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.first: float | None = None
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.first is None:
                self.first = time.monotonic()
            conn.close()

    def close(self) -> None:
        self.sock.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()  # nothing listens there now
    return port


class Recording(FakeEngine):
    """Remembers when each container was asked to start."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.started_at: dict[str, float] = {}
        self.requests: list[ContainerRequest] = []
        self.data_configs: dict[str, Any] = {}

    def start(self, req: ContainerRequest) -> Handle:
        key = req.labels.get("edgeprof.service") or req.labels.get("edgeprof.target", "")
        self.started_at[key] = time.monotonic()
        self.requests.append(req)
        for v in req.volumes:
            host, _, rest = v.partition(":")
            if rest.startswith(DATA_CONFIG_PATH):
                self.data_configs[key] = json.loads(Path(host).read_text())
        return super().start(req)

    def req(self, key: str) -> ContainerRequest:
        return next(
            r
            for r in self.requests
            if (r.labels.get("edgeprof.service") or r.labels.get("edgeprof.target")) == key
        )


def _run(tmp: Path, body: str, engine: FakeEngine, **kw: Any) -> RunResult:
    loaded = parse_spec(SPEC.format(body=body), "svc.yaml")
    store = open_store(f"sqlite:///{tmp}/svc.db")
    try:
        return run_profile(
            loaded, store, engine, RunSettings(reaper=False, **kw), caps=HostCaps(ncpu=2)
        )
    finally:
        store.close()


def _read(tmp: Path) -> Any:
    store = open_store(f"sqlite:///{tmp}/svc.db", readonly=True)
    try:
        return summarize(store, "latest"), {t.name: t for t in store.targets(1)}
    finally:
        store.close()


def _clean(engine: FakeEngine) -> None:
    """Nothing left behind: every container removed, every network removed."""
    assert engine.running() == []
    assert engine.networks == {}
    creates = [x for x in engine.network_log if x.startswith("create")]
    assert len(creates) <= 1 and len(engine.network_log) == 2 * len(creates)


def test_a_service_is_ready_before_its_app_and_removed_after(tmp_path: Path) -> None:
    lis = Listener()
    engine = Recording(
        {
            "cam": Script(run_s=None, stdout="serving frames\n"),
            "app": Script(run_s=0.4),
            "other": Script(run_s=0.2),
        }
    )
    body = f"""
  services:
    - name: cam
      image: fake:latest
      ready: {{tcp: {lis.port}}}
      profile: true
  data_config: {{bottom_camera: "http://cam:8090/bottom/live.mp4"}}
  targets:
    - {{name: app}}
    - {{name: other, data_config: {{top_camera: "http://cam:8090/top/image.jpg"}}}}
"""
    try:
        res = _run(tmp_path, body, engine)
    finally:
        lis.close()
    _clean(engine)
    assert [t.status for t in res.targets] == ["exited", "exited"]
    # the service was asked to start, answered its probe, and only then the app started
    assert lis.first is not None and lis.first < engine.started_at["app"]
    # one service per target: started before it, removed after it
    order = [c.split(" ")[0] + " " + c.split("-")[2] for c in engine.calls if "network" not in c]
    assert order == [
        "start app",  # edgeprof-<run>-app-<hex>-cam: the service of target app
        "start app",
        "remove app",
        "remove app",
        "start other",
        "start other",
        "remove other",
        "remove other",
    ]
    svc_names = [c for c in engine.calls if c.endswith("-cam")]
    assert len(svc_names) == 4 and svc_names[0].startswith("start ")
    assert svc_names[1].startswith("remove ") and engine.calls.index(svc_names[1]) > 2
    # every container on the run's network; the service answers to its name
    net = engine.req("app").network
    assert net and net.startswith("edgeprof-1-")
    assert engine.network_log == [f"create {net}", f"remove {net}"]
    assert engine.req("cam").network == net and engine.req("cam").aliases == ["cam"]
    assert (
        engine.calls[0] == f"create network {net}" and engine.calls[-1] == f"remove network {net}"
    )
    # the data-config: the spec's for app, the target's over it for other
    assert engine.data_configs["app"] == [
        {
            "match": {"id": "bottom_camera"},
            "handler": {"type": "video", "args": {"url": "http://cam:8090/bottom/live.mp4"}},
        }
    ]
    assert [e["match"]["id"] for e in engine.data_configs["other"]] == [
        "bottom_camera",
        "top_camera",
    ]
    assert any(v.endswith(f":{DATA_CONFIG_PATH}:ro") for v in engine.req("app").volumes)
    s, rows = _read(tmp_path)
    assert [t.name for t in s.targets] == ["app", "other", "app/cam", "other/cam"]
    cam = rows["app/cam"]
    assert cam.status == "exited" and cam.error is None
    assert cam.config["role"] == "service" and cam.config["service"] == "cam"
    assert cam.config["scope"] == "target" and cam.config["for"] == "app"
    assert 0 <= cam.config["ready_s"] < 5
    # profile: true: sampled as a member of the app's session, under its own row
    assert s.target("app/cam").gauge("cpu.percent") is not None
    assert s.target("app").gauge("cpu.percent") is not None
    store = open_store(f"sqlite:///{tmp_path}/svc.db", readonly=True)
    try:
        assert store.logs(cam.id) == {"stdout": "serving frames\n"}
        got = service_logs(store, "latest", "cam", "other")
        assert got == [("other/cam", "stdout", "serving frames\n")]
        assert [g[0] for g in service_logs(store, "latest", "cam")] == ["app/cam", "other/cam"]
        with pytest.raises(UserError, match="no service named 'nope'.*cam"):
            service_logs(store, "latest", "nope")
        with pytest.raises(UserError, match="did not serve 'x'"):
            service_logs(store, "latest", "cam", "x")
    finally:
        store.close()


def test_a_service_that_is_not_ready_fails_its_target_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    engine = Recording(
        {
            "deaf": Script(run_s=None, stdout="booting\nstill booting\n"),
            "a": Script(run_s=0.2),
            "b": Script(run_s=0.2),
        }
    )
    body = f"""
  targets:
    - name: a
      services:
        - {{name: deaf, image: fake:latest, ready: {{tcp: {closed_port()}}}, start_timeout: 0.4}}
    - {{name: b}}
"""
    res = _run(tmp_path, body, engine)
    _clean(engine)
    got = {t.name: t.status for t in res.targets}
    assert got == {"a": "error", "b": "exited"}
    a = res.targets[0]
    assert "'deaf'" in (a.error or "") and "not ready after 0.4 s" in (a.error or "")
    assert "still booting" in (a.error or "")  # its last log lines
    assert "start a" not in " ".join(c.rsplit("-", 1)[0] for c in engine.calls)  # no app
    s, rows = _read(tmp_path)
    deaf = rows["a/deaf"]
    assert deaf.status == "error" and "still booting" in (deaf.error or "")
    assert deaf.config["ready_s"] is None
    assert s.run.status == "completed"
    assert "target_error" in [e.kind for e in s.target("a").events]


def test_a_run_scope_service_starts_once_and_its_failure_errors_every_target(
    tmp_path: Path,
) -> None:
    lis = Listener()
    engine = Recording({"db": Script(run_s=None, stdout="db up\n")})
    body = f"""
  services:
    - {{name: db, image: fake:latest, scope: run, ready: {{tcp: {lis.port}}}, profile: true}}
  targets:
    - {{name: a}}
    - {{name: b}}
"""
    try:
        res = _run(tmp_path, body, engine)
    finally:
        lis.close()
    _clean(engine)
    assert [t.status for t in res.targets] == ["exited", "exited"]
    db = [c for c in engine.calls if c.endswith("-db")]
    assert len(db) == 2 and engine.calls.index(db[0]) == 1  # after the network only
    assert engine.calls[-2] == db[1]  # removed after the last target, then the network
    s, rows = _read(tmp_path)
    assert rows["service/db"].config["scope"] == "run"
    # profile: true: sampled in both targets' sessions, under its one row
    cpu = s.target("service/db").gauge("cpu.percent")
    assert cpu is not None and cpu.count >= 4
    assert rows["service/db"].config["for"] is None

    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    engine = Recording({"db": Script(run_s=0.1, exit_code=1, stdout="no config file\n")})
    body = """
  services:
    - {name: db, image: fake:latest, scope: run, ready: {log: "listening"}}
  targets:
    - {name: a}
    - {name: b}
  scenarios:
    - {name: both, together: [a, b]}
"""
    res = _run(bad_dir, body, engine)
    _clean(engine)
    assert [(t.name, t.status) for t in res.targets] == [
        ("a", "error"),
        ("b", "error"),
        ("both/a", "error"),
        ("both/b", "error"),
    ]
    assert all("no config file" in (t.error or "") for t in res.targets)
    assert not [c for c in engine.calls if "-db" not in c and "network" not in c]  # no app
    s, rows = _read(bad_dir)
    assert s.run.status == "completed"
    assert rows["service/db"].status == "error"


class InterruptWaiting(Recording):
    """Ctrl-C arrives while the runner waits for a service to be ready."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.asked = 0

    def inspect(self, ref: str) -> Any:
        info = super().inspect(ref)
        if info is not None and "edgeprof.service" in info.labels:
            self.asked += 1
            if self.asked == 5:
                raise KeyboardInterrupt
        return info


def test_ctrl_c_while_waiting_for_a_service_removes_everything(tmp_path: Path) -> None:
    engine = InterruptWaiting({"slow": Script(run_s=None)})
    body = f"""
  services:
    - {{name: slow, image: fake:latest, ready: {{tcp: {closed_port()}}}, start_timeout: 30}}
  targets:
    - {{name: a}}
    - {{name: b}}
"""
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, body, engine)
    _clean(engine)
    s, _ = _read(tmp_path)
    assert s.run.status == "interrupted"
    assert s.target("a").status == "interrupted"
    assert s.target("b").status == "not_run"


class InterruptRunning(Recording):
    """Ctrl-C while the app runs (its service up): both are removed, the network too."""

    def wait(self, handle: Handle, timeout: float | None) -> int | None:
        c = self.containers[handle.container_id]
        if "edgeprof.service" not in c.req.labels:
            threading.Timer(0.3, self._interrupt).start()
        return super().wait(handle, timeout)

    def _interrupt(self) -> None:
        import _thread

        _thread.interrupt_main()


def test_ctrl_c_while_the_app_runs_tears_its_services_down(tmp_path: Path) -> None:
    lis = Listener()
    engine = InterruptRunning({"svc": Script(run_s=None), "a": Script(run_s=None)})
    body = f"""
  services:
    - {{name: svc, image: fake:latest, ready: {{tcp: {lis.port}}}}}
  targets:
    - {{name: a}}
"""
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(tmp_path, body, engine)
    finally:
        lis.close()
    _clean(engine)
    _, rows = _read(tmp_path)
    assert rows["a"].status == "interrupted"
    assert rows["a/svc"].status == "exited"


class SeesMembers:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def describe(self, specs: Any) -> None:
        return None

    def write(self, batch: Any) -> None:
        return None

    def event(self, ev: Any) -> None:
        return None

    def member_started(self, info: Any) -> None:
        self.calls.append(("started", info.target))

    def member_ended(self, target: str) -> None:
        self.calls.append(("ended", target))


def test_a_scenario_runs_its_members_together_in_one_session(tmp_path: Path) -> None:
    engine = Recording(
        {
            "a": Script(run_s=0.3),
            "b": Script(run_s=None),
            "c": Script(run_s=0.1),
            "ab/a": Script(run_s=0.3),  # a member's container is labelled with its row's name
            "ab/b": Script(run_s=None),
        }
    )
    sink = SeesMembers()
    body = """
  targets:
    - {name: a}
    - {name: b, timeout: 0.6}
    - {name: c}
  scenarios:
    - {name: ab, together: [a, b]}
"""
    res = _run(tmp_path, body, engine, sinks=[sink])
    _clean(engine)
    got = [(t.name, t.status) for t in res.targets]
    assert got == [
        ("a", "exited"),
        ("b", "timed_out"),
        ("c", "exited"),
        ("ab/a", "exited"),
        ("ab/b", "timed_out"),
    ]
    # alone first, then together: both started before either ended (one session)
    assert sink.calls[-4:] == [
        ("started", "ab/a"),
        ("started", "ab/b"),
        ("ended", "ab/a"),
        ("ended", "ab/b"),
    ]
    together = [c for c in engine.calls if "-ab-" in c]
    assert [c.split(" ")[0] for c in together] == ["start", "start", "stop", "remove", "remove"]
    s, rows = _read(tmp_path)
    for m, base in (("ab/a", "a"), ("ab/b", "b")):
        cfg = rows[m].config
        assert (cfg["scenario"], cfg["base_target"], cfg["together"]) == ("ab", base, ["a", "b"])
        assert s.target(m).gauge("cpu.percent") is not None
        assert rows[m].exit_code in (0, 143)
    # each member its own timeout: a exited on its own well before b's stop
    assert rows["ab/a"].duration_s < 0.5 <= rows["ab/b"].duration_s + 0.1


def test_a_scenario_runs_only_with_all_its_targets_selected(tmp_path: Path) -> None:
    body = """
  targets:
    - {name: a}
    - {name: b}
    - {name: c}
  scenarios:
    - {name: ab, together: [a, b]}
"""
    res = _run(tmp_path, body, Recording(), only_targets=["a", "c"])
    assert [t.name for t in res.targets] == ["a", "c"]
    (tmp_path / "2").mkdir()
    engine = Recording()
    res = _run(tmp_path / "2", body, engine, only_targets=["ab"])
    assert [t.name for t in res.targets] == ["a", "b", "ab/a", "ab/b"]
    _clean(engine)
    with pytest.raises(UserError, match="no target named 'x'.*ab"):
        _run(tmp_path, body, Recording(), only_targets=["x"])


def test_a_missing_service_image_is_one_sentence_before_any_container(tmp_path: Path) -> None:
    engine = Recording()
    body = """
  services:
    - {name: cam, image: not-built:1}
  targets:
    - {name: a}
"""
    with pytest.raises(EngineError, match="image 'not-built:1' of service 'cam'.*never pulls"):
        _run(tmp_path, body, engine)
    assert engine.calls == []


def test_a_service_that_dies_while_its_app_runs_is_recorded(tmp_path: Path) -> None:
    engine = Recording({"flaky": Script(run_s=0.2, exit_code=2), "a": Script(run_s=0.6)})
    body = """
  targets:
    - name: a
      services: [{name: flaky, image: fake:latest}]
"""
    res = _run(tmp_path, body, engine)
    _clean(engine)
    assert res.targets[0].status == "exited"
    _, rows = _read(tmp_path)
    f = rows["a/flaky"]
    assert (f.status, f.exit_code) == ("failed", 2)
    assert "exited with code 2 while a ran" in (f.error or "")


def _logs(tmp: Path, row: Any) -> dict[str, str]:
    store = open_store(f"sqlite:///{tmp}/svc.db", readonly=True)
    try:
        return store.logs(row.id)
    finally:
        store.close()


def test_a_ready_service_removed_as_the_next_fails_keeps_its_row_and_logs(
    tmp_path: Path,
) -> None:
    engine = Recording(
        {
            "up": Script(run_s=None, stdout="up and serving\n"),
            "bad": Script(run_s=0.1, exit_code=1, stdout="bad config\n"),
            "a": Script(run_s=0.2),
        }
    )
    body = """
  targets:
    - name: a
      services:
        - {name: up, image: fake:latest}
        - {name: bad, image: fake:latest, ready: {log: listening}, start_timeout: 5}
"""
    res = _run(tmp_path, body, engine)
    _clean(engine)
    assert res.targets[0].status == "error" and "bad config" in (res.targets[0].error or "")
    s, rows = _read(tmp_path)
    assert [t.name for t in s.targets] == ["a", "a/up", "a/bad"]
    up = rows["a/up"]
    assert up.status == "error" and up.ended_ns is not None
    assert "removed after it was ready, before a started: service 'bad' was not ready" in (
        up.error or ""
    )
    assert up.config["role"] == "service" and up.config["ready_s"] is not None
    assert _logs(tmp_path, up) == {"stdout": "up and serving\n"}
    assert rows["a/bad"].status == "error"
    assert _logs(tmp_path, rows["a/bad"]) == {"stdout": "bad config\n"}


def test_ctrl_c_while_a_second_service_starts_records_both_with_their_logs(
    tmp_path: Path,
) -> None:
    engine = InterruptWaiting(
        {
            "up": Script(run_s=None, stdout="up\n"),
            "slow": Script(run_s=None, stdout="warming up\n"),
        }
    )
    body = f"""
  targets:
    - name: a
      services:
        - {{name: up, image: fake:latest}}
        - {{name: slow, image: fake:latest, ready: {{tcp: {closed_port()}}}, start_timeout: 30}}
"""
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, body, engine)
    _clean(engine)
    s, rows = _read(tmp_path)
    assert s.run.status == "interrupted" and rows["a"].status == "interrupted"
    up, slow = rows["a/up"], rows["a/slow"]
    assert (up.status, slow.status) == ("interrupted", "interrupted")
    assert "interrupted after it was ready" in (up.error or "")
    assert "interrupted while it started" in (slow.error or "")
    assert slow.config["ready_s"] is None and up.ended_ns and slow.ended_ns
    assert _logs(tmp_path, up) == {"stdout": "up\n"}
    assert _logs(tmp_path, slow) == {"stdout": "warming up\n"}


def test_service_rows_begun_before_ctrl_c_do_not_stay_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgeprof.target as target_mod

    begin = target_mod._begin_row
    calls = []

    def begin_then_interrupt(*a: Any, **kw: Any) -> Any:
        row = begin(*a, **kw)
        calls.append(row.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return row

    monkeypatch.setattr(target_mod, "_begin_row", begin_then_interrupt)
    engine = Recording(
        {"one": Script(run_s=None, stdout="one\n"), "two": Script(run_s=None, stdout="two\n")}
    )
    body = """
  targets:
    - name: a
      services:
        - {name: one, image: fake:latest}
        - {name: two, image: fake:latest}
"""
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, body, engine)
    _clean(engine)
    _, rows = _read(tmp_path)
    assert calls == ["a/one", "a/two"]
    assert [n for n in rows if n.startswith("a/")] == ["a/one", "a/two"]  # one row each
    for name, text in (("a/one", "one\n"), ("a/two", "two\n")):
        r = rows[name]
        assert r.status == "interrupted" and r.ended_ns is not None, (name, r.status)
        assert "interrupted after it was ready" in (r.error or "")
        assert _logs(tmp_path, r) == {"stdout": text}


def test_target_selection_names_left_out_scenarios_and_matrix_bases(tmp_path: Path) -> None:
    from edgeprof.target import RunHooks

    class Heard(RunHooks):
        def __init__(self) -> None:
            self.lines: list[str] = []

        def service_note(self, message: str) -> None:
            self.lines.append(message)

    body = """
  targets:
    - {name: a}
    - {name: b, matrix: {cpus: [0.5, 1]}}
  scenarios:
    - {name: ab, together: [a, b-0.5]}
"""
    loaded = parse_spec(SPEC.format(body=body), "svc.yaml")

    def go(d: Path, only: list[str]) -> tuple[RunResult, list[str], list[str]]:
        d.mkdir()
        heard = Heard()
        store = open_store(f"sqlite:///{d}/svc.db")
        try:
            res = run_profile(
                loaded,
                store,
                Recording(),
                RunSettings(reaper=False, only_targets=only),
                hooks=heard,
                caps=HostCaps(ncpu=2),
            )
            notes = [e.message for e in store.events(res.run_id) if e.kind == "note"]
        finally:
            store.close()
        return res, heard.lines, notes

    want = "scenario ab not run: b-0.5 not selected (--target ab runs it with all its targets)"
    res, lines, notes = go(tmp_path / "1", ["a"])
    assert [t.name for t in res.targets] == ["a"]
    assert want in lines and want in notes
    # a matrix target's name selects every target it expands into
    res, lines, notes = go(tmp_path / "2", ["b"])
    assert [t.name for t in res.targets] == ["b-0.5", "b-1"]
    assert "scenario ab not run: a not selected" in " ".join(notes)
    res, lines, notes = go(tmp_path / "3", ["a", "b"])
    assert [t.name for t in res.targets] == ["a", "b-0.5", "b-1", "ab/a", "ab/b-0.5"]
    assert not [n for n in notes if "not run" in n]


def test_service_logs_of_a_repeated_target_by_its_base_name(tmp_path: Path) -> None:
    engine = Recording({"web": Script(run_s=None, stdout="serving\n"), "b1": Script(run_s=0.1)})
    body = """
  targets:
    - name: b1
      repeat: 2
      services: [{name: web, image: fake:latest}]
    - {name: b2}
"""
    res = _run(tmp_path, body, engine)
    _clean(engine)
    assert [t.name for t in res.targets] == ["b1#1", "b1#2", "b2"]
    store = open_store(f"sqlite:///{tmp_path}/svc.db", readonly=True)
    try:
        got = service_logs(store, "latest", "web", "b1")
        assert got == [("b1#1/web", "stdout", "serving\n"), ("b1#2/web", "stdout", "serving\n")]
        assert [g[0] for g in service_logs(store, "latest", "web", "b1#2")] == ["b1#2/web"]
        with pytest.raises(UserError, match="did not serve 'b2'.*b1#1, b1#2"):
            service_logs(store, "latest", "web", "b2")
    finally:
        store.close()
