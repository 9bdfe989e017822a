"""Metrics the app reports itself: a datagram socket (JSON or StatsD) and pywaggle's run log.

Wire formats, detected per datagram (first non-space byte ``{`` means JSON):

* JSON, one object per datagram or several separated by newlines:
  ``{"name": "fps", "value": 29.7, "ts": <unix ns, optional>, "meta": {...optional},
  "type": "gauge"|"counter"|"timer" (optional, default gauge)}``. An object without
  ``name`` but with ``"client": {"sent": M, "dropped": N, "pid": P}`` is the stats report
  that :mod:`edgeprof.client` sends at exit.
* StatsD lines ``name:value|type[|@rate][|#tag:v,tag2][|T<unix s>]``, several per datagram;
  types ``g`` (gauge; ``+n``/``-n`` change the last value), ``c`` (counter, divided by the
  sample rate), ``ms``/``h``/``d`` (timer: a distribution), ``s`` (set: distinct members).
  DogStatsD tags become meta; ``a:b:c`` multi-values are several messages.

Every series is ``app.<name>`` with the message's meta as labels and the app's own ``ts``
when it sent one (receive time otherwise). Model of kinds, as samples:

* gauge: the value. Timer: the value in ms; its name is in ``timer_metrics`` so summaries
  show p50/p95/p99.
* counter: each increment is a sample of ``app.<name>`` (its value is the increment), and
  the running total per series is a sample of ``app.<name>.total`` (a counter, so rates
  derive from it).
* set: ``app.<name>`` is the number of distinct members seen so far in the run.

Rejected messages are counted by reason (``malformed``, ``non_numeric``, ``bad_name``,
``oversized``, ``bad_meta``); the first few per reason become ``app_metric_rejected``
events. :meth:`AppMetricsCollector.stats` and the ``app_metrics_stats`` event at close give
received = accepted + rejected, plus what clients reported as dropped on their side.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import selectors
import socket
import stat
import threading
from collections.abc import Iterable
from typing import Any, NamedTuple

from edgeprof.collect.base import CollectContext
from edgeprof.errors import CollectorUnavailable
from edgeprof.model import Clock, Event, Labels, MetricSpec, Sample

MAX_DATAGRAM = 65536
MAX_NAME = 200
MAX_META_KEYS = 32
MAX_META_VALUE = 1024
EVENTS_PER_REASON = 5
REASONS = ("malformed", "non_numeric", "bad_name", "oversized", "bad_meta")
DEFAULT_RCVBUF = 8 << 20
CLIENT_STATS_NAME = "edgeprof.client"

# ts must be Unix ns between 2000-01-01 and 2200-01-01 (catches seconds and ms by mistake).
_MIN_TS_NS = 946_684_800 * 10**9
_MAX_TS_NS = 7_258_118_400 * 10**9

_JSON_KINDS = {"gauge": "gauge", "counter": "counter", "timer": "timer"}
_STATSD_KINDS = {"g": "gauge", "c": "counter", "ms": "timer", "h": "timer", "d": "timer"}
_STATSD_KINDS["s"] = "set"

_scan_once = json.JSONDecoder().scan_once  # type: ignore[attr-defined] # the C scanner: no per-call Python overhead
_app_names: dict[str, str] = {}


class AppMessage(NamedTuple):
    """One accepted message. ``name`` is already ``app.<name>``.

    ``kind``: ``gauge``, ``gauge_delta`` (StatsD ``+n|g``), ``counter`` (value = increment,
    sample rate applied), ``timer`` (ms), ``set`` (``member`` holds the member) or
    ``client_stats`` (a client's exit report; ``meta`` holds sent/dropped/pid).
    """

    name: str
    value: float
    t_ns: int
    kind: str = "gauge"
    meta: dict[str, str] | None = None
    app_ts: bool = False
    member: str | None = None


class Rejection(NamedTuple):
    reason: str
    detail: str
    excerpt: str
    t_ns: int


# --- pure parsers ------------------------------------------------------------------------


def _excerpt(raw: bytes | str, limit: int = 120) -> str:
    text = raw if isinstance(raw, str) else raw[: limit * 2].decode("utf-8", "replace")
    return repr(text[:limit]) + ("…" if len(raw) > limit else "")


def _app_name(name: str) -> str:
    full = _app_names.get(name)
    if full is None:
        full = "app." + name
        if len(_app_names) < 65536:
            _app_names[name] = full
    return full


def _name_problem(name: object) -> str | None:
    if type(name) is not str:
        return f"name must be a string, got {type(name).__name__}"
    if not name:
        return "empty name"
    if len(name) > MAX_NAME:
        return f"name longer than {MAX_NAME} characters ({len(name)})"
    if not name.isprintable():
        return "name contains control or non-printable characters"
    return None


def check_meta(meta: object) -> tuple[dict[str, str] | None, str | None]:
    """Meta as a ``{str: str}`` dict (None when empty), or an error message."""
    if type(meta) is not dict:
        return None, f"meta must be an object, got {type(meta).__name__}"
    if not meta:
        return None, None
    if len(meta) > MAX_META_KEYS:
        return None, f"more than {MAX_META_KEYS} meta keys ({len(meta)})"
    out: dict[str, str] = {}
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
        out[k] = s
    return out, None


def _number(value: object) -> float | None:
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
        rejs.append(Rejection("malformed", f"invalid JSON: {msg}", _excerpt(text), recv_ns))
        return
    if type(obj) is not dict:
        rejs.append(Rejection("malformed", "not a JSON object", _excerpt(text), recv_ns))
        return
    name = obj.get("name")
    if name is None:
        client = obj.get("client")
        if type(client) is dict:
            sent = _number(client.get("sent", 0))
            dropped = _number(client.get("dropped", 0))
            if sent is not None and dropped is not None and sent >= 0 and dropped >= 0:
                cmeta = {"sent": str(int(sent)), "dropped": str(int(dropped))}
                cmeta["pid"] = str(client.get("pid", ""))
                msgs.append(AppMessage(CLIENT_STATS_NAME, dropped, recv_ns, "client_stats", cmeta))
                return
            rejs.append(Rejection("malformed", "bad client stats", _excerpt(text), recv_ns))
            return
        rejs.append(Rejection("malformed", "missing name", _excerpt(text), recv_ns))
        return
    if type(name) is not str or not name or len(name) > MAX_NAME or not name.isprintable():
        problem = _name_problem(name) or "bad name"
        rejs.append(Rejection("bad_name", problem, _excerpt(text), recv_ns))
        return
    if "value" not in obj:
        rejs.append(Rejection("malformed", "missing value", _excerpt(text), recv_ns))
        return
    value = _number(obj["value"])
    if value is None:
        v = obj["value"]
        detail = f"value is not a finite number: {v!r:.60}"
        rejs.append(Rejection("non_numeric", detail, _excerpt(text), recv_ns))
        return
    kind = "gauge"
    if len(obj) > 2:
        k = obj.get("type")
        if k is not None:
            kind = _JSON_KINDS.get(k, "") if type(k) is str else ""
            if not kind:
                detail = f"unknown type {k!r:.40} (gauge, counter or timer)"
                rejs.append(Rejection("malformed", detail, _excerpt(text), recv_ns))
                return
        meta = None
        m = obj.get("meta")
        if m is not None:
            meta, meta_problem = check_meta(m)
            if meta_problem is not None:
                rejs.append(Rejection("bad_meta", meta_problem, _excerpt(text), recv_ns))
                return
        ts = obj.get("ts")
        if ts is not None:
            if type(ts) is float and ts - ts == 0:
                ts = int(ts)
            if type(ts) is not int or not _MIN_TS_NS <= ts < _MAX_TS_NS:
                detail = f"ts must be Unix time in nanoseconds, got {ts!r:.40}"
                rejs.append(Rejection("malformed", detail, _excerpt(text), recv_ns))
                return
            msgs.append(AppMessage(_app_name(name), value, ts, kind, meta, True))
            return
        msgs.append(AppMessage(_app_name(name), value, recv_ns, kind, meta))
        return
    msgs.append(AppMessage(_app_name(name), value, recv_ns))


def _parse_statsd_line(
    line: str, recv_ns: int, msgs: list[AppMessage], rejs: list[Rejection]
) -> None:
    name, sep, rest = line.partition(":")
    fields = rest.split("|")
    if not sep or len(fields) < 2:
        rejs.append(Rejection("malformed", "not name:value|type", _excerpt(line), recv_ns))
        return
    problem = _name_problem(name)
    if problem is not None:
        rejs.append(Rejection("bad_name", problem, _excerpt(line), recv_ns))
        return
    kind = _STATSD_KINDS.get(fields[1])
    if kind is None:
        detail = f"unknown StatsD type {fields[1][:10]!r} (g, c, ms, h, d or s)"
        rejs.append(Rejection("malformed", detail, _excerpt(line), recv_ns))
        return
    rate = 1.0
    meta: dict[str, str] | None = None
    t_ns = recv_ns
    app_ts = False
    for f in fields[2:]:
        head = f[:1]
        if head == "@":
            try:
                rate = float(f[1:])
            except ValueError:
                rate = -1.0
            if not 0.0 < rate <= 1.0:
                detail = f"bad sample rate {f[:20]!r}"
                rejs.append(Rejection("malformed", detail, _excerpt(line), recv_ns))
                return
        elif head == "#":
            tags: dict[str, Any] = {}
            for tag in f[1:].split(","):
                key, _, val = tag.partition(":")
                tags[key] = val
            meta, problem = check_meta(tags)
            if problem is not None:
                rejs.append(Rejection("bad_meta", problem, _excerpt(line), recv_ns))
                return
        elif head == "T":
            try:
                t_ns = int(f[1:]) * 1_000_000_000
            except ValueError:
                t_ns = 0
            if not _MIN_TS_NS <= t_ns < _MAX_TS_NS:
                detail = f"bad timestamp {f[:24]!r}"
                rejs.append(Rejection("malformed", detail, _excerpt(line), recv_ns))
                return
            app_ts = True
        # other DogStatsD extensions (|c:<container id>, |e:, |card:) are ignored
    full = _app_name(name)
    for raw in fields[0].split(":") if ":" in fields[0] else (fields[0],):
        if kind == "set":
            if not raw or len(raw) > MAX_META_VALUE:
                rejs.append(Rejection("malformed", "bad set member", _excerpt(line), recv_ns))
                continue
            msgs.append(AppMessage(full, 0.0, t_ns, "set", meta, app_ts, raw))
            continue
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if value - value != 0:
            detail = f"value is not a finite number: {raw[:40]!r}"
            rejs.append(Rejection("non_numeric", detail, _excerpt(line), recv_ns))
            continue
        k = kind
        if kind == "counter":
            value /= rate
        elif kind == "gauge" and raw[:1] in ("+", "-"):
            k = "gauge_delta"
        msgs.append(AppMessage(full, value, t_ns, k, meta, app_ts))


def parse_datagram(data: bytes, recv_ns: int) -> tuple[list[AppMessage], list[Rejection]]:
    """Parse one datagram (JSON or StatsD, detected per datagram) into messages.

    Pure: never raises. Each message (line) is accepted or rejected on its own;
    an oversized or empty datagram counts as one rejection.
    """
    msgs: list[AppMessage] = []
    rejs: list[Rejection] = []
    if len(data) > MAX_DATAGRAM:
        detail = f"datagram of {len(data)} bytes is larger than {MAX_DATAGRAM}"
        rejs.append(Rejection("oversized", detail, _excerpt(data[:200]), recv_ns))
        return msgs, rejs
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = ""
        for raw in data.split(b"\n"):
            try:
                text += raw.decode() + "\n"
            except UnicodeDecodeError:
                rejs.append(Rejection("malformed", "not UTF-8", _excerpt(raw), recv_ns))
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
                _parse_statsd_line(line, recv_ns, msgs, rejs)
    if not msgs and not rejs:
        rejs.append(Rejection("malformed", "empty datagram", _excerpt(data), recv_ns))
    return msgs, rejs


# --- the socket listener -----------------------------------------------------------------


def _udp_kernel_drops(sock: socket.socket, proc_root: str = "/proc") -> int | None:
    """Datagrams the kernel dropped for this UDP socket (``drops`` in /proc/net/udp)."""
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
        for name in ("udp", "udp6"):
            with open(os.path.join(proc_root, "net", name)) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if len(parts) >= 13 and parts[9] == inode:
                        return int(parts[12])
    except (OSError, ValueError, StopIteration):
        return None
    return None


class AppMetricsCollector:
    """Listens on a per-run Unix datagram socket (and optionally UDP on loopback).

    Options (``ctx.options``): ``socket_path`` (Unix datagram socket to create),
    ``udp_port`` (None: no UDP; 0: an ephemeral port, see ``udp_port`` after ``open``),
    ``socket_uid``/``socket_gid`` (narrow write access to that user/group), ``rcvbuf``.

    Permissions: the socket's directory is created 0o711 (others may traverse it but not
    list, create or replace entries) and the socket is made write-only, 0o222 (connecting
    and sending needs write permission and nothing else). With ``socket_uid`` (the
    container's user, as seen from the host) it is chowned and made 0o200 instead. Mount
    the directory read-only into the container: sending to a socket still works there,
    and even a root container user cannot remove or replace it.

    A receiver thread parses datagrams as they come (the sampler never waits for
    parsing); ``sample`` hands over what arrived since the last call. ``sample`` may be
    called once more after ``close`` to get the tail.
    """

    group = "app"
    dynamic_metrics = True  # metrics() grows as messages arrive; the sampler re-reads it
    sample_after_close = True  # close() drains what is still queued; one more sample() returns it

    def __init__(self) -> None:
        self.socket_path: str | None = None
        self.udp_port: int | None = None
        self.timer_metrics: set[str] = set()
        self.metrics_version = 0
        self.counter_metrics: set[str] = set()
        self.set_metrics: set[str] = set()
        self._ctx: CollectContext | None = None
        self._clock = Clock()
        self._base: Labels = ()
        self._base_keys: frozenset[str] = frozenset()
        self._label_cache: dict[tuple[tuple[str, str], ...], Labels] = {}
        self._lock = threading.Lock()
        self._out: list[Sample] = []
        self._events: list[Event] = []
        self._totals: dict[tuple[str, Labels], float] = {}
        self._gauges: dict[tuple[str, Labels], float] = {}
        self._sets: dict[tuple[str, Labels], set[str]] = {}
        self._client: dict[str, tuple[int, int]] = {}
        self._client_reports = 0
        self.received = 0
        self.accepted = 0
        self.datagrams = 0
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._unix: socket.socket | None = None
        self._udp: socket.socket | None = None
        self._udp_drops: int | None = None
        self._created_dir: str | None = None
        self._wake_r = self._wake_w = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- Collector protocol --

    def metrics(self) -> list[MetricSpec]:
        """App metrics are discovered at run time: the ones seen so far."""
        with self._lock:
            timers, counters, sets = (
                sorted(self.timer_metrics),
                sorted(self.counter_metrics),
                sorted(self.set_metrics),
            )
        specs = [MetricSpec(n, "ms", "gauge", "app timer (distribution)") for n in timers]
        for n in counters:
            specs.append(MetricSpec(n, "1", "gauge", "app counter increment"))
            specs.append(MetricSpec(n + ".total", "1", "counter", "app counter running total"))
        specs.extend(MetricSpec(n, "1", "gauge", "distinct set members") for n in sets)
        return specs

    def open(self, ctx: CollectContext) -> None:
        opts = ctx.options
        path = opts.get("socket_path")
        udp_port = opts.get("udp_port")
        if not path and udp_port is None:
            raise CollectorUnavailable("app metrics need a socket_path or a udp_port option")
        self._ctx = ctx
        self._clock = opts.get("clock") or Clock()
        self._base = tuple(ctx.labels)
        self._base_keys = frozenset(k for k, _ in ctx.labels)
        rcvbuf = int(opts.get("rcvbuf", DEFAULT_RCVBUF))
        try:
            if path:
                self._unix = self._bind_unix(str(path), opts)
                self._set_rcvbuf(self._unix, rcvbuf)
            if udp_port is not None:
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._udp = udp
                udp.bind(("127.0.0.1", int(udp_port)))
                udp.setblocking(False)
                self._set_rcvbuf(udp, rcvbuf)
                self.udp_port = udp.getsockname()[1]
        except OSError as exc:
            self._close_sockets()
            raise CollectorUnavailable(f"cannot open the app metrics socket: {exc}") from exc
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread = threading.Thread(target=self._run, name="edgeprof-appmetrics", daemon=True)
        self._thread.start()

    def sample(self, now_ns: int) -> list[Sample]:
        with self._lock:
            out, self._out = self._out, []
            events, self._events = self._events, []
        self._emit(events)
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self._udp is not None:
            self._udp_drops = _udp_kernel_drops(self._udp)
        self._close_sockets()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1
        with self._lock:
            events, self._events = self._events, []
        now = self._clock.now_ns()
        target = self._ctx.target if self._ctx else None
        if self.timer_metrics or self.counter_metrics or self.set_metrics:
            kinds = {
                "timers": sorted(self.timer_metrics),
                "counters": sorted(self.counter_metrics),
                "sets": sorted(self.set_metrics),
            }
            msg = f"app metric kinds: {len(self.timer_metrics)} timer(s)"
            events.append(Event(now, "app_metric_kinds", msg, target, kinds))
        st = self.stats()
        msg = (
            f"app metrics: {st['received']} received, {st['accepted']} accepted, "
            f"{st['rejected_total']} rejected, {st['client_dropped']} dropped by the app"
        )
        events.append(Event(now, "app_metrics_stats", msg, target, st))
        self._emit(events)

    # -- numbers --

    def stats(self) -> dict[str, Any]:
        """received = accepted + rejected_total; client_* come from the clients' exit reports."""
        with self._lock:
            rejected = dict(self.rejected)
            client_sent = sum(s for s, _ in self._client.values())
            client_dropped = sum(d for _, d in self._client.values())
            return {
                "received": self.received,
                "accepted": self.accepted,
                "rejected": rejected,
                "rejected_total": sum(rejected.values()),
                "datagrams": self.datagrams,
                "client_reports": self._client_reports,
                "client_sent": client_sent,
                "client_dropped": client_dropped,
                "udp_kernel_drops": self._udp_drops,
                "not_sampled": len(self._out),
            }

    # -- internals --

    def _bind_unix(self, path: str, opts: dict[str, Any]) -> socket.socket:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o711)
            os.chmod(parent, 0o711)
            self._created_dir = parent
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)  # a stale socket from an earlier run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(path)  # created with the umask (never wider than 0o777 - umask)
            self.socket_path = path
            uid, gid = opts.get("socket_uid"), opts.get("socket_gid")
            if uid is not None or gid is not None:
                os.chown(path, -1 if uid is None else int(uid), -1 if gid is None else int(gid))
                os.chmod(
                    path, (0o200 if uid is not None else 0) | (0o020 if gid is not None else 0)
                )
            else:
                os.chmod(path, 0o222)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    @staticmethod
    def _set_rcvbuf(sock: socket.socket, size: int) -> None:
        force = getattr(socket, "SO_RCVBUFFORCE", 33 if os.uname().sysname == "Linux" else None)
        if force is not None and hasattr(os, "geteuid") and os.geteuid() == 0:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, force, size)
                return
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    def _close_sockets(self) -> None:
        for sock in (self._unix, self._udp):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self._unix = self._udp = None
        if self.socket_path:
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)
        if self._created_dir:
            with contextlib.suppress(OSError):
                os.rmdir(self._created_dir)
            self._created_dir = None

    def _emit(self, events: Iterable[Event]) -> None:
        if self._ctx is None:
            return
        for ev in events:
            try:
                self._ctx.emit_event(ev)
            except Exception:  # noqa: BLE001 - an event sink must not break the run
                pass

    def _run(self) -> None:
        socks = [s for s in (self._unix, self._udp) if s is not None]
        sel = selectors.DefaultSelector()
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        buf = bytearray(MAX_DATAGRAM + 1)
        view = memoryview(buf)
        now = self._clock.now_ns
        ingest = self._ingest
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=1.0):
                    sock = key.fileobj
                    if not isinstance(sock, socket.socket):
                        continue
                    recv_into = sock.recv_into
                    while True:
                        try:
                            n = recv_into(buf)
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            break
                        ingest(view[:n].tobytes(), now())
            for s in socks:  # what is already queued at close still counts
                while True:
                    try:
                        n = s.recv_into(buf)
                    except OSError:
                        break
                    ingest(view[:n].tobytes(), now())
        finally:
            sel.close()

    def _labels(self, meta: dict[str, str]) -> Labels:
        key = tuple(meta.items())
        labels = self._label_cache.get(key)
        if labels is None:
            merged = dict(self._base)
            for k, v in meta.items():
                merged["app_" + k if k in self._base_keys else k] = v
            labels = tuple(sorted(merged.items()))
            if len(self._label_cache) < 10000:
                self._label_cache[key] = labels
        return labels

    def _discover(self, names: set[str], name: str) -> None:
        """A metric seen for the first time (receiver thread): the sampler re-reads metrics()."""
        with self._lock:
            names.add(name)
            self.metrics_version += 1

    def _ingest(self, data: bytes, recv_ns: int) -> None:
        """Parse one datagram and queue its samples (receiver thread)."""
        try:
            msgs, rejs = parse_datagram(data, recv_ns)
        except Exception as exc:  # noqa: BLE001 - never let one datagram stop the listener
            msgs, rejs = (
                [],
                [Rejection("malformed", f"parser error: {exc}", _excerpt(data), recv_ns)],
            )
        out: list[Sample] = []
        base = self._base
        n_client = 0
        gauges = self._gauges
        for m in msgs:
            kind = m.kind
            labels = base if m.meta is None else self._labels(m.meta)
            if kind == "gauge":
                out.append(Sample(m.name, labels, m.t_ns, m.value))
                gauges[(m.name, labels)] = m.value  # the base of later StatsD +n/-n
            elif kind == "timer":
                out.append(Sample(m.name, labels, m.t_ns, m.value))
                if m.name not in self.timer_metrics:
                    self._discover(self.timer_metrics, m.name)
            elif kind == "counter":
                key = (m.name, labels)
                total = self._totals.get(key, 0.0) + m.value
                self._totals[key] = total
                out.append(Sample(m.name, labels, m.t_ns, m.value))
                out.append(Sample(m.name + ".total", labels, m.t_ns, total))
                if m.name not in self.counter_metrics:
                    self._discover(self.counter_metrics, m.name)
            elif kind == "gauge_delta":
                key = (m.name, labels)
                value = gauges.get(key, 0.0) + m.value
                gauges[key] = value
                out.append(Sample(m.name, labels, m.t_ns, value))
            elif kind == "set":
                members = self._sets.setdefault((m.name, labels), set())
                if len(members) < 1_000_000:
                    members.add(m.member or "")
                out.append(Sample(m.name, labels, m.t_ns, float(len(members))))
                if m.name not in self.set_metrics:
                    self._discover(self.set_metrics, m.name)
            elif kind == "client_stats":
                meta = m.meta or {}
                with self._lock:
                    pid = meta.get("pid", "") or f"anon{len(self._client)}"
                    self._client[pid] = (int(meta.get("sent", 0)), int(meta.get("dropped", 0)))
                    self._client_reports += 1
                n_client += 1
        with self._lock:
            self.datagrams += 1
            self.received += len(msgs) - n_client + len(rejs)
            self.accepted += len(msgs) - n_client
            if out:
                self._out.extend(out)
            for r in rejs:
                count = self.rejected.get(r.reason, 0) + 1
                self.rejected[r.reason] = count
                if count <= EVENTS_PER_REASON:
                    self._events.append(
                        Event(
                            r.t_ns,
                            "app_metric_rejected",
                            f"app metric rejected ({r.reason}): {r.detail}",
                            self._ctx.target if self._ctx else None,
                            {"reason": r.reason, "detail": r.detail, "excerpt": r.excerpt},
                        )
                    )


