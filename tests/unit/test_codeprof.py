"""Code profiles: parsing py-spy's and perf's output, the spec's options, storage (SQLite,
migration from version 3), the batch writer's ``code`` op and the collectors' refusals."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edgeprof.codeprof import collector as collmod
from edgeprof.codeprof.model import SLICE_NS, CodeSample, Frame, decode_stack, encode_stack
from edgeprof.codeprof.perf import dsos_of, parse_script, perf_cgroup
from edgeprof.codeprof.pyspy import parse_frame, parse_raw
from edgeprof.collect.base import CollectContext
from edgeprof.collect.registry import GROUPS, GroupEnv
from edgeprof.errors import CollectorUnavailable
from edgeprof.hostinfo import HostCaps
from edgeprof.model import Clock, Event
from edgeprof.spec.code import CodeOptions, merge_code
from edgeprof.store import open_store
from edgeprof.store.base import RunInfo, TargetInfo
from edgeprof.store.schema import CODE_TABLES, OPEN_BLOCKS, SCHEMA, SCHEMA_VERSION
from edgeprof.store.writer import BatchWriter

RAW = """\
thread (1);<module> (/app/hot.py:23);main (/app/hot.py:17);hot (/app/hot.py:5) 55
thread (1);<module> (/app/hot.py:23);main (/app/hot.py:18);cold (/app/hot.py:9) 12
thread (0x7F12AB): loader;run (/usr/lib/python3.11/threading.py:975);<lambda> (x y.py) 3
thread (7) 2
py-spy> not a stack line
"""

PERF = """\
hot-native  7547/7547  100.250000:
\t            1628 hot_native (/usr/local/bin/hot-native)
\t            19d4 __libc_start_call_main (/usr/local/bin/hot-native)
\tbe552274c0854800 [unknown] ([unknown])

hot-native  7547/7547  100.260000:
\t            1628 hot_native+0x18 (/usr/local/bin/hot-native)
\t            19d4 __libc_start_call_main (/usr/local/bin/hot-native)

