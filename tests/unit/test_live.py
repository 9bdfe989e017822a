"""The live view (edgeprof.live): synthetic samples in, exactly these figures out, at 80 and
120 columns; sort order, exited containers, "… N more", plain lines for logs, and the
``run`` display (cli/progress.LiveProgress) against what the store holds."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

from rich.console import Console

from edgeprof.cli.progress import LiveProgress
from edgeprof.engine.fake import FakeEngine, Script
from edgeprof.hostinfo import HostCaps
from edgeprof.live import LiveView, fmt_size, layout, sparkline
from edgeprof.model import Event, Labels, Sample
from edgeprof.runner import RunSettings, run_profile
from edgeprof.sinks import MemberInfo, Tee
from edgeprof.spec import parse_spec
from edgeprof.store import open_store

MiB = 2**20


def _lab(target: str, **more: str) -> Labels:
    return tuple(sorted({"target": target, **more}.items()))


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _text(view: LiveView, width: int, height: int = 24) -> str:
    c = Console(width=width, height=height, record=True, file=io.StringIO())
    c.print(view.renderable())
    return c.export_text()


def _view(**kw: object) -> tuple[LiveView, Clock]:
    clock = Clock()
    v = LiveView(Console(file=io.StringIO()), plain=False, keys=False, now=clock, **kw)  # type: ignore[arg-type]
    return v, clock


def _two(v: LiveView, clock: Clock) -> None:
    """``detector`` (cpus 0.5, 64 MiB; GPU, app metrics) and ``uploader`` (no limits)."""
    v.member_started(
        MemberInfo(
            "detector", "app", "c1", "edgeprof-x", "img", {"cpus": 0.5, "memory_bytes": 64 * MiB}
        )
    )
    v.member_started(MemberInfo("uploader", "attached", "c2", "uploader", "img", {}))
    d, u = _lab("detector"), _lab("uploader")
    for i, c in enumerate([10.0, 20.0, 30.0, 40.0, 48.7]):
        v.write(
            [
                Sample("cpu.percent", d, i, c),
                Sample("memory.working_set_bytes", d, i, (8 + i) * MiB),
            ]
        )
    v.write(
        [
            Sample("memory.working_set_bytes", d, 9, 12.3 * MiB),
            Sample("pids.count", d, 9, 3),
            Sample("io.read_bytes_per_second", d, 9, 0),
            Sample("io.write_bytes_per_second", d, 9, 2.5 * MiB),
            Sample("net.rx_bytes_per_second", d, 9, 1536),
            Sample("net.tx_bytes_per_second", d, 9, 300),
            Sample("gpu.container.memory_used_bytes", _lab("detector", gpu="0"), 9, 512 * MiB),
            Sample(
                "gpu.process.sm_utilization_percent", _lab("detector", gpu="0", pid="41"), 9, 30
            ),
            Sample(
                "gpu.process.sm_utilization_percent", _lab("detector", gpu="0", pid="42"), 9, 12.5
            ),
            Sample("app.fps", d, 9, 29.7),
            Sample("app.latency_ms", d, 9, 33.3),
            Sample("gpu.utilization_percent", (("gpu", "0"),), 9, 45),
            Sample("gpu.memory_used_bytes", (("gpu", "0"),), 9, 1.5 * 2**30),
            Sample("gpu.memory_total_bytes", (("gpu", "0"),), 9, 16 * 2**30),
            # not shown: a metric the view does not use, and a series of no container
            Sample("memory.rss_bytes", d, 9, 1.0),
            Sample("host.cpu.percent", (), 9, 77.0),
        ]
    )
    v.write(
        [
            Sample("cpu.percent", u, 9, 3.3),
            Sample("memory.working_set_bytes", u, 9, 200 * MiB),
            Sample("memory.limit_bytes", u, 9, 2**30),
            Sample("process.count", u, 9, 2),
        ]
    )
    clock.t = 162.0


def test_table_at_80_columns_keeps_the_main_figures_and_fits() -> None:
    v, clock = _view()
    _two(v, clock)
    text = _text(v, 80)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert lines == [
        "edgeprof  2 containers, 2 running  sort: cpu",
        "NAME     STATE         CPU▼                 MEM          PIDS   GPU GPU MEM  FPS",
        "detector up 1m02s 48.7%/50%     ▂▄▅▇█ 12.3M/64M   ▂▂▂▂▂▂    3 42.5%    512M 29.7",
        "uploader up 1m02s      3.3%         ▁   200M/1G        ▂    2     -       -    -",
        "GPU0 45.0% 1.5G/16G",
        "K/M/G: KiB/MiB/GiB; disk and net per second",
    ]


def test_table_at_120_columns_adds_disk_network_and_app_values() -> None:
    v, clock = _view()
    _two(v, clock)
    lines = _text(v, 120).splitlines()
    assert all(len(line) <= 120 for line in lines)
    header, detector, uploader = lines[1], lines[2], lines[3]
    assert header.split() == [
        "NAME", "STATE", "CPU▼", "MEM", "PIDS", "DISK", "R/W", "NET", "RX/TX", "GPU", "GPU",
        "MEM", "FPS", "LATENCY_MS",
    ]  # fmt: skip
    assert detector.split() == [
        "detector", "up", "1m02s", "48.7%/50%", "▂▄▅▇█", "12.3M/64M", "▂▂▂▂▂▂", "3", "0B/2.5M",
        "1.5K/300B", "42.5%", "512M", "29.7", "33.3",
    ]  # fmt: skip
    assert uploader.split()[:6] == ["uploader", "up", "1m02s", "3.3%", "▁", "200M/1G"]


def test_without_gpu_or_app_metrics_80_columns_show_disk_and_network() -> None:
    v, clock = _view()
    v.member_started(
        MemberInfo("burn", "app", "c", "n", "i", {"cpus": 0.5, "memory_bytes": 64 * MiB})
    )
    lab = _lab("burn")
    for i in range(25):  # more values than a sparkline holds
        v.write(
            [
                Sample("cpu.percent", lab, i, 50.0 * (i % 2)),
                Sample("memory.working_set_bytes", lab, i, 32 * MiB),
                Sample("pids.count", lab, i, 1),
                Sample("io.read_bytes_per_second", lab, i, 0),
                Sample("io.write_bytes_per_second", lab, i, 0),
                Sample("net.rx_bytes_per_second", lab, i, 2048),
                Sample("net.tx_bytes_per_second", lab, i, 1024),
            ]
        )
    lines = _text(v, 80).splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[1].split() == [
        "NAME",
        "STATE",
        "CPU▼",
        "MEM",
        "PIDS",
        "DISK",
        "R/W",
        "NET",
        "RX/TX",
    ]
    row = lines[2].split()
    # last value 50 % (i = 24 is even: 0 %; so 23 → 50 %, 24 → 0 %)
    assert row[:4] == ["burn", "up", "0s", "0.0%/50%"]
    assert row[-3:] == ["1", "0B/0B", "2K/1K"]
    spark = row[4]
    assert set(spark) == {"▁", "█"} and spark.endswith("█▁") and 10 <= len(spark) <= 20
    assert row[5] == "32M/64M" and set(row[6]) == {"▅"}  # 32 of 64 MiB: 3.5 → ▅


def test_sparkline_scale_and_width() -> None:
    assert sparkline([0, 25, 50, 100], 100, 6) == "  ▁▃▅█"
    assert sparkline([0, 25, 50, 100, 200], None, 3) == "▃▅█"  # scale: the largest shown
    assert sparkline([], 100, 4) == "    "
    assert sparkline(list(range(30)), 29, 20) == sparkline(list(range(10, 30)), 29, 20)
    assert (
        fmt_size(1023) == "1023B"
        and fmt_size(1024) == "1KiB"
        and fmt_size(1023.99 * 1024) == "1MiB"
    )
    assert fmt_size(12.34 * MiB, iec=False) == "12.3M" and fmt_size(300 * 2**30) == "300GiB"


def test_sort_by_cpu_memory_and_name_with_exited_last() -> None:
    v, clock = _view()
    for name, cpu, mem in [
        ("a", 10.0, 300.0),
        ("b", 90.0, 100.0),
        ("c", 50.0, 200.0),
        ("d", 99.0, 999.0),
    ]:
        v.member_started(MemberInfo(name, "attached", name, name, "img"))
        v.write(
            [
                Sample("cpu.percent", _lab(name), 1, cpu),
                Sample("memory.working_set_bytes", _lab(name), 1, mem),
            ]
        )
    v.member_ended("d")
    assert [r.name for r in v.rows()] == ["b", "c", "a", "d"]
    v.handle_keys(b"s")
    assert v.sort == "mem" and [r.name for r in v.rows()] == ["a", "c", "b", "d"]
    v.handle_keys(b"s")
    assert v.sort == "name" and [r.name for r in v.rows()] == ["a", "b", "c", "d"]
    v.handle_keys(b"s")
    assert v.sort == "cpu"
    v.handle_keys(b"s")
    assert _text(v, 80).splitlines()[1].split()[:4] == ["NAME", "STATE", "CPU", "MEM▼"]


def test_exited_container_stays_marked_with_its_exit_code_and_last_values() -> None:
    v, clock = _view()
    v.member_started(MemberInfo("job", "app", "c", "n", "i", {"cpus": 1.0}))
    v.write(
        [
            Sample("cpu.percent", _lab("job"), 1, 87.5),
            Sample("memory.working_set_bytes", _lab("job"), 1, 5 * MiB),
        ]
    )
    v.member_ended("job")
    v.event(Event(2, "exited", "exit code 3", "job", {"exit_code": 3}))
    (r,) = v.rows()
    assert not r.running and r.state == "exit 3" and r.cpu == 87.5
    assert _text(v, 80).splitlines()[2].split()[:4] == ["job", "exit", "3", "87.5%/100%"]
    assert v.plain_lines() == ["job cpu 87.5%/100% mem 5MiB (exit 3)"]
    # followed across a restart: running again, counted
    v.event(Event(3, "container_restarted", "restarted", "job", {}))
    clock.t += 5
    (r,) = v.rows()
    assert r.running and r.state == "up 5s ↻1"


def test_more_containers_than_lines_show_n_more_and_scroll() -> None:
    v, clock = _view(sort="name")
    for i in range(30):
        name = f"c{i:02d}"
        v.member_started(MemberInfo(name, "attached", name, name, "img"))
        v.write([Sample("cpu.percent", _lab(name), 1, float(i))])
    lines = _text(v, 80, height=24).splitlines()
    assert len(lines) == 23
    shown = [line.split()[0] for line in lines[2:] if line.startswith("c")]
    assert shown == [f"c{i:02d}" for i in range(len(shown))] and len(shown) == 19
    assert lines[2 + 19] == "… 11 more"  # 24 lines: title, header, 19, this, note, cursor
    v.handle_keys(b"\x1b[B\x1b[Bj")  # down three rows
    lines = _text(v, 80, height=24).splitlines()
    assert [line.split()[0] for line in lines[2:4]] == ["c03", "c04"]
    assert lines[2 + 19] == "… 11 more: 3 above, 8 below"
    v.handle_keys(b"k" * 50)
    assert _text(v, 80, height=24).splitlines()[2].startswith("c00")


def test_gpu_process_figures_are_those_of_the_latest_tick() -> None:
    v, _ = _view()
    g = _lab("app", gpu="0")
    v.write(
        [
            Sample("gpu.process.sm_utilization_percent", _lab("app", gpu="0", pid="1"), 1, 40),
            Sample("gpu.process.sm_utilization_percent", _lab("app", gpu="0", pid="2"), 1, 20),
            Sample("gpu.container.memory_used_bytes", g, 1, 300 * MiB),
            Sample("gpu.container.memory_used_bytes", _lab("app", gpu="1"), 1, 100 * MiB),
        ]
    )
    (r,) = v.rows()
    assert (r.gpu, r.gpu_mem) == (60.0, 400 * MiB)
    # next tick: pid 2 no longer uses the GPU, so it is not reported: it drops out
    v.write(
        [
            Sample("gpu.process.sm_utilization_percent", _lab("app", gpu="0", pid="1"), 2, 35),
            Sample("gpu.container.memory_used_bytes", g, 2, 250 * MiB),
        ]
    )
    (r,) = v.rows()
    assert (r.gpu, r.gpu_mem) == (35.0, 350 * MiB)


def test_plain_mode_prints_a_line_per_container_every_few_seconds() -> None:
    out = io.StringIO()
    v = LiveView(Console(file=out, width=200), plain_every_s=0.3)
    assert v.plain  # not a terminal: plain by itself
    with v:
        v.member_started(
            MemberInfo(
                "burn",
                "app",
                "c",
                "edgeprof-burn",
                "busybox",
                {"cpus": 0.5, "memory_bytes": 64 * MiB},
            )
        )
        v.write(
            [
                Sample("cpu.percent", _lab("burn"), 1, 48.7),
                Sample("memory.working_set_bytes", _lab("burn"), 1, 12.3 * MiB),
                Sample("net.rx_bytes_per_second", _lab("burn"), 1, 0),
                Sample("net.tx_bytes_per_second", _lab("burn"), 1, 512),
                Sample("pids.count", _lab("burn"), 1, 3),
            ]
        )
        time.sleep(0.8)
        v.member_ended("burn")
    lines = out.getvalue().splitlines()
    assert lines[0] == "burn: started (busybox, container edgeprof-burn, cpus 0.5, memory 64MiB)"
    line = "burn cpu 48.7%/50% mem 12.3MiB/64MiB net rx 0B/s tx 512B/s pids 3"
    assert lines.count(line) >= 2, lines
    assert lines[-1] == "burn: ended; last: " + line.removeprefix("burn ")


def test_sampler_thread_writes_while_the_display_renders() -> None:
    v, _ = _view()
    stop = threading.Event()
    n = [0]

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            v.write([Sample("cpu.percent", _lab(f"c{i % 7}"), i, float(i % 100))])
            n[0] = i

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(30):
            _text(v, 80)
    finally:
        stop.set()
        t.join()
    assert n[0] > 0 and len(v.rows()) == 7


def test_layout_never_wider_than_the_terminal() -> None:
    v, clock = _view()
    _two(v, clock)
    rows = v.rows()
    for width in range(30, 161, 7):
        cols = layout(rows, width)
        assert sum((c.max_width or 0) for c in cols) + len(cols) - 1 <= width
        assert all(len(line) <= width for line in _text(v, width).splitlines())


SPEC = """
name: live
image: fake:latest
profiling:
  interval: 0.05
  grace: 0.3
  metrics: [container]
  targets:
    - {name: done, resources: {cpus: 0.5, memory: 64m}}
    - {name: fails}
