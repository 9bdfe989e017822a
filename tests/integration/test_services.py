"""Services on the real engine: a busybox web server on a private network, ready by HTTP,
TCP, a log line or its image's HEALTHCHECK; failures that end with its last log lines;
another container reaching it by its alias; the reaper and ``edgeprof cleanup`` removing a
run's network after its containers. After each test no container or network carrying the
test's labels is left."""

from __future__ import annotations

import io
import re
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from edgeprof.engine.base import ContainerRequest
from edgeprof.engine.docker import DockerEngine
from edgeprof.owner import owner_info
from edgeprof.reaper import OWNER_LABEL, RUN_UID_LABEL, cleanup, reap_run
from edgeprof.services import (
    ServiceFailed,
    network_name,
    start_services,
    stop_services,
)
from edgeprof.spec.models import ServiceSpec

pytestmark = pytest.mark.integration

BUSYBOX = "edgeprof-test/busybox:latest"
HEALTHY = "edgeprof-test/busybox-health:latest"
FLAKY = "edgeprof-test/busybox-flaky-health:latest"
# serves /w/x ("hello") on 8090 in the foreground; busybox httpd logs nothing by itself
WEB = [
    "sh",
    "-c",
    "mkdir -p /w && echo hello > /w/x && echo serving && exec httpd -f -p 8090 -h /w",
]


class Run:
    """A run's identity on the engine: its labels and its network."""

    def __init__(self, eng: DockerEngine) -> None:
        self.engine = eng
        self.uid = secrets.token_hex(8)
        self.labels = {"edgeprof.run": "0", RUN_UID_LABEL: self.uid, "edgeprof.test": "services"}
        self.network = network_name(0, self.uid)

    def start(self, *specs: ServiceSpec, **kw: Any) -> Any:
        return start_services(
            self.engine,
            list(specs),
            network=self.network,
            labels=self.labels,
            name_prefix=f"edgeprof-t{self.uid[:6]}",
            **kw,
        )

    def left(self) -> tuple[list[str], list[str]]:
        """Containers and networks that carry this run's uid."""
        api = self.engine.client.api
        flt = {"label": [f"{RUN_UID_LABEL}={self.uid}"]}
        cs = [c["Names"][0] for c in api.containers(all=True, filters=flt)]
        ns = [n["Name"] for n in api.networks(filters=flt)]
        return cs, ns


@pytest.fixture
def run(engine: str) -> Iterator[Run]:
    eng = DockerEngine()
    r = Run(eng)
    eng.create_network(r.network, r.labels)
    try:
        yield r
    finally:
        eng.remove_network(r.network)
        left = r.left()
        eng.close()
    assert left == ([], []), f"left behind: {left}"


def svc(**kw: Any) -> ServiceSpec:
    kw.setdefault("image", BUSYBOX)
    kw.setdefault("name", "web")
    kw.setdefault("args", WEB)
    return ServiceSpec.model_validate(kw)


def client_get(r: Run, url: str) -> tuple[int | None, str]:
    """Another container on the run's network fetches ``url``: (exit code, output)."""
    eng = r.engine
    h = eng.start(
        ContainerRequest(
            image=BUSYBOX,
            name=f"edgeprof-t{r.uid[:6]}-client",
            command=["wget", "-qO-", url],
            labels=r.labels,
            network=r.network,
        )
    )
    try:
        code = eng.wait(h, 30)
        out, err = eng.logs(h)
    finally:
        eng.remove(h)
    return code, (out + err)


def _plain(text: str) -> str:
    return "\n".join(line.split(" ", 1)[-1] for line in text.splitlines())


def test_http_probe_and_alias(run: Run) -> None:
    events: list[str] = []
    t0 = time.monotonic()
    running = run.start(
        svc(ready={"http": {"port": 8090, "path": "/x"}}, start_timeout=30),
        on_event=lambda m, d: events.append(m),
    )
    (rs,) = running
    took = time.monotonic() - t0
    print(f"\nhttp probe: ready_s={rs.ready_s:.3f} (start_services took {took:.3f} s)")
    assert 0 < rs.ready_s <= took < 30
    assert "ready after" in events[-1]
    # the address the probe used answers; another container reaches it by its alias
    assert run.engine.container_ip(rs.handle, run.network)
    code, out = client_get(run, "http://web:8090/x")
    assert (code, _plain(out).strip()) == (0, "hello")
    logs = stop_services(run.engine, running)
    assert "serving" in logs["web"][0]
    assert run.left()[0] == []


