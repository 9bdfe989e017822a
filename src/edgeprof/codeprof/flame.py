"""Flame graphs (SVG, HTML) and speedscope JSON from stored stack samples.

The flame graph follows Brendan Gregg's ``flamegraph.pl`` design: one box per frame, the
root at the bottom, width = share of the samples, siblings sorted by name. It is drawn here
in Python as one SVG whose script (``report/templates/flame.js``, the same for the ``.svg``
file, the ``.html`` page and the HTML report) gives it click-to-zoom, a search that
highlights the matching functions and says what share of the samples they hold, and, on
hover, the function, its file:line, its samples and their share. Nothing is fetched: the
file opens offline. No packaged renderer fitted: ``flameprof`` draws cProfile statistics,
not sampled stacks, and d3-flame-graph or speedscope's viewer are npm packages, so a Python
install would have to carry a copy of them.

A frame is a function and its file; the line shown is the one most samples were taken at
(py-spy reports the running line, so one function would otherwise split into a box per
line). The first level above the root is the process (its name and host PID), so a
``multiprocessing`` child or a forked worker has a tower of its own.

speedscope's file format: https://www.speedscope.app/file-format-schema.json — one
``sampled`` profile per process, the samples in time order, weights in samples.
"""

from __future__ import annotations

import html
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from edgeprof import __version__
from edgeprof.codeprof.model import SLICE_NS
from edgeprof.codeprof.top import SampleLike
from edgeprof.errors import UserError
from edgeprof.store.base import Store

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"
WIDTH = 1200
"""The SVG's width in its own units (it scales to the page)."""
FRAME_H = 16
FONT_SIZE = 11
PAD_TOP = 44
PAD_BOTTOM = 26
PAD_X = 10
MIN_FRAME_PX = 0.1
"""Frames narrower than this (at the full view) are left out, as flamegraph.pl does."""

SLICE_S = SLICE_NS / 1e9
"""Stacks are stored per process per slice (1 s): a window selects the slices it overlaps."""

_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _x(text: Any) -> str:
    """Text safe in XML and HTML (escaped; characters XML forbids dropped)."""
    return html.escape(_BAD_XML.sub("", str(text)), quote=True)


@dataclass
class Node:
    """A box of the flame graph: a function (or the process, or the root) in its context."""

    function: str
    file: str = ""
    value: int = 0
    self_value: int = 0
    lines: Counter[int] = field(default_factory=Counter)
    children: dict[tuple[str, str], Node] = field(default_factory=dict)
    kind: str = "python"

    @property
    def line(self) -> int:
        if not self.lines:
            return 0
        return min(self.lines.items(), key=lambda kv: (-kv[1], kv[0]))[0]

    @property
    def location(self) -> str:
        if not self.file:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file

    def child(self, function: str, file: str, kind: str) -> Node:
        key = (function, file)
        n = self.children.get(key)
        if n is None:
            n = self.children[key] = Node(function, file, kind=kind)
        return n

    def depth(self) -> int:
        return 1 + max((c.depth() for c in self.children.values()), default=0)


def process_label(process: str, pid: int) -> str:
    return f"{process} [{pid}]"


def build_tree(samples: Iterable[SampleLike], by_process: bool = True) -> Node:
    """The merged call tree of the samples (root: every sample)."""
    root = Node("all", kind="root")
    for s in samples:
        c = int(s.count)
        if c <= 0:
            continue
        root.value += c
        node = root
        if by_process:
            node = node.child(process_label(s.process, s.pid), "", "process")
            node.value += c
        for f in s.stack:
            node = node.child(f.function, f.file, s.kind)
            node.value += c
            node.lines[int(f.line)] += c
        node.self_value += c
    return root


# -- the SVG -------------------------------------------------------------------------------