"""


def test_run_display_shows_each_target_with_the_stored_figures(tmp_path: Path) -> None:
    engine = FakeEngine(
        {"done": Script(run_s=0.4, exit_code=0), "fails": Script(run_s=0.3, exit_code=3)}
    )
    out = io.StringIO()
    ui = LiveProgress(Console(file=out, width=120, force_terminal=True))
    ui.view._keys = False
    store = open_store(f"sqlite:///{tmp_path}/live.db")
    try:
        with ui:
            res = run_profile(
                parse_spec(SPEC, "live.yaml"),
                store,
                engine,
                RunSettings(reaper=False, sinks=ui.sinks()),
                ui,
                caps=HostCaps(ncpu=2),
            )
        rows = {r.name: r for r in ui.view.rows()}
        assert {n: (r.running, r.state) for n, r in rows.items()} == {
            "done": (False, "exit 0"),
            "fails": (False, "exit 3"),
        }
        assert (rows["done"].cpu_limit, rows["done"].mem_limit) == (50.0, 64 * MiB)
        # the view's figures are the newest stored samples, exactly
        by_target = {t.id: t.name for t in store.targets(res.run_id)}
        for s in store.series(res.run_id):
            if s.metric in ("cpu.percent", "memory.working_set_bytes") and s.target_id:
                _, values = store.series_samples(s.id)
                r = rows[by_target[s.target_id]]
                assert (r.cpu if s.metric == "cpu.percent" else r.mem) == float(values[-1])
    finally:
        store.close()
    text = out.getvalue()
    assert "done: exited exit 0 after" in text and "fails: failed exit 3 after" in text
    assert "edgeprof run 1" in text


def test_the_view_is_a_sink_behind_a_tee() -> None:
    seen: list[Sample] = []

    class Primary:
        def describe(self, specs: object) -> None: ...
        def write(self, batch: list[Sample]) -> None:
            seen.extend(batch)

        def event(self, ev: Event) -> None: ...

    v, _ = _view()
    tee = Tee(Primary(), v)  # type: ignore[arg-type]
    tee.member_started(MemberInfo("x", "app", "c", "n", "i"))
    tee.write([Sample("cpu.percent", _lab("x"), 1, 5.0)])
    assert len(seen) == 1 and v.rows()[0].cpu == 5.0
