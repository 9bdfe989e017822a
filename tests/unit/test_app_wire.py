"""The app-metrics wire parser: JSON and StatsD (Etsy and DogStatsD), on real client output."""

from __future__ import annotations

import pytest

from edgeprof.collect.app.wire import parse_datagram

T = 1_720_000_000_000_000_000


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
        (("m", "y"), ("k", "2")),
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
    assert m.kind == "client_stats" and m.info == {"sent": "10", "dropped": "2", "pid": "7"}


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
        ("app.frames", "counter", 4.0, (("cam", "left"), ("hd", ""))),
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


def test_a_datagram_led_by_a_brace_named_metric_parses_every_statsd_line() -> None:
    """Found by the property test: the first line's name starts with "{", so the datagram
    looked like JSON lines, and a later StatsD line whose name holds a quote was rejected."""
    from edgeprof.collect.app.wire import parse_datagram

    msgs, rejs = parse_datagram(b'{x:1|g\n":0.0|g\nfps:2|g', 1)
    assert rejs == []
    assert [(m.name, m.value) for m in msgs] == [("app.{x", 1.0), ('app."', 0.0), ("app.fps", 2.0)]
