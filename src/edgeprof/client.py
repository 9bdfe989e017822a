"""Publish app metrics to edgeprof: standard library only, one self-contained file.

(Longer than edgeprof's other modules on purpose: apps copy this one file into their image,
so it must hold everything — encoding, the non-blocking socket, the bounded buffer, the
exit report — and import nothing else of edgeprof.)

Use it from an app image either by installing edgeprof (see the README; only this module
is imported, nothing heavy) or by copying this single file next to your code as
``edgeprof_client.py``. It works on Python 3.8 and later and has no dependencies::

    from edgeprof import client as ep          # or: import edgeprof_client as ep

    ep.publish("detections", 3, camera="left")  # a gauge; keyword arguments become labels
    with ep.timer("infer"):                     # a distribution: p50/p95/p99 in the summary
        model(frame)
    fps = ep.FPS()                              # publishes frames/second once per interval
    while True:
        ...
        fps.tick()
    ep.increment("frames_dropped")              # a counter

Where the messages go is read from the environment on the first call:
``EDGEPROF_METRICS_SOCKET`` (a Unix datagram socket that edgeprof mounts into the container)
or ``EDGEPROF_METRICS_UDP`` (``host:port``). Without either, every call is a cheap no-op.

Guarantees: no call ever raises and none ever blocks. When the profiler cannot keep up
(socket full) messages are kept in a small bounded buffer, stamped with their time and sent
batched on a later call; beyond that buffer (1 MiB) they are dropped and counted. At exit one
stats message ``{"client":{"sent":M,"dropped":N,"pid":P}}`` tells the profiler how many
messages the app side dropped, so nothing is lost silently.

Wire format (one JSON object per datagram, or several separated by newlines)::

    {"name":"fps","value":29.7}
    {"name":"infer","value":12.5,"type":"timer","ts":1720531862123456789,"meta":{"model":"yolo"}}

``type`` is ``gauge`` (default, omitted), ``counter`` or ``timer`` (milliseconds); ``ts`` is
Unix time in nanoseconds and is only present when given (or when a message was delayed).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "FPS",
    "configure",
    "counter",
    "dropped",
    "flush",
    "increment",
    "publish",
    "send_stats",
    "stats",
    "timer",
]

ENV_SOCKET = "EDGEPROF_METRICS_SOCKET"
ENV_UDP = "EDGEPROF_METRICS_UDP"

MAX_BATCH_BYTES = 60000
"""A delayed batch stays below the profiler's 64 KiB per-datagram limit."""
MAX_PENDING_BYTES = 1 << 20
"""Bound on what is kept while the profiler is not keeping up; beyond it, messages drop."""
RETRY_CONNECT_S = 1.0
"""How often a disconnected client tries to reach the profiler again."""
_SNDBUF = 1 << 20
_MAX_CACHED_NAMES = 4096

# Errors after which the profiler is gone (or not there yet): drop, reconnect later.
_GONE = frozenset({errno.ECONNREFUSED, errno.ENOENT, errno.ENOTCONN, errno.EPIPE, errno.ECONNRESET})

# --- state (module globals: the fast path reads them without attribute look-ups) --------
_UNINIT, _ACTIVE, _DISABLED = 0, 1, 2
_state = _UNINIT
_sock: socket.socket | None = None
_sock_send: Callable[..., int] | None = None  # the socket's send, or a stub that raises
_address: tuple[str, Any] | None = None  # ("unix", path) or ("udp", (host, port))
_retry_at = 0.0
_sent = 0
_dropped = 0
_pending: list[bytes] = []
_pending_bytes = 0
_lock = threading.Lock()
_heads: dict[str, bytes] = {}
_stats_sent = False


class _NotConnected(OSError):
    pass


def _not_connected(data: bytes) -> int:
    if time.monotonic() >= _retry_at and _connect():
        return _sock_send(data)  # type: ignore[misc]
    raise _NotConnected(errno.ENOTCONN, "edgeprof metrics socket not connected")


