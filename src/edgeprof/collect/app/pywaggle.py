"""pywaggle apps need no change: their run log (``data.ndjson``) is followed.

pywaggle writes every ``publish`` to ``$PYWAGGLE_LOG_DIR/data.ndjson`` when that variable is
set; edgeprof mounts a writable folder there and follows the file. Numeric values become
``app.<name>`` samples (meta as labels) at pywaggle's own timestamp; ``upload`` records
become ``app_upload`` events; string values ``app_value`` events.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
from typing import Any

from edgeprof.collect.app.aggregate import EVENTS_PER_REASON
from edgeprof.collect.app.messages import (
    REASONS,
    app_name,
    check_meta,
    excerpt,
    name_problem,
    number,
)
from edgeprof.collect.base import BaseCollector, CollectContext, ContainerSetup
from edgeprof.errors import CollectorUnavailable
from edgeprof.model import Clock, Event, EventKind, Labels, MetricSpec, Sample

PYWAGGLE_DIR_IN_CONTAINER = "/run/pywaggle"

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


class PywaggleLogCollector(BaseCollector):
    """Follows pywaggle's ``data.ndjson`` (written when ``PYWAGGLE_LOG_DIR`` is set).

    ``directory`` is the host folder mounted as the container's ``PYWAGGLE_LOG_DIR``
    (``container_dir`` inside it, to map upload paths back to the host); ``tz`` is the
    container's time zone, since pywaggle writes naive local times: ``auto`` (default),
    ``utc``, ``local``, ``+02:00`` or an IANA name. ``auto`` takes the offset between the
    first line's time and now, rounded to 15 minutes, and records it as an event.

    Numeric values become ``app.<name>`` samples (meta as labels) at pywaggle's timestamp;
    ``upload`` lines become ``app_upload`` events; string values become ``app_value``
    events. The file may appear after ``open``; partial last lines wait for their end.
    """

    group = "app"
    dynamic_metrics = True
    MAX_READ = 16 << 20
    MAX_LINE = 1 << 20

    def __init__(
        self,
        directory: str,
        container_dir: str | None = PYWAGGLE_DIR_IN_CONTAINER,
        tz: str | None = None,
    ) -> None:
        self.directory = directory
        self.path: str | None = None
        self._ctx = CollectContext()
        self._file: Any = None
        self._ino: int | None = None
        self._partial = b""
        self._base: Labels = ()
        self._base_keys: frozenset[str] = frozenset()
        self._tz: _dt.tzinfo | None = _UTC
        self._tz_spec = tz or "auto"
        self._auto_tz = self._tz_spec.lower() == "auto"
        self._container_dir = container_dir
        self.lines = 0
        self.accepted = 0
        self.events = 0
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._clock = Clock()
        self._names: set[str] = set()
        self._version = 0

    @property
    def metrics_version(self) -> int:
        return self._version

    def metrics(self) -> list[MetricSpec]:
        return [MetricSpec(n, "1", "gauge", "pywaggle value") for n in sorted(self._names)]

    def container_setup(self) -> ContainerSetup:
        if self._container_dir is None:
            return ContainerSetup()
        return ContainerSetup(
            volumes=[f"{self.directory}:{self._container_dir}:rw"],
            env={"PYWAGGLE_LOG_DIR": self._container_dir},
        )

    def open(self, ctx: CollectContext) -> None:
        self._ctx = ctx
        self._clock = ctx.clock
        self._base = tuple(ctx.labels)
        self._base_keys = frozenset(k for k, _ in ctx.labels)
        if not self._auto_tz:
            try:
                self._tz = _zone(self._tz_spec)
            except Exception as exc:
                raise CollectorUnavailable(
                    f"pywaggle_tz {self._tz_spec!r} is not a time zone: {exc}"
                ) from exc
        directory = self.directory
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
        return self._ctx.target

    def _emit(self, ev: Event) -> None:
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
            data = {"reason": reason, "detail": detail, "excerpt": excerpt(raw)}
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
        problem = name_problem(name)
        if problem is not None:
            return self._reject("bad_name", problem, raw)
        meta_items, problem = check_meta(obj.get("meta") or {})
        meta = dict(meta_items or ())
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
            kind: EventKind = "app_upload" if name == "upload" else "app_value"
            data: dict[str, Any] = {"name": name, "value": value, "meta": meta or {}}
            if kind == "app_upload":
                data["path"] = value
                host = self._host_path(str(value))
                if host is not None:
                    data["host_path"] = host
            self.events += 1
            events.append(Event(t_ns, kind, f"{name}: {str(value)[:200]}", self._target(), data))
            return None
        num = float(value) if type(value) is bool else number(value)
        if num is None:
            return self._reject("non_numeric", f"value is not a finite number: {value!r:.60}", raw)
        self.accepted += 1
        full = app_name(name)
        if full not in self._names:
            self._names.add(full)
            self._version += 1
        out.append(Sample(full, self._labels(meta), t_ns, num))
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
