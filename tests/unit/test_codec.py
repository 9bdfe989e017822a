"""The chunk codec: every value and timestamp comes back bit for bit, whatever the mode."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprof.store import codec

EDGE = [
    [0.0, -0.0, 1.0],
    [-0.0],
    [1.5, -0.0, 2.25],
    [float("nan"), 1.0],
    [float("inf"), -float("inf"), 0.0],
    [2.0**60, 1.0],
    [0.1, 0.2, 0.3],
    [1e-300, 5e-324],
    [-1e-20, 0.0],
]


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a.view(np.uint64), b.view(np.uint64)))


@pytest.mark.parametrize("values", EDGE)
@pytest.mark.parametrize("hint", [None, codec.XOR, codec.INT_BASE, codec.INT_BASE + 1])
def test_values_round_trip_bit_for_bit(values: list[float], hint: int | None) -> None:
    a = np.array(values, dtype=np.float64)
    mode, blob = codec.encode_values(a, hint)
    assert _same_bits(codec.decode_values(mode, blob, len(a)), a)


def test_negative_zero_is_never_stored_as_an_integer() -> None:
    mode, _ = codec.encode_values(np.array([0.0, -0.0, 3.0]))
    assert mode == codec.XOR
    mode, _ = codec.encode_values(np.array([0.0, -0.0]), hint=codec.INT_BASE)
    assert mode == codec.XOR


def test_decimal_values_use_the_smallest_scale() -> None:
    mode, _ = codec.encode_values(np.array([12.5, 13.25, 0.0]))
    assert mode == codec.INT_BASE + 2
    mode, _ = codec.encode_values(np.array([3.0, 4.0]), hint=codec.INT_BASE + 2)
    assert mode == codec.INT_BASE + 2  # the hint holds while it is exact


def test_times_round_trip_including_out_of_order_and_extremes() -> None:
    t = np.array([5, 3, 2**62, -(2**62), 0, 0, 10**18 + 7], dtype=np.int64)
    assert np.array_equal(codec.decode_times(codec.encode_times(t), len(t)), t)


def test_the_first_plane_layout_is_still_read() -> None:
    """Blobs of the first layout (all eight planes deflated, as written by development
    builds of 2026-11-25) decode to the same arrays."""
    import zlib

    t = np.arange(1_700_000_000_000_000_000, 1_700_000_000_000_000_000 + 10**9, 10**7)
    for u in (codec._dod(t), codec._zigzag(np.array([5, -3, 0, 2**62])).view(np.uint64)):
        old = zlib.compress(np.ascontiguousarray(u.view(np.uint8).reshape(-1, 8).T).tobytes(), 6)
        assert np.array_equal(codec._unplanes(old, len(u)), u)
        assert np.array_equal(codec._unplanes(codec._planes(u), len(u)), u)


def test_an_unknown_layout_is_an_error_not_garbage() -> None:
    with pytest.raises(ValueError, match="unknown chunk layout"):
        codec._unplanes(b"\x07" + bytes(40), 3)
