"""App metrics: parsers, the socket listener end to end, and pywaggle's run log."""

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

from edgeprof.collect.appmetrics import (
    AppMetricsCollector,
    PywaggleLogCollector,
    parse_datagram,
    parse_pywaggle_timestamp,
)
from edgeprof.collect.base import CollectContext, Collector
from edgeprof.errors import CollectorUnavailable
from edgeprof.model import Event

SRC = str(Path(__file__).resolve().parents[2] / "src")
T = 1_720_000_000_000_000_000


def ctx_for(events: list[Event], **options: object) -> CollectContext:
    return CollectContext(
        target="t1", labels=(("target", "t1"),), options=dict(options), emit_event=events.append
    )


# --- parsers -----------------------------------------------------------------------------


def one(data: bytes):  # type: ignore[no-untyped-def]
    msgs, rejs = parse_datagram(data, T)
    assert not rejs, rejs
    assert len(msgs) == 1, msgs
    return msgs[0]


def test_json_forms() -> None:
    m = one(b'{"name": "fps", "value": 29.7}')
    assert (m.name, m.value, m.t_ns, m.kind, m.meta, m.app_ts) == (
        "app.fps",
        29.7,
        T,
        "gauge",
        None,
        False,
    )
    m = one(
        b' {"name":"lat","value":12,"ts":1720531862123456789,"type":"timer","meta":{"m":"y","k":2}}\n'
    )
    assert (m.value, m.t_ns, m.kind, m.meta, m.app_ts) == (
        12.0,
        1720531862123456789,
        "timer",
        {"m": "y", "k": "2"},
        True,
    )
    msgs, rejs = parse_datagram(
        b'{"name":"a","value":1}\n\n{"name":"b","value":2,"type":"counter"}\n', T
    )
    assert [(m.name, m.kind) for m in msgs] == [
        ("app.a", "gauge"),
        ("app.b", "counter"),
    ] and not rejs
    m = one(b'{"client":{"sent":10,"dropped":2,"pid":7}}')
    assert m.kind == "client_stats" and m.meta == {"sent": "10", "dropped": "2", "pid": "7"}


def test_statsd_forms() -> None:
    msgs, rejs = parse_datagram(
        b"fps:29.7|g\nframes:1|c|@0.25|#cam:left,hd\ninfer:12.5|ms\nh:3|h\nd:1:2:3|d\n"
        b"users:alice|s\nq:+2|g\nq:-1|g\nold:1|g|T1720531862\r\n",
        T,
    )
    assert not rejs
    got = [(m.name, m.kind, m.value, m.meta) for m in msgs]
    assert got == [
        ("app.fps", "gauge", 29.7, None),
        ("app.frames", "counter", 4.0, {"cam": "left", "hd": ""}),
        ("app.infer", "timer", 12.5, None),
        ("app.h", "timer", 3.0, None),
        ("app.d", "timer", 1.0, None),
        ("app.d", "timer", 2.0, None),
        ("app.d", "timer", 3.0, None),
        ("app.users", "set", 0.0, None),
        ("app.q", "gauge_delta", 2.0, None),
        ("app.q", "gauge_delta", -1.0, None),
        ("app.old", "gauge", 1.0, None),
    ]
    assert msgs[7].member == "alice"
    assert msgs[-1].t_ns == 1720531862 * 10**9 and msgs[-1].app_ts


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"name":"x","value":1', "malformed"),
        (b'{"name":"x"}', "malformed"),
        (b'{"value":1}', "malformed"),
        (b"[1,2]", "malformed"),
        (b'{"name":"x","value":1} trailing', "malformed"),
        (b'{"name":"x","value":1,"type":"histo"}', "malformed"),
        (b'{"name":"x","value":1,"ts":1720531862}', "malformed"),  # seconds, not ns
        (b"", "malformed"),
        (b"\xff\xfe:1|g", "malformed"),
        (b"fps29.7|g", "malformed"),
        (b"fps:29.7", "malformed"),
        (b"fps:29.7|zz", "malformed"),
        (b"fps:1|c|@0", "malformed"),
        (b'{"name":"x","value":"fast"}', "non_numeric"),
        (b'{"name":"x","value":NaN}', "non_numeric"),
        (b'{"name":"x","value":Infinity}', "non_numeric"),
        (b'{"name":"x","value":true}', "non_numeric"),
        (b'{"name":"x","value":null}', "non_numeric"),
        (b'{"name":"x","value":1e999}', "non_numeric"),
        (b"fps:abc|g", "non_numeric"),
        (b"fps:nan|g", "non_numeric"),
        (b"fps:inf|ms", "non_numeric"),
        (b'{"name":"","value":1}', "bad_name"),
        (b'{"name":5,"value":1}', "bad_name"),
        (b'{"name":"a\\u0007b","value":1}', "bad_name"),
        (b'{"name":"a\\tb","value":1}', "bad_name"),
        (('{"name":"' + "n" * 201 + '","value":1}').encode(), "bad_name"),
        (b":1|g", "bad_name"),
        (b"a\x01b:1|g", "bad_name"),
        (b"x" * 65537, "oversized"),
        (b'{"name":"x","value":1,"meta":[1]}', "bad_meta"),
        (b'{"name":"x","value":1,"meta":{"k":{"n":1}}}', "bad_meta"),
        (b'{"name":"x","value":1,"meta":{"k":"a\\nb"}}', "bad_meta"),
        (b"fps:1|g|#:v", "bad_meta"),
    ],
)
def test_rejections(data: bytes, reason: str) -> None:
    msgs, rejs = parse_datagram(data, T)
    assert msgs == []
    assert [r.reason for r in rejs] == [reason], rejs
    assert rejs[0].detail and rejs[0].t_ns == T


