"""Files of /proc, /sys and cgroupfs kept open and re-read with ``pread``.

The sampler re-reads the same small files at every tick; opening them once and reading from
offset 0 with ``os.pread`` saves the path lookup, the open and the close each time, and a
file whose process or cgroup went away fails with an ``OSError`` instead of reading stale
data. Every collector reads through this one helper.
"""

from __future__ import annotations

import contextlib
import os

CHUNK = 65536
"""Bytes one ``pread`` asks for: every file the collectors read at each tick is smaller."""


class KeptOpen:
    """A file kept open and re-read from offset 0 with pread."""

    __slots__ = ("fd", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    @classmethod
    def optional(cls, path: str | None) -> KeptOpen | None:
        """The file kept open, or None when ``path`` is None or cannot be opened."""
        if path is None:
            return None
        try:
            return cls(path)
        except OSError:
            return None

    def read_bytes(self) -> bytes:
        """The whole file (larger than 64 KiB too: ``cgroup.procs`` of a big container)."""
        data = os.pread(self.fd, CHUNK, 0)
        if len(data) < CHUNK:
            return data
        chunks = [data]
        while len(data) == CHUNK:
            data = os.pread(self.fd, CHUNK, CHUNK * len(chunks))
            chunks.append(data)
        return b"".join(chunks)

    def read(self) -> str:
        """The file as text (these files are ASCII; anything else is replaced)."""
        return os.pread(self.fd, CHUNK, 0).decode("ascii", "replace")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def close_all(files: list[KeptOpen | None]) -> None:
    for f in files:
        if f is not None:
            f.close()
