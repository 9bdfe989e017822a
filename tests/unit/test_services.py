"""Services on the fake engine: readiness probes against real local servers, failures that
name the service and end with its last log lines, nothing left behind; the data-config
that pywaggle's own resolver reads."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeprof.engine.base import ContainerRequest
from edgeprof.engine.fake import FakeEngine, Script
from edgeprof.services import (
    DATA_CONFIG_PATH,
    RunningService,
    ServiceFailed,
    data_config_json,
    network_name,
    start_services,
    stop_services,
)
from edgeprof.spec.models import ServiceSpec

NET = "edgeprof-1-abcdef12"
LABELS = {"edgeprof.run": "1", "edgeprof.run_uid": "abcdef1234"}


def svc(**kw: Any) -> ServiceSpec:
    kw.setdefault("image", "fake:latest")
    return ServiceSpec.model_validate(kw)


def fake(scripts: dict[str, Script] | None = None) -> FakeEngine:
    e = FakeEngine(scripts)
    e.create_network(NET, dict(LABELS))
    return e


def start(e: FakeEngine, *specs: ServiceSpec, **kw: Any) -> list[RunningService]:
    return start_services(e, list(specs), network=NET, labels=LABELS, name_prefix="run1", **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_server() -> Iterator[tuple[int, list[str], dict[str, int]]]:
    """A local HTTP server answering 503 to its first ``fails["n"]`` requests (3), then 200;
    its port, the paths asked for, and ``fails``."""
    asked: list[str] = []
    fails = {"n": 3}

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            code = 503 if len(asked) <= fails["n"] else 200
            body = b"frame"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1], asked, fails
    srv.shutdown()
    srv.server_close()


def test_network_name() -> None:
    assert network_name(12, "0123456789abcdef") == "edgeprof-12-01234567"


def test_request_names_labels_alias_and_network() -> None:
    e = fake()
    spec = svc(
        name="playback",
        image="fake:latest",
        args=["serve", "--port", "8090"],
        env={"A": "1"},
        volumes=["/tmp:/data:ro"],
    )
    seen: list[ContainerRequest] = []
    e.on_start = seen.append
    (rs,) = start(e, spec)
    (req,) = seen
    assert req.name == "run1-playback" and rs.handle.name == "run1-playback"
    assert req.network == NET and req.aliases == ["playback"]
    assert req.labels == {**LABELS, "edgeprof.service": "playback"}
    assert req.command == ["serve", "--port", "8090"]
    assert req.env == {"A": "1"} and req.volumes == ["/tmp:/data:ro"]
    assert rs.ready_s >= 0
    logs = stop_services(e, [rs])
    assert logs == {"playback": ("hello from the fake container\n", "")}
    assert e.running() == []


def test_tcp_probe_waits_for_a_listener() -> None:
    port = free_port()
    e = fake({"db": Script(run_s=None)})
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def listen_later() -> None:
        time.sleep(0.4)
        listener.bind(("127.0.0.1", port))
        listener.listen()

    threading.Thread(target=listen_later, daemon=True).start()
    events: list[str] = []
    try:
        (rs,) = start(
            e,
            svc(name="db", ready={"tcp": port}, start_timeout=5),
            on_event=lambda m, d: events.append(m),
        )
        assert 0.4 <= rs.ready_s < 2.0
        assert events[0].startswith("service db started (fake:latest) on network " + NET)
        assert events[0].endswith(f"waiting up to 5 s for a TCP connection to port {port}")
        assert events[1].startswith("service db ready after")
        stop_services(e, [rs])
    finally:
        listener.close()
    assert e.running() == []


def test_http_probe_needs_a_2xx(http_server: tuple[int, list[str], dict[str, int]]) -> None:
    port, asked, _ = http_server
    e = fake({"playback": Script(run_s=None)})
    (rs,) = start(
        e, svc(name="playback", ready={"http": {"port": port, "path": "/bottom/image.jpg"}})
    )
    assert asked == ["/bottom/image.jpg"] * 4  # three 503s, then the 200
    stop_services(e, [rs])
    assert e.running() == []


def test_http_probe_times_out_with_the_last_answer(
    http_server: tuple[int, list[str], dict[str, int]],
) -> None:
    port, asked, fails = http_server
    fails["n"] = 10**9  # never 2xx
    e = fake({"playback": Script(run_s=None)})
    spec = svc(name="playback", ready={"http": {"port": port, "path": "/x"}}, start_timeout=0.6)
    t0 = time.monotonic()
    with pytest.raises(ServiceFailed) as ei:
        start(e, spec)
    took = time.monotonic() - t0
    assert 0.6 <= took < 1.5 and len(asked) >= 3
    msg = str(ei.value)
    assert msg.startswith(
        f"service 'playback' (fake:latest) was not ready after 0.6 s waiting for a 2xx answer "
        f"to GET :{port}/x (last: HTTP 503 Service Unavailable at 127.0.0.1); "
        "its last 1 log line(s):\n"
    )
    assert ei.value.service == "playback"
    assert e.running() == []

    refused = svc(name="playback", ready={"http": {"port": free_port()}}, start_timeout=0.3)
    with pytest.raises(ServiceFailed, match=r"\(last: connection refused at 127.0.0.1\)"):
        start(e, refused)
    assert e.running() == []


def test_log_probe_matches_a_line() -> None:
    e = fake({"broker": Script(run_s=None, stdout="starting\nbroker listening on 1883\n")})
    (rs,) = start(e, svc(name="broker", ready={"log": r"^broker listening on \d+$"}))
    stop_services(e, [rs])
    e2 = fake({"broker": Script(run_s=None, stdout="starting\n")})
    with pytest.raises(ServiceFailed, match=r"waiting for a log line matching"):
        start(e2, svc(name="broker", ready={"log": "listening"}, start_timeout=0.3))
    assert e2.running() == []


def test_healthcheck_probe() -> None:
    e = fake({"h": Script(run_s=None, health=[(0, "starting"), (0.3, "healthy")])})
    (rs,) = start(e, svc(name="h", ready={"healthcheck": True}))
    assert rs.ready_s >= 0.3
    stop_services(e, [rs])

    e = fake({"h": Script(run_s=None)})
    t0 = time.monotonic()
    with pytest.raises(ServiceFailed) as ei:
        start(e, svc(name="h", ready={"healthcheck": True}, start_timeout=30))
    assert time.monotonic() - t0 < 1
    assert "image fake:latest has no HEALTHCHECK" in str(ei.value)
    assert e.running() == []

    # unhealthy is not final: health recovers, and an image without a start period reports
    # unhealthy while it starts
    steps = [(0, "starting"), (0.1, "unhealthy"), (0.4, "healthy")]
    e = fake({"h": Script(run_s=None, health=steps)})
    (rs,) = start(e, svc(name="h", ready={"healthcheck": True}, start_timeout=30))
    assert 0.4 <= rs.ready_s < 1.5
    stop_services(e, [rs])

    e = fake({"h": Script(run_s=None, health=[(0, "starting"), (0.1, "unhealthy")])})
    t0 = time.monotonic()
    with pytest.raises(ServiceFailed) as ei:
        start(e, svc(name="h", ready={"healthcheck": True}, start_timeout=0.6))
    assert 0.6 <= time.monotonic() - t0 < 1.5
    assert (
        "was not ready after 0.6 s waiting for its HEALTHCHECK to report healthy "
        "(last: health: unhealthy); Docker runs a HEALTHCHECK every 30 s"
    ) in str(ei.value)
    assert e.running() == []


def test_exit_before_ready_fails_at_once_with_code_and_last_20_lines() -> None:
    out = "".join(f"line {i}\n" for i in range(1, 26))
    e = fake({"web": Script(run_s=0.2, exit_code=3, stdout=out)})
    t0 = time.monotonic()
    with pytest.raises(ServiceFailed) as ei:
        start(e, svc(name="web", ready={"tcp": free_port()}, start_timeout=30))
    assert time.monotonic() - t0 < 2
    msg = str(ei.value)
    assert "service 'web' (fake:latest) exited with code 3 after" in msg
    assert "before it was ready (waiting for a TCP connection to port" in msg
    tail = msg.split("its last 20 log line(s):\n", 1)[1]
    assert tail.splitlines() == [f"line {i}" for i in range(6, 26)]
    assert ei.value.logs == (out, "")
    assert e.running() == []


def test_never_ready_fails_after_its_timeout() -> None:
    e = fake({"web": Script(run_s=None, stdout="only line\n")})
    t0 = time.monotonic()
    with pytest.raises(ServiceFailed) as ei:
        start(e, svc(name="web", ready={"tcp": free_port()}, start_timeout=0.5))
    took = time.monotonic() - t0
    assert 0.5 <= took < 1.5 and 0.5 <= ei.value.elapsed_s < 1.5
    assert str(ei.value).endswith("; its last 1 log line(s):\nonly line")


def test_a_failure_removes_what_the_call_started() -> None:
    e = fake({"a": Script(run_s=None), "b": Script(run_s=0.1, exit_code=1, stdout="")})
    with pytest.raises(ServiceFailed) as ei:
        start(e, svc(name="a"), svc(name="b", ready={"tcp": free_port()}))
    assert str(ei.value).endswith("; it wrote no log lines")
    assert e.running() == []
    assert [c for c in e.calls if c.startswith(("start", "remove"))] == [
        "start run1-a",
        "start run1-b",
        "remove run1-b",
        "remove run1-a",
    ]


def test_an_engine_refusal_is_a_service_failure() -> None:
    e = fake({"a": Script(run_s=None), "b": Script(start_error="no such image")})
    with pytest.raises(ServiceFailed, match=r"^service 'b' \(fake:latest\) could not start: "):
        start(e, svc(name="a"), svc(name="b"))
    assert e.running() == []


def test_ctrl_c_while_starting_removes_them() -> None:
    e = fake({"a": Script(run_s=None), "b": Script(run_s=None)})

    def interrupt(message: str, data: dict[str, Any]) -> None:
        if data["service"] == "b":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        start(e, svc(name="a"), svc(name="b"), on_event=interrupt)
    assert e.running() == []


def test_stop_removes_every_one_even_when_one_removal_fails() -> None:
    e = fake({"a": Script(run_s=None, stdout="a out\n"), "b": Script(run_s=None)})
    running = start(e, svc(name="a"), svc(name="b"))
    real_remove = e.remove

    def remove(handle: Any) -> None:
        real_remove(handle)
        if handle.name == "run1-b":
            raise RuntimeError("engine hiccup")

    e.remove = remove  # type: ignore[method-assign]
    told: list[str] = []
    logs = stop_services(e, running, on_event=lambda m, d: told.append(m))
    assert list(logs) == ["a", "b"] and logs["a"] == ("a out\n", "")
    assert e.running() == []
    assert told == ["service b: could not remove container run1-b: engine hiccup"]


def test_fake_networks_are_recorded() -> None:
    e = FakeEngine()
    e.create_network("n1", {"edgeprof.run_uid": "u"})
    assert e.networks == {"n1": {"edgeprof.run_uid": "u"}}
    e.remove_network("n1")
    e.remove_network("n1")  # gone already: no error
    assert e.networks == {} and e.network_log == ["create n1", "remove n1"]
    from edgeprof.errors import EngineError

    with pytest.raises(EngineError, match="network n1 not found"):
        e.start(ContainerRequest(image="fake:latest", name="x", command=[], network="n1"))


def test_data_config_shape() -> None:
    doc = json.loads(
        data_config_json(
            {
                "bottom_camera": "http://playback:8090/bottom/live.mp4",
                "top_image": "http://playback:8090/top/image.jpg",
            }
        )
    )
    assert doc == [
        {
            "match": {"id": "bottom_camera"},
            "handler": {"type": "video", "args": {"url": "http://playback:8090/bottom/live.mp4"}},
        },
        {
            "match": {"id": "top_image"},
            "handler": {"type": "image", "args": {"url": "http://playback:8090/top/image.jpg"}},
        },
    ]
    assert DATA_CONFIG_PATH == "/run/waggle/data-config.json"


# pywaggle's own resolvers, in a fresh interpreter that reads $WAGGLE_DATA_CONFIG_PATH at
# import as a plugin does. waggle.data.vision imports cv2 and ffmpeg at its top but its
# resolver uses neither: where they are not installed here, empty modules stand in for
# those two imports only.
_RESOLVE = """
import importlib.util, json, sys, types
for mod in ("cv2", "ffmpeg"):
    if importlib.util.find_spec(mod) is None:
        sys.modules[mod] = types.ModuleType(mod)
