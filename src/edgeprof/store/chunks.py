"""From samples to chunk rows and back: the layout of :mod:`.schema` version 3.

A *final* chunk holds up to :data:`CHUNK_SAMPLES` values of one series, encoded by
:mod:`.codec`, and points at a time block shared by every series finalized with the same
timestamps (all series of one sampler tick). Every chunk carries its count, min, max and
sum, and the span of its timestamps.

The newest samples of a run are written at every flush as one *open block*
(:func:`open_block`: raw arrays of every series that gathered samples since the last
flush, in one row); a series' samples in open blocks are superseded by its final chunk once
it has gathered :data:`CHUNK_SAMPLES` samples or spans :data:`CHUNK_SPAN_NS`, or its
target ended (see :mod:`.schema`). Schema 3 wrote *open chunks* instead (raw arrays of one
series in ``chunks``, ``mode`` 0); they are still read.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeprof.store import codec

CHUNK_SAMPLES = 2048
"""Large enough that decoding is a few numpy passes per 2,048 samples (reading 1 M samples of
one series: 0.08 s; 1,024 per chunk took 0.12 s), small enough that the writer's buffer of a
series stays ~140 KB and a chunk of a 100 Hz series spans 20 s."""
CHUNK_SPAN_NS = 120 * 1_000_000_000

ChunkRow = tuple[
    int,
    int | None,
    int,
    int,
    int,
    float | None,
    float | None,
    float | None,
    int,
    bytes | None,
    bytes,
]
"""(series_id, timeblock_id, n, t0_ns, t1_ns, vmin, vmax, vsum, mode, ts, vals)."""


@dataclass
class Stats:
    n: int
    t0: int
    t1: int
    vmin: float | None
    vmax: float | None
    vsum: float | None
    """Over the values that are numbers (None when none is: NaN has no portable SQL form)."""


def _num(x: Any) -> float | None:
    f = float(x)
    return None if f != f else f


def stats(t: Any, v: Any) -> Stats:
    finite = v[~np.isnan(v)]
    if len(finite) == 0:
        return Stats(len(v), int(t.min()), int(t.max()), None, None, None)
    return Stats(
        len(v),
        int(t.min()),
        int(t.max()),
        _num(finite.min()),
        _num(finite.max()),
        _num(finite.sum()),
    )


def _row(
    series_id: int, tb: int | None, t: Any, v: Any, mode: int, ts: bytes | None, vals: bytes
) -> ChunkRow:
    s = stats(t, v)
    return (series_id, tb, s.n, s.t0, s.t1, s.vmin, s.vmax, s.vsum, mode, ts, vals)


_LITTLE = sys.byteorder == "little"
_BLOCK_HEAD = struct.Struct("<II")
OPEN_BLOCK_FORMAT = 1
"""First word of an open block's payload (the layout below)."""


def open_block(
    sids: Sequence[int], counts: Sequence[int], t: Sequence[int], v: Sequence[float]
) -> bytes:
    """The write-ahead form of one flush: the new samples of every series that gathered
    some, in one payload (built without numpy: for a few samples per series its per-call
    overhead would be most of the cost).

    Layout, little-endian: ``<u4 format, u4 k>``, ``int64 series_id[k]``, ``int64
    count[k]``, then ``int64 t[N]`` and ``float64 v[N]`` (``N = sum(count)``), the samples
    of series ``i`` at ``[sum(count[:i]), sum(count[:i + 1]))``."""
    if _LITTLE:
        parts: list[Any] = [array("q", sids), array("q", counts), array("q", t), array("d", v)]
        return _BLOCK_HEAD.pack(OPEN_BLOCK_FORMAT, len(sids)) + b"".join(parts)
    return _BLOCK_HEAD.pack(OPEN_BLOCK_FORMAT, len(sids)) + b"".join(
        np.asarray(a, dtype=d).tobytes()
        for a, d in ((sids, "<i8"), (counts, "<i8"), (t, "<i8"), (v, "<f8"))
    )


