"""App messages as the wire parsers produce them, and the checks every format shares."""

from __future__ import annotations

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
MIN_TS_NS = 946_684_800 * 10**9
MAX_TS_NS = 7_258_118_400 * 10**9

_app_names: dict[str, str] = {}
CACHE_MAX = 65536


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
        if len(_app_names) < CACHE_MAX:
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


def tags(text: str) -> tuple[Meta | None, str | None]:
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