def _parse_udp(value: str) -> tuple[str, int] | None:
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit():
        return None
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def _connect() -> bool:
    """(Re)connect the non-blocking socket; on failure, send through a stub that retries."""
    global _sock, _sock_send, _retry_at
    _retry_at = time.monotonic() + RETRY_CONNECT_S
    if _sock is not None:
        with contextlib.suppress(OSError):
            _sock.close()
        _sock = None
    _sock_send = _not_connected
    if _address is None:
        return False
    family, addr = _address
    try:
        if family == "unix":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        else:
            info = socket.getaddrinfo(addr[0], addr[1], 0, socket.SOCK_DGRAM)[0]
            s = socket.socket(info[0], socket.SOCK_DGRAM)
            addr = info[4]
    except OSError:
        return False
    try:
        s.setblocking(False)
        with contextlib.suppress(OSError):  # more room in flight; capped at net.core.wmem_max
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
        s.connect(addr)
    except OSError:
        s.close()
        return False
    _sock = s
    _sock_send = s.send
    return True


def _init() -> bool:
    """Read the environment once; True when messages can be sent."""
    global _state, _address
    with _lock:
        if _state != _UNINIT:
            return _state == _ACTIVE
        path = os.environ.get(ENV_SOCKET, "")
        udp = _parse_udp(os.environ.get(ENV_UDP, ""))
        if path and hasattr(socket, "AF_UNIX"):
            _address = ("unix", path)
        elif udp is not None:
            _address = ("udp", udp)
        else:
            _state = _DISABLED
            return False
        _connect()
        _state = _ACTIVE
        return True


def configure(socket_path: str | None = None, udp: str | None = None) -> bool:
    """Point the client somewhere explicitly (instead of the environment); None disables it.

    Returns True when a destination was set. Mostly useful for tests and benchmarks.
    """
    global _state, _address
    with _lock:
        if socket_path:
            _address = ("unix", socket_path)
        elif udp and _parse_udp(udp) is not None:
            _address = ("udp", _parse_udp(udp))
        else:
            _address = None
        _connect()
        _state = _ACTIVE if _address is not None else _DISABLED
        return _address is not None


# --- encoding ----------------------------------------------------------------------------


def _head(name: str) -> bytes:
    """``{"name":"<name>","value":`` for a name, cached."""
    head = _heads.get(name)
    if head is None:
        import json

        head = ('{"name":' + json.dumps(name) + ',"value":').encode()
        if len(_heads) < _MAX_CACHED_NAMES:
            _heads[name] = head
    return head


def _encode(name: object, value: object, ts: object, meta: dict, kind: str | None) -> bytes:
    import json

    if type(value) is bool:
        value = int(value)
    elif type(value) not in (int, float, str) and hasattr(value, "__float__"):
        value = float(value)  # numpy scalars, Decimal, …
    parts = [
        _head(name if type(name) is str else str(name)),
        json.dumps(value, default=str).encode(),
    ]
    if kind is not None:
        parts.append(b',"type":"' + kind.encode() + b'"')
    if ts is not None:
        parts.append(b',"ts":%d' % int(ts))  # type: ignore[call-overload]
    if meta:
        parts.append(b',"meta":' + json.dumps(meta, separators=(",", ":"), default=str).encode())
    parts.append(b"}")
    return b"".join(parts)


# --- sending -----------------------------------------------------------------------------


def _deliver(data: bytes, stamped: bool) -> None:
    """Send one encoded message, or queue it behind those already waiting (order is kept)."""
    global _sent
    if _pending:
        _enqueue(data, stamped)
        return
    try:
        _sock_send(data)  # type: ignore[misc]
        _sent += 1
    except BlockingIOError:
        _enqueue(data, stamped)
    except Exception as exc:
        _send_failed(data, exc, stamped)


