"""The top functions of sampled stacks: self and total share of the samples.

A function is its name and file (``Frame.function``, ``Frame.file``): the lines a sampler
saw it at are counted apart only to name its busiest line — where it ran itself (its line
in the stacks that end in it) when it has self samples, else where it called from. *Self* samples are those whose
stack ends in the function (it was running); *total* samples are those whose stack holds it
anywhere — once per stack, so a recursive function is not counted once per level and no
total exceeds 100 %. Percentages are of every sample given (the target's, or its window's).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

TOP_N = 10
"""Functions listed by ``summary`` and the report (the first by self samples)."""


class FrameLike(Protocol):
    """What is read of a frame (``edgeprof.codeprof`` ``Frame``)."""

    @property
    def function(self) -> str: ...
    @property
    def file(self) -> str: ...
    @property
    def line(self) -> int: ...


class SampleLike(Protocol):
    """What is read of a stored stack (``edgeprof.codeprof`` ``CodeSample``)."""

    @property
    def pid(self) -> int: ...
    @property
    def process(self) -> str: ...
    @property
    def t_ns(self) -> int: ...
    @property
    def stack(self) -> Sequence[FrameLike]: ...
    @property
    def count(self) -> int: ...
    @property
    def kind(self) -> str: ...


@dataclass(frozen=True)
class TopFunction:
    function: str
    file: str
    line: int
    """The line most of the function's self samples were taken at (a function with none:
    most of its samples; 0 when unknown)."""
    self_samples: int
    total_samples: int
    self_pct: float
    total_pct: float

    def to_json(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "file": self.file,
            "line": self.line,
            "self_pct": round(self.self_pct, 2),
            "total_pct": round(self.total_pct, 2),
        }


@dataclass(frozen=True)
class CodeSummary:
    """``"code"`` of a target in ``summary --json``: its stack samples and top functions."""

    samples: int
    top: list[TopFunction]

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "top": [f.to_json() for f in self.top]}


def _busiest(lines: Counter[int]) -> int:
    return min(lines.items(), key=lambda kv: (-kv[1], kv[0]))[0] if lines else 0


def top_functions(samples: Iterable[SampleLike], n: int | None = TOP_N) -> CodeSummary:
    """The ``n`` functions with the most self samples (ties: most total, then by name);
    ``n=None`` lists every function."""
    total = 0
    self_n: Counter[tuple[str, str]] = Counter()
    total_n: Counter[tuple[str, str]] = Counter()
    lines: dict[tuple[str, str], Counter[int]] = {}
    self_lines: dict[tuple[str, str], Counter[int]] = {}
    for s in samples:
        c = int(s.count)
        if c <= 0:
            continue
        total += c
        seen: set[tuple[str, str]] = set()
        for f in s.stack:
            key = (f.function, f.file)
            lines.setdefault(key, Counter())[int(f.line)] += c
            if key not in seen:
                seen.add(key)
                total_n[key] += c
        if s.stack:
            leaf = s.stack[-1]
            self_n[(leaf.function, leaf.file)] += c
            self_lines.setdefault((leaf.function, leaf.file), Counter())[int(leaf.line)] += c
    if total == 0:
        return CodeSummary(0, [])
    order = sorted(total_n, key=lambda k: (-self_n[k], -total_n[k], k))
    if n is not None:
        order = order[:n]
    return CodeSummary(
        total,
        [
            TopFunction(
                function=k[0],
                file=k[1],
                line=_busiest(self_lines.get(k) or lines[k]),
                self_samples=self_n[k],
                total_samples=total_n[k],
                self_pct=100.0 * self_n[k] / total,
                total_pct=100.0 * total_n[k] / total,
            )
            for k in order
        ],
    )
