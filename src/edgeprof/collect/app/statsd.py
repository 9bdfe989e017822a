"""StatsD lines, Etsy and DogStatsD: metrics, DogStatsD events and service checks.

``name:value|type[|@rate][|#tag:v,tag2][|T<unix s>][|c:<container>]``; types ``g`` (gauge),
``c`` (counter, divided by the sample rate), ``ms``/``h``/``d`` (timer), ``s`` (set);
``a:b:c`` multi-values are several messages. A signed gauge is a change of the last value
in Etsy StatsD and a value in DogStatsD: a line with a DogStatsD extension (tags ``#``,
``c:``, ``T``, ``e:``, ``card:``) is read the DogStatsD way, any other by ``dialect``.

Parsing is pure but for a bounded cache of parsed line tails (real apps repeat the same
names and tags with new values, so most lines cost a dictionary look-up plus ``float()``).
"""

from __future__ import annotations

from typing import NamedTuple

from edgeprof.collect.app.messages import (
    CACHE_MAX,
    MAX_META_VALUE,
    MAX_TS_NS,
    MIN_TS_NS,
    AppMessage,
    Meta,
    Rejection,
    app_name,
    excerpt,
    name_problem,
    tags,
)

_STATSD_KINDS = {
    "g": "gauge",
    "c": "counter",
    "ms": "timer",
    "h": "timer",
    "d": "timer",
    "s": "set",
}
_SC_STATUS = {"0": "ok", "1": "warning", "2": "critical", "3": "unknown"}
_EVENT_FIELDS = {
    "d": "timestamp",
    "h": "hostname",
    "k": "aggregation_key",
    "p": "priority",
    "s": "source_type",
    "t": "alert_type",
    "c": "container",
}


class _Tail(NamedTuple):
    """What a StatsD line's name and fields (everything but the value) parse to."""

    full: str
    kind: str
    rate: float
    meta: Meta | None
    dog: bool  # carries a DogStatsD extension


_tails: dict[tuple[str, str], _Tail | Rejection] = {}


def _parse_tail(name: str, fields: list[str]) -> _Tail | Rejection:
    """The parts of a StatsD line other than its value; a Rejection (t_ns 0) if bad."""
    problem = name_problem(name)
    if problem is not None:
        return Rejection("bad_name", problem, "", 0)
    kind = _STATSD_KINDS.get(fields[0])
    if kind is None:
        detail = f"unknown StatsD type {fields[0][:10]!r} (g, c, ms, h, d or s)"
        return Rejection("malformed", detail, "", 0)
    rate = 1.0
    meta: Meta | None = None
    dog = False
    for f in fields[1:]:
        head = f[:1]
        if head == "@":
            try:
                rate = float(f[1:])
            except ValueError:
                rate = -1.0
            if not 0.0 < rate <= 1.0:
                return Rejection("malformed", f"bad sample rate {f[:20]!r}", "", 0)
        elif head == "#":
            dog = True
            meta, problem = tags(f[1:])
            if problem is not None:
                return Rejection("bad_meta", problem, "", 0)
        elif f.startswith(("c:", "e:", "card:")):
            dog = True  # DogStatsD origin fields: recognised, not stored
    return _Tail(app_name(name), kind, rate, meta, dog)


def _timestamp_field(fields: list[str]) -> tuple[int | None, str | None]:
    """The ``T<unix seconds>`` field's ns (None when absent), or a problem."""
    for f in fields[1:]:
        if f[:1] == "T":
            try:
                t_ns = int(f[1:]) * 1_000_000_000
            except ValueError:
                t_ns = 0
            if not MIN_TS_NS <= t_ns < MAX_TS_NS:
                return None, f"bad timestamp {f[:24]!r}"
            return t_ns, None
    return None, None


def parse_statsd_line(
    line: str, recv_ns: int, dialect: str, msgs: list[AppMessage], rejs: list[Rejection]
) -> None:
    if line[:1] == "_":
        if line.startswith("_e{"):
            return _parse_event(line, recv_ns, msgs, rejs)
        if line.startswith("_sc|"):
            return _parse_service_check(line, recv_ns, msgs, rejs)
    colon = line.find(":")
    bar = line.find("|", colon + 1)
    if colon < 0 or bar < 0:
        rejs.append(Rejection("malformed", "not name:value|type", excerpt(line), recv_ns))
        return
    name = line[:colon]
    rest = line[bar + 1 :]
    has_ts = "|T" in rest
    key = (name, rest)
    tail = None if has_ts else _tails.get(key)
    if tail is None:
        fields = rest.split("|")
        tail = _parse_tail(name, fields)
        if not has_ts and len(_tails) < CACHE_MAX:
            _tails[key] = tail
    if type(tail) is Rejection:
        rejs.append(Rejection(tail.reason, tail.detail, excerpt(line), recv_ns))
        return
    assert isinstance(tail, _Tail)
    t_ns = recv_ns
    app_ts = False
    dog = tail.dog
    if has_ts:
        ts, problem = _timestamp_field(rest.split("|"))
        if problem is not None:
            rejs.append(Rejection("malformed", problem, excerpt(line), recv_ns))
            return
        if ts is not None:
            t_ns, app_ts, dog = ts, True, True
    values = line[colon + 1 : bar]
    kind = tail.kind
    for raw in values.split(":") if ":" in values else (values,):
        if kind == "set":
            if not raw or len(raw) > MAX_META_VALUE:
                rejs.append(Rejection("malformed", "bad set member", excerpt(line), recv_ns))
                continue
            msgs.append(AppMessage(tail.full, 0.0, t_ns, "set", tail.meta, app_ts, raw))
            continue
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if value - value != 0:
            detail = f"value is not a finite number: {raw[:40]!r}"
            rejs.append(Rejection("non_numeric", detail, excerpt(line), recv_ns))
            continue
        k = kind
        if kind == "counter":
            if tail.rate != 1.0:
                value /= tail.rate
        elif kind == "gauge" and raw[:1] in ("+", "-") and not dog and dialect == "etsy":
            k = "gauge_delta"
        msgs.append(AppMessage(tail.full, value, t_ns, k, tail.meta, app_ts))
    return None