def test_tcp_probe(run: Run) -> None:
    (rs,) = running = run.start(svc(ready={"tcp": 8090}, start_timeout=30))
    print(f"\ntcp probe: ready_s={rs.ready_s:.3f}")
    code, out = client_get(run, "http://web:8090/x")
    assert (code, _plain(out).strip()) == (0, "hello")
    stop_services(run.engine, running)


def test_log_probe(run: Run) -> None:
    args = ["sh", "-c", "echo warming up; sleep 0.5; echo 'listening on :1883' >&2; sleep 600"]
    (rs,) = running = run.start(
        svc(name="broker", args=args, ready={"log": r"^listening on :\d+$"}, start_timeout=30)
    )
    assert 0.5 <= rs.ready_s < 10
    logs = stop_services(run.engine, running)
    assert "listening on :1883" in logs["broker"][1]


def test_never_ready_fails_within_its_timeout_with_its_last_lines(run: Run) -> None:
    args = ["sh", "-c", "for i in $(seq 1 30); do echo line $i; done; sleep 600"]
    t0 = time.monotonic()
    with pytest.raises(ServiceFailed) as ei:
        run.start(svc(args=args, ready={"tcp": 8090}, start_timeout=2))
    took = time.monotonic() - t0
    print(f"\nnever ready: failed after {took:.2f} s (start_timeout 2)")
    assert 2 <= took < 6
    msg = str(ei.value)
    assert re.match(
        rf"service 'web' \({BUSYBOX}\) was not ready after 2 s waiting for a TCP connection to "
        r"port 8090 \(last: connection refused at \d+\.\d+\.\d+\.\d+\); its last 20 log "
        r"line\(s\):\n",
        msg,
    ), msg
    assert msg.splitlines()[-20:] == [f"line {i}" for i in range(11, 31)]
    assert run.left()[0] == []


def test_exit_before_ready_fails_at_once(run: Run) -> None:
    args = ["sh", "-c", "echo cannot open /dev/video0 >&2; exit 7"]
    t0 = time.monotonic()
    with pytest.raises(ServiceFailed) as ei:
        run.start(svc(name="cam", args=args, ready={"tcp": 8090}, start_timeout=60))
    took = time.monotonic() - t0
    assert took < 10
    msg = str(ei.value)
    assert "service 'cam' (edgeprof-test/busybox:latest) exited with code 7 after" in msg
    assert msg.endswith("its last 1 log line(s):\ncannot open /dev/video0")
    assert run.left()[0] == []


def test_a_failure_removes_the_services_started_before(run: Run) -> None:
    with pytest.raises(ServiceFailed):
        run.start(
            svc(ready={"tcp": 8090}),
            svc(name="late", args=["sleep", "600"], ready={"tcp": 1}, start_timeout=1),
        )
    assert run.left()[0] == []


def _healthy_image(eng: DockerEngine) -> None:
    """A busybox web server whose image has a HEALTHCHECK (built from a Dockerfile here)."""
    dockerfile = (
        f"FROM {BUSYBOX}\n"
        "RUN mkdir -p /w && echo hello > /w/x\n"
        'CMD ["httpd", "-f", "-p", "8090", "-h", "/w"]\n'
        "HEALTHCHECK --interval=1s --timeout=10s --retries=5 "
        "CMD wget -qO- http://127.0.0.1:8090/x || exit 1\n"
    )
    eng.client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=HEALTHY, rm=True, forcerm=True
    )


def test_healthcheck_probe(run: Run) -> None:
    _healthy_image(run.engine)
    (rs,) = running = run.start(
        svc(image=HEALTHY, args=[], ready={"healthcheck": True}, start_timeout=30)
    )
    print(f"\nhealthcheck probe: ready_s={rs.ready_s:.3f}")
    assert run.engine.health_status(rs.handle) == "healthy"
    stop_services(run.engine, running)
    t0 = time.monotonic()
    with pytest.raises(ServiceFailed) as ei:
        run.start(svc(ready={"healthcheck": True}, start_timeout=30))
    assert time.monotonic() - t0 < 10
    assert f"image {BUSYBOX} has no HEALTHCHECK" in str(ei.value)
    assert run.left()[0] == []


