"""The wire formats apps report in: JSON and StatsD (Etsy and DogStatsD), pure parsing.

Detected per datagram (first non-space byte ``{`` means JSON):

* JSON, one object per datagram or several separated by newlines:
  ``{"name": "fps", "value": 29.7, "ts": <unix ns, optional>, "meta": {...optional},
  "type": "gauge"|"counter"|"timer" (optional, default gauge)}``. An object without
  ``name`` but with ``"client": {"sent": M, "dropped": N, "pid": P}`` is the stats report
  that :mod:`edgeprof.client` sends at exit.
* StatsD lines ``name:value|type[|@rate][|#tag:v,tag2][|T<unix s>][|c:<container>]``, several
  per datagram; types ``g`` (gauge), ``c`` (counter, divided by the sample rate),
  ``ms``/``h``/``d`` (timer: a distribution), ``s`` (set: distinct members); ``a:b:c``
  multi-values are several messages. DogStatsD events (``_e{…}``) and service checks
  (``_sc|…``) are messages of kind ``event`` and ``service_check``.

A signed gauge (``temp:-3.5|g``) means two different things: Etsy StatsD reads it as a
change of the last value, DogStatsD (which has no gauge deltas) as the value -3.5. A line
that carries a DogStatsD extension (tags ``#``, ``c:``, ``T``, ``e:``, ``card:``) is read the
DogStatsD way; any other line follows ``dialect`` (``etsy`` by default, or ``dogstatsd``).

Pure: nothing here touches a socket, a clock or shared state but a bounded cache of
parsed StatsD line tails (real apps repeat the same names and tags with new values, so
most lines cost a dictionary look-up plus ``float()``).
"""

from __future__ import annotations

import json
from typing import Literal, NamedTuple

MAX_DATAGRAM = 65536
MAX_NAME = 200
MAX_META_KEYS = 32
MAX_META_VALUE = 1024
REASONS = ("malformed", "non_numeric", "bad_name", "oversized", "bad_meta")
CLIENT_STATS_NAME = "edgeprof.client"

Dialect = Literal["etsy", "dogstatsd"]
DIALECTS: tuple[str, ...] = ("etsy", "dogstatsd")

Meta = tuple[tuple[str, str], ...]
"""Message meta (JSON ``meta``, StatsD tags) as ``(key, value)`` pairs in the sender's order."""

# ts must be Unix ns between 2000-01-01 and 2200-01-01 (catches seconds and ms by mistake).
_MIN_TS_NS = 946_684_800 * 10**9
_MAX_TS_NS = 7_258_118_400 * 10**9

_JSON_KINDS = {"gauge": "gauge", "counter": "counter", "timer": "timer"}
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

_scan_once = json.JSONDecoder().scan_once  # type: ignore[attr-defined] # the C scanner
_app_names: dict[str, str] = {}
_CACHE_MAX = 65536


class AppMessage(NamedTuple):
    """One accepted message. ``name`` is already ``app.<name>``.

    ``kind``: ``gauge``, ``gauge_delta`` (Etsy ``+n|g``/``-n|g``), ``counter`` (value = the
    increment, sample rate applied), ``timer`` (ms), ``set`` (``member`` holds the member),
    ``client_stats`` (a client's exit report; ``info`` holds sent/dropped/pid), ``event``
    (DogStatsD ``_e``: ``name`` is the title, ``info`` the text and fields) or
    ``service_check`` (``_sc``: ``value`` is the status 0-3).
    """

    name: str
    value: float
    t_ns: int
    kind: str = "gauge"
    meta: Meta | None = None
    app_ts: bool = False
    member: str | None = None
    info: dict[str, str] | None = None


class Rejection(NamedTuple):
    reason: str
    detail: str
    excerpt: str
    t_ns: int


def excerpt(raw: bytes | str, limit: int = 120) -> str:
    text = raw if isinstance(raw, str) else raw[: limit * 2].decode("utf-8", "replace")
    return repr(text[:limit]) + ("…" if len(raw) > limit else "")