def _split_fields(rest: str, known: dict[str, str]) -> tuple[dict[str, str], Meta | None, str]:
    """DogStatsD ``|k:v`` fields of an event or service check → (info, tags, problem)."""
    info: dict[str, str] = {}
    meta: Meta | None = None
    for f in rest.split("|") if rest else []:
        if f[:1] == "#":
            meta, problem = tags(f[1:])
            if problem is not None:
                return info, None, problem
        elif f[1:2] == ":" and f[:1] in known:
            info[known[f[:1]]] = f[2:MAX_META_VALUE]
        elif f.startswith("card:"):
            continue
    return info, meta, ""


def _event_time(info: dict[str, str], recv_ns: int) -> tuple[int, bool]:
    ts = info.get("timestamp")
    if ts is not None and ts.isdigit():
        t_ns = int(ts) * 1_000_000_000
        if MIN_TS_NS <= t_ns < MAX_TS_NS:
            return t_ns, True
    return recv_ns, False


def _parse_event(line: str, recv_ns: int, msgs: list[AppMessage], rejs: list[Rejection]) -> None:
    """``_e{<title bytes>,<text bytes>}:<title>|<text>[|d:ts][|h:host][|p:prio][|t:type][|#tags]``"""
    close = line.find("}:")
    lengths = line[3:close].split(",") if close > 3 else []
    if len(lengths) != 2 or not all(x.isdigit() for x in lengths):
        rejs.append(Rejection("malformed", "bad DogStatsD event header", excerpt(line), recv_ns))
        return
    tl, xl = int(lengths[0]), int(lengths[1])
    body = line[close + 2 :].encode()
    if len(body) < tl + 1 + xl or body[tl : tl + 1] != b"|":
        rejs.append(
            Rejection(
                "malformed", "DogStatsD event shorter than its header says", excerpt(line), recv_ns
            )
        )
        return
    try:
        title = body[:tl].decode()
        text = body[tl + 1 : tl + 1 + xl].decode().replace("\\n", "\n")
        rest = body[tl + 1 + xl :].decode()
    except UnicodeDecodeError:
        rejs.append(
            Rejection(
                "malformed", "DogStatsD event lengths split a character", excerpt(line), recv_ns
            )
        )
        return
    if rest and rest[:1] != "|":
        rejs.append(
            Rejection(
                "malformed", "DogStatsD event longer than its header says", excerpt(line), recv_ns
            )
        )
        return
    problem = name_problem(title)
    if problem is not None:
        rejs.append(Rejection("bad_name", f"event title: {problem}", excerpt(line), recv_ns))
        return
    info, meta, problem = _split_fields(rest[1:], _EVENT_FIELDS)
    if problem:
        rejs.append(Rejection("bad_meta", problem, excerpt(line), recv_ns))
        return
    info["text"] = text[:4096]
    t_ns, app_ts = _event_time(info, recv_ns)
    msgs.append(AppMessage(title, 0.0, t_ns, "event", meta, app_ts, info=info))


def _parse_service_check(
    line: str, recv_ns: int, msgs: list[AppMessage], rejs: list[Rejection]
) -> None:
    """``_sc|<name>|<status>[|d:ts][|h:host][|#tags][|m:message]`` (m: comes last)."""
    body, _, message = line[4:].partition("|m:")
    parts = body.split("|", 2)
    if len(parts) < 2 or parts[1] not in _SC_STATUS:
        rejs.append(Rejection("malformed", "bad DogStatsD service check", excerpt(line), recv_ns))
        return
    name = parts[0]
    problem = name_problem(name)
    if problem is not None:
        rejs.append(Rejection("bad_name", f"service check: {problem}", excerpt(line), recv_ns))
        return
    info, meta, problem = _split_fields(parts[2] if len(parts) > 2 else "", _EVENT_FIELDS)
    if problem:
        rejs.append(Rejection("bad_meta", problem, excerpt(line), recv_ns))
        return
    info["status"] = _SC_STATUS[parts[1]]
    if message:
        info["message"] = message[:4096]
    t_ns, app_ts = _event_time(info, recv_ns)
    msgs.append(AppMessage(name, float(parts[1]), t_ns, "service_check", meta, app_ts, info=info))
