"""Property-based tests (Hypothesis) of the parsers that read what apps and devices write.

Whatever bytes arrive: no exception, no stall (each call within Hypothesis' deadline), and
every datagram accounted for (accepted or rejected, never silently gone). Well-formed
StatsD and JSON built from random parts parse back to exactly what was sent.
"""

from __future__ import annotations

import json
import math
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeprof.collect.app.aggregate import Aggregator
from edgeprof.collect.app.messages import MAX_DATAGRAM
from edgeprof.collect.app.wire import parse_datagram
from edgeprof.collect.gpu.tegrastats import parse_line

T = 1_720_000_000_000_000_000
FAST = settings(max_examples=400, deadline=500, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=4096))
def test_any_bytes_never_raise_and_are_counted(data: bytes) -> None:
    msgs, rejs = parse_datagram(data, T)
    assert len(msgs) + len(rejs) >= 1  # an empty or junk datagram is one rejection
    agg = Aggregator((("target", "t"),), "t")
    agg.ingest(msgs, rejs)
    s = agg.stats()
    assert s["received"] == s["accepted"] + s["rejected_total"]
    assert s["datagrams"] == 1


@FAST
@given(st.text(max_size=2000))
def test_any_text_never_raises(text: str) -> None:
    msgs, rejs = parse_datagram(text.encode(), T)
    assert len(msgs) + len(rejs) >= 1


_statsd_tail = st.sampled_from(["|g", "|c", "|ms", "|h", "|d", "|s", "|c|@0.5", "|g|#a:b", "|x"])
_junk = st.text(alphabet='abc:|#@,.-+0123456789\n{}"eT_', max_size=300)


@FAST
@given(st.lists(st.tuples(_junk, _statsd_tail), max_size=40))
def test_statsd_shaped_junk_never_raises(parts: list[tuple[str, str]]) -> None:
    data = "\n".join(a + b for a, b in parts).encode()
    msgs, rejs = parse_datagram(data, T)
    lines = [x for x in data.split(b"\n") if x.strip()]
    assert len(msgs) + len(rejs) >= max(1, len(lines)) or any(b":" in x for x in lines)


def test_the_largest_datagram_is_parsed_quickly() -> None:
    worst = [
        b"a:1|c\n" * (MAX_DATAGRAM // 6),
        b"x" * MAX_DATAGRAM,
        b"{" * MAX_DATAGRAM,
        b'{"name":"a","value":1}\n' * (MAX_DATAGRAM // 23),
        b"_e{9999,9999}:" + b"x" * (MAX_DATAGRAM - 20),
        b"a:" + b"1:" * (MAX_DATAGRAM // 2 - 4) + b"|d",
        ("é" * (MAX_DATAGRAM // 2 - 1)).encode(),
    ]
    for data in worst:
        t0 = time.perf_counter()
        msgs, rejs = parse_datagram(data[:MAX_DATAGRAM], T)
        assert time.perf_counter() - t0 < 2.0
        assert len(msgs) + len(rejs) >= 1


_names = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF, blacklist_characters=":|#,@\\"),
    min_size=1,
    max_size=60,
).filter(lambda s: s.isprintable() and s == s.strip())
_tag = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-/", min_size=1, max_size=20)
_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@FAST
@given(
    st.lists(
        st.tuples(
            _names,
            _finite,
            st.sampled_from(["g", "c", "ms", "h", "d"]),
            st.dictionaries(_tag, _tag, max_size=4),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_well_formed_statsd_parses_back_exactly(
    lines: list[tuple[str, float, str, dict[str, str]]],
) -> None:
    text = []
    for name, value, kind, tags in lines:
        v = repr(abs(value)) if kind == "g" else repr(value)  # an unsigned gauge is a value
        tail = ("|#" + ",".join(f"{k}:{t}" for k, t in tags.items())) if tags else ""
        text.append(f"{name}:{v}|{kind}{tail}")
    msgs, rejs = parse_datagram("\n".join(text).encode(), T)
    assert not rejs, rejs
    assert len(msgs) == len(lines)
    kinds = {"g": "gauge", "c": "counter", "ms": "timer", "h": "timer", "d": "timer"}
    for m, (name, value, kind, tags) in zip(msgs, lines, strict=True):
        assert m.name == "app." + name
        assert m.kind == kinds[kind]
        want = abs(value) if kind == "g" else value
        assert m.value == want or (math.isclose(m.value, want) and want == 0)
        assert dict(m.meta or ()) == tags


@FAST
@given(_names, _finite, st.integers(min_value=946_684_800 * 10**9, max_value=7_258_118_399 * 10**9))
def test_well_formed_json_parses_back_exactly(name: str, value: float, ts: int) -> None:
    data = json.dumps({"name": name, "value": value, "ts": ts, "type": "timer"}).encode()
    (m,), rejs = parse_datagram(data, T)
    assert not rejs
    assert (m.name, m.value, m.t_ns, m.kind) == ("app." + name, value, ts, "timer")


@FAST
@given(st.lists(st.integers(min_value=-1000, max_value=1000), min_size=1, max_size=200))
def test_counter_totals_are_the_sum_of_what_was_sent(increments: list[int]) -> None:
    agg = Aggregator()
    for i, inc in enumerate(increments):
        agg.ingest(*parse_datagram(f"c:{inc}|c".encode(), T + i))
    samples, _ = agg.take()
    totals = [s.value for s in samples if s.metric == "app.c.total"]
    assert totals[-1] == sum(increments)


# -- tegrastats ----------------------------------------------------------------------------


@FAST
@given(st.text(max_size=3000))
def test_tegrastats_any_line_never_raises(line: str) -> None:
    reading = parse_line(line)
    for metric, _labels, value in reading.values:
        assert isinstance(metric, str) and isinstance(value, float)


_field = st.sampled_from(
    [
        "RAM 1/2MB",
        "SWAP 1/2MB (cached 0MB)",
        "CPU [1%@2,off,3%@4]",
        "GR3D_FREQ 0%@[1,2]",
        "EMC_FREQ 5%@2",
        "VDD_IN 1/2",
        "gpu@40C",
        "tj@-256C",
        "APE 150",
        "MTS fg 1% bg 2%",
        "NVDEC off",
    ]
)


@FAST
@given(st.lists(st.one_of(_field, st.text(max_size=30)), max_size=30))
def test_tegrastats_shaped_lines_never_raise(fields: list[str]) -> None:
    parse_line(" ".join(fields))