# --- pywaggle's run log ------------------------------------------------------------------

_ISO_RE = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(\d{3})?(?:\.(\d+))?"
    r"(Z|[+-]\d\d(?::?\d\d)?)?(\d{3})?$"
)


_UTC = _dt.timezone.utc
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_US = _dt.timedelta(microseconds=1)


def _pywaggle_us(ns: int) -> int:
    """Microseconds since the epoch as pywaggle computes them (float seconds, rounded)."""
    return (_dt.datetime.fromtimestamp(ns / 1e9, _UTC) - _EPOCH) // _US


def parse_pywaggle_timestamp(text: str, naive_tz: _dt.tzinfo | None = _UTC) -> int | None:
    """Unix ns from pywaggle's run-log timestamp, or None.

    pywaggle writes ``datetime.fromtimestamp(ns / 1e9).isoformat() + f"{ns % 1000:03d}"``:
    local time without a zone, microseconds rounded from a float, then the last three
    digits of the nanoseconds (``…T13:31:02.123457789``, or ``…T13:31:02789`` when the
    microseconds are zero, since isoformat then omits them). The float rounding is redone
    to recover the exact nanoseconds. A zone (``Z``, ``+02:00``) is honoured; naive times
    are read in ``naive_tz`` (the writer's time zone; None: this host's local zone).
    """
    m = _ISO_RE.match(text)
    if m is None:
        return None
    y, mo, d, hh, mi, ss, nanos_a, frac, zone, nanos_b = m.groups()
    try:
        base = _dt.datetime(int(y), int(mo), int(d), int(hh), int(mi), int(ss))
        if zone is not None:
            if zone == "Z":
                tz: _dt.tzinfo | None = _UTC
            else:
                z = zone[1:].replace(":", "")
                delta = _dt.timedelta(hours=int(z[:2]), minutes=int(z[2:4] or 0))
                tz = _dt.timezone(-delta if zone[0] == "-" else delta)
        else:
            tz = naive_tz
        secs = int(base.replace(tzinfo=tz).timestamp()) if tz is not None else int(base.timestamp())
    except (ValueError, OverflowError, OSError):
        return None
    extra = nanos_a or nanos_b
    if frac is None:
        micros = 0
    elif extra is not None and len(frac) <= 6:
        micros = int(frac.ljust(6, "0"))
    elif extra is None and len(frac) == 9:  # micro (6) + pywaggle's nanos (3)
        micros, extra = int(frac[:6]), frac[6:]
    else:
        return secs * 1_000_000_000 + int(frac[:9].ljust(9, "0"))
    if extra is None:
        return secs * 1_000_000_000 + micros * 1000
    # pywaggle form: the printed microseconds may have been rounded up from the one before
    printed = secs * 1_000_000 + micros
    last3 = int(extra)
    ns = printed * 1000 + last3
    same, before = _pywaggle_us(ns) == printed, _pywaggle_us(ns - 1000) == printed
    if same != before:
        return ns if same else ns - 1000
    return ns - 1000 if last3 >= 500 else ns  # both (or neither) fit: 1 µs either way