def _color(n: Node) -> str:
    if n.kind == "process":
        return "rgb(190,190,200)"
    if n.kind == "root":
        return "rgb(210,210,210)"
    h = zlib.crc32(n.function.encode("utf-8", "replace"))
    v1, v2, v3 = (h & 0xFF) / 255, ((h >> 8) & 0xFF) / 255, ((h >> 16) & 0xFF) / 255
    if n.kind == "native":  # aqua-ish, told apart from Python's warm colours
        return f"rgb({int(50 + 60 * v3)},{int(165 + 55 * v1)},{int(165 + 55 * v2)})"
    return f"rgb({int(205 + 50 * v3)},{int(230 * v1)},{int(55 * v2)})"


def _label(name: str, width_px: float) -> str:
    chars = int(width_px / (FONT_SIZE * 0.59))
    if chars < 3:
        return ""
    return name if len(name) <= chars else name[: chars - 2] + ".."


def flame_js() -> str:
    """The flame graph's script (zoom, search, hover), from the package's templates."""
    return resources.files("edgeprof.report").joinpath("templates", "flame.js").read_text("utf-8")


def render_svg_element(
    root: Node, title: str, *, svg_id: str = "flame", standalone: bool = False
) -> str:
    """The ``<svg>`` element: every frame as ``<g class="f">`` with its tooltip, position in
    samples (``data-x``, ``data-w``) and depth; ``standalone`` adds the XML namespace
    attributes and the script (an ``.svg`` file); otherwise the page carries the script."""
    total = max(root.value, 1)
    depth = root.depth()
    height = PAD_TOP + depth * FRAME_H + PAD_BOTTOM
    inner = WIDTH - 2 * PAD_X
    min_w = total * MIN_FRAME_PX / inner
    out: list[str] = []
    ns = ' xmlns="http://www.w3.org/2000/svg" version="1.1"' if standalone else ' role="img"'
    out.append(
        f'<svg{ns} class="edgeprof-flame" id="{_x(svg_id)}" viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" data-total="{root.value}" data-width="{WIDTH}" data-pad="{PAD_X}" '
        f'data-fh="{FRAME_H}" data-fs="{FONT_SIZE}" font-family="Verdana, sans-serif" '
        f'font-size="{FONT_SIZE}" style="background:#f8f8f8">'
    )
    out.append(
        "<style>.edgeprof-flame .f{cursor:pointer}"
        ".edgeprof-flame .f:hover rect{stroke:#000;stroke-width:0.5}"
        ".edgeprof-flame .f text{pointer-events:none;fill:#000}"
        ".edgeprof-flame .ctl{cursor:pointer;fill:#1f5fa8}"
        ".edgeprof-flame .hide{display:none}</style>"
    )
    out.append(
        f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" font-size="15">{_x(title)}</text>'
    )
    out.append(f'<text class="ctl reset hide" x="{PAD_X}" y="36">Reset Zoom</text>')
    out.append(
        f'<text class="ctl search" x="{WIDTH - PAD_X}" y="36" text-anchor="end">Search</text>'
    )
    out.append(f'<text class="matched" x="{WIDTH - PAD_X - 60}" y="36" text-anchor="end"></text>')
    out.append(f'<text class="details" x="{PAD_X}" y="{height - 8}"> </text>')

    def emit(n: Node, x: int, d: int) -> None:
        if n.value < min_w and n.kind != "root":
            return
        px = PAD_X + inner * x / total
        pw = inner * n.value / total
        y = height - PAD_BOTTOM - (d + 1) * FRAME_H
        pct = 100.0 * n.value / total
        loc = n.location
        name = n.function
        tip = f"{name} ({loc})" if loc else name
        tip += f"\n{n.value:,} samples, {pct:.2f} %"
        if n.self_value and n.children:
            tip += f" (self {n.self_value:,}, {100.0 * n.self_value / total:.2f} %)"
        out.append(
            f'<g class="f" data-x="{x}" data-w="{n.value}" data-d="{d}" '
            f'data-n="{_x(name)}" data-loc="{_x(loc)}"><title>{_x(tip)}</title>'
            f'<rect x="{px:.2f}" y="{y}" width="{pw:.2f}" height="{FRAME_H - 1}" '
            f'fill="{_color(n)}" rx="2" ry="2"/>'
            f'<text x="{px + 3:.2f}" y="{y + FRAME_H - 4.5}">{_x(_label(name, pw))}</text></g>'
        )
        cx = x
        for key in sorted(n.children):
            c = n.children[key]
            emit(c, cx, d + 1)
            cx += c.value

    emit(root, 0, 0)
    if standalone:
        js = flame_js().replace("]]>", "]]]]><![CDATA[>")
        out.append(f'<script type="text/ecmascript"><![CDATA[\n{js}\n]]></script>')
    out.append("</svg>")
    return "".join(out)


