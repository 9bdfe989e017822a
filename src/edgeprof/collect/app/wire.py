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

Pure: nothing here touches a socket, a clock or shared state (the StatsD parser, in
:mod:`.statsd`, keeps a bounded cache of parsed line tails). The message types and shared
checks are in :mod:`.messages`.
"""

from __future__ import annotations

import json

from edgeprof.collect.app.messages import (
    CLIENT_STATS_NAME,
    MAX_DATAGRAM,
    MAX_NAME,
    MAX_TS_NS,
    MIN_TS_NS,
    AppMessage,
    Rejection,
    app_name,
    check_meta,
    excerpt,
    name_problem,
    number,
)
from edgeprof.collect.app.statsd import parse_statsd_line

__all__ = ["AppMessage", "Rejection", "parse_datagram"]

_JSON_KINDS = {"gauge": "gauge", "counter": "counter", "timer": "timer"}
_scan_once = json.JSONDecoder().scan_once  # type: ignore[attr-defined] # the C scanner


def _statsd_shaped(text: str) -> bool:
    colon = text.find(":")
    return colon > 0 and text.find("|", colon) > 0 and '"' not in text[:colon]


def _parse_json_line(
    text: str, recv_ns: int, msgs: list[AppMessage], rejs: list[Rejection], dialect: str
) -> None:
    try:
        start = 0 if text[:1] == "{" else len(text) - len(text.lstrip())
        obj, end = _scan_once(text, start)
        if end != len(text) and not text[end:].isspace():
            raise ValueError("extra data after the JSON object")
    except (ValueError, StopIteration, RecursionError) as exc:
        if _statsd_shaped(text):  # a StatsD metric whose name starts with "{"
            parse_statsd_line(text.strip(), recv_ns, dialect, msgs, rejs)
            return
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
    if type(ts) is not int or not MIN_TS_NS <= ts < MAX_TS_NS:
        detail = f"ts must be Unix time in nanoseconds, got {ts!r:.40}"
        rejs.append(Rejection("malformed", detail, excerpt(text), recv_ns))
        return
    msgs.append(AppMessage(app_name(name), value, ts, kind, meta, True))


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
            _parse_json_line(text, recv_ns, msgs, rejs, dialect)
        else:
            for line in text.split("\n"):
                if not line or line.isspace():
                    continue
                if line.lstrip()[:1] == "{":  # each line on its own: JSON, or StatsD
                    _parse_json_line(line, recv_ns, msgs, rejs, dialect)
                else:  # a line not starting with "{" cannot be a JSON object
                    parse_statsd_line(line.strip(), recv_ns, dialect, msgs, rejs)
    else:
        for line in text.split("\n") if "\n" in text else (text,):
            line = line.strip()
            if line:
                parse_statsd_line(line, recv_ns, dialect, msgs, rejs)
    if not msgs and not rejs:
        rejs.append(Rejection("malformed", "empty datagram", excerpt(data), recv_ns))