from waggle.data.vision import resolve_device
from waggle.data import data_shim
match = data_shim.find_match({"id": "bottom_camera"})
print(json.dumps({
    "camera": resolve_device("bottom_camera"),
    "image": resolve_device("top_image"),
    "shim": [match["handler"]["type"], match["handler"]["args"]],
}))
"""


def test_pywaggle_resolves_the_stream_name(tmp_path: Path) -> None:
    pytest.importorskip("waggle.data.data_shim", reason="pywaggle is not installed")
    cfg = tmp_path / "data-config.json"
    cfg.write_text(
        data_config_json(
            {
                "bottom_camera": "http://playback:8090/bottom/live.mp4",
                "top_image": "http://playback:8090/top/image.jpg",
            }
        )
    )
    res = subprocess.run(
        [sys.executable, "-c", _RESOLVE],
        capture_output=True,
        text=True,
        env={**os.environ, "WAGGLE_DATA_CONFIG_PATH": str(cfg)},
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got == {
        "camera": "http://playback:8090/bottom/live.mp4",
        "image": "http://playback:8090/top/image.jpg",
        "shim": ["video", {"url": "http://playback:8090/bottom/live.mp4"}],
    }


def test_docker_request_joins_the_network_with_aliases() -> None:
    import docker

    from edgeprof.engine.docker import DockerEngine

    e = DockerEngine.__new__(DockerEngine)
    e._docker = docker
    e.client = docker.DockerClient(base_url="unix:///nonexistent.sock", version="1.41")
    req = ContainerRequest(image="i", name="n", command=[], network=NET, aliases=["playback"])
    kw = e._create_kwargs(req)
    assert kw["network"] == NET and "network_mode" not in kw
    assert kw["networking_config"][NET]["Aliases"] == ["playback"]
    for builtin in ("none", "host", "bridge", "container:abc"):
        kw = e._create_kwargs(ContainerRequest(image="i", name="n", command=[], network=builtin))
        assert kw["network_mode"] == builtin and "networking_config" not in kw


# -- the HTTP probe: one status line within a per-try deadline, never the body --------------


@pytest.fixture
def raw_server() -> Iterator[Any]:
    """``serve(answer)``: a local TCP server whose connections each run ``answer(conn)``
    after reading the request's first line; returns (port, requests seen)."""
    stop = threading.Event()
    listeners: list[socket.socket] = []

    def serve(answer: Any) -> tuple[int, list[bytes]]:
        seen: list[bytes] = []
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(16)
        ls.settimeout(0.1)
        listeners.append(ls)

        def one(conn: socket.socket) -> None:
            with conn:
                conn.settimeout(5)
                try:
                    seen.append(conn.recv(4096))
                    answer(conn, stop)
                except OSError:
                    pass

        def loop() -> None:
            while not stop.is_set():
                try:
                    conn, _ = ls.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                threading.Thread(target=one, args=(conn,), daemon=True).start()

        threading.Thread(target=loop, daemon=True).start()
        return int(ls.getsockname()[1]), seen

    yield serve
    stop.set()
    for ls in listeners:
        ls.close()