def render_svg(root: Node, title: str) -> str:
    """A standalone ``.svg`` file (opens in a browser: zoom, search, hover)."""
    return (
        '<?xml version="1.0" standalone="no"?>\n'
        + render_svg_element(root, title, standalone=True)
        + "\n"
    )


def search_box(svg_id: str) -> str:
    """The search field of an HTML page, tied to the flame graph ``svg_id``."""
    return (
        f'<div class="flame-tools"><input type="search" class="flame-search" '
        f'data-for="{_x(svg_id)}" placeholder="search functions or files (regular expression)" '
        f'size="40"> <span class="flame-matched" data-for="{_x(svg_id)}"></span></div>'
    )


def _sha256(text: str) -> str:
    import base64
    import hashlib

    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def render_html(root: Node, title: str) -> str:
    """A standalone ``.html`` page: the flame graph, a search field, the script inline."""
    js = flame_js()
    if "</script" in js.lower():  # never emit a broken page
        js = re.sub(r"(?i)</script", r"<\\/script", js)
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        f"script-src {_sha256(js)}; style-src 'unsafe-inline'; img-src data:\">"
        "<link rel='icon' href='data:,'>"
        f"<title>{_x(title)}</title><style>body{{font-family:sans-serif;margin:12px}}"
        ".flame-tools{margin:6px 0}</style></head><body>"
        f"<h1 style='font-size:18px'>{_x(title)}</h1>"
        + search_box("flame")
        + render_svg_element(root, title, svg_id="flame")
        + "<p style='color:#555;font-size:13px'>Click a box to zoom in, Reset Zoom (or "
        "Escape) to zoom out; hover for function, file:line and samples. Generated by "
        f"edgeprof {_x(__version__)}.</p>"
        f"<script>{js}</script></body></html>\n"
    )


# -- speedscope ------------------------------------------------------------------------------


def speedscope(samples: Sequence[SampleLike], name: str) -> dict[str, Any]:
    """speedscope's JSON document: one ``sampled`` profile per process, time-ordered."""
    frames: list[dict[str, Any]] = []
    index: dict[tuple[str, str], int] = {}
    lines: dict[tuple[str, str], Counter[int]] = {}
    for s in samples:
        for f in s.stack:
            lines.setdefault((f.function, f.file), Counter())[int(f.line)] += int(s.count)
    for key in sorted(lines):
        index[key] = len(frames)
        line = min(lines[key].items(), key=lambda kv: (-kv[1], kv[0]))[0]
        fr: dict[str, Any] = {"name": key[0]}
        if key[1]:
            fr["file"] = key[1]
        if line > 0:
            fr["line"] = line
        frames.append(fr)
    by_proc: dict[tuple[int, str], list[SampleLike]] = {}
    for s in samples:
        if int(s.count) > 0:
            by_proc.setdefault((s.pid, s.process), []).append(s)
    profiles = []
    for (pid, proc), rows in sorted(by_proc.items()):
        rows.sort(key=lambda s: (s.t_ns, [(f.function, f.file) for f in s.stack]))
        weights = [int(s.count) for s in rows]
        profiles.append(
            {
                "type": "sampled",
                "name": process_label(proc, pid),
                "unit": "none",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": [[index[(f.function, f.file)] for f in s.stack] for s in rows],
                "weights": weights,
            }
        )
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "shared": {"frames": frames},
        "profiles": profiles,
        "name": name,
        "activeProfileIndex": 0,
        "exporter": f"edgeprof {__version__}",
    }


