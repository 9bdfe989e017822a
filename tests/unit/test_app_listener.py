"""The app-metrics socket end to end: the pump process, permissions, counters and labels."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeprof.collect.app.listener import AppMetricsCollector
from edgeprof.collect.base import CollectContext, Collector
from edgeprof.errors import CollectorUnavailable
from edgeprof.model import Event

SRC = str(Path(__file__).resolve().parents[2] / "src")


def ctx_for(events: list[Event]) -> CollectContext:
    return CollectContext(target="t1", labels=(("target", "t1"),), emit_event=events.append)


def wait_for(col: AppMetricsCollector, accepted: int, timeout: float = 20.0) -> list:
    out: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out += col.sample(time.time_ns())
        if col.stats()["accepted"] >= accepted and col.stats()["client_reports"]:
            break
        time.sleep(0.02)
    return out + col.sample(time.time_ns())


SENDER = r"""
import time
from edgeprof import client as c
fps = c.FPS(interval=0.05, cam="left")
fps.tick()
sent = 0
for i in range(9000):
    c.publish("value", i * 0.5)
    sent += 1
    if i % 10 == 0:
        with c.timer("infer", model="m"):
            pass
        sent += 1
    if i % 100 == 0:
        c.increment("frames", 2)
        sent += 1
    if i % 1000 == 0:
        time.sleep(0.06)
        if fps.tick(): sent += 1
while sent < 10_000:
    c.publish("pad", 1, ts=time.time_ns(), kind="pad")
    sent += 1
