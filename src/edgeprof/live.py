"""The live view: a terminal table of every observed container, refreshed a few times a second.

:class:`LiveView` is a :class:`~edgeprof.sinks.Sink` (with ``member_started`` /
``member_ended``): hand it to a session's Tee (``RunSettings.sinks`` for ``run``; ``attach``
does the same) and ``start()`` it. It keeps the newest value of each metric it shows and a
short history of CPU and memory per container, behind one lock; the sampler's thread only
updates numbers, and rendering runs on the display's own thread from a copy.

On a terminal it is a rich ``Live`` table, one row per container: state, CPU with its limit,
memory with its limit, processes, disk read/write and network rx/tx rates, GPU use and GPU
memory when the container has them, the first app metrics (``app.fps`` first), and
sparklines of CPU and memory. Columns are chosen by priority to fit the width: name, CPU,
memory, state, sparklines, pids, GPU, the first app metric, GPU memory, network, disk (an
80-column terminal shows all of these for a container without GPU or app metrics). Rows are
sorted by CPU, memory or name; on a terminal whose stdin is this process's, ``s`` cycles the
sort and the arrow keys (or ``j``/``k``) scroll when there are more containers than lines
(the table says ``… N more``). Exited containers stay, dimmed and marked.

Elsewhere (a CI log) it prints one plain line per container every ``plain_every_s`` seconds,
and a line when a container starts or ends.
"""

from __future__ import annotations

import os
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from edgeprof.model import Event, MetricSpec, Sample
from edgeprof.sinks import MemberInfo

SortKey = Literal["cpu", "mem", "name"]
SORT_KEYS: tuple[SortKey, ...] = ("cpu", "mem", "name")
BLOCKS = "▁▂▃▄▅▆▇█"
HISTORY = 20
APP_COLUMNS = 3

CPU = "cpu.percent"
MEM = "memory.working_set_bytes"
MEM_LIMIT = "memory.limit_bytes"
DISK_R = "io.read_bytes_per_second"
DISK_W = "io.write_bytes_per_second"
NET_RX = "net.rx_bytes_per_second"
NET_TX = "net.tx_bytes_per_second"
PIDS = "pids.count"
PROCS = "process.count"
GPU_UTIL = "gpu.utilization_percent"
GPU_MEM = "gpu.memory_used_bytes"
GPU_MEM_TOTAL = "gpu.memory_total_bytes"
GPU_CONTAINER_MEM = "gpu.container.memory_used_bytes"
GPU_PROCESS_SM = "gpu.process.sm_utilization_percent"
_PLAIN_METRICS = frozenset({CPU, MEM, MEM_LIMIT, DISK_R, DISK_W, NET_RX, NET_TX, PIDS, PROCS})
_GPU_METRICS = frozenset({GPU_UTIL, GPU_MEM, GPU_CONTAINER_MEM, GPU_PROCESS_SM, GPU_MEM_TOTAL})


# ---- formatting ---------------------------------------------------------------------------


def _trim(x: float) -> str:
    """``64`` not ``64.0``; one decimal below 100."""
    s = f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}"
    return s[:-2] if s.endswith(".0") else s


def fmt_size(v: float | None, iec: bool = True) -> str:
    """Bytes, binary multiples: ``512B``, ``12.3MiB``, ``1.5GiB`` (``12.3M`` when not ``iec``)."""
    if v is None:
        return "-"
    if abs(v) < 1024:
        return f"{v:.0f}B"
    x = float(v)
    for unit in ("K", "M", "G", "T", "P"):
        x /= 1024
        if abs(x) < 1024 or unit == "P":
            # 1023.96 KiB rounds to "1024": show it as the next unit instead
            if round(abs(x)) >= 1024 and unit != "P":
                continue
            return _trim(x) + (f"{unit}iB" if iec else unit)
    return "-"  # pragma: no cover - the loop always returns


def fmt_percent(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}%"


def fmt_num(v: float | None) -> str:
    """An app value: up to 3 significant digits below 100, whole numbers above."""
    if v is None:
        return "-"
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:.3g}"


