"""The Store protocol and its records: what every database backend offers.

A store is picked by URL (:func:`edgeprof.store.open_store`). Writers describe a run with
:class:`RunInfo` and its targets with :class:`TargetInfo`; readers get typed records back
(:class:`RunRecord`, :class:`TargetRecord`, :class:`SeriesRecord`, :class:`EventRecord`).
Every reader — summary, export, report, compare, budgets, the benchmarks — goes through
this protocol, never through SQL of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from uuid import uuid4

from edgeprof.codeprof.model import CodeSample
from edgeprof.model import Event, Labels
from edgeprof.store.chunks import ChunkRow

RunStatus = Literal["running", "completed", "interrupted", "error", "crashed"]


@dataclass(frozen=True)
class RunInfo:
    """What is known about a run when it begins."""

    spec_name: str
    image: str
    started_ns: int
    interval_s: float
    spec_path: str | None = None
    spec_text: str | None = None
    host: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    owner: dict[str, Any] = field(default_factory=dict)
    """Who runs it: ``{"host", "pid", "pid_start", "boot_id"}`` — to tell a crashed run."""
    uuid: str = field(default_factory=lambda: str(uuid4()))
    """The run's identity in every database it is copied to (``import``, ``export``)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """``{"device": {...}, "ci": {...}, "tags": {...}}`` (:mod:`edgeprof.farm.meta`)."""


@dataclass(frozen=True)
class TargetInfo:
    """A target (one container of a run) as planned."""

    run_id: int
    index: int
    name: str
    args: list[str]
    config: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"


@dataclass(frozen=True)
class RunRecord:
    id: int
    spec_name: str
    image: str
    spec_path: str | None
    spec_text: str | None
    started_ns: int
    ended_ns: int | None
    status: str
    interval_s: float
    host: dict[str, Any]
    edgeprof_version: str | None
    owner: dict[str, Any] = field(default_factory=dict)
    uuid: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunRow:
    """One line of ``edgeprof runs``."""

    id: int
    spec_name: str
    image: str
    started_ns: int
    ended_ns: int | None
    status: str
    targets: int
    failed_targets: int  # apps only: service rows are counted in ``services``
    owner: dict[str, Any] = field(default_factory=dict)
    services: int = 0
    uuid: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_ns is None else (self.ended_ns - self.started_ns) / 1e9


@dataclass(frozen=True)
class TargetRecord:
    id: int
    run_id: int
    idx: int
    name: str
    args: list[str]
    config: dict[str, Any]
    container_id: str | None
    started_ns: int | None
    ended_ns: int | None
    status: str
    exit_code: int | None
    oom_killed: bool | None
    timed_out: bool | None
    duration_s: float | None
    error: str | None


@dataclass(frozen=True)
class SeriesRecord:
    id: int
    run_id: int
    target_id: int | None
    metric: str
    labels: dict[str, str]
    unit: str | None
    kind: str | None


@dataclass(frozen=True)
class EventRecord:
    id: int
    run_id: int
    target_id: int | None
    t_ns: int
    kind: str
    message: str
    data: dict[str, Any]


TARGET_FIELDS = frozenset(
    {
        "container_id",
        "started_ns",
        "ended_ns",
        "status",
        "exit_code",
        "oom_killed",
        "timed_out",
        "duration_s",
        "error",
    }
)


