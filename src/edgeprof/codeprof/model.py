"""Sampled stacks as they are stored: folded stacks with counts, per process and 1 s slice."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

SLICE_NS = 1_000_000_000
"""Stacks are aggregated per process per slice of this length."""


class Frame(NamedTuple):
    function: str
    file: str
    line: int
    """0 when unknown."""


@dataclass(frozen=True)
class CodeSample:
    """``count`` samples of one stack of one process within the slice starting at ``t_ns``."""

    pid: int
    """The process's host PID."""
    process: str
    """Its command name."""
    t_ns: int
    """Start of the time slice (Unix ns, the run's clock)."""
    stack: tuple[Frame, ...]
    """Root → leaf."""
    count: int
    kind: str = "python"
    """``python`` (py-spy) or ``native`` (perf)."""
    thread: str | None = None


def encode_stack(stack: Iterable[Frame]) -> str:
    """One line per frame, root first: ``function\\tfile\\tline`` (the stored form)."""
    return "\n".join(f"{_clean(f.function)}\t{_clean(f.file)}\t{int(f.line)}" for f in stack)


def decode_stack(text: str) -> tuple[Frame, ...]:
    if not text:
        return ()
    out = []
    for row in text.split("\n"):
        fn, file, line = row.rsplit("\t", 2)
        out.append(Frame(fn, file, int(line)))
    return tuple(out)


def _clean(s: str) -> str:
    return s.replace("\t", " ").replace("\n", " ")


def merge(rows: Iterable[CodeSample]) -> list[CodeSample]:
    """Rows with the same process, slice, stack, kind and thread added up (first-seen order)."""
    acc: dict[tuple[object, ...], CodeSample] = {}
    for r in rows:
        key = (r.pid, r.t_ns, r.stack, r.kind, r.thread)
        old = acc.get(key)
        acc[key] = (
            r
            if old is None
            else CodeSample(
                r.pid, old.process, r.t_ns, r.stack, old.count + r.count, r.kind, r.thread
            )
        )
    return list(acc.values())
