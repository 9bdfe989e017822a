"""edgeprof.client: wire format, no-op and never-raise behaviour, drop counting, exit stats."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeprof import client

SRC = str(Path(__file__).resolve().parents[2] / "src")


def run_py(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("EDGEPROF_")}
    e.update(env, PYTHONPATH=SRC)
    return subprocess.run(
        [sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "m.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    client.configure(socket_path=path)
    yield sock, path
    client.configure()  # back to the no-op
    sock.close()


def recv_json(sock: socket.socket) -> list[dict]:
    return [json.loads(line) for line in sock.recv(70000).split(b"\n")]


def read_until_report(sock: socket.socket, lines: list[dict]) -> None:
    while not lines or "client" not in lines[-1]:
        lines += recv_json(sock)


def test_import_is_light_and_noop_without_env() -> None:
    code = (
        "import sys\n"
        "from edgeprof import client as c\n"
        "heavy = {'psutil', 'docker', 'pydantic', 'yaml', 'json', 'asyncio', 'edgeprof.model'}\n"
        "assert not heavy & set(sys.modules), heavy & set(sys.modules)\n"
        "c.publish('fps', 1.0); c.increment('n'); c.FPS(interval=0).tick(); c.FPS(interval=0).tick()\n"
        "with c.timer('t'):\n    pass\n"
        "assert c.stats() == {'sent': 0, 'dropped': 0, 'pending': 0}, c.stats()\n"
        "assert not c.send_stats()\n"
        "print('ok')\n"
    )
    res = run_py(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_never_raises_when_socket_missing() -> None:
    code = (
        "import math\n"
        "from edgeprof import client as c\n"
        "weird = [1, 2.5, math.nan, math.inf, 10**400, 'text', None, object(), True, b'x']\n"
        "for v in weird:\n    c.publish('x', v)\n"
        "c.publish(None, 1); c.publish('m', 1, ts='soon', k=object()); c.increment('n', 'a')\n"
        "for _ in range(90):\n    c.publish('fps', 30.0)\n"
        "st = c.stats()\n"
        "assert st['sent'] == 0 and st['dropped'] == 103, st\n"
        "print('ok')\n"
    )
    res = run_py(code, EDGEPROF_METRICS_SOCKET="/nonexistent/dir/metrics.sock")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
    assert res.stderr == ""


def test_wire_format(receiver: tuple[socket.socket, str]) -> None:
    sock, _ = receiver
    client.publish("fps", 29.7)
    assert sock.recv(1000) == b'{"name":"fps","value":29.7}'
    client.publish("n", 3)
    assert sock.recv(1000) == b'{"name":"n","value":3}'
    client.publish("lat", 1.5, ts=1720531862123456789, model="yolo", k=2)
    assert recv_json(sock) == [
        {"name": "lat", "value": 1.5, "ts": 1720531862123456789, "meta": {"model": "yolo", "k": 2}}
    ]
    client.increment("frames", 2, cam="left")
    assert recv_json(sock) == [
        {"name": "frames", "value": 2, "type": "counter", "meta": {"cam": "left"}}
    ]
    client.counter("c").inc()
    assert recv_json(sock) == [{"name": "c", "value": 1, "type": "counter"}]
    client.publish('quote"d\n', float("nan"))  # escaped; NaN is sent and rejected there
    assert sock.recv(1000) == b'{"name":"quote\\"d\\n","value":NaN}'
    client.publish("flag", True)
    assert recv_json(sock) == [{"name": "flag", "value": 1}]
    assert client.stats()["sent"] >= 7


def test_timer_context_decorator_and_async(receiver: tuple[socket.socket, str]) -> None:
    import asyncio

    sock, _ = receiver
    with client.timer("block", stage="pre") as t:
        time.sleep(0.01)
    (msg,) = recv_json(sock)
    assert msg["name"] == "block" and msg["type"] == "timer" and msg["meta"] == {"stage": "pre"}
    assert 9.0 <= msg["value"] < 1000 and msg["value"] == t.elapsed_ms

    @client.timer("fn")
    def fn(x: int) -> int:
        return x * 2

    assert fn(4) == 8
    assert recv_json(sock)[0]["name"] == "fn"

    @client.timer("afn")
    async def afn() -> str:
        await asyncio.sleep(0)
        return "done"

    assert asyncio.run(afn()) == "done"
    assert recv_json(sock)[0]["name"] == "afn"

    with pytest.raises(ZeroDivisionError), client.timer("fails"):
        _ = 1 / 0  # the app's own exception passes through, the time is still published
    assert recv_json(sock)[0]["name"] == "fails"


def test_fps_publishes_once_per_interval(receiver: tuple[socket.socket, str]) -> None:
    sock, _ = receiver
    fps = client.FPS("cam_fps", interval=0.2, cam="left")
    assert fps.tick() is None  # the first tick starts the clock
    t0 = time.monotonic()
    published = None
    while published is None:
        time.sleep(0.01)
        published = fps.tick()
    assert time.monotonic() - t0 >= 0.2
    (msg,) = recv_json(sock)
    assert msg["name"] == "cam_fps" and msg["meta"] == {"cam": "left"}
    assert 20 < msg["value"] < 110 and msg["value"] == pytest.approx(published)
    sock.settimeout(0.05)
    with pytest.raises(socket.timeout):
        sock.recv(1000)  # nothing more until the next interval


def test_drops_counted_when_profiler_does_not_read(receiver: tuple[socket.socket, str]) -> None:
    sock, _ = receiver
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    n = 60_000
    base = client.stats()
    t0 = time.perf_counter()
    for i in range(n):
        client.publish("busy", i, run="x" * 20)
    took = time.perf_counter() - t0
    st = client.stats()
    assert st["dropped"] > base["dropped"], st
    assert st["pending"] > 0  # kept (bounded) for later, not blocking
    assert took < 30  # never blocked on the full socket
    assert client.dropped() == st["dropped"]
    # now the profiler reads: what was kept arrives, batched, stamped with its time
    sock.settimeout(0.2)
    received = 0
    stamped = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        client.flush()
        try:
            data = sock.recv(70000)
        except TimeoutError:
            if client.stats()["pending"] == 0:
                break
            continue
        for line in data.split(b"\n"):
            received += 1
            stamped += b'"ts":' in line
    st = client.stats()
    assert st["pending"] == 0
    sent, dropped = st["sent"] - base["sent"], st["dropped"] - base["dropped"]
    assert sent + dropped == n
    assert received == sent
    assert stamped > 0


def test_exit_report_and_udp(tmp_path: Path) -> None:
    path = str(tmp_path / "m.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.settimeout(5)
    code = "from edgeprof import client as c\nfor i in range(100):\n    c.publish('v', i)\n"
    lines: list[dict] = []
    reader = threading.Thread(target=lambda: read_until_report(rx, lines))
    reader.start()  # the profiler reads while the app runs and exits
    res = run_py(code, EDGEPROF_METRICS_SOCKET=path)
    reader.join(10)
    assert res.returncode == 0, res.stderr
    assert [m["value"] for m in lines[:-1]] == list(range(100))
    last = lines[-1]
    assert last["client"]["sent"] == 100 and last["client"]["dropped"] == 0
    assert last["client"]["pid"] > 0
    rx.close()

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)
    port = udp.getsockname()[1]
    res = run_py(
        "from edgeprof import client as c\nc.publish('u', 1.5, ts=None)\n",
        EDGEPROF_METRICS_UDP=f"127.0.0.1:{port}",
    )
    assert res.returncode == 0, res.stderr
    assert udp.recv(1000) == b'{"name":"u","value":1.5}'
    report = json.loads(udp.recv(1000))["client"]
    assert report["sent"] == 1 and report["dropped"] == 0
    udp.close()


def test_forked_child_counts_its_own(receiver: tuple[socket.socket, str]) -> None:
    sock, _ = receiver
    client.publish("parent", 1)
    sock.recv(1000)
    sent_before = client.stats()["sent"]
    pid = os.fork()
    if pid == 0:  # child: fresh counters, its own socket
        ok = client.stats()["sent"] == 0
        client.publish("child", 2)
        ok = ok and client.stats()["sent"] == 1
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sock.recv(1000) == b'{"name":"child","value":2}'
    assert client.stats()["sent"] == sent_before