__all__ = [
    "Node",
    "build_tree",
    "flame_js",
    "render_html",
    "render_svg",
    "render_svg_element",
    "search_box",
    "report_section",
    "speedscope",
]


# -- choosing what to draw -------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """The stacks of one target of a run in a window (seconds from the target's start)."""

    run_id: int
    target: str
    samples: list[Any]
    from_s: float | None
    to_s: float | None
    kind: str | None
    span_s: tuple[float, float] | None = None
    """Where the selected windows (stacks are stored per window of about 1 s) begin and
    end, seconds from the target's start: whole windows, so wider than ``[from_s, to_s)``."""

    @property
    def total(self) -> int:
        return sum(int(s.count) for s in self.samples)

    def title(self) -> str:
        t = f"run {self.run_id} · {self.target}"
        if self.kind:
            t += f" · {self.kind}"
        if self.from_s is not None or self.to_s is not None:
            a = "the start" if self.from_s is None else f"{self.from_s:g} s"
            b = "the end" if self.to_s is None else f"{self.to_s:g} s"
            t += f" · the windows overlapping {a} to {b}"
            if self.span_s is not None:
                t += f" ({self.span_s[0]:g} s to {self.span_s[1]:g} s)"
        return t + f" · {self.total:,} samples"


def _pick_target(run_id: int, targets: list[Any], name: str | None, with_code: list[Any]) -> Any:
    if name is None:
        if len(with_code) == 1:
            return with_code[0]
        if not with_code:
            raise UserError(
                f"run {run_id} stored no code samples; profile the code with "
                "'profiling: {code: {python: true}}' in the spec"
            )
        names = ", ".join(t.name for t in with_code)
        raise UserError(
            f"run {run_id} has code samples for several targets ({names}); pick one with --target"
        )
    exact = [t for t in targets if t.name == name]
    if not exact:
        exact = [t for t in targets if t.name.split("#", 1)[0] == name]
    if len(exact) == 1:
        return exact[0]
    names = ", ".join(t.name for t in (exact or targets)) or "none"
    if exact:
        raise UserError(f"--target {name!r} matches {names} of run {run_id}; pick one of them")
    raise UserError(
        f"run {run_id} has no target named {name!r} (its targets: {names}); "
        "pick one of them with --target"
    )


def select(
    store: Store,
    run_ref: str | int,
    target: str | None = None,
    from_s: float | None = None,
    to_s: float | None = None,
    kind: str | None = None,
) -> Selection:
    """The stacks to draw: one target (the only one with stacks when ``target`` is None),
    the 1-s slices that overlap ``[from_s, to_s)`` seconds from the target's start, of
    one kind (``python``/``native``) or all."""
    if from_s is not None and from_s < 0:
        raise UserError(f"--from {from_s:g} is negative; give seconds from the target's start")
    if from_s is not None and to_s is not None and to_s <= from_s:
        raise UserError(f"--to {to_s:g} is not after --from {from_s:g}; give a later --to")
    run = store.resolve_run(run_ref)
    targets = store.targets(run.id)
    with_code = [t for t in targets if target is not None or store.code_samples(t.id)]
    t = _pick_target(run.id, targets, target, with_code)
    t0 = t.started_ns if t.started_ns is not None else run.started_ns
    lo = None if from_s is None else t0 + round(from_s * 1e9)
    hi = None if to_s is None else t0 + round(to_s * 1e9)
    rows = [s for s in store.code_samples(t.id, lo, hi) if kind is None or s.kind == kind]
    if not rows:
        everything = store.code_samples(t.id)
        if not everything:
            why = [e.message for e in store.events(run.id) if e.target_id == t.id]
            hint = f" (its notes: {'; '.join(why[:3])})" if why else ""
            raise UserError(
                f"target {t.name!r} of run {run.id} stored no code samples{hint}; profile "
                "the code with 'profiling: {code: {python: true}}' in the spec"
            )
        kinds = sorted({s.kind for s in everything})
        if kind is not None and kind not in kinds:
            raise UserError(
                f"target {t.name!r} of run {run.id} has no {kind} stacks (it has: "
                f"{', '.join(kinds)}); pick --kind {kinds[0]}"
            )
        a = (min(s.t_ns for s in everything) - t0) / 1e9
        b = (max(s.t_ns for s in everything) - t0) / 1e9 + SLICE_S
        raise UserError(
            f"target {t.name!r} of run {run.id} has no code samples between "
            f"{from_s or 0:g} s and {'its end' if to_s is None else f'{to_s:g} s'}; "
            f"its stacks span {a:g} s to {b:g} s from its start"
        )
    span = (
        round((min(s.t_ns for s in rows) - t0) / 1e9, 3),
        round((max(s.t_ns for s in rows) - t0) / 1e9 + SLICE_S, 3),
    )
    return Selection(run.id, t.name, rows, from_s, to_s, kind, span)


