"""HTML report: generation time and file size, and time to first render in Chromium, for runs
of 10k, 100k and 1M samples (a benchmark: prints figures, asserts nothing).

Each run is written through edgeprof's own store (``BatchWriter``, as ``bench/store.py``
does): three targets, each with the series of a real run (container CPU, memory with a
limit, I/O, network, processes and three per-process series, host, two app metrics) sampled
on one tick, values random walks with spikes (a fixed seed), plus the events a real run
stores (start, exit, timeout, an OOM kill, rejected app messages) and 1,000 log lines per
target. Then, for each run:

- generation: ``edgeprof report RUN -o FILE`` in a subprocess (wall clock, interpreter start
  included, best of 3) and ``write_report()`` in process;
- the file's size;
- first render: the page opened from disk in headless Chromium (Debian's ``chromium``,
  driven by Playwright), ``performance.now()`` when every chart has drawn (ms since the
  navigation started, HTML parse and JSON included), best of 3 fresh pages;
- responsiveness: a drag-zoom on the first chart, until the next frame.

    python bench/report.py [--quick|--smoke] [--json FILE]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import EDGEPROF, banner, dump, parse_mode, table  # noqa: E402

CHROMIUM = os.environ.get("EDGEPROF_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

TARGETS = ("detect", "track", "upload")
GAUGES: list[tuple[str, str, dict[str, str]]] = [
    ("cpu.percent", "%", {}),
    ("cpu.throttled_seconds_per_second", "s/s", {}),
    ("memory.working_set_bytes", "B", {}),
    ("memory.rss_bytes", "B", {}),
    ("memory.cache_bytes", "B", {}),
    ("memory.limit_bytes", "B", {}),
    ("io.read_bytes_per_second", "B/s", {}),
    ("io.write_bytes_per_second", "B/s", {}),
    ("net.rx_bytes_per_second", "B/s", {}),
    ("net.tx_bytes_per_second", "B/s", {}),
    ("net.rx_packets_per_second", "1/s", {}),
    ("net.tx_packets_per_second", "1/s", {}),
    ("pids.count", "1", {}),
    ("process.count", "1", {}),
    ("process.cpu.percent", "%", {"process": "python3", "pid": "1"}),
    ("process.cpu.percent", "%", {"process": "worker", "pid": "7"}),
    ("process.cpu.percent", "%", {"process": "sh", "pid": "9"}),
    ("process.memory.rss_bytes", "B", {"process": "python3", "pid": "1"}),
    ("process.memory.rss_bytes", "B", {"process": "worker", "pid": "7"}),
    ("process.memory.rss_bytes", "B", {"process": "sh", "pid": "9"}),
    ("host.cpu.percent", "%", {}),
    ("host.memory.used_bytes", "B", {}),
    ("host.load1", "1", {}),
    ("app.fps", "1", {}),
    ("app.infer", "ms", {}),
]
SIZES = {"smoke": [10_000], "quick": [10_000, 100_000, 1_000_000]}
FULL = [10_000, 100_000, 1_000_000]


def _values(rng: Any, n: int, unit: str, k: int) -> Any:
    import numpy as np

    base = {"%": 60.0, "B": 2e8, "B/s": 1e6, "1/s": 500.0, "s/s": 0.02, "ms": 40.0}.get(unit, 5.0)
    walk = np.cumsum(rng.normal(0, base * 0.01, n))
    v = base * (1 + 0.3 * np.sin(np.arange(n) / (200 + 37 * k))) + walk
    spikes = rng.integers(0, n, max(1, n // 5000))
    v[spikes] *= 3  # one-sample peaks the display must keep
    return np.abs(v)


def build_run(db: str, n_samples: int, seed: int = 1) -> int:
    """A run of about ``n_samples`` samples through the store's BatchWriter; its id."""
    import numpy as np

    from edgeprof.model import Event, MetricSpec, Sample
    from edgeprof.store import BatchWriter, open_store
    from edgeprof.store.base import RunInfo, TargetInfo

    rng = np.random.default_rng(seed)
    store = open_store(db)
    t_start = time.time_ns()
    run_id = store.begin_run(
        RunInfo(
            spec_name="bench-report",
            image="synthetic:latest",
            started_ns=t_start,
            interval_s=0.01,
            spec_text="name: bench-report\nimage: synthetic:latest\n",
            host={"hostname": "bench", "cpu_count": 2, "memory_total_bytes": 8 << 30},
            version="bench",
        )
    )
    w = BatchWriter(store, run_id)
    w.describe([MetricSpec(m, u) for m, u, _ in GAUGES])
    ticks = max(2, n_samples // (len(TARGETS) * len(GAUGES)))
    t0 = t_start
    for ti, name in enumerate(TARGETS):
        tid = store.begin_target(
            TargetInfo(run_id, ti, name, ["python3", "app.py"], {"resources": {"cpus": 1.0}})
        )
        w.add_target(name, tid)
        times = t0 + np.arange(ticks, dtype=np.int64) * 10_000_000
        cols = [_values(rng, ticks, u, k) for k, (_, u, _) in enumerate(GAUGES)]
        labels = [tuple(sorted({**lab, "target": name}.items())) for _, _, lab in GAUGES]
        step = 5_000
        for a in range(0, ticks, step):
            batch = []
            for i in range(a, min(ticks, a + step)):
                t = int(times[i])
                batch += [
                    Sample(m, labels[k], t, float(cols[k][i])) for k, (m, _, _) in enumerate(GAUGES)
                ]
            w.write(batch)
        end = int(times[-1])
        for t_ns, kind, msg, data in [
            (t0, "target_started", f"container {name} started", {}),
            (t0 + (end - t0) // 3, "app_metric_rejected", "app metric rejected (bad_name): x", {}),
            (end - 2_000_000_000, "timed_out", "timeout reached; stopping", {}),
            (end, "exited", "exit code 137", {"exit_code": 137, "oom_killed": ti == 2}),
        ]:
            w.event(Event(t_ns, kind, msg, name, data))  # type: ignore[arg-type]
        w.end_target(tid)
        w.flush()
        store.update_target(
            tid,
            status="oom_killed" if ti == 2 else "timed_out",
            started_ns=t0,
            ended_ns=end,
            exit_code=137,
            duration_s=(end - t0) / 1e9,
        )
        store.add_log(tid, "stdout", "".join(f"line {i} of {name}\n" for i in range(1000)))
        t0 = end + 1_000_000_000
    w.close()
    store.end_run(run_id, "completed", t0)
    store.close()
    return run_id


def generate(db: str, run_id: int, out: str) -> tuple[float, float, int]:
    """(CLI wall s best of 3, in-process s best of 3, file bytes)."""
    from edgeprof.report.html import write_report
    from edgeprof.store import open_store

    cli = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        p = subprocess.run(
            [*EDGEPROF, "report", str(run_id), "-o", out, "--db", db],
            capture_output=True,
            text=True,
        )
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-500:])
        cli = min(cli, time.perf_counter() - t)
    lib = float("inf")
    store = open_store(db, readonly=True)
    for _ in range(3):
        t = time.perf_counter()
        res = write_report(store, [run_id], out)
        lib = min(lib, time.perf_counter() - t)
    store.close()
    return cli, lib, res.size_bytes