def app_name(name: str) -> str:
    full = _app_names.get(name)
    if full is None:
        full = "app." + name
        if len(_app_names) < _CACHE_MAX:
            _app_names[name] = full
    return full


def name_problem(name: object) -> str | None:
    if type(name) is not str:
        return f"name must be a string, got {type(name).__name__}"
    if not name:
        return "empty name"
    if len(name) > MAX_NAME:
        return f"name longer than {MAX_NAME} characters ({len(name)})"
    if not name.isprintable():
        return "name contains control or non-printable characters"
    return None


def check_meta(meta: object) -> tuple[Meta | None, str | None]:
    """Meta as ``(key, value)`` string pairs (None when empty), or an error message."""
    if type(meta) is not dict:
        return None, f"meta must be an object, got {type(meta).__name__}"
    if not meta:
        return None, None
    if len(meta) > MAX_META_KEYS:
        return None, f"more than {MAX_META_KEYS} meta keys ({len(meta)})"
    out: list[tuple[str, str]] = []
    for k, v in meta.items():
        if not k or len(k) > MAX_NAME or not k.isprintable():
            return None, f"bad meta key {k[:40]!r}"
        t = type(v)
        if t is str:
            s = v
        elif t is int or t is float or t is bool:
            s = str(v)
        elif v is None:
            s = ""
        else:
            return None, f"meta value of {k!r} must be a string or number, got {t.__name__}"
        if len(s) > MAX_META_VALUE or not s.isprintable():
            return None, f"bad meta value for {k!r}"
        out.append((k, s))
    return tuple(out), None


def _tags(text: str) -> tuple[Meta | None, str | None]:
    tags: dict[str, str] = {}
    for tag in text.split(","):
        key, _, val = tag.partition(":")
        tags[key] = val
    return check_meta(tags)


def number(value: object) -> float | None:
    """A finite float, or None (bools, strings, NaN, inf, huge ints are not numbers)."""
    t = type(value)
    if t is float:
        return value if value - value == 0 else None  # type: ignore[return-value,operator]
    if t is int:
        try:
            return float(value)  # type: ignore[arg-type]
        except OverflowError:
            return None
    return None


# --- JSON ---------------------------------------------------------------------------------


def _parse_json_line(
    text: str, recv_ns: int, msgs: list[AppMessage], rejs: list[Rejection]
) -> None:
    try:
        start = 0 if text[:1] == "{" else len(text) - len(text.lstrip())
        obj, end = _scan_once(text, start)
        if end != len(text) and not text[end:].isspace():
            raise ValueError("extra data after the JSON object")
    except (ValueError, StopIteration, RecursionError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc) or "invalid JSON"
        rejs.append(Rejection("malformed", f"invalid JSON: {msg}", excerpt(text), recv_ns))
        return
    if type(obj) is not dict:
        rejs.append(Rejection("malformed", "not a JSON object", excerpt(text), recv_ns))
        return
    name = obj.get("name")
    if name is None:
        client = obj.get("client")
        if type(client) is dict:
            sent = number(client.get("sent", 0))
            dropped = number(client.get("dropped", 0))
            if sent is not None and dropped is not None and sent >= 0 and dropped >= 0:
                info = {"sent": str(int(sent)), "dropped": str(int(dropped))}
                info["pid"] = str(client.get("pid", ""))[:40]
                msgs.append(
                    AppMessage(CLIENT_STATS_NAME, dropped, recv_ns, "client_stats", info=info)
                )
                return
            rejs.append(Rejection("malformed", "bad client stats", excerpt(text), recv_ns))
            return
        rejs.append(Rejection("malformed", "missing name", excerpt(text), recv_ns))
        return
    if type(name) is not str or not name or len(name) > MAX_NAME or not name.isprintable():
        problem = name_problem(name) or "bad name"
        rejs.append(Rejection("bad_name", problem, excerpt(text), recv_ns))
        return
    if "value" not in obj:
        rejs.append(Rejection("malformed", "missing value", excerpt(text), recv_ns))
        return
    value = number(obj["value"])
    if value is None:
        detail = f"value is not a finite number: {obj['value']!r:.60}"
        rejs.append(Rejection("non_numeric", detail, excerpt(text), recv_ns))
        return
    if len(obj) == 2:
        msgs.append(AppMessage(app_name(name), value, recv_ns))
        return
    kind = "gauge"
    k = obj.get("type")
    if k is not None:
        kind = _JSON_KINDS.get(k, "") if type(k) is str else ""
        if not kind:
            detail = f"unknown type {k!r:.40} (gauge, counter or timer)"
            rejs.append(Rejection("malformed", detail, excerpt(text), recv_ns))
            return
    meta = None
    m = obj.get("meta")
    if m is not None:
        meta, meta_problem = check_meta(m)
        if meta_problem is not None:
            rejs.append(Rejection("bad_meta", meta_problem, excerpt(text), recv_ns))
            return
    ts = obj.get("ts")
    if ts is None:
        msgs.append(AppMessage(app_name(name), value, recv_ns, kind, meta))
        return
    if type(ts) is float and ts - ts == 0:
        ts = int(ts)
    if type(ts) is not int or not _MIN_TS_NS <= ts < _MAX_TS_NS:
        detail = f"ts must be Unix time in nanoseconds, got {ts!r:.40}"
        rejs.append(Rejection("malformed", detail, excerpt(text), recv_ns))
        return
    msgs.append(AppMessage(app_name(name), value, ts, kind, meta, True))