def read_block(payload: bytes) -> tuple[Any, Any, Any, Any]:
    """An open block's ``(series_ids, offsets, t, v)``: series ``i``'s samples are
    ``t[offsets[i]:offsets[i + 1]]`` (read-only numpy views of the payload)."""
    buf = bytes(payload)
    if len(buf) < _BLOCK_HEAD.size:
        raise ValueError("open block too short")
    fmt, k = _BLOCK_HEAD.unpack_from(buf)
    if fmt != OPEN_BLOCK_FORMAT:
        raise ValueError(f"unknown open block format {fmt}")
    at = _BLOCK_HEAD.size
    if len(buf) < at + 16 * k:
        raise ValueError("open block too short")
    sids = np.frombuffer(buf, dtype="<i8", count=k, offset=at).astype(np.int64)
    counts = np.frombuffer(buf, dtype="<i8", count=k, offset=at + 8 * k)
    offsets = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    n = int(offsets[-1])
    at += 16 * k
    if len(buf) != at + 16 * n or (k and int(counts.min()) < 0):
        raise ValueError("open block of the wrong size")
    t = np.frombuffer(buf, dtype="<i8", count=n, offset=at).astype(np.int64)
    v = np.frombuffer(buf, dtype="<f8", count=n, offset=at + 8 * n).astype(np.float64)
    return sids, offsets, t, v


def final_row(
    series_id: int, timeblock_id: int, t: Any, v: Any, hint: int | None = None
) -> tuple[ChunkRow, int]:
    """A final chunk of values (timestamps in ``timeblock_id``) and the mode chosen."""
    va = np.asarray(v, dtype=np.float64)
    mode, blob = codec.encode_values(va, hint)
    ta = np.asarray(t, dtype=np.int64)
    return _row(series_id, timeblock_id, ta, va, mode, None, blob), mode


def pieces(t: Any) -> list[tuple[int, int]]:
    """``[a, b)`` ranges that cut timestamps ``t`` into chunks of at most
    :data:`CHUNK_SAMPLES` samples, each spanning at most :data:`CHUNK_SPAN_NS` from its
    first sample (the sample that reaches the span closes the chunk)."""
    ta = np.asarray(t, dtype=np.int64)
    out: list[tuple[int, int]] = []
    a, n = 0, len(ta)
    while a < n:
        b = min(a + CHUNK_SAMPLES, n)
        over = np.flatnonzero(ta[a + 1 : b] - ta[a] >= CHUNK_SPAN_NS)
        if len(over):
            b = a + 1 + int(over[0]) + 1
        out.append((a, b))
        a = b
    return out


def timeblock(t: Any) -> tuple[int, int, int, bytes]:
    """(n, t0, t1, encoded timestamps) of a time block."""
    ta = np.asarray(t, dtype=np.int64)
    return len(ta), int(ta.min()), int(ta.max()), codec.encode_times(ta)


def decode(
    rows: Iterable[tuple[int, int, int | None, int, int, bytes | None, bytes]],
    timeblocks: dict[int, tuple[int, bytes]],
    keep_chunks: bool = False,
) -> dict[Any, tuple[Any, Any]]:
    """Chunk rows ``(id, series_id, timeblock_id, n, mode, ts, vals)``, in id order, →
    series_id → (timestamps, values), each in the order the samples were written; with
    ``keep_chunks``, (series_id, chunk id) → that chunk's arrays."""
    parts: dict[Any, tuple[list[Any], list[Any]]] = {}
    times: dict[int, Any] = {}
    for cid, sid, tb, n, mode, ts, vals in rows:
        if tb is not None:
            t = times.get(tb)
            if t is None:
                tn, tblob = timeblocks[tb]
                t = times[tb] = codec.decode_times(bytes(tblob), tn)
        else:
            t = codec.decode_raw_times(bytes(ts or b""), n)
        v = codec.decode_values(mode, bytes(vals), n)
        p = parts.setdefault((sid, cid) if keep_chunks else sid, ([], []))
        p[0].append(t)
        p[1].append(v)
    return {
        sid: (
            np.concatenate(ts_list) if len(ts_list) > 1 else ts_list[0],
            np.concatenate(vs_list) if len(vs_list) > 1 else vs_list[0],
        )
        for sid, (ts_list, vs_list) in parts.items()
    }