def render(path: str, repeat: int = 3) -> dict[str, Any]:
    """First render (ms since navigation start) best of ``repeat``, and a zoom's redraw."""
    from playwright.sync_api import sync_playwright

    url = Path(path).resolve().as_uri()
    best = float("inf")
    zoom = float("nan")
    errors: list[str] = []
    requests: set[str] = set()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for _ in range(repeat):
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("request", lambda r: requests.add(r.url))
                page.goto(url)
                page.wait_for_selector("html[data-rendered=true]", timeout=60_000)
                best = min(best, page.evaluate("window.__edgeprofRender.ms"))
                zoom = page.evaluate(ZOOM_JS)
                page.close()
        finally:
            browser.close()
    return {
        "first_render_ms": best,
        "zoom_ms": zoom,
        "errors": errors,
        "other_requests": sorted(requests - {url}),
    }


ZOOM_JS = """async () => {
  const over = document.querySelector('.uplot .u-over');
  const r = over.getBoundingClientRect();
  const y = r.top + r.height / 2;
  const t = performance.now();
  const ev = (type, x) => over.dispatchEvent(new MouseEvent(type, {bubbles: true, clientX: x, clientY: y, button: 0}));
  ev('mousedown', r.left + r.width * 0.3);
  ev('mousemove', r.left + r.width * 0.6);
  document.dispatchEvent(new MouseEvent('mouseup', {bubbles: true, clientX: r.left + r.width * 0.6, clientY: y}));
  await new Promise(res => requestAnimationFrame(() => requestAnimationFrame(res)));
  return performance.now() - t;
}"""


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ns = parse_mode(__doc__ or "", argv)
    sizes = SIZES.get(ns.mode, FULL)
    have_chromium = os.path.exists(CHROMIUM)
    rows = []
    res: dict[str, Any] = {"runs": []}
    with tempfile.TemporaryDirectory(prefix="edgeprof-bench-report-") as wd:
        for n in sizes:
            db = f"sqlite:///{os.path.join(wd, f'r{n}.db')}"
            t = time.perf_counter()
            rid = build_run(db, n)
            build_s = time.perf_counter() - t
            with _ro(db) as s:
                real_n = s.sample_count(rid)
            out = os.path.join(wd, f"r{n}.html")
            cli, lib, size = generate(db, rid, out)
            r = render(out) if have_chromium else None
            entry = {
                "samples": real_n,
                "build_s": build_s,
                "cli_s": cli,
                "lib_s": lib,
                "bytes": size,
                "render": r,
            }
            res["runs"].append(entry)
            big = real_n >= 900_000
            rows.append(
                [
                    f"{real_n:,}",
                    cli,
                    lib,
                    f"{size / 1024:,.0f} KiB",
                    r["first_render_ms"] / 1000 if r else "no chromium",
                    r["zoom_ms"] if r else "-",
                    ("met" if cli < 3 else "MISSED") if big else "(goal is for 1M)",
                    (("met" if r["first_render_ms"] < 2000 else "MISSED") if r else "-")
                    if big
                    else "(goal is for 1M)",
                ]
            )
            if r and (r["errors"] or r["other_requests"]):
                print(f"  {real_n:,}: console errors {r['errors']}, requests {r['other_requests']}")
    banner("HTML report: generation, size, first render in headless Chromium")
    table(
        [
            "samples",
            "`edgeprof report` wall (s)",
            "write_report() (s)",
            "file size",
            "first render (s)",
            "zoom redraw (ms)",
            "goal < 3 s",
            "goal < 2 s",
        ],
        rows,
    )
    print("wall: a subprocess, interpreter start included, best of 3; first render: ms since")
    print("navigation start until every chart has drawn (window.__edgeprofRender), best of 3")
    dump(ns.json_out, res)
    return res


class _ro:
    """The store opened read-only, as a context manager."""

    def __init__(self, db: str) -> None:
        from edgeprof.store import open_store

        self.s = open_store(db, readonly=True)

    def __enter__(self) -> Any:
        return self.s

    def __exit__(self, *exc: object) -> None:
        self.s.close()


if __name__ == "__main__":
    main()