def test_one_bad_line_does_not_spoil_the_others() -> None:
    msgs, rejs = parse_datagram(b'{"name":"a","value":1}\n{"name":"b","value":"x"}\n{oops', T)
    assert [m.name for m in msgs] == ["app.a"]
    assert [r.reason for r in rejs] == ["non_numeric", "malformed"]
    msgs, rejs = parse_datagram(b"a:1|g\nb:x|g\nc:2|c", T)
    assert [m.name for m in msgs] == ["app.a", "app.c"] and [r.reason for r in rejs] == [
        "non_numeric"
    ]
    assert len(parse_datagram(b"x" * 65536, T)[1]) == 1  # at the limit: not oversized


# --- the socket listener -----------------------------------------------------------------


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
    col = AppMetricsCollector()
    assert isinstance(col, Collector)
    col.open(ctx_for(events, socket_path=path))
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
    assert col.timer_metrics == {"app.infer"}
    assert sum(len(v) for k, v in by_name.items() if not k.endswith(".total")) == 10_000
    kinds = {e.kind: e for e in events}
    assert kinds["app_metrics_stats"].data["accepted"] == 10_000
    assert kinds["app_metric_kinds"].data["timers"] == ["app.infer"]
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))


def test_rejections_counted_and_first_five_stored(tmp_path: Path) -> None:
    events: list[Event] = []
    path = str(tmp_path / "m.sock")
    col = AppMetricsCollector()
    col.open(ctx_for(events, socket_path=path))
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
    col = AppMetricsCollector()
    col.open(ctx_for(events, socket_path=str(tmp_path / "m.sock"), udp_port=0))
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


def test_open_needs_a_socket_option() -> None:
    with pytest.raises(CollectorUnavailable):
        AppMetricsCollector().open(ctx_for([]))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_other_user_can_only_send(tmp_path: Path) -> None:
    import tempfile

    top = tempfile.mkdtemp(prefix="edgeprof-perm-")  # pytest's tmp tree is private to root
    os.chmod(top, 0o755)
    path = os.path.join(top, "run", "metrics.sock")
    col = AppMetricsCollector()
    col.open(ctx_for([], socket_path=path))
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


# --- pywaggle ----------------------------------------------------------------------------


def test_pywaggle_timestamp_forms() -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    ns = 1720531862123456789  # pywaggle rounds to ...457 µs and appends the last 3 digits
    utc = dt.timezone.utc
    assert parse_pywaggle_timestamp("2024-07-09T13:31:02.123457789", utc) == ns
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert parse_pywaggle_timestamp("2024-07-09T15:31:02.123457789", plus2) == ns
    berlin = ZoneInfo("Europe/Berlin")  # summer time in July
    assert parse_pywaggle_timestamp("2024-07-09T15:31:02.123457789", berlin) == ns
    assert parse_pywaggle_timestamp("2024-07-09T13:31:02.123457789Z") == ns
    assert parse_pywaggle_timestamp("2024-07-09T15:31:02.123457789+02:00") == ns
    assert parse_pywaggle_timestamp("2024-07-09T13:31:02.123457+00:00789") == ns
    assert parse_pywaggle_timestamp("2024-07-09T13:31:02.123456012", utc) == ns - 777
    # µs were rounded up to zero, so isoformat left them out: 789 ns past ...01.999999
    assert parse_pywaggle_timestamp("2024-07-09T13:31:02789", utc) == 1720531861999999789
    assert parse_pywaggle_timestamp("2024-07-09T13:31:02123", utc) == 1720531862000000123
    assert parse_pywaggle_timestamp("2024-07-09T13:31:02.5", utc) == 1720531862500000000
    assert parse_pywaggle_timestamp("yesterday", utc) is None
    assert parse_pywaggle_timestamp("2024-13-09T13:31:02", utc) is None