print(sent, c.stats()["dropped"])
"""


def test_round_trip_10k_messages_no_loss(tmp_path: Path) -> None:
    events: list[Event] = []
    path = str(tmp_path / "run" / "metrics.sock")
    col = AppMetricsCollector(path)
    assert isinstance(col, Collector)
    col.open(ctx_for(events))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o222
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o711
    env = dict(os.environ, EDGEPROF_METRICS_SOCKET=path, PYTHONPATH=SRC)
    res = subprocess.run(
        [sys.executable, "-c", SENDER], env=env, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    sent, dropped = map(int, res.stdout.split())
    assert sent == 10_000 and dropped == 0
    samples = wait_for(col, 10_000)
    col.close()
    samples += col.sample(time.time_ns())
    st = col.stats()
    assert st["accepted"] == 10_000 and st["rejected_total"] == 0
    assert st["received"] == st["accepted"] + st["rejected_total"]
    assert st["client_sent"] == 10_000 and st["client_dropped"] == 0 and st["client_reports"] == 1
    by_name: dict[str, list] = {}
    for s in samples:
        by_name.setdefault(s.metric, []).append(s)
    assert len(by_name["app.value"]) == 9000
    assert [s.value for s in by_name["app.value"]] == [i * 0.5 for i in range(9000)]
    assert len(by_name["app.infer"]) == 900
    assert by_name["app.infer"][0].labels == (("model", "m"), ("target", "t1"))
    assert len(by_name["app.frames"]) == 90 and by_name["app.frames.total"][-1].value == 180.0
    assert 8 <= len(by_name["app.fps"]) <= 9
    assert by_name["app.fps"][0].labels == (("cam", "left"), ("target", "t1"))
    pads = by_name["app.pad"]
    assert all(abs(s.t_ns - time.time_ns()) < 60e9 for s in pads)
    assert [m.name for m in col.metrics() if m.unit == "ms"] == ["app.infer"]
    assert sum(len(v) for k, v in by_name.items() if not k.endswith(".total")) == 10_000
    kinds = {e.kind: e for e in events}
    assert kinds["app_metrics_stats"].data["accepted"] == 10_000
    assert kinds["app_metric_kinds"].data["timers"] == ["app.infer"]
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))


def test_rejections_counted_and_first_five_stored(tmp_path: Path) -> None:
    events: list[Event] = []
    path = str(tmp_path / "m.sock")
    col = AppMetricsCollector(path)
    col.open(ctx_for(events))
    tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    tx.connect(path)
    bad = [b"x:abc|g"] * 8 + [b'{"name":"\\u0001","value":1}'] * 3 + [b"{nope"] * 2
    for data in [*bad, b"ok:1|g", b"x" * 70000]:
        tx.send(data)
        time.sleep(0.001)
    deadline = time.monotonic() + 5
    while col.stats()["received"] < 15 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(col.sample(time.time_ns())) == 1
    st = col.stats()
    assert st["rejected"] == {
        "malformed": 2,
        "non_numeric": 8,
        "bad_name": 3,
        "oversized": 1,
        "bad_meta": 0,
    }
    assert st["received"] == 15 == st["accepted"] + st["rejected_total"]
    rejected = [e for e in events if e.kind == "app_metric_rejected"]
    assert len(rejected) == 5 + 3 + 2 + 1
    assert rejected[0].target == "t1" and rejected[0].data["reason"] == "non_numeric"
    t0 = time.monotonic()
    col.close()
    assert time.monotonic() - t0 < 1.0  # prompt
    tx.close()


def test_statsd_counters_gauges_sets_and_labels(tmp_path: Path) -> None:
    events: list[Event] = []
    col = AppMetricsCollector(str(tmp_path / "m.sock"), udp_port=0)
    col.open(ctx_for(events))
    assert col.udp_port
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(("127.0.0.1", col.udp_port))
    for data in [
        b"c:1|c\nc:2|c|#target:evil",
        b"c:1|c",
        b"g:10|g\ng:+5|g\ng:-3|g",
        b"u:a|s\nu:b|s\nu:a|s",
    ]:
        tx.send(data)
        time.sleep(0.01)
    deadline = time.monotonic() + 5
    while col.stats()["accepted"] < 9 and time.monotonic() < deadline:
        time.sleep(0.01)
    col.close()
    got = [(s.metric, s.labels, s.value) for s in col.sample(0)]
    base = (("target", "t1"),)
    evil = (("app_target", "evil"), ("target", "t1"))  # meta never overrides run labels
    assert got == [
        ("app.c", base, 1.0),
        ("app.c.total", base, 1.0),
        ("app.c", evil, 2.0),
        ("app.c.total", evil, 2.0),
        ("app.c", base, 1.0),
        ("app.c.total", base, 2.0),
        ("app.g", base, 10.0),
        ("app.g", base, 15.0),
        ("app.g", base, 12.0),
        ("app.u", base, 1.0),
        ("app.u", base, 2.0),
        ("app.u", base, 2.0),
    ]
    assert {m.name for m in col.metrics()} >= {"app.c", "app.c.total", "app.u"}
    assert events[-1].data["udp_kernel_drops"] == 0
    tx.close()


def test_needs_a_socket_or_a_port() -> None:
    with pytest.raises(CollectorUnavailable):
        AppMetricsCollector()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_other_user_can_only_send(tmp_path: Path) -> None:
    import tempfile

    top = tempfile.mkdtemp(prefix="edgeprof-perm-")  # pytest's tmp tree is private to root
    os.chmod(top, 0o755)
    path = os.path.join(top, "run", "metrics.sock")
    col = AppMetricsCollector(path)
    col.open(ctx_for([]))
    pid = os.fork()
    if pid == 0:  # a container user that is not root: uid/gid 65534 (nobody)
        code = 1
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.connect(path)
            s.send(b"nobody:1|g")
            denied = 0
            for attempt in (
                lambda: os.listdir(os.path.dirname(path)),
                lambda: os.unlink(path),
                lambda: open(os.path.join(os.path.dirname(path), "x"), "w"),  # noqa: SIM115
            ):
                try:
                    attempt()
                except PermissionError:
                    denied += 1
            code = 0 if denied == 3 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    deadline = time.monotonic() + 5
    while col.stats()["accepted"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    col.close()
    assert [s.metric for s in col.sample(0)] == ["app.nobody"]
    os.rmdir(top)


def test_close_waits_for_a_slow_pump_then_reports_unknown_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pump that never finishes draining is killed after the wait, and the loss is 'unknown'."""
    import signal

    from edgeprof.collect.app import listener

    monkeypatch.setattr(listener, "DRAIN_TIMEOUT_S", 0.5)
    events: list[Event] = []
    col = AppMetricsCollector(str(tmp_path / "m.sock"))
    col.open(ctx_for(events))
    assert col._pump is not None
    os.kill(col._pump.pid, signal.SIGSTOP)  # stuck: it cannot read, drain or answer
    t0 = time.monotonic()
    col.close()
    assert 0.5 <= time.monotonic() - t0 < 10
    assert col._pump.returncode == -signal.SIGKILL
    (st,) = [e for e in events if e.kind == "app_metrics_stats"]
    assert st.data["pump_dropped"] is None
    assert "count unknown" in st.message