def _trickle(head: bytes, every_s: float) -> Any:
    """Send ``head``, then one byte every ``every_s`` until the client goes (a stream)."""

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(head)
        while not stop.wait(every_s):
            conn.sendall(b"x")

    return answer


def test_http_probe_is_ready_on_a_streaming_2xx_without_reading_the_body(raw_server: Any) -> None:
    # a live stream (/bottom/live.mp4): the status line, then a body that never ends
    for head in (b"HTTP/1.0 200 OK\r\n\r\n", b"HTTP/1.1 206 Partial Content\r\nContent-Ty"):
        port, seen = raw_server(_trickle(head, 0.2))
        e = fake({"playback": Script(run_s=None)})
        spec = svc(name="playback", ready={"http": {"port": port, "path": "/bottom/live.mp4"}})
        (rs,) = start(e, spec)
        assert rs.ready_s < 0.5, rs.ready_s
        stop_services(e, [rs])
        assert seen[0].startswith(b"GET /bottom/live.mp4 HTTP/1.1\r\nHost: 127.0.0.1:")
        assert b"Connection: close\r\n" in seen[0]
    assert e.running() == []


def test_http_probe_that_trickles_its_status_line_fails_within_the_timeout(
    raw_server: Any,
) -> None:
    # one byte a second: no try may wait past its own deadline (2 s, less near the end)
    port, _ = raw_server(_trickle(b"H", 1.0))
    e = fake({"playback": Script(run_s=None)})
    spec = svc(name="playback", ready={"http": {"port": port}}, start_timeout=1.5)
    t0 = time.monotonic()
    with pytest.raises(ServiceFailed) as ei:
        start(e, spec)
    took = time.monotonic() - t0
    assert 1.5 <= took < 1.5 + 0.5, took
    assert "(last: timed out at 127.0.0.1)" in str(ei.value)
    assert e.running() == []