def test_remove_network_detaches_and_ignores_a_missing_one(engine: str) -> None:
    eng = DockerEngine()
    try:
        uid = secrets.token_hex(8)
        name = network_name(0, uid)
        eng.create_network(name, {RUN_UID_LABEL: uid})
        h = eng.start(
            ContainerRequest(
                image=BUSYBOX,
                name=f"edgeprof-t{uid[:6]}",
                command=["sleep", "600"],
                labels={RUN_UID_LABEL: uid},
                network=name,
                aliases=["a"],
            )
        )
        eng.remove_network(name)  # still attached: detached, then removed
        eng.remove(h)
        eng.remove_network(name)  # gone: no error
        assert eng.client.api.networks(names=[name]) == []
    finally:
        eng.close()


def _objects(uid: str) -> tuple[str, str]:
    eng = DockerEngine()
    try:
        labels = {RUN_UID_LABEL: uid, OWNER_LABEL: "{}"}
        net = network_name(0, uid)
        eng.create_network(net, labels)
        h = eng.start(
            ContainerRequest(
                image=BUSYBOX,
                name=f"edgeprof-t{uid[:6]}",
                command=["sleep", "600"],
                labels=labels,
                network=net,
                aliases=["svc"],
            )
        )
        return h.name, net
    finally:
        eng.close()


def test_reaper_removes_the_network_after_its_containers(engine: str) -> None:
    uid = secrets.token_hex(8)
    name, net = _objects(uid)
    eng = DockerEngine()
    # a container without the run's labels on the network does not keep it alive
    stranger = eng.start(
        ContainerRequest(
            image=BUSYBOX, name=f"edgeprof-t{uid[:6]}-x", command=["sleep", "600"], network=net
        )
    )
    try:
        out = reap_run(uid, 0, 0, None)
        assert out.errors == []
        assert out.containers == [name] and out.networks == [net]
        assert eng.client.api.networks(names=[net]) == []
        flt = {"label": [f"{RUN_UID_LABEL}={uid}"]}
        assert eng.client.api.containers(all=True, filters=flt) == []
    finally:
        eng.remove(stranger)
        eng.close()


def test_cleanup_removes_a_dead_owners_network(engine: str) -> None:
    import json

    import docker

    p = subprocess.Popen(["sleep", "30"])
    owner = json.dumps(owner_info(p.pid))
    p.kill()
    p.wait()
    uid = secrets.token_hex(8)
    eng = DockerEngine()
    net = network_name(0, uid)
    try:
        labels = {RUN_UID_LABEL: uid, OWNER_LABEL: owner}
        eng.create_network(net, labels)
        h = eng.start(
            ContainerRequest(
                image=BUSYBOX,
                name=f"edgeprof-t{uid[:6]}",
                command=["sleep", "600"],
                labels=labels,
                network=net,
            )
        )
        client = docker.from_env(timeout=30)
        try:
            out = cleanup(client, None)
        finally:
            client.close()
        assert h.name in out.containers and net in out.networks
        assert eng.client.api.networks(names=[net]) == []
    finally:
        eng.remove_network(net)
        eng.close()


def _nc_server(script: str) -> list[str]:
    """busybox ``nc`` answering every connection on 8090 with ``script`` (sh)."""
    return [
        "sh",
        "-c",
        f"printf '%s\\n' {shlex.quote(script)} > /a.sh && chmod +x /a.sh && echo serving "
        "&& exec nc -ll -p 8090 -e /a.sh",
    ]


@pytest.mark.parametrize(
    "answer",
    [
        # a live stream: the status line, then one byte a second, never ending
        "printf 'HTTP/1.0 200 OK\\r\\n\\r\\n'; while true; do printf x; sleep 1; done",
        # 200 and headers, then nothing for minutes
        "printf 'HTTP/1.1 200 OK\\r\\nContent-Type: video/mp4\\r\\n\\r\\n'; sleep 600",
    ],
    ids=["trickled-body", "pause"],
)
def test_http_probe_is_ready_on_a_stream_without_reading_its_body(run: Run, answer: str) -> None:
    t0 = time.monotonic()
    (rs,) = running = run.start(
        svc(
            name="playback",
            args=_nc_server(answer),
            ready={"http": {"port": 8090, "path": "/bottom/live.mp4"}},
            start_timeout=30,
        )
    )
    took = time.monotonic() - t0
    print(f"\nstream http probe: ready_s={rs.ready_s:.3f} (call {took:.3f} s)")
    assert rs.ready_s < 5
    stop_services(run.engine, running)