def test_close_reports_zero_loss_after_a_clean_drain(tmp_path: Path) -> None:
    events: list[Event] = []
    col = AppMetricsCollector(str(tmp_path / "m.sock"))
    col.open(ctx_for(events))
    col.close()
    assert col._pump is not None and col._pump.returncode == 0
    (st,) = [e for e in events if e.kind == "app_metrics_stats"]
    assert st.data["pump_dropped"] == 0 and "unknown" not in st.message


def _rt_allowed() -> bool:
    """Whether a child of this process may take SCHED_FIFO 1 (root outside an RT-less cgroup)."""
    code = "import os; os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_the_pump_says_how_it_is_scheduled(tmp_path: Path) -> None:
    """Its first frame names its priority; the run stores it, and a note when not real-time."""
    events: list[Event] = []
    col = AppMetricsCollector(str(tmp_path / "m.sock"))
    col.open(ctx_for(events))
    deadline = time.monotonic() + 10
    while col.receiver_priority is None and time.monotonic() < deadline:
        time.sleep(0.01)
    col.sample(time.time_ns())
    col.close()
    want = "realtime" if _rt_allowed() else col.receiver_priority
    assert col.receiver_priority == want and want in ("realtime", "nice", "normal")
    (st,) = [e for e in events if e.kind == "app_metrics_stats"]
    assert st.data["receiver_priority"] == want
    notes = [e for e in events if e.kind == "note" and "real-time" in e.message]
    assert len(notes) == (0 if want == "realtime" else 1)


def test_a_pump_without_real_time_priority_is_noted_once(tmp_path: Path) -> None:
    """In a user namespace of its own the pump gets neither SCHED_FIFO nor a better nice
    value (both need CAP_SYS_NICE on the host): 'normal', datagrams still arrive, and one
    note says what it means for clients that drop."""
    import shutil

    from edgeprof.collect.app import pump

    unshare = shutil.which("unshare")
    probe = [unshare or "unshare", "--user", "--map-root-user", "true"]
    if unshare is None or subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.skip("util-linux' unshare cannot make a user namespace here")
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    p = subprocess.Popen(
        [unshare, "--user", "--map-root-user"]
        + [sys.executable, "-I", "-S", pump.__file__, str(b.fileno()), "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        pass_fds=[b.fileno()],
    )
    b.close()
    a.send(b"fps:30|g")
    assert p.stdin is not None and p.stdout is not None
    p.stdin.close()
    out = p.stdout.read()
    p.wait(timeout=10)
    a.close()
    frames = []
    pos = 0
    while pos < len(out):
        length, mono = pump.HEADER.unpack_from(out, pos)
        pos += pump.HEADER.size
        n = mono if length in (pump.INFO_FRAME, pump.STATS_FRAME) else length
        frames.append((length, out[pos : pos + n]))
        pos += n
    assert frames[0] == (pump.INFO_FRAME, b'{"priority": "normal"}')
    assert frames[1] == (8, b"fps:30|g")
    assert frames[-1][0] == pump.STATS_FRAME

    # the whole collector in that namespace: its pump is 'normal', said once, in the run
    code = (
        "import json, sys, time\n"
        f"sys.path.insert(0, {SRC!r})\n"
        "from edgeprof.collect.app.listener import AppMetricsCollector\n"
        "from edgeprof.collect.base import CollectContext\n"
        "ev = []\n"
        "col = AppMetricsCollector(sys.argv[1])\n"
        "col.open(CollectContext(target='t1', labels=(('target', 't1'),), emit_event=ev.append))\n"
        "deadline = time.monotonic() + 10\n"
        "while col.receiver_priority is None and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "col._pump_info({'priority': 'normal'})  # said again: not noted again\n"
        "col.sample(time.time_ns())\n"
        "col.close()\n"
        "print(json.dumps([[e.kind, e.message, e.data] for e in ev]))\n"
    )
    res = subprocess.run(
        [unshare, "--user", "--map-root-user", sys.executable, "-c", code, str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    events = json.loads(res.stdout)
    notes = [e for e in events if e[0] == "note" and "real-time" in e[1]]
    assert len(notes) == 1 and "DogStatsD" in notes[0][1]
    assert notes[0][2] == {"receiver_priority": "normal"}
    (st,) = [e for e in events if e[0] == "app_metrics_stats"]
    assert st[2]["receiver_priority"] == "normal"