def test_http_probe_redirect_and_garbage_are_not_ready(raw_server: Any) -> None:
    def once(data: bytes) -> Any:
        def answer(conn: socket.socket, stop: threading.Event) -> None:
            conn.sendall(data)

        return answer

    for data, last in (
        (b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n", "HTTP 302 Found"),
        (b"SSH-2.0-OpenSSH\r\n", "not an HTTP answer: 'SSH-2.0-OpenSSH\\r'"),
        (b"", "closed without an answer"),
    ):
        port, _ = raw_server(once(data))
        e = fake({"web": Script(run_s=None)})
        with pytest.raises(ServiceFailed) as ei:
            start(e, svc(name="web", ready={"http": {"port": port}}, start_timeout=0.3))
        assert f"(last: {last} at 127.0.0.1)" in str(ei.value)
        # the address answered: no hint about engines whose networks this host cannot reach
        assert "connect from this host" not in str(ei.value)
        assert e.running() == []


# -- the log probe: line by line, only new lines -----------------------------------------------


def test_log_probe_matches_within_one_line_only() -> None:
    e = fake({"broker": Script(run_s=None, stdout="foo\nbar\n")})
    with pytest.raises(ServiceFailed, match="waiting for a log line matching 'foo\\\\\\\\nbar'"):
        start(e, svc(name="broker", ready={"log": r"foo\nbar"}, start_timeout=0.3))
    with pytest.raises(ServiceFailed):
        start(e, svc(name="broker", ready={"log": r"^foo$(?s:.)*^bar$"}, start_timeout=0.3))
    (rs,) = start(e, svc(name="broker", ready={"log": r"^bar$"}))
    stop_services(e, [rs])
    assert e.running() == []


def _rfc3339(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


class ChattyEngine(FakeEngine):
    """A fake whose service writes 5000 timestamped lines at once, then ``ready`` on stderr
    after 0.3 s; it answers ``logs_since`` like Docker (lines at or after the time given)."""

    def __init__(self) -> None:
        super().__init__({"chatty": Script(run_s=None)})
        self.t0 = time.time_ns()
        self.returned: list[int] = []
        self.full_fetches = 0

    def _lines(self, stream: int) -> list[tuple[int, str]]:
        if stream == 0:
            return [(self.t0 + i, f"noise {i}") for i in range(5000)]
        now = time.time_ns()
        return [(self.t0 + 300_000_000, "ready")] if now - self.t0 >= 300_000_000 else []

    def logs_since(self, handle: Any, since_ns: tuple[int | None, int | None]) -> tuple[str, str]:
        texts = []
        for k in (0, 1):
            lines = [
                f"{_rfc3339(t)} {x}\n"
                for t, x in self._lines(k)
                if since_ns[k] is None or t >= since_ns[k]  # type: ignore[operator]
            ]
            self.returned.append(len(lines))
            texts.append("".join(lines))
        return texts[0], texts[1]

    def logs(self, handle: Any) -> tuple[str, str]:
        self.full_fetches += 1
        return self.logs_since(handle, (None, None))


def test_log_probe_fetches_only_new_lines_and_strips_timestamps() -> None:
    e = ChattyEngine()
    e.create_network(NET, dict(LABELS))
    (rs,) = start(e, svc(name="chatty", ready={"log": r"^ready$"}))
    assert 0.3 <= rs.ready_s < 1.0
    stdout_fetches = e.returned[0::2]
    assert stdout_fetches[0] == 5000 and len(stdout_fetches) >= 3
    assert all(n == 1 for n in stdout_fetches[1:])  # the last line seen, again; no more
    assert e.full_fetches == 0
    stop_services(e, [rs])


# -- engine failures and HEALTHCHECKs ---------------------------------------------------------


def test_an_engine_failure_while_waiting_is_a_service_failure() -> None:
    from edgeprof.errors import EngineError

    class Failing(FakeEngine):
        def health_status(self, handle: Any) -> str | None:
            raise EngineError("cannot inspect container x: connection reset")

    e = Failing({"h": Script(run_s=None, health=[(0, "starting")])})
    e.create_network(NET, dict(LABELS))
    with pytest.raises(ServiceFailed) as ei:
        start(e, svc(name="h", ready={"healthcheck": True}))
    assert ei.value.service == "h"
    assert str(ei.value).startswith(
        "service 'h' (fake:latest) could not be watched while it started (its HEALTHCHECK to "
        "report healthy): cannot inspect container x: connection reset; its last 1 log line(s)"
    )
    assert e.running() == []


# -- engines whose networks this host cannot reach ---------------------------------------------


def test_host_probe_caveat_names_remote_rootless_and_desktop_engines() -> None:
    from edgeprof.services import host_probe_caveat

    class Eng(FakeEngine):
        def __init__(self, **attrs: Any) -> None:
            super().__init__()
            self.__dict__.update(attrs)

    assert host_probe_caveat(FakeEngine()) is None
    for address in ("ssh://me@node", "tcp://10.0.0.5:2376"):
        caveat = host_probe_caveat(Eng(local=False, address=address))
        assert caveat == f"the engine is not on this host ({address})"
    for address in ("tcp://127.0.0.1:2375", "tcp://localhost:2375", "tcp://[::1]:2375"):
        assert host_probe_caveat(Eng(local=False, address=address)) is None
    rootless = Eng(local=True, info={"SecurityOptions": ["name=seccomp", "name=rootless"]})
    assert "rootless" in str(host_probe_caveat(rootless))
    desktop = Eng(local=True, info={"OperatingSystem": "Docker Desktop"})
    assert "Docker Desktop" in str(host_probe_caveat(desktop))
    assert host_probe_caveat(Eng(local=True, info={"OperatingSystem": "Ubuntu"})) is None


def test_a_probe_from_a_host_that_cannot_reach_the_service_says_how_to_fix_it() -> None:
    class Remote(FakeEngine):
        local = False
        address = "ssh://me@node"

    e = Remote({"web": Script(run_s=None)})
    e.create_network(NET, dict(LABELS))
    events: list[str] = []
    with pytest.raises(ServiceFailed) as ei:
        start(
            e,
            svc(name="web", ready={"tcp": free_port()}, start_timeout=0.3),
            on_event=lambda m, d: events.append(m),
        )
    fix = "use ready: {log: REGEX} or ready: {healthcheck: true}, which work with any engine"
    assert (
        "(last: connection refused at 127.0.0.1); the engine is not on this host "
        f"(ssh://me@node), and tcp/http probes connect from this host: {fix}"
    ) in str(ei.value)
    assert any("the engine is not on this host" in m and fix in m for m in events)
    # a local engine that gives the container no address this host could try
    local = fake({"web": Script(run_s=None, ip=None)})
    with pytest.raises(ServiceFailed) as ei:
        start(local, svc(name="web", ready={"tcp": 8090}, start_timeout=0.3))
    assert (
        f"(last: no address on network {NET}); this host never reached the container's "
        f"address, and tcp/http probes connect from this host: {fix}"
    ) in str(ei.value)
    assert local.running() == [] and e.running() == []