hot-native  7547/7548  101.300000:
\tffffffff8a2b1c3d [unknown] ([kernel.kallsyms])
\t            164e cold_native (/usr/local/bin/hot-native)
"""


def test_py_spy_raw_lines_become_stacks_root_first_with_threads() -> None:
    rows = parse_raw(RAW, 42, "python3", 7)
    assert [r.count for r in rows] == [55, 12, 3, 2]
    assert rows[3].stack == (Frame("[no Python frames]", "", 0),) and rows[3].thread == "7"
    assert rows[0].stack == (
        Frame("<module>", "/app/hot.py", 23),
        Frame("main", "/app/hot.py", 17),
        Frame("hot", "/app/hot.py", 5),
    )
    assert rows[0].thread == "1" and rows[2].thread == "loader"
    assert rows[2].stack[-1] == Frame("<lambda>", "x y.py", 0)
    assert all(r.pid == 42 and r.t_ns == 7 and r.kind == "python" for r in rows)
    assert parse_frame("plain") == Frame("plain", "", 0)


def test_perf_script_becomes_native_stacks_in_one_second_slices() -> None:
    clock = Clock()
    t0 = clock.from_monotonic(100_000_000_000)
    rows = parse_script(PERF, clock, t0)
    by = {(r.t_ns - t0, r.stack[-1].function, r.thread): r.count for r in rows}
    assert by == {(0, "hot_native", "7547"): 2, (SLICE_NS, "[kernel]", "7548"): 1}
    hot = next(r for r in rows if r.stack[-1].function == "hot_native")
    assert hot.stack[0] == Frame("__libc_start_call_main", "/usr/local/bin/hot-native", 0)
    assert hot.kind == "native" and hot.process == "hot-native" and hot.pid == 7547
    assert dsos_of(PERF) == {"/usr/local/bin/hot-native"}


def test_perf_cgroup_prefers_the_perf_event_controller(tmp_path: Path) -> None:
    (tmp_path / "9").mkdir()
    (tmp_path / "9" / "cgroup").write_text("4:memory:/docker/abc\n0::/docker/abc\n")
    assert perf_cgroup(9, str(tmp_path)) == "docker/abc"
    (tmp_path / "9" / "cgroup").write_text("3:perf_event:/docker/xyz\n0::/\n")
    assert perf_cgroup(9, str(tmp_path)) == "docker/xyz"
    assert perf_cgroup(10, str(tmp_path)) is None


def test_stack_text_round_trips() -> None:
    stack = (Frame("f\tx", "a.py", 3), Frame("g", "", 0))
    assert decode_stack(encode_stack(stack)) == (Frame("f x", "a.py", 3), Frame("g", "", 0))
    assert decode_stack("") == ()


def test_options_merge_per_key_and_rate_defaults_lower_on_small_hosts() -> None:
    spec = CodeOptions(python=True, rate=20)
    assert merge_code(spec, CodeOptions(idle=True)) == CodeOptions(python=True, rate=20, idle=True)
    assert merge_code(None, None) is None and merge_code(spec, None) == spec
    assert CodeOptions().rate_for(16, False) == 100
    assert CodeOptions().rate_for(4, False) == 50 and CodeOptions().rate_for(16, True) == 50
    assert CodeOptions(rate=7).rate_for(2, True) == 7


def test_the_code_group_makes_nothing_unless_asked() -> None:
    g = GROUPS["code"]
    caps = HostCaps(ncpu=8)
    assert g.factory(GroupEnv(caps=caps)) == []
    assert g.factory(GroupEnv(caps=caps, code=CodeOptions(rate=10))) == []
    made = g.factory(GroupEnv(caps=caps, code=CodeOptions(python=True, native=True)))
    assert [type(c).__name__ for c in made] == ["PySpyCollector", "PerfCollector"]
    assert all(c.group == "code" and c.metrics() == [] for c in made)


def test_without_py_spy_the_collector_is_unavailable_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(collmod, "find_pyspy", lambda: None)
    [c] = collmod.code_collectors(CodeOptions(python=True), HostCaps(ncpu=8))
    with pytest.raises(CollectorUnavailable, match=r"py-spy is not installed \(pip install"):
        c.open(CollectContext(target="t", pid=1))


def _rows(t0: int) -> list[CodeSample]:
    a = (Frame("<module>", "/app/x.py", 1), Frame("hot", "/app/x.py", 5))
    b = (Frame("<module>", "/app/x.py", 1), Frame("cold", "/app/x.py", 9))
    return [
        CodeSample(10, "python3", t0, a, 80, "python", "1"),
        CodeSample(10, "python3", t0, b, 20, "python", "1"),
        CodeSample(11, "python3", t0 + SLICE_NS, a, 7, "python", None),
        CodeSample(12, "hot-native", t0 + 2 * SLICE_NS, (Frame("main", "/bin/x", 0),), 3, "native"),
    ]


def check_round_trip(url: str) -> None:
    """Stored and read back (shared with the PostgreSQL test)."""
    store = open_store(url)
    run = store.begin_run(RunInfo("s", "i", 1, 1.0))
    t1 = store.begin_target(TargetInfo(run, 0, "t1", []))
    t2 = store.begin_target(TargetInfo(run, 1, "t2", []))
    t0 = 1_700_000_000 * SLICE_NS
    rows = _rows(t0)
    with store.transaction():
        store.add_code_samples(t1, rows)
        store.add_code_samples(t2, rows[:1])
    store.close()
    store = open_store(url, readonly=True)
    assert store.code_samples(t1) == rows
    assert store.code_samples(t2) == rows[:1]
    # a window selects the slices that overlap it
    assert store.code_samples(t1, t0 + SLICE_NS // 2, t0 + SLICE_NS + 1) == rows[:3]
    assert store.code_samples(t1, t0 + SLICE_NS, t0 + 2 * SLICE_NS) == rows[2:3]
    assert store.code_samples(t1, t_to_ns=t0) == []
    # each distinct stack once per run
    with store._cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM code_stacks")
        assert cur.fetchone()[0] == 3
    store.close()


def test_code_samples_round_trip_on_sqlite(tmp_path: Path) -> None:
    check_round_trip(f"sqlite:///{tmp_path / 'c.db'}")


def test_the_writer_stores_code_rows_under_the_named_target(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'w.db'}")
    run = store.begin_run(RunInfo("s", "i", 1, 1.0))
    tid = store.begin_target(TargetInfo(run, 0, "app", []))
    w = BatchWriter(store, run, flush_s=0.05)
    w.add_target("app", tid)
    rows = _rows(5 * SLICE_NS)
    w.code("app", rows[:2])
    w.code("app", [])
    w.flush()
    assert store.code_samples(tid) == rows[:2]
    w.code("app", rows[2:])
    w.close()
    assert store.code_samples(tid) == rows
    store.close()


def test_a_version_3_database_gains_the_code_tables(tmp_path: Path) -> None:
    db = tmp_path / "v3.db"
    c = sqlite3.connect(db)
    c.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    c.execute("INSERT INTO schema_version VALUES (3)")
    fmt = {"pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL", "blob": "BLOB"}
    for stmt in SCHEMA:  # version 3: no stack tables, no open blocks
        if stmt not in CODE_TABLES and stmt not in OPEN_BLOCKS:
            c.execute(stmt.replace(",\n        final_block BIGINT", "").format(**fmt))
    c.execute(
        "INSERT INTO runs (spec_name, image, started_ns, status, interval_s)"
        " VALUES ('old', 'i', 1, 'completed', 1.0)"
    )
    c.execute(
        "INSERT INTO targets (run_id, idx, name, args, status) VALUES (1, 0, 't', '[]', 'exited')"
    )
    c.commit()
    c.close()
    store = open_store(f"sqlite:///{db}")
    assert store.migrated == (3, SCHEMA_VERSION) and SCHEMA_VERSION >= 4
    assert store.code_samples(1) == []
    rows = _rows(SLICE_NS)
    with store.transaction():
        store.add_code_samples(1, rows)
    assert store.code_samples(1) == rows
    assert store.resolve_run(1).spec_name == "old"
    store.close()


def _fake_proc(root: Path, pid: int, exe: str) -> None:
    d = root / str(pid)
    d.mkdir(exist_ok=True)
    (d / "stat").write_text(f"{pid} (x) S " + " ".join(["0"] * 18) + " 4242 0 0\n")
    (d / "comm").write_text(Path(exe).name + "\n")
    (d / "maps").write_text("00400000-00401000 r-xp 0 0:0 0 " + exe + "\n")
    if (d / "exe").is_symlink():
        (d / "exe").unlink()
    (d / "exe").symlink_to(exe)


def test_a_process_is_profiled_once_it_execs_python_and_py_spy_errors_are_events(
    tmp_path: Path,
) -> None:
    _fake_proc(tmp_path, 77, "/usr/bin/busybox")
    events: list[Event] = []
    ctx = CollectContext(target="t", pid=77, proc_root=str(tmp_path), emit_event=events.append)
    c = collmod.PySpyCollector("/bin/false", 10)  # a "py-spy" that always fails
    c.open(ctx)
    assert c.procs == {} and list(c.others.values()) == [("busybox", "/usr/bin/busybox")]
    _fake_proc(tmp_path, 77, "/usr/bin/python3.11")  # the same process exec()s Python
    c._poll()
    assert list(c.procs) == [(77, 4242)] and c.others == {}
    c.procs[(77, 4242)].join(10)
    c.close()
    msgs = [e.message for e in events]
    assert msgs[0].startswith("py-spy cannot take the stacks of python3.11 (pid 77): ")
    assert msgs[1].startswith("no Python stacks were taken: ")
    assert len(msgs) == 2 and all(e.kind == "note" and e.target == "t" for e in events)