# --- StatsD -------------------------------------------------------------------------------


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
            meta, problem = _tags(f[1:])
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
            if not _MIN_TS_NS <= t_ns < _MAX_TS_NS:
                return None, f"bad timestamp {f[:24]!r}"
            return t_ns, None
    return None, None


def _parse_statsd_line(
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
        if not has_ts and len(_tails) < _CACHE_MAX:
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
            meta, problem = _tags(f[1:])
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
        if _MIN_TS_NS <= t_ns < _MAX_TS_NS:
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


# --- one datagram -------------------------------------------------------------------------


def parse_datagram(
    data: bytes, recv_ns: int, dialect: str = "etsy"
) -> tuple[list[AppMessage], list[Rejection]]:
    """Parse one datagram (JSON or StatsD, detected per datagram) into messages.

    Pure and total: never raises, whatever the bytes. Each message (line) is accepted or
    rejected on its own; an oversized or empty datagram counts as one rejection.
    """
    msgs: list[AppMessage] = []
    rejs: list[Rejection] = []
    try:
        _parse(data, recv_ns, dialect, msgs, rejs)
    except Exception as exc:  # noqa: BLE001 - a parser bug must never stop the listener
        rejs.append(Rejection("malformed", f"parser error: {exc!r:.80}", excerpt(data), recv_ns))
    return msgs, rejs


def _parse(
    data: bytes, recv_ns: int, dialect: str, msgs: list[AppMessage], rejs: list[Rejection]
) -> None:
    if len(data) > MAX_DATAGRAM:
        detail = f"datagram of {len(data)} bytes is larger than {MAX_DATAGRAM}"
        rejs.append(Rejection("oversized", detail, excerpt(data[:200]), recv_ns))
        return
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = ""
        for raw in data.split(b"\n"):
            try:
                text += raw.decode() + "\n"
            except UnicodeDecodeError:
                rejs.append(Rejection("malformed", "not UTF-8", excerpt(raw), recv_ns))
    if text[:1] == "{" or text.lstrip()[:1] == "{":
        if "\n" not in text:
            _parse_json_line(text, recv_ns, msgs, rejs)
        else:
            for line in text.split("\n"):
                if line and not line.isspace():
                    _parse_json_line(line, recv_ns, msgs, rejs)
    else:
        for line in text.split("\n") if "\n" in text else (text,):
            line = line.strip()
            if line:
                _parse_statsd_line(line, recv_ns, dialect, msgs, rejs)
    if not msgs and not rejs:
        rejs.append(Rejection("malformed", "empty datagram", excerpt(data), recv_ns))
