"""Socket helpers of the app-metrics listener: a Unix datagram socket with a deep queue,
receive buffers, and the kernel's count of dropped UDP datagrams.

The kernel gives a Unix datagram socket a queue of ``net.unix.max_dgram_qlen`` datagrams,
fixed when the socket is created. As root, :func:`unix_dgram_socket` raises the sysctl to
:data:`QUEUE_LEN` for that instant (restored at once, under a lock file).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading

DEFAULT_RCVBUF = 8 << 20
QUEUE_LEN = 8192
QLEN_SYSCTL = "/proc/sys/net/unix/max_dgram_qlen"
_QLEN_LOCK = "/tmp/.edgeprof-qlen.lock"
_qlen_lock = threading.Lock()


def current_qlen(path: str = QLEN_SYSCTL) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def unix_dgram_socket(
    want_qlen: int = QUEUE_LEN, sysctl: str = QLEN_SYSCTL
) -> tuple[socket.socket, int | None, bool]:
    """A new Unix datagram socket, its receive-queue length, and whether it was raised.

    The queue length is taken from the sysctl when the socket is created; as root the
    sysctl is raised for that instant and put back (under a lock file, so two profilers
    never restore each other's value).
    """
    with _qlen_lock:
        qlen = current_qlen(sysctl)
        if qlen is None or qlen >= want_qlen or os.geteuid() != 0:
            return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), qlen, False
        try:
            lock = open(_QLEN_LOCK, "a")  # noqa: SIM115 - held for the block below
        except OSError:
            return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), qlen, False
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            qlen = current_qlen(sysctl) or qlen
            try:
                with open(sysctl, "w") as f:
                    f.write(str(want_qlen))
            except OSError:
                return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), qlen, False
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            finally:
                with contextlib.suppress(OSError), open(sysctl, "w") as f:
                    f.write(str(qlen))
        return sock, want_qlen, True


def udp_kernel_drops(inode: int, proc_root: str = "/proc") -> int | None:
    """Datagrams the kernel dropped for the UDP socket with this inode (/proc/net/udp)."""
    try:
        for name in ("udp", "udp6"):
            with open(os.path.join(proc_root, "net", name)) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if len(parts) >= 13 and parts[9] == str(inode):
                        return int(parts[12])
    except (OSError, ValueError, StopIteration):
        return None
    return None


def set_rcvbuf(sock: socket.socket, size: int) -> None:
    force = getattr(socket, "SO_RCVBUFFORCE", 33)
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, force, size)
            return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
