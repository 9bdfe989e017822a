"""Compressed arrays of samples: nanosecond timestamps and float64 values, losslessly.

Timestamps (int64 ns) are stored as delta-of-deltas, zigzag-mapped, split into byte planes
(all-zero planes left out) and deflated: a tick every 10 ms costs 0.01 bytes when exact,
1.7 bytes with a microsecond of jitter and 2.3 with 50 µs, and a timestamp array is stored
once for every series sampled at the same ticks.

Values (float64) take the first of two forms that reproduces every bit:

* a scaled integer — ``round(v * 10**k) / 10**k`` gives back exactly ``v`` for every value,
  for the smallest ``k`` in 0..9 (byte counts, pids, CPU seconds counted in ns or jiffies):
  delta-of-deltas of the integers, zigzag, byte planes, deflate; a constant or a counter
  that grows steadily costs a fraction of a byte;
* otherwise the XOR of each value with the one before (Gorilla's idea), in byte planes,
  deflated: only the bits that changed cost anything.

Integer arithmetic wraps modulo 2**64 and zigzag is a bijection on 64-bit integers, so any
int64 timestamps (also out of order) round-trip exactly. Decoding is a few numpy passes.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

RAW = 0
"""Mode of an uncompressed little-endian array (the open chunks of schema 3, still read)."""
XOR = 1
INT_BASE = 2
"""Modes ``INT_BASE + k``: integers scaled by ``10**k``."""
MAX_SCALE = 9
_LEVEL = 6
_EXACT_INT = float(2**53)
_SCALES = [10.0**k for k in range(MAX_SCALE + 1)]


def _zigzag(a: Any) -> Any:
    return (a << np.int64(1)) ^ (a >> np.int64(63))


def _unzigzag(u: Any) -> Any:
    return (u >> np.uint64(1)).view(np.int64) ^ -(u & np.uint64(1)).view(np.int64)


_HEAD = 2
"""Leading words stored as they are: a delta-of-delta array starts with the first value and
the first delta (large numbers), after which the words are small."""
_PLANES_V2 = 0x02
"""First byte of a plane blob in the current layout. The first layout (all eight planes,
deflated; written by development builds of 2026-11-25) starts with zlib's 0x78 and is
still read."""
_ZLIB = 0x78


def _planes(u: Any) -> bytes:
    """uint64 array → the byte planes that hold a non-zero byte, deflated.

    Layout: ``_PLANES_V2``; one byte with bit p set when plane p (byte p of each word,
    little-endian) is kept; the first ``_HEAD`` words raw; then the kept planes of the
    other words, one after the other, deflated. Small numbers (most deltas of deltas) keep
    one or two planes of eight, which makes decoding as much faster as the data is smaller.
    """
    head = u[:_HEAD].astype("<u8").tobytes()
    rest = u[_HEAD:]
    planes = np.ascontiguousarray(rest.view(np.uint8).reshape(-1, 8).T)
    kept = [p for p in range(8) if planes[p].any()]
    mask = sum(1 << p for p in kept)
    return bytes([_PLANES_V2, mask]) + head + zlib.compress(planes[kept].tobytes(), _LEVEL)


def _unplanes(blob: bytes, n: int) -> Any:
    if blob[0] == _ZLIB:  # the first layout: all eight planes
        planes = np.frombuffer(zlib.decompress(blob), dtype=np.uint8).reshape(8, n)
        return np.ascontiguousarray(planes.T).view(np.uint64).reshape(n)
    if blob[0] != _PLANES_V2:
        raise ValueError(f"unknown chunk layout {blob[0]:#04x}")
    h = min(n, _HEAD)
    out = np.empty(n, dtype=np.uint64)
    out[:h] = np.frombuffer(blob, dtype="<u8", count=h, offset=2)
    m = n - h
    if m:
        mask = blob[1]
        kept = [p for p in range(8) if mask >> p & 1]
        data = np.frombuffer(zlib.decompress(blob[2 + 8 * h :]), dtype=np.uint8)
        planes = np.zeros((m, 8), dtype=np.uint8)
        planes[:, kept] = data.reshape(len(kept), m).T
        out[h:] = planes.view(np.uint64).reshape(m)
    return out


def _dod(i: Any) -> Any:
    """Delta-of-deltas of an int64 array (wrapping), zigzag-mapped to uint64."""
    d = np.diff(i, prepend=np.int64(0))
    return _zigzag(np.diff(d, prepend=np.int64(0))).view(np.uint64)


def _undod(u: Any) -> Any:
    return np.cumsum(np.cumsum(_unzigzag(u), dtype=np.int64), dtype=np.int64)


def encode_times(t: Any) -> bytes:
    """int64 ns timestamps (any order) → bytes."""
    a = np.asarray(t, dtype=np.int64)
    with np.errstate(over="ignore"):
        return _planes(_dod(a))


def decode_times(blob: bytes, n: int) -> Any:
    if n == 0:
        return np.empty(0, dtype=np.int64)
    with np.errstate(over="ignore"):
        return _undod(_unplanes(blob, n))


def _ints_at(a: Any, k: int) -> Any | None:
    """``a`` as integers of 10**-k when decoding them gives back every value bit for bit
    (so never for -0.0, NaN or values too large for a float's exact integers)."""
    s = _SCALES[k]
    with np.errstate(invalid="ignore", over="ignore"):
        r = np.round(a * s)
        if not np.all(np.abs(r) < _EXACT_INT):  # also False for NaN and inf
            return None
        i = r.astype(np.int64)
    if np.array_equal((i.astype(np.float64) / s).view(np.uint64), a.view(np.uint64)):
        return i
    return None


def encode_values(v: Any, hint: int | None = None) -> tuple[int, bytes]:
    """float64 values → (mode, bytes); ``hint`` is a mode to try first (a series' last).

    Integer mode ``INT_BASE + k`` is the smallest k for which every value is an exact
    multiple of 10**-k (decoded bit for bit); otherwise the values are XOR-ed bit patterns.
    """
    a = np.ascontiguousarray(np.asarray(v, dtype=np.float64))
    i = None
    if hint is not None and hint >= INT_BASE:
        k = hint - INT_BASE
        i = _ints_at(a, k)
    if i is None and hint != XOR:
        for k in range(len(_SCALES)):
            i = _ints_at(a, k)
            if i is not None:
                break
    if i is not None:
        with np.errstate(over="ignore"):
            return INT_BASE + k, _planes(_dod(i))
    u = a.view(np.uint64)
    x = u ^ np.concatenate((np.zeros(1, dtype=np.uint64), u[:-1]))
    return XOR, _planes(x)


def decode_values(mode: int, blob: bytes, n: int) -> Any:
    if n == 0:
        return np.empty(0, dtype=np.float64)
    if mode == RAW:
        return np.frombuffer(blob, dtype="<f8", count=n).astype(np.float64)
    u = _unplanes(blob, n)
    if mode == XOR:
        return np.bitwise_xor.accumulate(u).view(np.float64)
    k = mode - INT_BASE
    if not 0 <= k <= MAX_SCALE:
        raise ValueError(f"unknown value encoding {mode}")
    with np.errstate(over="ignore"):
        return _undod(u).astype(np.float64) / _SCALES[k]


def raw_times(t: Any) -> bytes:
    return np.asarray(t, dtype="<i8").tobytes()


def raw_values(v: Any) -> bytes:
    return np.asarray(v, dtype="<f8").tobytes()


def decode_raw_times(blob: bytes, n: int) -> Any:
    return np.frombuffer(blob, dtype="<i8", count=n).astype(np.int64)