def publish(name: str, value: float, ts: int | None = None, **meta: object) -> None:
    """Publish one value as ``app.<name>``; ``ts`` is Unix ns, keyword arguments are labels.

    Never raises, never blocks; a no-op when no profiler is configured.
    """
    if _state != _ACTIVE and (_state == _DISABLED or not _init()):
        return
    try:
        t = type(value)
        if ts is None and not meta and (t is int or (t is float and value - value == 0)):
            head = _heads.get(name)
            if head is None:
                head = _head(name if type(name) is str else str(name))
            data = head + b"%r}" % value
        else:
            data = _encode(name, value, ts, meta, None)
    except Exception:
        return _count_drop()
    _deliver(data, ts is not None)


def _publish_kind(name: str, value: float, kind: str, ts: int | None, meta: dict) -> None:
    if _state != _ACTIVE and (_state == _DISABLED or not _init()):
        return
    try:
        data = _encode(name, value, ts, meta, kind)
    except Exception:
        return _count_drop()
    _deliver(data, ts is not None)


def _count_drop(n: int = 1) -> None:
    global _dropped
    with _lock:
        _dropped += n


def _send_failed(data: bytes, exc: BaseException, has_ts: bool) -> None:
    code = getattr(exc, "errno", None)
    if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
        return _enqueue(data, has_ts)
    _count_drop()
    if code in _GONE and not isinstance(exc, _NotConnected):
        with _lock:  # the profiler went away (or restarted): reconnect later
            _connect()


def _enqueue(data: bytes, has_ts: bool) -> None:
    """Keep a message the socket could not take; send what is kept as batches."""
    global _pending_bytes, _dropped
    try:
        if not has_ts:  # it will arrive late: carry the time it was published
            data = data[:-1] + b',"ts":%d}' % time.time_ns()
        with _lock:
            if _pending_bytes + len(data) > MAX_PENDING_BYTES:
                _flush_locked()
                if _pending_bytes + len(data) > MAX_PENDING_BYTES:
                    _dropped += 1
                    return
            _pending.append(data)
            _pending_bytes += len(data) + 1
            _flush_locked()
    except Exception:
        pass


def _flush_locked() -> bool:
    """Send kept messages in batches until the socket is full; True when none are left."""
    global _pending_bytes, _sent, _dropped
    while _pending:
        n, size = 0, 0
        for item in _pending:
            if n and size + len(item) + 1 > MAX_BATCH_BYTES:
                break
            n += 1
            size += len(item) + 1
        batch = _pending[0] if n == 1 else b"\n".join(_pending[:n])
        try:
            _sock_send(batch)  # type: ignore[misc]
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                return False
            _dropped += len(_pending)  # the profiler is gone: what is kept cannot arrive
            del _pending[:]
            _pending_bytes = 0
            if exc.errno in _GONE and not isinstance(exc, _NotConnected):
                _connect()
            return True
        except Exception:
            return False
        del _pending[:n]
        _pending_bytes -= size
        _sent += n
    return True


def flush(timeout: float = 0.0) -> bool:
    """Try to send kept messages, waiting at most ``timeout`` seconds; True when none left."""
    try:
        deadline = time.monotonic() + timeout
        while True:
            with _lock:
                if _flush_locked():
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)
    except Exception:
        return False


# --- helpers -----------------------------------------------------------------------------


def increment(name: str, n: float = 1, ts: int | None = None, **meta: object) -> None:
    """Add ``n`` to the counter ``app.<name>`` (the profiler keeps ``app.<name>.total``)."""
    _publish_kind(name, n, "counter", ts, meta)


class counter:  # noqa: N801 - reads like a function
    """A named counter: ``frames = counter("frames"); frames.inc()``."""

    __slots__ = ("meta", "name")

    def __init__(self, name: str, **meta: object) -> None:
        self.name = name
        self.meta = meta

    def inc(self, n: float = 1) -> None:
        _publish_kind(self.name, n, "counter", None, self.meta)


