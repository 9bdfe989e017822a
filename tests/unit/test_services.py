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

    e = fake({"h": Script(run_s=None, health=[(0, "starting"), (0.1, "unhealthy")])})
    with pytest.raises(ServiceFailed, match="reported unhealthy by its HEALTHCHECK"):
        start(e, svc(name="h", ready={"healthcheck": True}, start_timeout=30))
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