def test_http_probe_of_a_server_trickling_its_status_line_fails_in_time(run: Run) -> None:
    answer = "for c in H T T P / 1 . 0 ' ' 2 0 0; do printf \"$c\"; sleep 1; done"
    t0 = time.monotonic()
    with pytest.raises(ServiceFailed) as ei:
        run.start(svc(args=_nc_server(answer), ready={"http": {"port": 8090}}, start_timeout=3))
    took = time.monotonic() - t0
    print(f"\ntrickled status line: failed after {took:.2f} s (start_timeout 3)")
    assert 3 <= took < 3 + 2.5
    assert re.search(r"\(last: timed out at \d+\.\d+\.\d+\.\d+\)", str(ei.value)), ei.value
    assert run.left()[0] == []


def test_log_probe_of_a_chatty_service_reads_new_lines_only(run: Run) -> None:
    # 20000 lines at once, then the line it is ready on, 1 s later, on stderr
    args = [
        "sh",
        "-c",
        "seq 1 20000 | sed 's/^/noise /'; sleep 1; echo 'ready: listening' >&2; sleep 600",
    ]
    fetched: list[int] = []
    eng = run.engine
    real = eng.logs_since

    def counting(handle: Any, since_ns: tuple[int | None, int | None]) -> tuple[str, str]:
        out, err = real(handle, since_ns)
        fetched.append(out.count("\n"))
        return out, err

    eng.logs_since = counting  # type: ignore[method-assign]
    try:
        (rs,) = running = run.start(
            svc(name="chatty", args=args, ready={"log": r"^ready: listening$"}, start_timeout=30)
        )
    finally:
        del eng.logs_since
    print(f"\nchatty log probe: ready_s={rs.ready_s:.3f}, stdout lines per fetch {fetched}")
    assert 1 <= rs.ready_s < 10
    # each line fetched about once (lines the engine stamped alike with the last one seen
    # come again), not all 20000 on every poll
    assert sum(fetched) < 2 * 20000 and fetched[-1] < 1000, fetched
    logs = stop_services(eng, running)
    assert logs["chatty"][0].count("\n") == 20000


def test_healthcheck_probe_waits_through_unhealthy(run: Run) -> None:
    """An image without a start period reports unhealthy while it starts: not a failure."""
    dockerfile = (
        f"FROM {BUSYBOX}\n"
        'CMD ["sh", "-c", "sleep 3; touch /tmp/ok; exec sleep 600"]\n'
        "HEALTHCHECK --interval=1s --timeout=5s --retries=1 CMD test -f /tmp/ok\n"
    )
    run.engine.client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=FLAKY, rm=True, forcerm=True
    )
    seen: list[str] = []
    real = run.engine.health_status

    def watching(handle: Any) -> str | None:
        status = real(handle)
        seen.append(str(status))
        return status

    run.engine.health_status = watching  # type: ignore[method-assign]
    try:
        (rs,) = running = run.start(
            svc(image=FLAKY, args=[], ready={"healthcheck": True}, start_timeout=30)
        )
    finally:
        del run.engine.health_status
    print(f"\nunhealthy, then healthy: ready_s={rs.ready_s:.3f}")
    assert "unhealthy" in seen and seen[-1] == "healthy"
    assert 3 <= rs.ready_s < 15
    stop_services(run.engine, running)
    # never healthy within start_timeout: says what it saw last, and Docker's interval
    with pytest.raises(ServiceFailed) as ei:
        run.start(
            svc(image=FLAKY, args=["sleep", "600"], ready={"healthcheck": True}, start_timeout=4)
        )
    assert "(last: health: unhealthy); Docker runs a HEALTHCHECK every 30 s" in str(ei.value)
    assert run.left()[0] == []
