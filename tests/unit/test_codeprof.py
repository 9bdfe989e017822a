"""Code profiles: parsing py-spy's and perf's output, the spec's options, storage (SQLite,
migration from version 3), the batch writer's ``code`` op and the collectors' refusals."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edgeprof.codeprof import collector as collmod
from edgeprof.codeprof.model import SLICE_NS, CodeSample, Frame, decode_stack, encode_stack
from edgeprof.codeprof.perf import dsos_of, parse_script, perf_cgroup
from edgeprof.codeprof.pyspy import NsEnter, PySpyProcess, parse_frame, parse_raw, proc_start
from edgeprof.codeprof.spawn import popen_tied
from edgeprof.collect.base import CollectContext
from edgeprof.collect.registry import GROUPS, GroupEnv
from edgeprof.errors import CollectorUnavailable
from edgeprof.hostinfo import HostCaps
from edgeprof.model import Clock, Event, Sample
from edgeprof.spec.code import CodeOptions, merge_code
from edgeprof.store import open_store
from edgeprof.store.base import RunInfo, TargetInfo
from edgeprof.store.schema import (
    CODE_TABLES,
    OPEN_BLOCKS,
    RUNS_UUID_INDEX,
    SCHEMA,
    SCHEMA_VERSION,
    Dialect,
)
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


def _before_v4(stmt: str) -> str:
    """A statement of the current schema as versions before 4 had it: no
    ``series.final_block``, no run UUID or metadata (version 6)."""
    if stmt == RUNS_UUID_INDEX:
        return "SELECT 1"
    return stmt.replace(",\n        final_block BIGINT", "").replace(
        ",\n        uuid TEXT,\n        meta TEXT", ""
    )


def test_a_version_3_database_gains_the_code_tables(tmp_path: Path) -> None:
    db = tmp_path / "v3.db"
    c = sqlite3.connect(db)
    c.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    c.execute("INSERT INTO schema_version VALUES (3)")
    fmt = {"pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL", "blob": "BLOB"}
    for stmt in SCHEMA:  # version 3: no stack tables, no open blocks
        if stmt not in CODE_TABLES and stmt not in OPEN_BLOCKS:
            c.execute(_before_v4(stmt).format(**fmt))
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


def make_516ca7d_v4(conn: Any, d: type[Dialect]) -> None:
    """A database as commit 516ca7d left it: version 3's tables plus the stack tables,
    stamped version 4 (which now means open blocks); one run, one target, one series."""
    fmt = {"pk": d.pk, "real": d.real, "blob": d.blob}
    c = conn.cursor()
    c.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    c.execute("INSERT INTO schema_version VALUES (4)")
    for stmt in SCHEMA:  # no open blocks, no series.final_block
        if stmt not in OPEN_BLOCKS:
            c.execute(_before_v4(stmt).format(**fmt))
    c.execute(
        "INSERT INTO runs (spec_name, image, started_ns, status, interval_s)"
        " VALUES ('old', 'i', 1, 'completed', 1.0)"
    )
    c.execute(
        "INSERT INTO targets (run_id, idx, name, args, status) VALUES (1, 0, 't', '[]', 'exited')"
    )
    c.execute(
        "INSERT INTO series (run_id, target_id, metric, labels) VALUES (1, 1, 'cpu.percent', '{}')"
    )
    conn.commit()


def check_516ca7d_v4_migrates(url: str) -> None:
    """Migrating it adds what version 4 means now; then it takes samples and stacks."""
    store = open_store(url)
    assert store.migrated == (4, SCHEMA_VERSION) and SCHEMA_VERSION >= 5
    with store._cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM open_blocks")
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT final_block FROM series")
        assert cur.fetchall() == [(None,)]
    rows = _rows(SLICE_NS)
    with store.transaction():
        store.add_code_samples(1, rows)
    store.close()
    # a run written after the migration: its samples go through open blocks
    store = open_store(url)
    assert store.migrated == (SCHEMA_VERSION, SCHEMA_VERSION)
    run = store.begin_run(RunInfo("new", "i", 1, 1.0))
    tid = store.begin_target(TargetInfo(run, 0, "app", []))
    w = BatchWriter(store, run, flush_s=0.05)
    w.add_target("app", tid)
    w.set_default_target(tid)
    w.write([Sample("x", (), t, float(t)) for t in range(1, 6)])
    w.code("app", rows[:1])
    w.flush()  # the samples are in an open block now
    with store._cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM open_blocks")
        assert cur.fetchone()[0] >= 1
    w.close()
    [sid] = store.series_values(run)
    assert store.series_samples(sid)[1].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert store.code_samples(1) == rows and store.code_samples(tid) == rows[:1]
    store.close()


def test_a_version_4_database_of_commit_516ca7d_gains_the_open_blocks(tmp_path: Path) -> None:
    db = tmp_path / "v4.db"
    conn = sqlite3.connect(db)
    make_516ca7d_v4(conn, Dialect)
    conn.close()
    check_516ca7d_v4_migrates(f"sqlite:///{db}")


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


def _ns(root: Path, pid: int | str, ns: str, nspid: int | None = None) -> None:
    d = root / str(pid)
    (d / "ns").mkdir(parents=True, exist_ok=True)
    (d / "ns" / "pid").symlink_to(ns)
    if nspid is not None:
        (d / "status").write_text(f"Name:\tpython3\nNSpid:\t{pid}\t{nspid}\n")


ENTER = NsEnter("/usr/bin/nsenter", "/usr/bin/unshare")


def _collector(root: Path, idle: bool, enter: NsEnter | None) -> tuple[Any, list[Event]]:
    events: list[Event] = []
    c = collmod.PySpyCollector("/bin/true", 10, idle=idle, enter=enter)
    c.ctx = CollectContext(target="t", pid=77, proc_root=str(root), emit_event=events.append)
    c.notes = collmod._Notes(c.ctx)
    return c, events


def test_py_spy_enters_a_containers_pid_namespace_for_its_idle_filter(tmp_path: Path) -> None:
    _fake_proc(tmp_path, 77, "/usr/bin/python3.11")
    _ns(tmp_path, "self", "pid:[4026531836]")
    _ns(tmp_path, 77, "pid:[4026532999]", nspid=1)
    c, events = _collector(tmp_path, idle=False, enter=ENTER)
    assert c._how(77, str(tmp_path)) == (ENTER, 1)
    p = PySpyProcess("/x/py-spy", 77, "python3", 4242, 10, False, Clock(), print, c.notes,
                     str(tmp_path), True, ENTER, 1)  # fmt: skip
    argv = p._argv("/w/out.txt")
    assert argv[:7] == ["/usr/bin/nsenter", "--target", "77", "--pid", "--",
                        "/usr/bin/unshare", "--mount-proc"]  # fmt: skip
    assert argv[7:11] == ["/x/py-spy", "record", "--pid", "1"] and "--idle" not in argv
    assert events == []
    # idle stacks wanted: from the host, as before (py-spy counts them all)
    c, events = _collector(tmp_path, idle=True, enter=ENTER)
    assert c._how(77, str(tmp_path)) == (None, None) and events == []
    # cannot enter (not root, no nsenter): one note that idle time counts
    c, events = _collector(tmp_path, idle=False, enter=None)
    assert c._how(77, str(tmp_path)) == (None, None)
    assert c._how(77, str(tmp_path)) == (None, None)
    assert [e.data["code"] for e in events] == ["idle-unfiltered"]
    # Python before 3.11: py-spy has no thread ids without pausing the app
    _fake_proc(tmp_path, 77, "/usr/local/bin/python3.9")
    c, events = _collector(tmp_path, idle=False, enter=ENTER)
    assert c._how(77, str(tmp_path)) == (None, None)
    assert [e.data["code"] for e in events] == ["idle-old-python"]
    assert "Python 3.9" in events[0].message


def test_same_pid_namespace_runs_py_spy_plainly(tmp_path: Path) -> None:
    _fake_proc(tmp_path, 77, "/usr/bin/python3.12")
    _ns(tmp_path, "self", "pid:[4026531836]")
    _ns(tmp_path, 77, "pid:[4026531836]", nspid=77)
    c, events = _collector(tmp_path, idle=False, enter=ENTER)
    assert c._how(77, str(tmp_path)) == (None, None) and events == []


FAKE_PYSPY = """\
#!{python}
import os, signal, sys, time
out = sys.argv[sys.argv.index("--output") + 1]
with open(os.environ["FAKE_PYSPY_LOG"], "a") as f:
    f.write(f"{{os.getpid()}} {{os.getsid(0)}} {{os.path.dirname(os.path.dirname(out))}}\\n")