def _zone(spec: str) -> _dt.tzinfo | None:
    """A time zone from ``utc``, ``+02:00`` or an IANA name; None for ``local``."""
    s = spec.strip()
    if s.lower() in ("utc", "z"):
        return _UTC
    if s.lower() == "local":
        return None
    m = re.fullmatch(r"([+-])(\d\d):?(\d\d)", s)
    if m:
        delta = _dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
        return _dt.timezone(-delta if m.group(1) == "-" else delta)
    from zoneinfo import ZoneInfo

    return ZoneInfo(s)


class PywaggleLogCollector:
    """Follows pywaggle's ``data.ndjson`` (written when ``PYWAGGLE_LOG_DIR`` is set).

    Options: ``pywaggle_dir`` (the host directory mounted as the container's
    ``PYWAGGLE_LOG_DIR``), ``pywaggle_container_dir`` (that directory inside the container,
    to map upload paths back to the host), ``pywaggle_tz`` (``auto`` (default), ``utc``,
    ``local``, ``+02:00`` or an IANA name: the container's time zone, since pywaggle writes
    naive local times). ``auto`` takes the offset between the first line's time and now,
    rounded to 15 minutes, and records it as an event.

    Numeric values become ``app.<name>`` samples (meta as labels) at pywaggle's timestamp;
    ``upload`` lines become ``app_upload`` events; string values become ``app_value``
    events. The file may appear after ``open``; partial last lines wait for their end.
    """

    group = "app"
    MAX_READ = 16 << 20
    MAX_LINE = 1 << 20

    def __init__(self) -> None:
        self.path: str | None = None
        self._ctx: CollectContext | None = None
        self._file: Any = None
        self._ino: int | None = None
        self._partial = b""
        self._base: Labels = ()
        self._base_keys: frozenset[str] = frozenset()
        self._tz: _dt.tzinfo | None = _UTC
        self._auto_tz = True
        self._container_dir: str | None = None
        self.lines = 0
        self.accepted = 0
        self.events = 0
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._clock = Clock()

    def metrics(self) -> list[MetricSpec]:
        return []

    def open(self, ctx: CollectContext) -> None:
        opts = ctx.options
        directory = opts.get("pywaggle_dir")
        if not directory:
            raise CollectorUnavailable("pywaggle log following needs a pywaggle_dir option")
        self._ctx = ctx
        self._clock = opts.get("clock") or Clock()
        self._base = tuple(ctx.labels)
        self._base_keys = frozenset(k for k, _ in ctx.labels)
        self._container_dir = opts.get("pywaggle_container_dir")
        tz = str(opts.get("pywaggle_tz", "auto"))
        self._auto_tz = tz.lower() == "auto"
        if not self._auto_tz:
            try:
                self._tz = _zone(tz)
            except Exception as exc:
                raise CollectorUnavailable(f"pywaggle_tz {tz!r} is not a time zone: {exc}") from exc
        if not os.path.isdir(directory):
            try:
                os.makedirs(directory)
                os.chmod(directory, 0o1777)  # the container user writes here, as in /tmp
            except OSError as exc:
                raise CollectorUnavailable(f"cannot create {directory}: {exc}") from exc
        self.path = os.path.join(directory, "data.ndjson")

    def sample(self, now_ns: int) -> list[Sample]:
        out: list[Sample] = []
        events: list[Event] = []
        for line in self._read_lines():
            self._line(line, now_ns, out, events)
        for ev in events:
            self._emit(ev)
        return out

    def close(self) -> None:
        """Emits ``pywaggle_stats``. Call ``sample`` once more before to get the last lines."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        now = self._clock.now_ns()
        st = self.stats()
        msg = (
            f"pywaggle log: {st['lines']} lines, {st['accepted']} samples, "
            f"{st['events']} events, {st['rejected_total']} rejected"
        )
        self._emit(Event(now, "pywaggle_stats", msg, self._target(), st))

    def stats(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "accepted": self.accepted,
            "events": self.events,
            "rejected": dict(self.rejected),
            "rejected_total": sum(self.rejected.values()),
            "partial_bytes": len(self._partial),
        }

    # -- internals --

    def _target(self) -> str | None:
        return self._ctx.target if self._ctx else None

    def _emit(self, ev: Event) -> None:
        if self._ctx is not None:
            with contextlib.suppress(Exception):
                self._ctx.emit_event(ev)

    def _read_lines(self) -> list[bytes]:
        if self.path is None:
            return []
        chunks: list[bytes] = []
        try:
            if self._file is None:
                self._file = open(self.path, "rb")  # noqa: SIM115 - kept open to follow it
                self._ino = os.fstat(self._file.fileno()).st_ino
            st = os.fstat(self._file.fileno())
            if st.st_size < self._file.tell():  # truncated: start again
                self._file.seek(0)
                self._partial = b""
            chunks.append(self._file.read(self.MAX_READ))
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino != self._ino:  # replaced: finish old, follow new
                    chunks.append(self._file.read(self.MAX_READ))
                    self._file.close()
                    self._file = None
        except FileNotFoundError:
            return []
        except OSError:
            return []
        data = self._partial + b"".join(chunks)
        if not data:
            return []
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > self.MAX_LINE:
            self._reject("oversized", f"line longer than {self.MAX_LINE} bytes", self._partial)
            self._partial = b""
        return lines

    def _reject(self, reason: str, detail: str, raw: bytes) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        if self.rejected[reason] <= EVENTS_PER_REASON:
            data = {"reason": reason, "detail": detail, "excerpt": _excerpt(raw)}
            ev = Event(
                self._clock.now_ns(),
                "app_metric_rejected",
                f"pywaggle line rejected ({reason}): {detail}",
                self._target(),
                data,
            )
            self._emit(ev)

    def _labels(self, meta: dict[str, str] | None) -> Labels:
        if not meta:
            return self._base
        merged = dict(self._base)
        for k, v in meta.items():
            merged["app_" + k if k in self._base_keys else k] = v
        return tuple(sorted(merged.items()))

    def _line(self, raw: bytes, now_ns: int, out: list[Sample], events: list[Event]) -> None:
        if not raw.strip():
            return
        self.lines += 1
        try:
            obj = json.loads(raw)
        except ValueError:
            return self._reject("malformed", "invalid JSON", raw)
        if type(obj) is not dict or "name" not in obj or "value" not in obj:
            return self._reject("malformed", "not a pywaggle record", raw)
        name = obj["name"]
        problem = _name_problem(name)
        if problem is not None:
            return self._reject("bad_name", problem, raw)
        meta, problem = check_meta(obj.get("meta") or {})
        if problem is not None:
            return self._reject("bad_meta", problem, raw)
        ts_text = obj.get("timestamp")
        if not isinstance(ts_text, str) or _ISO_RE.match(ts_text) is None:
            return self._reject("malformed", f"bad timestamp {ts_text!r:.40}", raw)
        if self._auto_tz:
            self._infer_offset(ts_text, now_ns)
        t_ns = parse_pywaggle_timestamp(ts_text, self._tz)
        if t_ns is None:
            return self._reject("malformed", f"bad timestamp {ts_text!r:.40}", raw)
        value = obj["value"]
        if name == "upload" or type(value) is str:
            kind = "app_upload" if name == "upload" else "app_value"
            data: dict[str, Any] = {"name": name, "value": value, "meta": meta or {}}
            if kind == "app_upload":
                data["path"] = value
                host = self._host_path(str(value))
                if host is not None:
                    data["host_path"] = host
            self.events += 1
            events.append(Event(t_ns, kind, f"{name}: {str(value)[:200]}", self._target(), data))
            return None
        number = float(value) if type(value) is bool else _number(value)
        if number is None:
            return self._reject("non_numeric", f"value is not a finite number: {value!r:.60}", raw)
        self.accepted += 1
        out.append(Sample(_app_name(name), self._labels(meta), t_ns, number))
        return None

    def _infer_offset(self, ts_text: str, now_ns: int) -> None:
        """``auto`` time zone: the first naive time minus now, rounded to 15 minutes."""
        m = _ISO_RE.match(ts_text)
        naive = parse_pywaggle_timestamp(ts_text, _UTC)
        if m is None or naive is None or m.group(9):  # zone-aware times need no offset
            return
        lag_s = (naive - self._clock.now_ns()) / 1e9
        offset_s = round(lag_s / 900.0) * 900.0
        self._tz = _dt.timezone(_dt.timedelta(seconds=offset_s))
        self._auto_tz = False
        msg = (
            "pywaggle writes local times without a zone; taking the container's UTC offset "
            f"as {offset_s / 3600:+.2f} h (set pywaggle_tz to the container's zone to be exact)"
        )
        data = {"utc_offset_s": offset_s}
        self._emit(Event(now_ns, "pywaggle_timezone", msg, self._target(), data))

    def _host_path(self, path: str) -> str | None:
        if self.path is None:
            return None
        directory = os.path.dirname(self.path)
        if self._container_dir and path.startswith(self._container_dir.rstrip("/") + "/"):
            rel = path[len(self._container_dir.rstrip("/")) + 1 :]
            return os.path.join(directory, rel)
        return path if path.startswith(directory + "/") else None