def fmt_duration(s: float) -> str:
    s = max(0, int(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def sparkline(values: Sequence[float], scale: float | None, width: int) -> str:
    """The last ``width`` values as blocks ``▁``…``█``, ``█`` at ``scale`` (default: the
    largest value shown, at least 1), left-padded with spaces to ``width``."""
    vals = list(values)[-width:] if width > 0 else []
    if not vals:
        return " " * max(width, 0)
    top = scale if scale and scale > 0 else max(max(vals), 1.0)
    f = (len(BLOCKS) - 1) / top
    last = BLOCKS[-1]
    chars = [
        BLOCKS[0] if x <= 0 else last if x >= 7 else BLOCKS[round(x)] for x in (v * f for v in vals)
    ]
    return "".join(chars).rjust(width)


# ---- state --------------------------------------------------------------------------------


@dataclass
class _Member:
    target: str
    order: int
    started: float
    info: MemberInfo | None = None
    values: dict[str, float] = field(default_factory=dict)
    app: dict[str, float] = field(default_factory=dict)
    gpu_util: dict[str, float] = field(default_factory=dict)
    """gpu label → utilisation reported for this container (Jetson-style, labelled target)."""
    gpu_sm: dict[tuple[str, str], float] = field(default_factory=dict)
    """(pid, gpu) → SM utilisation of the container's processes in the latest tick."""
    gpu_mem: dict[str, float] = field(default_factory=dict)
    """gpu label → memory the container's processes hold."""
    cpu_hist: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    mem_hist: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    ended: float | None = None
    exit_code: int | None = None
    restarts: int = 0


@dataclass(frozen=True)
class RowData:
    """One container's figures at one moment (a copy: safe to format on any thread)."""

    target: str
    name: str
    image: str
    order: int
    running: bool
    state: str
    cpu: float | None
    cpu_limit: float | None
    """percent (cores × 100)"""
    mem: float | None
    mem_limit: float | None
    disk_r: float | None
    disk_w: float | None
    net_rx: float | None
    net_tx: float | None
    pids: float | None
    gpu: float | None
    gpu_mem: float | None
    app: tuple[tuple[str, float], ...]
    cpu_hist: tuple[float, ...]
    mem_hist: tuple[float, ...]

    def cpu_text(self) -> str:
        if self.cpu is None:
            return "-"
        limit = "" if self.cpu_limit is None else f"/{_trim(self.cpu_limit)}%"
        return fmt_percent(self.cpu) + limit

    def mem_text(self, iec: bool = True) -> str:
        if self.mem is None:
            return "-"
        limit = "" if self.mem_limit is None else "/" + fmt_size(self.mem_limit, iec)
        return fmt_size(self.mem, iec) + limit

    def pair(self, a: float | None, b: float | None) -> str:
        if a is None and b is None:
            return "-"
        return f"{fmt_size(a, False)}/{fmt_size(b, False)}"

    def cpu_scale(self) -> float:
        """Full block: the CPU limit, else 100 % (or the highest value shown, if above)."""
        if self.cpu_limit:
            return self.cpu_limit
        return max(100.0, *self.cpu_hist) if self.cpu_hist else 100.0

    def mem_scale(self) -> float | None:
        return self.mem_limit  # None: the largest value shown


def _sort_key(key: SortKey) -> Callable[[RowData], tuple[Any, ...]]:
    if key == "cpu":
        return lambda r: (not r.running, -(r.cpu or 0.0), r.name, r.order)
    if key == "mem":
        return lambda r: (not r.running, -(r.mem or 0.0), r.name, r.order)
    return lambda r: (not r.running, r.name, r.order)


# ---- columns ------------------------------------------------------------------------------


@dataclass
class _Column:
    key: str
    header: str
    cells: list[str]
    priority: int
    justify: Literal["left", "right"] = "right"
    spark: bool = False
    max_width: int | None = None

    def natural(self) -> int:
        w = max([len(self.header), *(len(c) for c in self.cells)])
        return min(w, self.max_width) if self.max_width else w


SPARK_MIN, SPARK_MAX = 5, HISTORY
NAME_MIN, NAME_MAX = 8, 24


def layout(rows: Sequence[RowData], width: int, sort: SortKey = "cpu") -> list[_Column]:
    """The columns shown at ``width`` (display order), each with its width fixed."""
    arrow = "▼"
    app_names: list[str] = []
    for r in rows:
        for name, _ in r.app:
            if name not in app_names:
                app_names.append(name)
    if "app.fps" in app_names:
        app_names.remove("app.fps")
        app_names.insert(0, "app.fps")
    app_names = app_names[:APP_COLUMNS]
    cols = [
        _Column(
            "name",
            "NAME" + (arrow if sort == "name" else ""),
            [r.name for r in rows],
            0,
            "left",
            max_width=NAME_MAX,
        ),
        _Column("state", "STATE", [r.state for r in rows], 3, "left"),
        _Column("cpu", "CPU" + (arrow if sort == "cpu" else ""), [r.cpu_text() for r in rows], 1),
        _Column("cpu~", "", [""] * len(rows), 4, "left", spark=True),
        _Column(
            "mem", "MEM" + (arrow if sort == "mem" else ""), [r.mem_text(False) for r in rows], 2
        ),
        _Column("mem~", "", [""] * len(rows), 5, "left", spark=True),
        _Column("pids", "PIDS", ["-" if r.pids is None else f"{r.pids:.0f}" for r in rows], 6),
        _Column("disk", "DISK R/W", [r.pair(r.disk_r, r.disk_w) for r in rows], 11),
        _Column("net", "NET RX/TX", [r.pair(r.net_rx, r.net_tx) for r in rows], 10),
    ]
    if any(r.gpu is not None for r in rows):
        cols.append(_Column("gpu", "GPU", [fmt_percent(r.gpu) for r in rows], 7))
    if any(r.gpu_mem is not None for r in rows):
        cols.append(_Column("gpumem", "GPU MEM", [fmt_size(r.gpu_mem, False) for r in rows], 9))
    for i, name in enumerate(app_names):
        vals = [dict(r.app).get(name) for r in rows]
        cols.append(
            _Column(
                f"app:{name}",
                name[4:].upper(),
                [fmt_num(v) for v in vals],
                8 if i == 0 else 11 + i,
                max_width=12,
            )
        )
    # choose by priority while the row fits (one space between columns)
    chosen: list[_Column] = []
    used = -1
    widths: dict[str, int] = {}
    for c in sorted(cols, key=lambda c: c.priority):
        w = SPARK_MIN if c.spark else c.natural()
        if c.key == "name":
            w = max(NAME_MIN, min(w, width - 1))
        if used + 1 + w > width:
            if c.key == "name":
                w = max(1, width - used - 1)
            else:
                continue
        chosen.append(c)
        widths[c.key] = w
        used += 1 + w
    # spare width: sparklines grow to HISTORY values, then the name column to its natural width
    sparks = [c for c in chosen if c.spark]
    while sparks and used < width:
        grew = False
        for c in sparks:
            if used < width and widths[c.key] < SPARK_MAX:
                widths[c.key] += 1
                used += 1
                grew = True
        if not grew:
            break
    shown = [c for c in cols if c in chosen]
    for c in shown:
        c.max_width = widths[c.key]
    return shown


def _fit(text: str, c: _Column) -> str:
    """``text`` padded (or cut, with ``…``) to the column's width."""
    w = c.max_width or 0
    if len(text) > w:
        return text[: max(0, w - 1)] + "…" if w else ""
    return text.ljust(w) if c.justify == "left" else text.rjust(w)


class _Table:
    """The renderable: laid out at render time for the console's width and height."""

    def __init__(self, view: LiveView) -> None:
        self.view = view

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        height = options.height or console.size.height
        yield from self.view.render_lines(options.max_width, height)


# ---- the view -----------------------------------------------------------------------------


class LiveView:
    """A Sink that shows every observed container live (see the module's docstring).

    ``plain``: None picks by ``console.is_terminal``. ``keys``: read ``s`` / arrows from
    stdin (None: when stdin and stdout are this process's foreground terminal).
    ``now`` is the clock for uptimes (tests pass their own).
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        plain: bool | None = None,
        sort: SortKey = "cpu",
        refresh_hz: float = 4.0,
        plain_every_s: float = 5.0,
        title: str = "edgeprof",
        keys: bool | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if sort not in SORT_KEYS:
            raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}, not {sort!r}")
        self.console = console or Console()
        self.plain = (not self.console.is_terminal) if plain is None else plain
        self.sort: SortKey = sort
        self.refresh_hz = refresh_hz
        self.plain_every_s = plain_every_s
        self.title = title
        self._keys = keys
        self._now = now
        self._lock = threading.Lock()
        self._members: dict[str, _Member] = {}
        self._states: dict[str, str] = {}
        self._host_gpu: dict[str, dict[str, float]] = {}
        self._messages: list[str] = []
        self._offset = 0
        self._live: Any = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._saved_tty: Any = None

    # -- Sink -------------------------------------------------------------------------------

    def describe(self, specs: Sequence[MetricSpec]) -> None:
        return None

    def _member(self, target: str) -> _Member:
        m = self._members.get(target)
        if m is None:
            m = self._members[target] = _Member(target, len(self._members), self._now())
        return m

    def write(self, batch: Sequence[Sample]) -> None:
        with self._lock:
            fresh_sm: set[str] = set()
            for s in batch:
                metric = s.metric
                app = metric.startswith("app.")
                if not app and metric not in _PLAIN_METRICS and metric not in _GPU_METRICS:
                    continue
                target = gpu = pid = None
                for k, v in s.labels:
                    if k == "target":
                        target = v
                    elif k == "gpu":
                        gpu = v
                    elif k == "pid":
                        pid = v
                value = s.value
                if target is None:
                    if metric in _GPU_METRICS and gpu is not None:
                        self._host_gpu.setdefault(gpu, {})[metric] = value
                    continue
                m = self._member(target)
                if app:
                    m.app[metric] = value
                elif metric in _PLAIN_METRICS:
                    m.values[metric] = value
                    if metric == CPU:
                        m.cpu_hist.append(value)
                    elif metric == MEM:
                        m.mem_hist.append(value)
                elif metric in (GPU_CONTAINER_MEM, GPU_MEM):
                    m.gpu_mem[gpu or ""] = value
                    if metric == GPU_CONTAINER_MEM and target not in fresh_sm:
                        fresh_sm.add(target)
                        m.gpu_sm.clear()
                elif metric == GPU_PROCESS_SM:
                    if target not in fresh_sm:
                        # the gpu-process collector reports every tick: this tick's figures
                        # replace the last (a process that stopped using the GPU drops out)
                        fresh_sm.add(target)
                        m.gpu_sm.clear()
                    m.gpu_sm[(pid or "", gpu or "")] = value
                elif metric == GPU_UTIL:
                    m.gpu_util[gpu or ""] = value

    def event(self, ev: Event) -> None:
        if ev.target is None or ev.kind not in ("exited", "container_restarted"):
            return
        with self._lock:
            m = self._member(ev.target)
            if ev.kind == "exited":
                code = ev.data.get("exit_code")
                if isinstance(code, int):
                    m.exit_code = code
            else:  # followed across a restart: running again, counted
                m.restarts += 1
                m.ended = None
                m.exit_code = None
                m.started = self._now()

    def member_started(self, info: MemberInfo) -> None:
        with self._lock:
            m = self._members.get(info.target)
            if m is not None and m.ended is not None:  # back again (restarts are counted
                m.ended = None  # from the container_restarted event)
                m.exit_code = None
                m.started = self._now()
            m = self._member(info.target)
            m.info = info
            what = [info.image] + ([f"container {info.name}"] if info.name != info.target else [])
            if "cpus" in info.limits:
                what.append(f"cpus {_trim(info.limits['cpus'])}")
            if "memory_bytes" in info.limits:
                what.append(f"memory {fmt_size(info.limits['memory_bytes'])}")
            line = f"{info.target}: started ({', '.join(what)})"
        self.print(line)  # above the table on a terminal, in the log otherwise

    def member_ended(self, target: str) -> None:
        with self._lock:
            m = self._member(target)
            m.ended = self._now()
            last = self.plain_line(self._row(m), name=False, state=False)
            line = f"{self._name(m)}: ended; last: {last}"
        self.print(line)

    # -- what callers may add ----------------------------------------------------------------

    def set_state(self, target: str, text: str | None) -> None:
        """A short text for the STATE column (``run`` shows ``12/30s`` and the exit status);
        None: the default (``up 1m02s``, ``exited``, ``exit 3``)."""
        with self._lock:
            if text is None:
                self._states.pop(target, None)
            else:
                self._states[target] = text

    def print(self, line: str) -> None:
        """A line above the table (on a terminal) or in the log."""
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False)
        elif self.plain:
            with self._lock:
                self._messages.append(line)
        else:
            self.console.print(line, markup=False, highlight=False)

    def cycle_sort(self) -> SortKey:
        with self._lock:
            self.sort = SORT_KEYS[(SORT_KEYS.index(self.sort) + 1) % len(SORT_KEYS)]
            self._offset = 0
            return self.sort

    def scroll(self, by: int) -> None:
        with self._lock:
            self._offset = max(0, min(self._offset + by, max(0, len(self._members) - 1)))

    # -- snapshots and text --------------------------------------------------------------------

    @staticmethod
    def _name(m: _Member) -> str:
        return m.target  # the target's name (an attached container's own name)

    def _state(self, m: _Member) -> str:
        text = self._states.get(m.target)
        if text is not None:
            return text
        if m.ended is not None:
            return "exited" if m.exit_code is None else f"exit {m.exit_code}"
        up = "up " + fmt_duration(self._now() - m.started)
        return up + (f" ↻{m.restarts}" if m.restarts else "")

    def rows(self) -> list[RowData]:
        """Every container's figures now, in the current sort order."""
        with self._lock:
            out = [self._row(m) for m in self._members.values()]
            key = self.sort
        return sorted(out, key=_sort_key(key))

    def _row(self, m: _Member) -> RowData:
        v = m.values
        info = m.info
        cpus = info.limits.get("cpus") if info is not None else None
        mem_limit = info.limits.get("memory_bytes") if info is not None else None
        if mem_limit is None:
            mem_limit = v.get(MEM_LIMIT)
        gpu: float | None = None
        if m.gpu_util:
            gpu = sum(m.gpu_util.values())
        elif m.gpu_sm:
            gpu = sum(m.gpu_sm.values())
        app = dict(m.app)
        if "app.fps" in app:
            app = {"app.fps": app.pop("app.fps"), **app}
        return RowData(
            target=m.target,
            name=self._name(m),
            image=info.image if info is not None else "",
            order=m.order,
            running=m.ended is None,
            state=self._state(m),
            cpu=v.get(CPU),
            cpu_limit=None if cpus is None else cpus * 100.0,
            mem=v.get(MEM),
            mem_limit=mem_limit,
            disk_r=v.get(DISK_R),
            disk_w=v.get(DISK_W),
            net_rx=v.get(NET_RX),
            net_tx=v.get(NET_TX),
            pids=v.get(PIDS, v.get(PROCS)),
            gpu=gpu,
            gpu_mem=sum(m.gpu_mem.values()) if m.gpu_mem else None,
            app=tuple(app.items()),
            cpu_hist=tuple(m.cpu_hist),
            mem_hist=tuple(m.mem_hist),
        )

    def host_gpu_text(self) -> str:
        with self._lock:
            gpus = {k: dict(v) for k, v in self._host_gpu.items()}
        parts = []
        for gpu in sorted(gpus, key=lambda g: (len(g), g)):
            g = gpus[gpu]
            util = g.get(GPU_UTIL)
            used, total = g.get(GPU_MEM), g.get(GPU_MEM_TOTAL)
            mem = fmt_size(used, False) + ("" if total is None else "/" + fmt_size(total, False))
            parts.append(f"GPU{gpu} {fmt_percent(util)}" + ("" if used is None else f" {mem}"))
        return "  ".join(parts)

    def plain_line(self, r: RowData, name: bool = True, state: bool = True) -> str:
        """``burn cpu 48.7%/50% mem 12.3MiB/64MiB disk r 0B/s w 0B/s net rx … pids 3``."""
        parts = ([r.name] if name else []) + ["cpu", r.cpu_text(), "mem", r.mem_text()]

        def rate(v: float | None) -> str:
            return "-" if v is None else fmt_size(v) + "/s"

        if r.disk_r is not None or r.disk_w is not None:
            parts += ["disk", "r", rate(r.disk_r), "w", rate(r.disk_w)]
        if r.net_rx is not None or r.net_tx is not None:
            parts += ["net", "rx", rate(r.net_rx), "tx", rate(r.net_tx)]
        if r.pids is not None:
            parts += ["pids", f"{r.pids:.0f}"]
        if r.gpu is not None:
            parts += ["gpu", fmt_percent(r.gpu)]
        if r.gpu_mem is not None:
            parts += ["gpumem", fmt_size(r.gpu_mem)]
        for metric, value in r.app[:APP_COLUMNS]:
            parts += [metric[4:], fmt_num(value)]
        if state and not r.running:
            parts.append(f"({r.state})")
        return " ".join(parts)

    def plain_lines(self) -> list[str]:
        return [self.plain_line(r) for r in self.rows()]

    def render_lines(self, width: int, height: int | None = None) -> Iterable[Any]:
        """The terminal display as rich renderables: a title, the table, a footer."""
        rows = self.rows()
        with self._lock:
            sort, offset = self.sort, self._offset
        running = sum(r.running for r in rows)
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(self.title, style="bold")
        head.append(f"  {len(rows)} container{'s' * (len(rows) != 1)}, {running} running")
        head.append(f"  sort: {sort}" + (" (s)" if self._keys_on() else ""), style="dim")
        yield head
        gpu_line = self.host_gpu_text()
        # lines for rows: the height less title, header, footer lines and the cursor's line
        footer_lines = 1 + (1 if gpu_line else 0)
        fit = len(rows) if not height else max(1, height - 3 - footer_lines)
        if len(rows) > fit:
            fit = max(1, fit - 1)  # room for the "… N more" line
            offset = min(offset, len(rows) - fit)
            shown = rows[offset : offset + fit]
        else:
            offset, shown = 0, rows
        cols = layout(shown, width, sort) if shown else layout(rows, width, sort)
        # plain padded lines: a rich Table of 30 rows costs ~70 ms to lay out, these ~2 ms
        yield Text(" ".join(_fit(c.header, c) for c in cols), style="bold", no_wrap=True)
        for i, r in enumerate(shown):
            cells: list[str] = []
            for c in cols:
                if c.key == "cpu~":
                    cells.append(sparkline(r.cpu_hist, r.cpu_scale(), c.max_width or 0))
                elif c.key == "mem~":
                    cells.append(sparkline(r.mem_hist, r.mem_scale(), c.max_width or 0))
                else:
                    cells.append(_fit(c.cells[i], c))
            yield Text(" ".join(cells), style="" if r.running else "dim", no_wrap=True)
        more = len(rows) - len(shown)
        if more:
            above = offset
            where = f": {above} above, {more - above} below" if above else ""
            hint = " (↑↓ scroll)" if self._keys_on() else ""
            yield Text(f"… {more} more{where}{hint}", style="dim", no_wrap=True)
        if gpu_line:
            yield Text(gpu_line, no_wrap=True, overflow="ellipsis")
        yield Text(
            "K/M/G: KiB/MiB/GiB; disk and net per second",
            style="dim",
            no_wrap=True,
            overflow="ellipsis",
        )

    def renderable(self) -> _Table:
        return _Table(self)

    # -- running ---------------------------------------------------------------------------

    def _keys_on(self) -> bool:
        if self._keys is None:
            self._keys = self._can_read_keys()
        return self._keys

    def _can_read_keys(self) -> bool:
        if self.plain or not self.console.is_terminal:
            return False
        try:
            fd = sys.stdin.fileno()
            return os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
        except (OSError, ValueError, AttributeError):
            return False

    def start(self) -> LiveView:
        self._stop.clear()
        if self.plain:
            t = threading.Thread(target=self._plain_loop, name="edgeprof-live", daemon=True)
            self._threads.append(t)
            t.start()
            return self
        from rich.live import Live

        self._live = Live(
            console=self.console,
            refresh_per_second=self.refresh_hz,
            get_renderable=self.renderable,
            redirect_stdout=True,
            redirect_stderr=True,
            transient=False,
        )
        self._live.start()
        if self._keys_on():
            self._start_keys()
        return self

    def stop(self) -> None:
        """Stop drawing; the terminal's modes come back first, whatever happens after (a
        second Ctrl-C while the threads end must not leave it without echo)."""
        self._stop.set()
        try:
            self._restore_tty()
        finally:
            try:
                if self._live is not None:
                    live, self._live = self._live, None
                    live.refresh()
                    live.stop()
                elif self.plain:
                    self._flush_messages()
            finally:
                for t in self._threads:
                    t.join(timeout=2)
                self._threads.clear()

    def __enter__(self) -> LiveView:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _flush_messages(self) -> None:
        with self._lock:
            msgs, self._messages = self._messages, []
        for line in msgs:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _plain_loop(self) -> None:
        next_at = time.monotonic() + self.plain_every_s
        while not self._stop.wait(0.25):
            self._flush_messages()
            if time.monotonic() >= next_at:
                next_at += self.plain_every_s
                for r in self.rows():
                    if r.running:
                        self.console.print(
                            self.plain_line(r), markup=False, highlight=False, soft_wrap=True
                        )

    def _start_keys(self) -> None:
        import termios

        fd = sys.stdin.fileno()
        try:
            self._saved_tty = termios.tcgetattr(fd)
            new = termios.tcgetattr(fd)
            new[3] &= ~(termios.ICANON | termios.ECHO)  # keys one by one; ISIG stays (Ctrl-C)
            new[6][termios.VMIN] = 1
            new[6][termios.VTIME] = 0
            termios.tcsetattr(fd, termios.TCSANOW, new)
        except (termios.error, OSError):
            self._saved_tty = None
            self._keys = False
            return
        t = threading.Thread(target=self._key_loop, args=(fd,), name="edgeprof-keys", daemon=True)
        self._threads.append(t)
        t.start()

    def _restore_tty(self) -> None:
        if self._saved_tty is None:
            return
        import termios

        try:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSANOW, self._saved_tty)
        except (termios.error, OSError, ValueError):
            pass
        self._saved_tty = None

    def _key_loop(self, fd: int) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.2)
                if not ready:
                    continue
                data = os.read(fd, 64)
            except (OSError, ValueError):
                return
            if not data:
                return
            self.handle_keys(data)

    def handle_keys(self, data: bytes) -> None:
        """``s``: next sort; ↑/``k`` and ↓/``j``: scroll one row."""
        i = 0
        while i < len(data):
            if data[i : i + 3] in (b"\x1b[A", b"\x1bOA"):
                self.scroll(-1)
                i += 3
                continue
            if data[i : i + 3] in (b"\x1b[B", b"\x1bOB"):
                self.scroll(1)
                i += 3
                continue
            ch = data[i : i + 1]
            if ch in (b"s", b"S"):
                self.cycle_sort()
            elif ch == b"k":
                self.scroll(-1)
            elif ch == b"j":
                self.scroll(1)
            i += 1
        if self._live is not None:
            self._live.refresh()
