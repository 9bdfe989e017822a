"""The app-metrics socket: a Unix datagram socket per container (and UDP on loopback).

The socket's folder is mounted read-only into the container (sending to a socket works on
a read-only mount; the container cannot remove or replace it) and
``EDGEPROF_METRICS_SOCKET`` points at it. Datagrams are received by a pump process of
their own (:mod:`.pump`, see there why) and parsed here, in a reader thread, at whatever
pace the profiler has; the sampler never waits for parsing.

The kernel gives a Unix datagram socket a queue of ``net.unix.max_dgram_qlen`` datagrams,
fixed when the socket is created. When running as root, the socket is created with the
sysctl raised to :data:`.sockets.QUEUE_LEN` for that instant (restored at once, under a lock file),
so a burst from a client that drops when the queue is full is absorbed; otherwise the run
says which queue length the socket got and what that means.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from typing import Any

from edgeprof.collect.app import pump
from edgeprof.collect.app.aggregate import Aggregator
from edgeprof.collect.app.messages import AppMessage, Rejection
from edgeprof.collect.app.sockets import (
    DEFAULT_RCVBUF,
    QUEUE_LEN,
    set_rcvbuf,
    udp_kernel_drops,
    unix_dgram_socket,
)
from edgeprof.collect.app.wire import parse_datagram
from edgeprof.collect.base import BaseCollector, CollectContext, ContainerSetup
from edgeprof.errors import CollectorUnavailable
from edgeprof.model import Clock, Event, MetricSpec, Sample

SOCKET_DIR_IN_CONTAINER = "/run/edgeprof"
SOCKET_IN_CONTAINER = f"{SOCKET_DIR_IN_CONTAINER}/metrics.sock"
DRAIN_TIMEOUT_S = 60.0  # the longest close() waits for the pump to read its sockets dry
SMALL_QUEUE = 512
PUMP_PAUSE_S = 0.0005
"""The pump's pause between drains when the socket queue is deep (8,192 datagrams)."""