def done(*_):
    with open(out, "w") as f:
        f.write("thread (1);main (/app/x.py:1) 5\\n")
    sys.exit(0)
signal.signal(signal.SIGINT, done)
time.sleep(float(os.environ.get("FAKE_PYSPY_S", "0.3")))
done()
"""


def test_py_spy_windows_run_in_their_own_session_and_none_starts_after_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = tmp_path / "py-spy"
    spy.write_text(FAKE_PYSPY.format(python=sys.executable))
    spy.chmod(0o755)
    log = tmp_path / "log"
    monkeypatch.setenv("FAKE_PYSPY_LOG", str(log))
    monkeypatch.setenv("FAKE_PYSPY_S", "30")  # a window ends only when interrupted
    rows: list[CodeSample] = []
    work = tmp_path / "target-dir"
    me = os.getpid()
    p = PySpyProcess(str(spy), me, "me", proc_start(me), 10, False, Clock(), rows.extend,
                     lambda *a: None, work_dir=str(work))  # fmt: skip
    p.start_thread()
    deadline = time.monotonic() + 20
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid, sid, folder = log.read_text().split()
    # a session of its own: the terminal's Ctrl-C (SIGINT to edgeprof's group) misses it
    assert int(sid) != os.getsid(0) and int(sid) == int(pid)
    assert Path(folder) == work  # its output lies in the target's folder
    p.stop()  # SIGINT to the window: it writes its stacks and ends
    p.join(20)
    assert p._thread is not None and not p._thread.is_alive()
    assert len(log.read_text().splitlines()) == 1  # no window after closing began
    assert p.windows == 1 and sum(r.count for r in rows) == 5
    assert list(work.iterdir()) == []  # its temporary folder is gone


def test_a_profiler_dies_with_the_thread_that_started_it() -> None:
    got: list[subprocess.Popen[bytes]] = []
    t = threading.Thread(target=lambda: got.append(popen_tied(["sleep", "30"])))
    t.start()
    t.join()
    child = got[0]
    try:
        assert child.wait(timeout=10) == -signal.SIGKILL  # PR_SET_PDEATHSIG
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_non_python_container_gets_one_note(tmp_path: Path) -> None:
    _fake_proc(tmp_path, 77, "/usr/bin/busybox")
    events: list[Event] = []
    ctx = CollectContext(target="t", pid=77, proc_root=str(tmp_path), emit_event=events.append)
    c = collmod.PySpyCollector("/bin/false", 10)
    c.open(ctx)
    c.close()
    assert [e.message for e in events] == [
        "no Python stacks were taken: no process of the container runs Python (busybox)"
    ]


def test_ctrl_c_is_seen_by_the_py_spy_chains_and_handled_as_before() -> None:
    from edgeprof.codeprof import pyspy as pyspymod

    got: list[int] = []
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # ignored: left alone
        pyspymod.watch_interrupts()
        pyspymod.watch_interrupts()  # once
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == [signal.SIGINT] and pyspymod.INTERRUPTED.is_set()
        # a chain does not start another window after it
        p = PySpyProcess("/bin/true", os.getpid(), "me", proc_start(os.getpid()), 10, False,
                         Clock(), print, lambda *a: None)  # fmt: skip
        assert p._window("/nonexistent/out") is False and p.windows == 0
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
        pyspymod.INTERRUPTED.clear()
