"""pywaggle's run log followed: timestamps as the real writer makes them, partial lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeprof.collect.app.pywaggle import PywaggleLogCollector, parse_pywaggle_timestamp
from edgeprof.collect.base import CollectContext
from edgeprof.model import Event

SRC = str(Path(__file__).resolve().parents[2] / "src")


def ctx_for(events: list[Event]) -> CollectContext:
    return CollectContext(target="t1", labels=(("target", "t1"),), emit_event=events.append)


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
    col = PywaggleLogCollector(str(log_dir), tz="auto")
    col.open(ctx_for(events))
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
    col = PywaggleLogCollector(str(tmp_path), tz="utc")
    col.open(ctx_for(events))
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