class AppMetricsCollector(BaseCollector):
    """Listens on a Unix datagram socket (and optionally UDP on loopback) for one container.

    ``socket_path``: the socket to create (its folder is created 0o711 when missing);
    ``udp_port``: None for no UDP, 0 for an ephemeral port (``udp_port`` after ``open``);
    ``socket_uid``/``socket_gid``: narrow write access to that user/group; ``dialect``:
    how unmarked signed StatsD gauges are read; ``host_network``: the container shares the
    host's network, so the UDP address is offered to it.

    Permissions: the folder is 0o711 (others may traverse it but not list, create or
    replace entries) and the socket write-only, 0o222 (sending needs write permission and
    nothing else); with ``socket_uid`` it is chowned and made 0o200 instead.
    """

    group = "app"
    dynamic_metrics = True
    sample_after_close = True

    def __init__(
        self,
        socket_path: str | None = None,
        udp_port: int | None = None,
        *,
        dialect: str = "etsy",
        socket_uid: int | None = None,
        socket_gid: int | None = None,
        rcvbuf: int = DEFAULT_RCVBUF,
        queue_len: int = QUEUE_LEN,
        host_network: bool = False,
    ) -> None:
        if not socket_path and udp_port is None:
            raise CollectorUnavailable("app metrics need a socket path or a UDP port")
        self.socket_path = socket_path
        self.udp_port = udp_port
        self.dialect = dialect
        self._uid, self._gid = socket_uid, socket_gid
        self._rcvbuf = rcvbuf
        self._want_qlen = queue_len
        self._host_network = host_network
        self.queue_len: int | None = None
        self.queue_raised = False
        self._agg = Aggregator()
        self._ctx = CollectContext()
        self._clock = Clock()
        self._created_dir: str | None = None
        self._bound = False
        self._udp_inode: int | None = None
        self._udp_keep: socket.socket | None = None
        self._udp_drops: int | None = None
        self._pump: subprocess.Popen[bytes] | None = None
        self._pump_stats: dict[str, Any] = {}
        self.receiver_priority: str | None = None
        """How the pump is scheduled (``realtime``, ``nice``, ``normal``), once it said so."""
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- Collector protocol ----------------------------------------------------------------

    @property
    def metrics_version(self) -> int:
        return self._agg.metrics_version

    def metrics(self) -> list[MetricSpec]:
        """App metrics are discovered at run time: the ones seen so far."""
        return self._agg.metrics()

    def container_setup(self) -> ContainerSetup:
        setup = ContainerSetup()
        if self.socket_path:
            setup.volumes.append(
                f"{os.path.dirname(self.socket_path)}:{SOCKET_DIR_IN_CONTAINER}:ro"
            )
            setup.env["EDGEPROF_METRICS_SOCKET"] = SOCKET_IN_CONTAINER
        if self.udp_port and self._host_network:
            setup.env["EDGEPROF_METRICS_UDP"] = f"127.0.0.1:{self.udp_port}"
        return setup

    def open(self, ctx: CollectContext) -> None:
        self._ctx = ctx
        self._clock = ctx.clock
        self._agg = Aggregator(ctx.labels, ctx.target)
        socks: list[socket.socket] = []
        try:
            if self.socket_path:
                socks.append(self._bind_unix(self.socket_path))
            if self.udp_port is not None:
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(udp)
                udp.bind(("127.0.0.1", int(self.udp_port)))
                set_rcvbuf(udp, self._rcvbuf)
                self.udp_port = udp.getsockname()[1]
                self._udp_inode = os.fstat(udp.fileno()).st_ino
            for s in socks:
                s.setblocking(False)
            fds = [s.fileno() for s in socks]
            # pause between drains only where the queues are deep enough to wait
            deep = not self.socket_path or (self.queue_len or 0) >= SMALL_QUEUE
            self._pump = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    pump.__file__,
                    ",".join(map(str, fds)),
                    str(PUMP_PAUSE_S if deep else 0.0),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                pass_fds=fds,
                close_fds=True,
            )
        except OSError as exc:
            self._remove_socket_file()
            raise CollectorUnavailable(f"cannot open the app metrics socket: {exc}") from exc
        finally:
            for s in socks:  # the pump owns them now (a UDP socket is kept to read its drops)
                if s.type == socket.SOCK_DGRAM and s.family == socket.AF_INET and self._pump:
                    self._udp_keep = s
                else:
                    s.close()
        self._thread = threading.Thread(target=self._read, name="edgeprof-appmetrics", daemon=True)
        self._thread.start()
        self._socket_events()

    def sample(self, now_ns: int) -> list[Sample]:
        out, events = self._agg.take()
        self._emit(events)
        return out

    def close(self) -> None:
        """Drain what the pump still holds, then stop it.

        Closing the pump's stdin asks it to read its sockets dry, send a stats frame and
        exit; the reader thread ends at the pump's EOF. A slow drain (a deep queue, a busy
        machine) is waited for up to ``DRAIN_TIMEOUT_S``; only then is the pump killed, and
        the loss is then reported as unknown rather than as zero.
        """
        if self._closed:
            return
        self._closed = True
        p = self._pump
        stats_seen = True
        if p is not None:
            if p.stdin is not None:
                with contextlib.suppress(OSError):
                    p.stdin.close()
            reader = self._thread
            if reader is not None:
                reader.join(timeout=DRAIN_TIMEOUT_S)
            if reader is None or not reader.is_alive():  # EOF seen: the pump is exiting
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=5.0)
            if p.poll() is None:
                p.kill()
            p.wait()
            if self._thread is not None:
                self._thread.join()  # the pump is gone: its stdout reaches EOF
            if p.stdout is not None:
                p.stdout.close()
            stats_seen = bool(self._pump_stats)
        if self._udp_keep is not None:
            if self._udp_inode is not None:
                self._udp_drops = udp_kernel_drops(self._udp_inode)
            self._udp_keep.close()
            self._udp_keep = None
        self._remove_socket_file()
        extra = {
            "udp_kernel_drops": self._udp_drops,
            "queue_len": self.queue_len,
            "pump_dropped": self._pump_stats.get("pump_dropped", 0) if stats_seen else None,
            "receiver_priority": self.receiver_priority,
        }
        events = self._agg.take_events()
        self._emit(events + self._agg.closing_events(self._clock.now_ns(), extra))

    def stats(self) -> dict[str, Any]:
        return {**self._agg.stats(), "udp_kernel_drops": self._udp_drops}

    # -- internals -------------------------------------------------------------------------

    def _socket_events(self) -> None:
        now = self._clock.now_ns()
        data = {
            "socket": self.socket_path,
            "udp_port": self.udp_port,
            "queue_len": self.queue_len,
            "queue_raised": self.queue_raised,
        }
        if self.socket_path:
            msg = f"app metrics socket queues {self.queue_len} datagrams"
            msg += (
                " (raised for this socket)" if self.queue_raised else " (net.unix.max_dgram_qlen)"
            )
            self._emit([Event(now, "app_metrics_socket", msg, self._ctx.target, data)])
            if self.queue_len is not None and self.queue_len < SMALL_QUEUE:
                self._emit(
                    [
                        Event(
                            now,
                            "note",
                            f"the app-metrics socket can queue only {self.queue_len} datagrams "
                            "(net.unix.max_dgram_qlen): a StatsD client that drops when the "
                            "socket is full, such as DogStatsD by default, may lose bursts "
                            "that edgeprof cannot count; run edgeprof as root, raise the "
                            "sysctl, or use edgeprof.client, which never drops silently",
                            self._ctx.target,
                            data,
                        )
                    ]
                )

    def _bind_unix(self, path: str) -> socket.socket:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o711)
            self._created_dir = parent
        os.chmod(parent, 0o711)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)  # a stale socket from an earlier run
        sock, self.queue_len, self.queue_raised = unix_dgram_socket(self._want_qlen)
        try:
            sock.bind(path)  # created with the umask (never wider than 0o777 - umask)
            self._bound = True
            uid, gid = self._uid, self._gid
            if uid is not None or gid is not None:
                os.chown(path, -1 if uid is None else int(uid), -1 if gid is None else int(gid))
                os.chmod(
                    path, (0o200 if uid is not None else 0) | (0o020 if gid is not None else 0)
                )
            else:
                os.chmod(path, 0o222)
            set_rcvbuf(sock, self._rcvbuf)
        except OSError:
            sock.close()
            raise
        return sock

    def _remove_socket_file(self) -> None:
        if self.socket_path and self._bound:
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)
            self._bound = False
        if self._created_dir:
            with contextlib.suppress(OSError):
                os.rmdir(self._created_dir)
            self._created_dir = None

    def _emit(self, events: list[Event]) -> None:
        for ev in events:
            try:
                self._ctx.emit_event(ev)
            except Exception:  # noqa: BLE001 - an event sink must not break the run
                pass

    def _pump_info(self, info: dict[str, Any]) -> None:
        """The pump's first frame: how it is scheduled. Without real-time priority it can
        be kept off the CPU long enough for a client's send buffer to fill; say so once."""
        first = self.receiver_priority is None
        self.receiver_priority = str(info.get("priority", "unknown"))
        if not first or self.receiver_priority == "realtime" or not self.socket_path:
            return
        self._emit(
            [
                Event(
                    self._clock.now_ns(),
                    "note",
                    "the app-metrics receiver runs without real-time priority (it needs root "
                    "or CAP_SYS_NICE, and a cgroup that allows real-time tasks): when every "
                    "core is busy it can be kept waiting long enough for a client's send "
                    "buffer to fill, and a StatsD client that drops when the socket is full, "
                    "such as DogStatsD by default, then loses datagrams that edgeprof cannot "
                    "count; edgeprof.client never drops silently",
                    self._ctx.target,
                    {"receiver_priority": self.receiver_priority},
                )
            ]
        )

    def _read(self) -> None:
        """Reader thread: frames from the pump → parsed messages → the aggregator."""
        assert self._pump is not None and self._pump.stdout is not None
        fd = self._pump.stdout.fileno()
        header = pump.HEADER
        hsize = header.size
        from_mono = self._clock.from_monotonic
        dialect = self.dialect
        buf = bytearray()
        while True:
            try:
                chunk = os.read(fd, 1 << 20)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            msgs: list[AppMessage] = []
            rejs: list[Rejection] = []
            n = pos = 0
            with memoryview(buf) as mv:
                while len(buf) - pos >= hsize:
                    length, mono = header.unpack_from(buf, pos)
                    if length in (pump.STATS_FRAME, pump.INFO_FRAME):
                        end = pos + hsize + mono
                        if end > len(buf):
                            break
                        with contextlib.suppress(ValueError):
                            got = json.loads(mv[pos + hsize : end].tobytes())
                            if length == pump.STATS_FRAME:
                                self._pump_stats = got
                            else:
                                self._pump_info(got)
                        pos = end
                        continue
                    end = pos + hsize + length
                    if end > len(buf):
                        break
                    m, r = parse_datagram(mv[pos + hsize : end].tobytes(), from_mono(mono), dialect)
                    if m:
                        msgs += m
                    if r:
                        rejs += r
                    n += 1
                    pos = end
            del buf[:pos]
            if n:
                self._agg.ingest(msgs, rejs, n)