class Store(Protocol):
    url: str
    """Where the store is, with any password masked (safe to print)."""

    # -- writing (a run in progress) --------------------------------------------------------
    def begin_run(self, info: RunInfo) -> int: ...

    def end_run(self, run_id: int, status: str, ended_ns: int) -> None: ...

    def begin_target(self, info: TargetInfo) -> int: ...

    def update_target(self, target_id: int, **fields: Any) -> None:
        """Set some of :data:`TARGET_FIELDS`."""
        ...

    def series_id(
        self,
        run_id: int,
        target_id: int | None,
        metric: str,
        labels: Labels,
        unit: str | None = None,
        kind: str | None = None,
    ) -> int: ...

    def add_timeblock(self, n: int, t0_ns: int, t1_ns: int, ts: bytes) -> int:
        """A timestamp array shared by the chunks of series sampled at the same ticks."""
        ...

    def write_chunks(self, rows: Sequence[ChunkRow]) -> None:
        """Chunk rows of :mod:`.chunks`; not committed (see ``commit``)."""
        ...

    def write_open_block(self, run_id: int, n: int, payload: bytes) -> int:
        """One flush's newest samples of every series (:func:`.chunks.open_block`, ``n``
        samples); its id. Not committed."""
        ...

    def supersede_open(self, series_ids: Sequence[int], block_id: int) -> None:
        """These series' samples in open block ``block_id`` and older ones are in final
        chunks now (readers skip them). Not committed."""
        ...

    def drop_open_blocks(self, block_ids: Sequence[int]) -> None:
        """Delete open blocks whose every series is superseded. Not committed."""
        ...

    def write_events(self, run_id: int, rows: Sequence[tuple[int | None, Event]]) -> None:
        """``(target_id, event)`` rows; not committed (see ``commit``)."""
        ...

    def commit(self) -> None: ...

    def transaction(self) -> AbstractContextManager[None]:
        """Statements inside are committed together, with no other thread's in between."""
        ...

    def add_event(self, run_id: int, target_id: int | None, ev: Event) -> None: ...

    def add_log(self, target_id: int, stream: str, text: str) -> None: ...

    def add_code_samples(self, target_id: int, rows: Sequence[CodeSample]) -> None:
        """Sampled stacks of a target (each distinct stack stored once per run); not
        committed (see ``commit``)."""
        ...

    def mark_crashed(self, run_id: int, ended_ns: int) -> bool:
        """A run still ``running`` whose profiler died: ``crashed``, and so are its targets
        still running; True when the run was changed."""
        ...

    # -- reading ----------------------------------------------------------------------------
    def list_runs(
        self,
        limit: int = 50,
        *,
        spec: str | None = None,
        status: str | None = None,
        image: str | None = None,
        since_ns: int | None = None,
        keep: Callable[[RunRow], bool] | None = None,
    ) -> list[RunRow]:
        """The newest ``limit`` runs (newest first) matching the filters given; ``keep``
        tests each row (its metadata) before its target counts are read."""
        ...

    def resolve_run(self, run_ref: str | int) -> RunRecord: ...

    def targets(self, run_id: int) -> list[TargetRecord]: ...

    def series(self, run_id: int) -> list[SeriesRecord]: ...

    def series_arrays(self, run_id: int) -> dict[int, tuple[Any, Any]]:
        """series id → (timestamps int64, values float64) numpy arrays, in write order."""
        ...

    def series_values(self, run_id: int) -> dict[int, Any]:
        """All sample values of a run by series id (numpy arrays, write order)."""
        ...

    def series_samples(self, series_id: int) -> tuple[Any, Any]:
        """One series' timestamps and values (numpy arrays), in the order written."""
        ...

    def iter_samples(self, run_id: int, chunk: int = 65536) -> Iterator[tuple[int, int, float]]:
        """``(series_id, t_ns, value)`` of a run in time order, in bounded memory."""
        ...

    def sample_count(self, run_id: int | None = None) -> int: ...

    def events(self, run_id: int) -> list[EventRecord]: ...

    def logs(self, target_id: int) -> dict[str, str]: ...

    def code_samples(
        self, target_id: int, t_from_ns: int | None = None, t_to_ns: int | None = None
    ) -> list[CodeSample]:
        """A target's sampled stacks, by time; with a window, the slices that overlap
        ``[t_from_ns, t_to_ns)`` (a slice is :data:`~edgeprof.codeprof.model.SLICE_NS`
        long from its ``t_ns``)."""
        ...

    def close(self) -> None: ...