class timer:  # noqa: N801 - reads like a function
    """Time a block (``with timer("infer"):``) or a function (``@timer("infer")``).

    Publishes the elapsed milliseconds as a timer, which edgeprof summarises as a
    distribution (p50/p95/p99). The elapsed time is also kept in ``elapsed_ms``.
    """

    __slots__ = ("_t0", "elapsed_ms", "meta", "name")

    def __init__(self, name: str, **meta: object) -> None:
        self.name = name
        self.meta = meta
        self._t0 = 0
        self.elapsed_ms = 0.0

    def __enter__(self) -> timer:
        self._t0 = time.perf_counter_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed_ms = (time.perf_counter_ns() - self._t0) / 1e6
        _publish_kind(self.name, self.elapsed_ms, "timer", None, self.meta)

    def __call__(self, func):
        import functools

        name, meta = self.name, self.meta
        if getattr(getattr(func, "__code__", None), "co_flags", 0) & 0x80:  # async def

            @functools.wraps(func)
            async def async_wrapper(*args, **kwargs):
                t0 = time.perf_counter_ns()
                try:
                    return await func(*args, **kwargs)
                finally:
                    ms = (time.perf_counter_ns() - t0) / 1e6
                    _publish_kind(name, ms, "timer", None, meta)

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter_ns()
            try:
                return func(*args, **kwargs)
            finally:
                _publish_kind(name, (time.perf_counter_ns() - t0) / 1e6, "timer", None, meta)

        return wrapper


class FPS:
    """Count frames with ``tick()``; publish frames/second once per ``interval`` seconds.

    The first ``tick()`` starts the clock (so model loading before the first frame does
    not count). ``rate`` holds the last published value.
    """

    __slots__ = ("_n", "_t0", "interval", "meta", "name", "rate")

    def __init__(self, name: str = "fps", interval: float = 1.0, **meta: object) -> None:
        self.name = name
        self.interval = interval
        self.meta = meta
        self._t0: float | None = None
        self._n = 0
        self.rate: float | None = None

    def tick(self, n: int = 1) -> float | None:
        """Count ``n`` frames; returns the rate when one was published, else None."""
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
            return None
        self._n += n
        elapsed = now - self._t0
        if elapsed < self.interval:
            return None
        self.rate = rate = self._n / elapsed
        self._t0 = now
        self._n = 0
        publish(self.name, rate, **self.meta)  # type: ignore[arg-type]
        return rate


# --- stats -------------------------------------------------------------------------------


def dropped() -> int:
    """Messages this process could not deliver (socket full beyond the buffer, no profiler)."""
    return _dropped


def stats() -> dict:
    """``{"sent": …, "dropped": …, "pending": …}`` for this process."""
    return {"sent": _sent, "dropped": _dropped, "pending": len(_pending)}


def send_stats(timeout: float = 0.5) -> bool:
    """Flush kept messages and send ``{"client":{"sent":M,"dropped":N,"pid":P}}``.

    Called once at exit (atexit); waits at most ``timeout`` seconds for a busy profiler.
    """
    global _stats_sent, _dropped
    try:
        if _state != _ACTIVE or (_sent == 0 and _dropped == 0 and not _pending):
            return False
        deadline = time.monotonic() + timeout
        if not flush(timeout):
            with _lock:
                _dropped += len(_pending)
                del _pending[:]
        data = b'{"client":{"sent":%d,"dropped":%d,"pid":%d}}' % (_sent, _dropped, os.getpid())
        while True:
            try:
                _sock_send(data)  # type: ignore[misc]
                _stats_sent = True
                return True
            except (BlockingIOError, InterruptedError):
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.001)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS or time.monotonic() >= deadline:
                    return False
                time.sleep(0.001)
    except Exception:
        return False


def _at_exit() -> None:
    if not _stats_sent:
        send_stats()


def _after_fork_in_child() -> None:
    """A forked child starts afresh: its own socket and counters, not the parent's."""
    global _sock_send, _retry_at, _sent, _dropped, _pending, _pending_bytes, _lock
    global _stats_sent
    _lock = threading.Lock()
    _sent = _dropped = _pending_bytes = 0
    _pending = []
    _stats_sent = False
    if _state == _ACTIVE:  # reconnect on the first send (closes this copy of the socket)
        _sock_send = _not_connected
        _retry_at = 0.0


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
