"""Receives app-metric datagrams in a process of its own and passes them on through a pipe.

Why a process: a Unix datagram socket queues only ``net.unix.max_dgram_qlen`` datagrams
(10 on some kernels) and a sender's unsent bytes count against its own send buffer (about
280 small datagrams by default). StatsD clients such as DogStatsD drop a datagram when the
socket is full. A receiver thread inside the profiler shares the interpreter lock with the
sampler, the database writer and the parser, and a few milliseconds without the lock are
enough to overflow the queue. This pump holds no lock anyone else wants: it only moves
datagrams from the sockets into a buffer of its own and from there into a pipe, so it is
back on the socket within microseconds; the profiler parses from the pipe at its own pace.

Run as a plain script (standard library only, ``python -I -S pump.py FD[,FD…] [PAUSE_S]``)
with the bound, non-blocking sockets passed as file descriptors. With a deep socket queue
(``PAUSE_S`` > 0) the pump pauses that long after each drain, so a fast sender's datagrams
are collected many at a time instead of waking the pump (and taking a core from the app)
for every one; the queue absorbs what arrives meanwhile. Output frames on stdout:
``<u32 length><i64 monotonic ns><datagram>``; a first frame ``<0xFFFFFFFE><i64 n><n bytes>``
carries ``{"priority": "realtime" | "nice" | "normal"}`` (how it is scheduled, see
:func:`_prioritise`) and a last frame ``<0xFFFFFFFF><i64 n><n bytes>`` carries
``{"pump_dropped": N, "datagrams": M}``, both as JSON. It ends when its stdin reaches
end of file (the profiler closed it, or died): it drains the sockets once more, writes
everything and exits.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
import time

HEADER = struct.Struct("<Iq")
STATS_FRAME = 0xFFFFFFFF
INFO_FRAME = 0xFFFFFFFE
MAX_DATAGRAM = 65536
MAX_BUFFER = 256 << 20
"""Bytes kept while the profiler does not read; beyond that datagrams are dropped and counted."""
PIPE_SIZE = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def _prioritise() -> str:
    """Wake at once when a datagram arrives, even with every core busy: the lowest real-time
    priority (SCHED_FIFO 1; root or CAP_SYS_NICE, and a cgroup with real-time time), else a
    better nice value. The pump only runs while datagrams wait, so it takes no CPU the app
    does not cause; the kernel's real-time throttling still bounds it. Returns what it got:
    ``realtime``, ``nice`` or ``normal``."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        return "realtime"
    except (OSError, AttributeError):
        try:
            os.nice(-5)
            return "nice"
        except OSError:
            return "normal"


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the profiler; stdin EOF ends us
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    priority = _prioritise()
    socks = [socket.socket(fileno=int(fd)) for fd in argv[1].split(",") if fd]
    pause = float(argv[2]) if len(argv) > 2 else 0.0
    for s in socks:
        s.setblocking(False)
    out = sys.stdout.fileno()
    ctl = sys.stdin.fileno()
    try:
        fcntl.fcntl(out, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass
    os.set_blocking(out, False)
    poll = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poll.register(fd, select.POLLIN)
    poll.register(ctl, select.POLLIN | select.POLLHUP)
    buf = bytearray(MAX_DATAGRAM + 1)
    view = memoryview(buf)
    info = json.dumps({"priority": priority}).encode()
    pending = bytearray(HEADER.pack(INFO_FRAME, len(info)) + info)
    pos = 0  # bytes of pending already written
    dropped = 0
    datagrams = 0
    pack = HEADER.pack
    mono = time.monotonic_ns
    want_out = False
    closing = False
    while True:
        events = poll.poll(None if not pending else 50)
        got = 0
        for fd, ev in events:
            if fd == ctl:
                if ev & (select.POLLHUP | select.POLLERR) or not os.read(ctl, 4096):
                    closing = True
                    poll.unregister(ctl)
                continue
            sock = by_fd.get(fd)
            if sock is None:
                continue
            recv_into = sock.recv_into
            now = mono()
            for _ in range(4096):  # then look at the other sockets and the pipe too
                try:
                    n = recv_into(buf)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                datagrams += 1
                got += 1
                if len(pending) - pos > MAX_BUFFER:
                    dropped += 1
                    continue
                pending += pack(n, now)
                pending += view[:n]
        if len(pending) > pos:
            try:
                pos += os.write(out, memoryview(pending)[pos : pos + PIPE_SIZE])
            except BlockingIOError:
                pass
            except BrokenPipeError:
                return 0  # the profiler is gone
            if pos == len(pending):
                pending.clear()
                pos = 0
            elif pos > len(pending) // 2:
                del pending[:pos]  # amortised: at most as many bytes moved as written
                pos = 0
        if pending and not want_out:
            poll.register(out, select.POLLOUT)
            want_out = True
        elif not pending and want_out:
            poll.unregister(out)
            want_out = False
        if closing:
            break
        if got and pause:
            time.sleep(pause)  # let a burst gather: one wake-up for many datagrams
    # last drain: what is still queued counts too
    now = mono()
    for s in socks:
        while True:
            try:
                n = s.recv_into(buf)
            except OSError:
                break
            datagrams += 1
            pending += HEADER.pack(n, now) + view[:n]
    stats = json.dumps({"pump_dropped": dropped, "datagrams": datagrams}).encode()
    pending += HEADER.pack(STATS_FRAME, len(stats)) + stats
    os.set_blocking(out, True)
    try:
        with memoryview(pending) as rest:
            while pos < len(rest):
                pos += os.write(out, rest[pos:])
    except BrokenPipeError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
