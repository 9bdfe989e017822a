"""Runs travel as files: ``edgeprof import`` / ``export --format sqlite`` (store.transfer).

The ``check_*`` functions take the destination's URL: they run here into SQLite and in
tests/integration/test_import_pg.py into PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeprof.cli.main import main as cli_main
from edgeprof.codeprof.model import SLICE_NS, CodeSample, Frame
from edgeprof.model import Event, MetricSpec, Sample, labels_of
from edgeprof.store import BatchWriter, SQLStore, chunks, open_store
from edgeprof.store.base import RunInfo, TargetInfo
from edgeprof.store.transfer import ImportResult, copy_run, import_files

T0 = 1_700_000_000 * 1_000_000_000
STEP = 100_000_000  # 10 Hz
DESCRIBE = [MetricSpec("cpu.usage_seconds", "s", "counter"), MetricSpec("memory.usage_bytes", "B")]
U = "0a1b2c3d-0000-4000-8000-00000000abcd"


def value(series: str, k: int) -> float:
    """Sample ``k`` of a test series: counters, fractions, a NaN and a -0.0 (bit-exact)."""
    if series == "cpu":
        return k * 0.125
    if series == "mem":
        return float("nan") if k == 7 else (-0.0 if k == 8 else 1e8 + (k % 17) * 4096.0)
    return (k * 2654435761 % 1000) / 997.0  # gauges with many digits


def tick(k: int) -> int:
    return T0 + k * STEP + (k * 7919) % 50_000  # a sampler's jitter


def code_rows(t0: int, tag: str) -> list[CodeSample]:
    a = (Frame("<module>", "/app/x.py", 1), Frame(f"hot_{tag}", "/app/x.py", 5))
    b = (Frame("<module>", "/app/x.py", 1), Frame("cold", "/app/x.py", 9))
    return [
        CodeSample(10, "python3", t0, a, 80, "python", "1"),
        CodeSample(10, "python3", t0, b, 20, "python", "MainThread"),
        CodeSample(11, "python3", t0 + SLICE_NS, a, 7, "python", None),
        CodeSample(
            12, "native\x00x", t0 + 2 * SLICE_NS, (Frame("main", "/bin/x", 0),), 3, "native"
        ),
    ]


def make_run(
    store: SQLStore,
    ticks: range = range(0, 3000),
    uuid: str | None = None,
    meta: dict[str, Any] | None = None,
    end: bool = True,
    name: str = "objcounter",
) -> int:
    """A run of two targets: app (cpu, mem, gauge with a pid label), svc (gauge), and a
    host series (no target); events, logs and sampled stacks. 3,000 ticks: each series
    has a full final chunk (2,048) and one written at close."""
    kw: dict[str, Any] = {"uuid": uuid} if uuid else {}
    rid = store.begin_run(
        RunInfo(
            name,
            "waggle/objcounter:0.1",
            T0 - 5,
            0.1,
            spec_path="sage.yaml",
            spec_text="name: x\n",
            host={"hostname": "orin-1"},
            version="0.0.test",
            owner={"host": "orin-1", "pid": 4242},
            meta=meta if meta is not None else {"tags": {"build": "42"}},
            **kw,
        )
    )
    app = store.begin_target(TargetInfo(rid, 0, "app", ["--n", "1"], {"timeout": 60}))
    svc = store.begin_target(TargetInfo(rid, 1, "svc", [], {"role": "service"}))
    store.update_target(app, status="running", container_id="c0ffee", started_ns=T0)
    w = BatchWriter(store, rid, None, flush_s=3600)
    w.describe(DESCRIBE)
    w.add_target("app", app)
    w.add_target("svc", svc)
    w.event(Event(tick(ticks[0]), "target_started", "app started", "app", {"pid": 10}))
    w.event(Event(tick(ticks[0]), "collector_unavailable", "no GPU", None, {}))
    for k in ticks:
        t = tick(k)
        batch = [
            Sample("cpu.usage_seconds", labels_of(target="app"), t, value("cpu", k)),
            Sample("memory.usage_bytes", labels_of(target="app"), t, value("mem", k)),
            Sample("gpu.util", labels_of(target="svc"), t, value("g", k)),
        ]
        if k % 2 == 0:  # sampled at other ticks: its own time blocks
            batch.append(Sample("process.threads", labels_of(target="app", pid="10"), t, 2.0))
            batch.append(Sample("host.load", (), t, value("g", k + 1)))
        w.write(batch)
        if k % 500 == 499:
            w.flush()
    w.code("app", code_rows(tick(ticks[0]) // SLICE_NS * SLICE_NS, "a"))
    w.code("svc", code_rows(tick(ticks[0]) // SLICE_NS * SLICE_NS, "b")[:2])
    w.event(Event(tick(ticks[-1]), "target_exited", "app exited", "app", {"code": 0}))
    w.close()
    store.add_log(app, "stdout", "hello\nworld\n")
    store.add_log(app, "stderr", "warn \x00 nul\n")
    if end:
        store.update_target(app, status="exited", exit_code=0, ended_ns=tick(ticks[-1]))
        store.update_target(svc, status="exited", exit_code=0, oom_killed=False, duration_s=3.5)
        store.end_run(rid, "completed", tick(ticks[-1]) + 1)
    return rid


def snap(store: SQLStore, run_id: int) -> dict[str, Any]:
    """Everything a reader sees of a run, with ids replaced by what names them."""
    run = store.resolve_run(run_id)
    targets = store.targets(run_id)
    idx = {t.id: t.idx for t in targets}
    arrays = store.series_arrays(run_id)
    series = {}
    for s in store.series(run_id):
        t, v = arrays.get(s.id, (np.empty(0, np.int64), np.empty(0)))
        key = (idx.get(s.target_id), s.metric, json.dumps(s.labels, sort_keys=True))
        series[key] = (
            np.asarray(t, np.int64).tolist(),
            np.asarray(v, np.float64).view(np.uint64).tolist(),  # bit for bit
            s.unit,
            s.kind,
        )

    def txt(x: Any) -> Any:  # PostgreSQL stores NUL as U+FFFD (as the store always did)
        return x.replace("\x00", "\ufffd") if isinstance(x, str) else x

    return {
        "run": (
            run.uuid, run.meta, run.spec_name, run.image, run.spec_path, run.spec_text,
            run.started_ns, run.ended_ns, run.status, run.interval_s, run.host,
            run.edgeprof_version, run.owner,
        ),
        "targets": [
            (t.idx, t.name, t.args, t.config, t.container_id, t.started_ns, t.ended_ns,
             t.status, t.exit_code, t.oom_killed, t.timed_out, t.duration_s, t.error)
            for t in targets
        ],
        "series": series,
        "events": [
            (idx.get(e.target_id), e.t_ns, e.kind, e.message, e.data) for e in store.events(run_id)
        ],
        "logs": {t.idx: {k: txt(v) for k, v in store.logs(t.id).items()} for t in targets},
        "code": {
            t.idx: [(c.pid, txt(c.process), c.t_ns, c.stack, c.count, c.kind, c.thread)
                    for c in store.code_samples(t.id)]
            for t in targets
        },
        "samples": store.sample_count(run_id),
    }  # fmt: skip


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def run_file(tmp_path: Path, name: str, build: Callable[[SQLStore], Any]) -> Path:
    path = tmp_path / name
    store = open_store(sqlite_url(path))
    build(store)
    store.close()
    return path


def imported(paths: list[Path], dst_url: str, **kw: Any) -> tuple[list[ImportResult], list[str]]:
    warned: list[str] = []
    dst = open_store(dst_url)
    try:
        res = import_files([str(p) for p in paths], dst, warn=warned.append, **kw)
    finally:
        dst.close()
    return res, warned


def src_snap(path: Path, run_id: int = 1) -> dict[str, Any]:
    s = open_store(sqlite_url(path), readonly=True)
    try:
        return snap(s, run_id)
    finally:
        s.close()


def dst_snap(dst_url: str, run_id: int) -> dict[str, Any]:
    s = open_store(dst_url, readonly=True)
    try:
        return snap(s, run_id)
    finally:
        s.close()


def dst_count(dst_url: str, sql: str) -> int:
    s = open_store(dst_url, readonly=True)
    try:
        return int(s._rows(sql)[0]["n"])
    finally:
        s.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- shared checks (SQLite here, PostgreSQL in the integration test) ---------------------------


def check_round_trip(dst_url: str, tmp_path: Path) -> None:
    """Every sample, event, log and stack identical after import; twice adds nothing; the
    destination goes on taking runs of its own (the ids imported are really taken)."""
    src = run_file(tmp_path, "run.db", lambda s: make_run(s, uuid=U))
    before = digest(src)
    want = src_snap(src)
    assert want["samples"] == 3000 * 3 + 1500 * 2
    [r], warned = imported([src], dst_url)
    assert (r.action, r.uuid, r.samples, r.targets, r.spec_name) == (
        "added", U, want["samples"], 2, "objcounter",
    )  # fmt: skip
    assert warned == [] and not r.partial and r.status == "completed"
    assert r.code_samples == 6 and r.events == 3
    assert dst_snap(dst_url, r.dst_run_id or 0) == want
    assert digest(src) == before  # the file is only read
    [again], _ = imported([src], dst_url)
    assert (again.action, again.dst_run_id, again.samples) == ("skipped", r.dst_run_id, 0)
    assert "already there as run" in again.note
    assert dst_count(dst_url, "SELECT COUNT(*) AS n FROM runs") == 1
    # the destination's own next run, and a second import, land beside it
    dst = open_store(dst_url)
    own = make_run(dst, range(0, 100))
    dst.close()
    other = run_file(tmp_path, "other.db", lambda s: make_run(s, range(5, 2600), name="other"))
    [r2], _ = imported([other], dst_url)
    assert r2.action == "added" and len({r.dst_run_id, own, r2.dst_run_id}) == 3
    assert dst_snap(dst_url, r.dst_run_id or 0) == want
    assert dst_snap(dst_url, r2.dst_run_id or 0) == src_snap(other)


KILLED = r"""
import os, sys
sys.path.insert(0, sys.argv[3])
from test_transfer import make_killed
make_killed(sys.argv[1], sys.argv[2])
"""


def make_killed(path: str, uuid: str) -> None:
    """A profiler killed mid-run (SIGKILL after its last flush): final chunks, open blocks
    (some superseded, some not), a target running and one pending."""
    store = open_store("sqlite:///" + path)
    rid = store.begin_run(RunInfo("killed", "img", T0 - 5, 0.1, uuid=uuid))
    app = store.begin_target(TargetInfo(rid, 0, "app", []))
    store.begin_target(TargetInfo(rid, 1, "later", []))
    store.update_target(app, status="running", started_ns=T0)
    w = BatchWriter(store, rid, None, flush_s=3600)
    w.add_target("app", app)
    for k in range(KILLED_TICKS):
        t = tick(k)
        b = [Sample("cpu.usage_seconds", labels_of(target="app"), t, value("cpu", k))]
        if k % 3 == 0:
            b.append(Sample("memory.usage_bytes", labels_of(target="app"), t, value("mem", k)))
        w.write(b)
        if k % 50 == 49 or k == KILLED_TICKS - 1:
            w.flush()
    w.code("app", code_rows(T0, "k"))
    w.event(Event(tick(10), "target_started", "app started", "app", {}))
    w.flush()
    os.kill(os.getpid(), signal.SIGKILL)


KILLED_TICKS = 2300


def killed_file(tmp_path: Path, uuid: str = U) -> Path:
    path = tmp_path / "killed.db"
    res = subprocess.run(
        [sys.executable, "-c", KILLED, str(path), uuid, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == -signal.SIGKILL, res.stderr
    return path


def check_crashed_run(dst_url: str, tmp_path: Path) -> None:
    """A killed profiler's file: what it committed arrives (its open blocks as final
    chunks), the run crashed at its last sample, with a warning."""
    src = killed_file(tmp_path)
    c = sqlite3.connect(src)
    assert c.execute("SELECT COUNT(*) FROM open_blocks").fetchone()[0] > 0
    c.close()
    want = src_snap(src)
    cpu = list(range(KILLED_TICKS))
    mem = [k for k in cpu if k % 3 == 0]
    assert want["series"][(0, "cpu.usage_seconds", '{"target": "app"}')][0] == [
        tick(k) for k in cpu
    ]
    assert want["series"][(0, "memory.usage_bytes", '{"target": "app"}')][1] == (
        np.array([value("mem", k) for k in mem]).view(np.uint64).tolist()
    )
    [r], warned = imported([src], dst_url)
    last = tick(KILLED_TICKS - 1)
    assert (r.action, r.partial, r.status, r.samples, r.last_ns) == (
        "added", True, "crashed", len(cpu) + len(mem), last,
    )  # fmt: skip
    [w] = warned
    assert w.startswith(f"run {U} in {src} was not finished (the device lost power or the ")
    assert f"({len(cpu) + len(mem):,} samples, last at " in w
    got = dst_snap(dst_url, r.dst_run_id or 0)
    assert got["series"] == want["series"] and got["samples"] == want["samples"]
    assert got["code"] == want["code"]
    assert got["run"][7:9] == (last, "crashed")  # ended at its last sample
    assert [t[7] for t in got["targets"]] == ["crashed", "not_run"]
    assert got["events"][:-1] == want["events"]
    assert got["events"][-1][:3] == (None, last, "crashed")
    assert dst_count(dst_url, "SELECT COUNT(*) AS n FROM open_blocks") == 0
    [again], warned = imported([src], dst_url)
    assert again.action == "skipped" and warned == []


def check_replace(dst_url: str, tmp_path: Path) -> None:
    """A partial copy (crashed) is replaced by the complete file, keeping its id; nothing
    of the partial copy stays behind."""
    part = killed_file(tmp_path)
    [a], _ = imported([part], dst_url)
    assert a.status == "crashed"
    (tmp_path / "full").mkdir()
    full = run_file(tmp_path / "full", "run.db", lambda s: make_run(s, uuid=U))
    [b], _ = imported([full], dst_url)
    assert (b.action, b.dst_run_id) == ("replaced", a.dst_run_id)
    assert "was crashed: replaced by this complete copy" in b.note
    assert dst_snap(dst_url, b.dst_run_id or 0) == src_snap(full)
    c = sqlite3.connect(full)
    tables = ("chunks", "timeblocks", "targets", "series", "events", "code_stacks", "code_samples")
    for table in tables:  # nothing of the partial copy stays behind
        n = c.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        assert dst_count(dst_url, f"SELECT COUNT(*) AS n FROM {table}") == n, table
    c.close()
    again, _ = imported([full, part], dst_url)  # complete there now: both skipped
    assert [r.action for r in again] == ["skipped", "skipped"]


def check_spool_merge(dst_url: str, tmp_path: Path) -> None:
    """A spool (the part of a run that did not reach the database) merges into the run:
    the destination's open samples become final chunks first, the spool's come after them,
    its status wins; merging it again changes nothing."""
    spool_id = "5e5e5e5e-0000-4000-8000-000000000001"
    dst = open_store(dst_url)
    rid = make_run(dst, range(0, 2500), uuid=U, end=False)  # begun here; then the link broke
    series = {(s.metric, s.labels.get("target")): s.id for s in dst.series(rid)}
    extra = list(range(2500, 2600))  # the last flush that reached the database: open
    a, b = series[("cpu.usage_seconds", "app")], series[("gpu.util", "svc")]
    with dst.transaction():
        dst.write_open_block(
            rid,
            2 * len(extra),
            chunks.open_block(
                [a, b],
                [len(extra), len(extra)],
                [tick(k) for k in extra] * 2,
                [value("cpu", k) for k in extra] + [value("g", k) for k in extra],
            ),
        )
    dst.close()

    def spool(s: SQLStore) -> None:
        meta = {"tags": {"build": "42"}, "spool": {"id": spool_id, "of_url": "postgresql://u@h/db"}}
        r = make_run(s, range(2600, 4000), uuid=U, meta=meta)
        t = s.begin_target(TargetInfo(r, 2, "late", []))
        s.update_target(t, status="exited", exit_code=3)
        s.add_log(t, "stdout", "late\n")

    sp = run_file(tmp_path, "spool.db", spool)
    before = dst_snap(dst_url, rid)
    [r], _ = imported([sp], dst_url)
    assert (r.action, r.dst_run_id, r.status) == ("merged", rid, "completed")
    got = dst_snap(dst_url, rid)
    spooled = src_snap(sp)
    for key, (t, v, _unit, _kind) in got["series"].items():
        old = before["series"].get(key, ([], [], None, None))
        new = spooled["series"].get(key, ([], [], None, None))
        assert (t, v) == (old[0] + new[0], old[1] + new[1]), key
        assert t == sorted(t)  # time order holds
    assert set(got["series"]) == set(before["series"]) | set(spooled["series"])
    assert got["samples"] == before["samples"] + spooled["samples"] == r.samples + before["samples"]
    assert got["series"][(0, "cpu.usage_seconds", '{"target": "app"}')][0] == [
        tick(k) for k in range(4000)
    ]
    assert got["run"][1] == {"tags": {"build": "42"}, "spools": [spool_id]}
    assert got["run"][7:9] == spooled["run"][7:9]  # status and end from the spool
    assert got["targets"] == spooled["targets"]  # statuses from the spool; "late" created
    assert got["events"] == sorted(before["events"] + spooled["events"], key=lambda e: e[1])
    assert got["logs"][0] == spooled["logs"][0]  # the same text: not twice
    assert got["logs"][2] == {"stdout": "late\n"}
    assert got["code"][0] == sorted(before["code"][0] + spooled["code"][0], key=lambda c: c[2])
    assert dst_count(dst_url, "SELECT COUNT(*) AS n FROM open_blocks") == 0
    [again], _ = imported([sp], dst_url)
    assert again.action == "skipped" and "spool was merged before" in again.note
    assert dst_snap(dst_url, rid) == got


def check_spool_overlap(dst_url: str, tmp_path: Path) -> None:
    """A spool whose first batch reached the database after all (the commit's answer was
    lost: ``uncertain_commit``): merged, what is there already is not added twice (samples
    at or before a series' newest, identical events and stacks) and time order holds."""
    spool_id = "5e5e5e5e-0000-4000-8000-000000000003"
    mark = Event(tick(2450), "mark", "in both", None, {"k": 1})
    stack = code_rows(tick(2450) // SLICE_NS * SLICE_NS, "both")

    def both(s: SQLStore, r: int) -> None:
        s.add_event(r, None, mark)
        s.add_code_samples(s.targets(r)[0].id, stack)
        s.commit()

    dst = open_store(dst_url)
    rid = make_run(dst, range(0, 2500), uuid=U, end=False)
    both(dst, rid)
    dst.close()
    before = dst_snap(dst_url, rid)
    meta = {"spool": {"id": spool_id, "of_url": "postgresql://u@h/db", "uncertain_commit": True}}

    def spool(s: SQLStore) -> None:
        both(s, make_run(s, range(2400, 4000), uuid=U, meta=meta))

    sp = run_file(tmp_path, "spool.db", spool)
    spooled = src_snap(sp)
    again = 100 * 3 + 50 * 2  # ticks 2400..2499 of the 3 + 2 series
    [r], _ = imported([sp], dst_url)
    assert (r.action, r.already, r.samples) == ("merged", again, spooled["samples"] - again)
    assert f"{again:,} of the spool's samples were in the database already" in r.note
    got = dst_snap(dst_url, rid)
    for key, (t, v, _u, _k) in got["series"].items():
        old_t, old_v = before["series"][key][:2]
        new_t, new_v = spooled["series"][key][:2]
        keep = [i for i, x in enumerate(new_t) if x > old_t[-1]]
        assert t == old_t + [new_t[i] for i in keep], key
        assert v == old_v + [new_v[i] for i in keep], key
        assert all(a < b for a, b in zip(t, t[1:], strict=False)), key
    assert got["series"][(0, "cpu.usage_seconds", '{"target": "app"}')][0] == [
        tick(k) for k in range(4000)
    ]
    assert got["samples"] == before["samples"] + r.samples
    assert [e[2] for e in got["events"]].count("mark") == 1
    code = got["code"][0]
    assert len(code) == len(set(code)) == len(before["code"][0]) + len(spooled["code"][0]) - 4
    orphans = dst_count(
        dst_url,
        "SELECT COUNT(*) AS n FROM timeblocks WHERE id NOT IN"
        " (SELECT timeblock_id FROM chunks WHERE timeblock_id IS NOT NULL)",
    )
    assert orphans == 0


def check_concurrent_imports(dst_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two imports of the same spool at once merge it once; two imports of the same complete
    file over a partial copy replace it once: the second waits for the first (the run's row
    is locked) and then finds it done. The first is held inside its transaction (after its
    events) until the second has had time to run into it."""
    import threading
    import time

    from edgeprof.store import transfer

    spool_id = "5e5e5e5e-0000-4000-8000-000000000002"
    dst = open_store(dst_url)
    rid = make_run(dst, range(0, 2500), uuid=U, end=False)
    dst.close()
    meta = {"spool": {"id": spool_id, "of_url": "postgresql://u@h/db"}}
    sp = run_file(tmp_path, "spool.db", lambda s: make_run(s, range(2600, 4000), uuid=U, meta=meta))
    (tmp_path / "full").mkdir()
    full = run_file(tmp_path / "full", "run.db", lambda s: make_run(s, uuid=U, name="again"))
    real = transfer._copy_events
    inside, go = threading.Event(), threading.Event()

    def held(*a: Any) -> int:
        n = real(*a)
        if threading.current_thread().name == "first":
            inside.set()
            assert go.wait(30)
        return n

    monkeypatch.setattr(transfer, "_copy_events", held)

    def both(path: Path) -> list[ImportResult]:
        out: list[ImportResult] = []
        errors: list[BaseException] = []

        def work() -> None:
            try:
                out.extend(imported([path], dst_url)[0])
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        inside.clear()
        go.clear()
        a = threading.Thread(target=work, name="first")
        b = threading.Thread(target=work, name="second")
        a.start()
        assert inside.wait(30)
        b.start()
        time.sleep(1.5)  # the second runs into the first's transaction
        go.set()
        a.join(60)
        b.join(60)
        assert errors == []
        return out

    merged = both(sp)
    assert sorted(r.action for r in merged) == ["merged", "skipped"]
    got = dst_snap(dst_url, rid)
    assert got["run"][1]["spools"] == [spool_id]
    assert got["samples"] == 2500 * 3 + 1250 * 2 + src_snap(sp)["samples"]
    cpu = got["series"][(0, "cpu.usage_seconds", '{"target": "app"}')][0]
    assert cpu == [tick(k) for k in [*range(0, 2500), *range(2600, 4000)]]
    # the merged run is interrupted: a complete copy replaces it, once
    s = open_store(dst_url)
    s._exec("UPDATE runs SET status = 'interrupted' WHERE id = ?", (rid,))
    s.close()
    replaced = both(full)
    assert sorted(r.action for r in replaced) == ["replaced", "skipped"]
    assert dst_snap(dst_url, rid) == src_snap(full)
    c = sqlite3.connect(full)
    for table in ("chunks", "timeblocks", "targets", "series", "events", "code_samples"):
        n = c.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        assert dst_count(dst_url, f"SELECT COUNT(*) AS n FROM {table}") == n, table
    c.close()


def _v5_database(path: Path) -> Path:
    """A database as schema 5 left it (no run UUIDs or metadata)."""
    run_file(path.parent, path.name, lambda s: make_run(s, range(0, 2200)))
    c = sqlite3.connect(path)
    for stmt in (
        "DROP INDEX runs_uuid",
        "ALTER TABLE runs DROP COLUMN uuid",
        "ALTER TABLE runs DROP COLUMN meta",
        "UPDATE schema_version SET version = 5",
    ):
        c.execute(stmt)
    c.commit()
    c.close()
    return path


def check_older_schemas(dst_url: str, tmp_path: Path) -> None:
    """Schema 5 and 3 files are read as they are, schema 1 migrated in a temporary copy;
    the files are never written; their runs keep the UUIDs migrating would give them."""
    from tests.unit.test_store import _v1_database, _v3_database

    v5 = _v5_database(tmp_path / "v5.db")
    v3 = tmp_path / "v3.db"
    crashed, _old, opened = _v3_database(v3)
    v1 = _v1_database(tmp_path / "v1.db")
    sums = {p: digest(p) for p in (v5, v3, v1)}
    want = {p: [src_snap(p, i) for i in ids] for p, ids in ((v5, [1]), (v3, [1, crashed]))}
    res, warned = imported([v5, v3, v1], dst_url)
    assert [(r.action, r.source) for r in res] == [("added", str(p)) for p in (v5, v3, v3, v1)]
    assert {p: digest(p) for p in sums} == sums
    assert dst_snap(dst_url, res[0].dst_run_id or 0) == want[v5][0]
    for r, w in zip(res[1:3], want[v3], strict=True):  # both never ended: crashed now
        got = dst_snap(dst_url, r.dst_run_id or 0)
        assert (got["series"], got["samples"]) == (w["series"], w["samples"])
        assert got["run"][0] == w["run"][0] and got["run"][8] == "crashed"
    c3 = dst_snap(dst_url, res[2].dst_run_id or 0)
    [(t, v, _u, _k)] = c3["series"].values()
    assert (
        list(zip(t, np.array(v, dtype=np.uint64).view(np.float64).tolist(), strict=True)) == opened
    )
    assert [w.split(" was ")[0] for w in warned] == [f"run {r.uuid} in {v3}" for r in res[1:3]]
    old = dst_snap(dst_url, res[3].dst_run_id or 0)
    assert old["series"][(0, "cpu.percent", '{"target": "t1"}')][0] == [6, 7]
    # the same file, migrated in place, names its run alike: imported once only
    s = open_store(sqlite_url(v1))
    s.close()
    res2, _ = imported([v1, v5], dst_url)
    assert [r.action for r in res2] == ["skipped", "skipped"]


# -- SQLite → SQLite -------------------------------------------------------------------------


def test_round_trip_into_sqlite(tmp_path: Path) -> None:
    check_round_trip(sqlite_url(tmp_path / "dst.db"), tmp_path)


def test_crashed_run_into_sqlite(tmp_path: Path) -> None:
    check_crashed_run(sqlite_url(tmp_path / "dst.db"), tmp_path)


def test_replace_partial_copy_in_sqlite(tmp_path: Path) -> None:
    check_replace(sqlite_url(tmp_path / "dst.db"), tmp_path)


def test_spool_merge_into_sqlite(tmp_path: Path) -> None:
    check_spool_merge(sqlite_url(tmp_path / "dst.db"), tmp_path)


def test_spool_overlap_into_sqlite(tmp_path: Path) -> None:
    check_spool_overlap(sqlite_url(tmp_path / "dst.db"), tmp_path)


def test_concurrent_imports_into_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_concurrent_imports(sqlite_url(tmp_path / "dst.db"), tmp_path, monkeypatch)


def test_older_schemas_into_sqlite(tmp_path: Path) -> None:
    check_older_schemas(sqlite_url(tmp_path / "dst.db"), tmp_path)


def test_a_failed_import_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One transaction per run: a failure midway (writing the chunks, while the source is
    being read; writing the events) rolls back everything written, and it is said to be
    the destination's failure, not the file's."""
    from edgeprof.errors import StoreError
    from edgeprof.store import transfer

    src = run_file(tmp_path, "run.db", lambda s: make_run(s, uuid=U))
    dst_url = sqlite_url(tmp_path / "dst.db")
    insert = transfer._Dst.insert

    def failing(self: Any, table: str, *a: Any) -> int:
        if table == "chunks":
            raise sqlite3.OperationalError("disk I/O error")
        return insert(self, table, *a)

    def broken(*a: Any) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    for name, fake, said in (
        ("_Dst.insert", failing, "disk I/O error"),
        ("_copy_events", broken, "database or disk is full"),
    ):
        with monkeypatch.context() as m:
            if name == "_Dst.insert":
                m.setattr(transfer._Dst, "insert", fake)
            else:
                m.setattr(transfer, name, fake)
            with pytest.raises(StoreError) as e:
                imported([src], dst_url, error=lambda s: pytest.fail(s))
        assert str(e.value) == f"the database at {dst_url} failed: {said}"
        for table in ("runs", "targets", "series", "chunks", "timeblocks"):
            assert dst_count(dst_url, f"SELECT COUNT(*) AS n FROM {table}") == 0, table
    [r], _ = imported([src], dst_url)
    assert r.action == "added"


def test_copy_run_between_open_stores(tmp_path: Path) -> None:
    a = open_store(sqlite_url(tmp_path / "a.db"))
    rid = make_run(a, range(0, 50))
    b = open_store(sqlite_url(tmp_path / "b.db"))
    seen: list[tuple[int, int]] = []
    r = copy_run(a, rid, b, progress=lambda d, t: seen.append((d, t)))
    assert r.action == "added" and seen and seen[-1] == (r.samples, r.samples)
    assert snap(b, r.dst_run_id or 0) == snap(a, rid)
    a.close()
    b.close()


# -- the command line -----------------------------------------------------------------------


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        cli_main(args)
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_import_command_lines_and_bad_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = run_file(tmp_path, "good.db", lambda s: make_run(s, uuid=U))
    text = tmp_path / "notes.db"
    text.write_text("hello\n")
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    other = tmp_path / "other.db"
    c = sqlite3.connect(other)
    c.execute("CREATE TABLE foo (x)")
    c.commit()
    c.close()
    trunc = tmp_path / "trunc.db"
    data = good.read_bytes()
    trunc.write_bytes(data[: len(data) // 3])
    missing = tmp_path / "missing.db"
    dst = sqlite_url(tmp_path / "dst.db")
    code, out, err = cli(
        [
            "import",
            str(text),
            str(good),
            str(empty),
            str(other),
            str(trunc),
            str(missing),
            "--db",
            dst,
        ],
        capsys,
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 5 and all(x.startswith("edgeprof: error: ") for x in lines)
    for path, line in zip((text, empty, other, trunc, missing), lines, strict=True):
        assert f"error: {path} " in line, line
    assert "not a SQLite database" in lines[0] and "an empty file" in lines[1]
    assert "not an edgeprof database" in lines[2]
    assert "truncated or damaged" in lines[3] and "does not exist" in lines[4]
    out_lines = out.strip().splitlines()
    assert out_lines[0] == "added run 1 (uuid 0a1b2c3d…, objcounter, 2 targets, 12,000 samples)"
    assert out_lines[1].startswith("1 run from 1 file (1 added): 12,000 samples in ")
    assert out_lines[1].endswith(" samples/s); 5 files failed")
    code, out, err = cli(["import", str(good), "--db", dst, "--json"], capsys)
    assert code == 0 and err == ""
    got = json.loads(out)
    assert (got["skipped"], got["added"], got["samples"]) == (1, 0, 0)
    assert got["runs"][0]["action"] == "skipped" and got["runs"][0]["uuid"] == U
    code, out, _ = cli(["import", str(good), "--db", dst], capsys)
    assert (
        out.splitlines()[0]
        == f"skipped run 0a1b2c3d… (objcounter) from {good}: already there as run 1"
    )


def test_import_warns_about_an_unfinished_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = killed_file(tmp_path)
    code, out, err = cli(["import", str(src), "--db", sqlite_url(tmp_path / "d.db")], capsys)
    assert code == 0
    [line] = err.strip().splitlines()
    assert line.startswith(f"edgeprof: warning: run {U} in {src} was not finished")
    assert "imported up to its last complete batch (3,067 samples, last at " in line


def test_export_sqlite_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = sqlite_url(tmp_path / "edgeprof.db")
    s = open_store(db)
    make_run(s, range(0, 10), name="first")
    rid = make_run(s, uuid=U)
    s.close()
    out_db = tmp_path / "run.db"
    code, _out, err = cli(
        ["export", U[:8], "--format", "sqlite", "-o", str(out_db), "--db", db], capsys
    )
    assert code == 0, err
    assert err.startswith(
        f"wrote run {rid} (uuid 0a1b2c3d…, objcounter, 2 targets, 12,000 samples) to {out_db} (run 1 there)"
    )
    assert src_snap(out_db, 1) == src_snap(tmp_path / "edgeprof.db", rid)
    code, _out, err = cli(
        ["export", str(rid), "-f", "sqlite", "-o", str(out_db), "--db", db], capsys
    )
    assert code == 0 and "already holds run 2 (uuid 0a1b2c3d…) as run 1; nothing written" in err
    # and back: imported elsewhere it is the same run
    [r], _ = imported([out_db], sqlite_url(tmp_path / "farm.db"))
    assert dst_snap(sqlite_url(tmp_path / "farm.db"), r.dst_run_id or 0) == src_snap(out_db, 1)
    code, _out, err = cli(["export", "1", "--format", "sqlite", "--db", db], capsys)
    assert (
        code == 2
        and err.strip()
        == "edgeprof: error: --format sqlite writes a database file; give it with -o FILE.db"
    )
    foreign = tmp_path / "foreign.db"
    c = sqlite3.connect(foreign)
    c.execute("CREATE TABLE foo (x)")
    c.commit()
    c.close()
    code, _out, err = cli(["export", "1", "-f", "sqlite", "-o", str(foreign), "--db", db], capsys)
    assert code == 2 and "is a SQLite file but not an edgeprof database" in err


def test_export_sqlite_says_what_is_wrong_with_the_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o is named (not --db) when its folder is missing or it is a folder; one target is
    "1 target"."""
    db = sqlite_url(tmp_path / "edgeprof.db")
    s = open_store(db)
    rid = s.begin_run(RunInfo("one", "img", T0, 0.1))
    s.begin_target(TargetInfo(rid, 0, "app", []))
    s.end_run(rid, "completed", T0 + 1)
    s.close()
    missing = tmp_path / "nodir" / "run.db"
    code, _out, err = cli(["export", "1", "-f", "sqlite", "-o", str(missing), "--db", db], capsys)
    assert code == 2 and err.strip() == (
        f"edgeprof: error: cannot write {missing}: folder {missing.parent} does not exist; "
        "create it or pick another -o path"
    )
    code, _out, err = cli(["export", "1", "-f", "sqlite", "-o", str(tmp_path), "--db", db], capsys)
    assert code == 2 and err.startswith(f"edgeprof: error: {tmp_path} is a folder; give a file")
    out = tmp_path / "one.db"
    code, _out, err = cli(["export", "1", "-f", "sqlite", "-o", str(out), "--db", db], capsys)
    assert code == 0 and "(uuid " in err and ", one, 1 target, 0 samples) to " in err


def test_export_sqlite_of_a_running_run_warns_and_is_replaced_later(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "edgeprof.db"
    s = open_store(sqlite_url(db))
    rid = make_run(s, range(0, 100), uuid=U, end=False)
    s.close()
    out = tmp_path / "run.db"
    args = ["export", str(rid), "-f", "sqlite", "-o", str(out), "--db", sqlite_url(db)]
    code, _out, err = cli(args, capsys)
    [warning, said] = err.strip().splitlines()
    assert code == 0 and warning.startswith(
        f"edgeprof: warning: run {rid} is still running (or its profiler died): {out} holds "
        "what it had so far (400 samples, last at "
    )
    assert warning.endswith(
        "marked crashed; export it again to the same file once the run has ended to replace it"
    )
    assert said.startswith(f"wrote run {rid} ") and src_snap(out)["run"][8] == "crashed"
    s = open_store(sqlite_url(db))
    s.end_run(rid, "completed", tick(99) + 1)
    s.close()
    code, _out, err = cli(args, capsys)
    assert code == 0 and err.startswith(f"replaced the partial copy of run {rid} ")
    assert src_snap(out) == src_snap(db, rid)


def test_import_says_what_a_merge_found_there_already(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = sqlite_url(tmp_path / "dst.db")
    s = open_store(dst)
    rid = make_run(s, range(0, 2500), uuid=U, end=False)
    s.close()
    meta = {"spool": {"id": "5e5e5e5e-0000-4000-8000-000000000004", "uncertain_commit": True}}
    sp = run_file(tmp_path, "spool.db", lambda s: make_run(s, range(2490, 2600), uuid=U, meta=meta))
    code, out, err = cli(["import", str(sp), "--db", dst], capsys)
    assert code == 0 and err == ""
    assert out.splitlines()[0] == (
        f"merged spool 0a1b2c3d… (objcounter) into run {rid}: 400 samples added, status "
        "completed; 40 of the spool's samples were in the database already (its first batch "
        "had reached it): not added twice"
    )


def test_file_checks_do_not_create_files(tmp_path: Path) -> None:
    from edgeprof.errors import UserError
    from edgeprof.store.transfer import open_source

    with pytest.raises(UserError, match="does not exist"), open_source(str(tmp_path / "x.db")):
        pass
    assert os.listdir(tmp_path) == []


def test_a_cut_off_file_without_its_log_and_a_run_still_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A killed run's file copied without its -wal holds nothing: said, with the fix. A
    file whose profiler still runs here is imported so far, and said so."""
    from edgeprof.owner import owner_info

    src = killed_file(tmp_path)
    (tmp_path / "copied").mkdir()
    alone = tmp_path / "copied" / "killed.db"
    alone.write_bytes(src.read_bytes())
    dst = sqlite_url(tmp_path / "d.db")
    code, out, err = cli(["import", str(alone), "--db", dst], capsys)
    assert code == 2 and out == "" and not (tmp_path / "d.db").exists()
    assert err.strip() == (
        f"edgeprof: error: {alone} is an empty SQLite database: a run cut off before its "
        "first checkpoint keeps everything in killed.db-wal; copy that file beside it "
        "(archive run.db*) and import again"
    )

    def live(s: SQLStore) -> None:
        rid = s.begin_run(RunInfo("live", "img", T0, 0.1, owner=owner_info()))
        s.begin_target(TargetInfo(rid, 0, "app", []))

    path = run_file(tmp_path, "live.db", live)
    code, out, err = cli(["import", str(path), "--db", dst], capsys)
    assert code == 0 and "added run 1 (uuid " in out
    assert f"in {path} is still being recorded (its profiler runs on this host): imported" in err
    assert "(0 samples, last at -) as crashed; import the file again when the run has ended" in err