def test_pywaggle_timestamps_match_the_real_writer() -> None:
    plugin = pytest.importorskip("waggle.plugin.plugin", reason="pip install pywaggle")
    import random

    rng = random.Random(1)
    exact = 0
    for _ in range(20000):
        ns = rng.randrange(1_600_000_000 * 10**9, 1_900_000_000 * 10**9)
        if rng.random() < 0.05:
            ns = ns // 10**9 * 10**9 + rng.randrange(1000)  # microseconds are zero
        text = plugin.isoformat_time_ns(ns)
        got = parse_pywaggle_timestamp(text, None)  # pywaggle and this test: host local time
        assert got is not None and abs(got - ns) <= 1000, (ns, text)
        exact += got == ns
    assert exact >= 18000  # ties between two microseconds (float spacing) are ~5%


PYWAGGLE_APP = r"""
import os, time
from waggle.plugin import Plugin
src = os.path.join(os.environ["PYWAGGLE_LOG_DIR"], "..", "snapshot.jpg")
open(src, "wb").write(b"jpeg")
with Plugin() as plugin:
    plugin.publish("env.temperature", 21.5, meta={"sensor": "bme680"})
    plugin.publish("env.count", 3)
    plugin.publish("status", "warming up")
    ts = int(os.environ["EXPLICIT_TS"])
    plugin.publish("env.temperature", 21.75, meta={"sensor": "bme680"}, timestamp=ts)
    plugin.upload_file(src, meta={"camera": "top"})
    time.sleep(0.5)
    plugin.publish("env.count", 4)
print("done", flush=True)
"""


def test_pywaggle_follow_with_the_real_package(tmp_path: Path) -> None:
    pytest.importorskip("waggle.plugin", reason="pip install pywaggle")
    events: list[Event] = []
    log_dir = tmp_path / "pywaggle"
    col = PywaggleLogCollector()
    col.open(ctx_for(events, pywaggle_dir=str(log_dir), pywaggle_tz="auto"))
    assert col.sample(time.time_ns()) == []  # the file does not exist yet
    env = dict(os.environ, PYWAGGLE_LOG_DIR=str(log_dir), PYTHONPATH=SRC, TZ="Europe/Berlin")
    env.update(WAGGLE_PLUGIN_HOST="127.0.0.1", WAGGLE_PLUGIN_PORT="9")  # no RabbitMQ: fails fast
    explicit = time.time_ns() - 5 * 10**9 + 123456789
    env["EXPLICIT_TS"] = str(explicit)
    proc = subprocess.Popen(
        [sys.executable, "-c", PYWAGGLE_APP], env=env, stdout=subprocess.PIPE, text=True
    )
    samples = []
    t_start = time.time_ns()
    while proc.poll() is None:
        samples += col.sample(time.time_ns())  # followed while it runs
        time.sleep(0.05)
    assert proc.returncode == 0
    samples += col.sample(time.time_ns())
    col.close()
    got = [(s.metric, s.labels, s.value) for s in samples]
    assert got == [
        ("app.env.temperature", (("sensor", "bme680"), ("target", "t1")), 21.5),
        ("app.env.count", (("target", "t1"),), 3.0),
        ("app.env.temperature", (("sensor", "bme680"), ("target", "t1")), 21.75),
        ("app.env.count", (("target", "t1"),), 4.0),
    ]
    assert abs(samples[0].t_ns - t_start) < 30e9  # local (Berlin) time read back as UTC ns
    assert abs(samples[2].t_ns - explicit) <= 1000  # exact but for rare µs ties
    kinds = [e.kind for e in events]
    assert "pywaggle_timezone" in kinds
    tz = next(e for e in events if e.kind == "pywaggle_timezone")
    assert tz.data["utc_offset_s"] in (3600.0, 7200.0)
    (value,) = [e for e in events if e.kind == "app_value"]
    assert value.data["value"] == "warming up"
    (upload,) = [e for e in events if e.kind == "app_upload"]
    assert (
        upload.data["meta"]["camera"] == "top" and upload.data["meta"]["filename"] == "snapshot.jpg"
    )
    assert os.path.exists(upload.data["host_path"])
    stats = next(e for e in events if e.kind == "pywaggle_stats").data
    assert stats["accepted"] == 4 and stats["events"] == 2 and stats["rejected_total"] == 0


def test_pywaggle_partial_lines_and_bad_lines(tmp_path: Path) -> None:
    events: list[Event] = []
    col = PywaggleLogCollector()
    col.open(ctx_for(events, pywaggle_dir=str(tmp_path), pywaggle_tz="utc"))
    line = json.dumps(
        {"meta": {}, "name": "a", "timestamp": "2024-07-09T13:31:02.123457789", "value": 1}
    )
    with open(tmp_path / "data.ndjson", "w") as f:
        f.write(line[:20])
        f.flush()
        assert col.sample(0) == []
        f.write(line[20:] + "\n" + '{"name":"b","value":"x"\n' + line.replace('"a"', '"c"') + "\n")
        f.write(json.dumps({"meta": {}, "name": "d", "timestamp": "never", "value": 1}) + "\n")
    got = col.sample(0)
    assert [(s.metric, s.t_ns) for s in got] == [
        ("app.a", 1720531862123456789),
        ("app.c", 1720531862123456789),
    ]
    col.close()
    assert col.stats()["rejected"]["malformed"] == 2