OUTPUTS = (".svg", ".html", ".htm", ".json")


def check_output(path: str) -> None:
    """A one-sentence error for an output name whose format cannot be told."""
    if not path.lower().endswith(OUTPUTS):
        raise UserError(
            f"cannot tell the format of {path!r} from its name; name it flame.svg, "
            "flame.html or profile.speedscope.json"
        )


def write_flame(sel: Selection, path: str) -> str:
    """Write the flame graph (``.svg``, ``.html``) or speedscope JSON (``.json``, e.g.
    ``profile.speedscope.json``); returns what was written, in words."""
    import json

    low = path.lower()
    check_output(path)
    if low.endswith(".json"):
        text = json.dumps(speedscope(sel.samples, sel.title()), separators=(",", ":"))
        what = "speedscope profile"
    else:
        root = build_tree(sel.samples)
        title = sel.title()
        text = render_svg(root, title) if low.endswith(".svg") else render_html(root, title)
        what = "flame graph"
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}; pick another -o path") from None
    return what


# -- the HTML report's section ---------------------------------------------------------------


def report_section(store: Store, runs: Sequence[tuple[Any, Sequence[Any]]], multi: bool) -> str:
    """The report's code section: per target with stacks, its top functions and its flame
    graph (collapsed); ``""`` when no target has stacks. The page must carry
    :func:`flame_js`."""
    from edgeprof.codeprof.top import top_functions

    parts: list[str] = []
    for run, targets in runs:
        for t in targets:
            rows = store.code_samples(t.id)
            code = top_functions(rows)
            if not code.samples:
                continue
            name = f"run {run.id} · {t.name}" if multi else t.name
            svg_id = f"flame-{run.id}-{t.id}"
            trs = "".join(
                f"<tr><td>{_x(f.function)}</td><td>{_x(f.file)}{f':{f.line}' if f.line else ''}"
                f"</td><td class='n'>{f.self_pct:.1f} %</td>"
                f"<td class='n'>{f.total_pct:.1f} %</td></tr>"
                for f in code.top
            )
            parts.append(
                f"<h3>{_x(name)}: top functions ({code.samples:,} stack samples)</h3>"
                "<table><thead><tr><th>function</th><th>file:line</th><th>self</th>"
                f"<th>total</th></tr></thead><tbody>{trs}</tbody></table>"
                f"<details class='flame'><summary>Flame graph of {_x(name)}</summary>"
                + search_box(svg_id)
                + render_svg_element(
                    build_tree(rows), f"{name}: {code.samples:,} samples", svg_id=svg_id
                )
                + "<p class='flame-note'>Click a box to zoom in, Reset Zoom (or Escape) to zoom "
                "out; hover for function, file:line and samples. <code>edgeprof flame</code> "
                "draws a phase of the run (<code>--from</code>/<code>--to</code>).</p>"
                "</details>"
            )
    if not parts:
        return ""
    return (
        "<p>Self: samples running in the function; total: samples with the function on the "
        "stack (recursion counted once).</p>" + "".join(parts)
    )
