"""Code profiles against the real engine: py-spy and perf from the host on a container.

Until the runner passes ``emit_code`` to the collectors, most tests drive the ``code``
collectors directly with a :class:`CollectContext` made from a real container (its host
PID and cgroup, as the engine reports them); the last one runs ``edgeprof run`` whole.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeprof.cgroups import find_cgroup
from edgeprof.codeprof.collector import PerfCollector, PySpyCollector
from edgeprof.codeprof.model import CodeSample
from edgeprof.codeprof.perf import find_perf, paranoid_reason
from edgeprof.codeprof.pyspy import find_pyspy
from edgeprof.collect.base import CollectContext
from edgeprof.model import Clock, Event
from edgeprof.store import open_store

from .helpers import EDGEPROF, docker, edgeprof

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parent.parent / "data" / "codeprof"
PYTHON = "edgeprof-test/python:latest"
NATIVE = "edgeprof-test/native-hot:latest"


class Got:
    def __init__(self) -> None:
        self.rows: list[CodeSample] = []
        self.events: list[Event] = []

    def ctx(self, cid: str) -> CollectContext:
        pid = int(docker("inspect", "-f", "{{.State.Pid}}", cid).strip())
        return CollectContext(
            target="t",
            clock=Clock(),
            pid=pid,
            cgroup=find_cgroup(pid) if pid else None,
            emit_event=self.events.append,
            emit_code=self.rows.extend,
            container_id=cid,
        )

    def self_share(
        self, pid: int | None = None, kind: str = "python", in_function: str | None = None
    ) -> dict[str, float]:
        """Leaf function → its share of the samples (percent); only the stacks through
        ``in_function`` with one."""
        c: Counter[str] = Counter()
        for r in self.rows:
            if in_function is not None and all(f.function != in_function for f in r.stack):
                continue
            if r.kind == kind and (pid is None or r.pid == pid):
                c[r.stack[-1].function] += r.count
        total = sum(c.values())
        return {k: 100.0 * v / total for k, v in c.items()}


@pytest.fixture
def pyspy() -> str:
    path = find_pyspy()
    if path is None:
        pytest.skip("py-spy is not installed (pip install 'edgeprof[code]')")
    return path


@pytest.fixture
def container(engine: str) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for cid in made:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=60)


def _run(made: list[str], image: str, *argv: str) -> str:
    cid = docker(
        "run", "-d", "-v", f"{DATA}:/codeprof:ro", "--entrypoint", argv[0], image, *argv[1:]
    ).strip()
    made.append(cid)
    return cid


def test_hot_and_cold_functions_get_their_share(pyspy: str, container: list[str]) -> None:
    cid = _run(container, PYTHON, "python3", "/codeprof/hot_cold.py", "6")
    got = Got()
    ctx = got.ctx(cid)
    c = PySpyCollector(pyspy, 100)
    c.open(ctx)
    time.sleep(4)
    c.close()
    share = got.self_share(in_function="main")  # the app's loop (not its start-up)
    hot, cold = share.get("hot", 0.0), share.get("cold", 0.0)
    # 4 calls of hot for 1 of cold, the same work each: 80 % / 20 % of the work
    assert abs(100 * hot / (hot + cold) - 80) <= 10, share
    assert hot + cold >= 85, share  # the loop itself is the rest
    slices = Counter(r.t_ns for r in got.rows)
    assert len(slices) >= 3  # one-second slices, time-stamped by the run's clock
    assert all(abs(t - ctx.clock.now_ns()) < 30e9 for t in slices)
    assert all(r.pid == ctx.pid and r.process.startswith("python") for r in got.rows)
    # nothing to report, unless this machine is so loaded that py-spy fell behind
    assert [e.message for e in got.events if e.data.get("code") != "behind"] == []


@pytest.mark.parametrize("idle", [False, True])
def test_sleep_counts_only_when_idle_stacks_are_asked_for(
    pyspy: str, container: list[str], idle: bool
) -> None:
    # py-spy from the host cannot match a container's threads to the OS's (their ids are
    # the container's), so it took time.sleep for work; in the container's PID namespace
    # its idle filter works (benfred/py-spy#490)
    cid = _run(container, PYTHON, "python3", "/codeprof/work_sleep.py", "8")
    got = Got()
    c = PySpyCollector(pyspy, 100, idle=idle)
    if c.enter is None and not idle:
        pytest.skip("py-spy can enter the container's PID namespace only as root with nsenter")
    c.open(got.ctx(cid))
    time.sleep(4.5)
    c.close()
    share = got.self_share(in_function="main")
    work, rest = share.get("work", 0.0), share.get("rest", 0.0)
    if idle:  # half the time each (± windows that start and end mid-phase)
        assert 30 <= rest <= 70 and work + rest >= 95, share
    else:
        assert rest < 5 and work >= 95, share
        assert not [e for e in got.events if e.data.get("code") == "idle-unfiltered"]
    samples = sum(r.count for r in got.rows)
    assert samples >= (100 if not idle else 250), samples  # 4.5 s at 100 Hz (half idle)


def test_a_multiprocessing_child_is_its_own_process(pyspy: str, container: list[str]) -> None:
    cid = _run(container, PYTHON, "python3", "/codeprof/hot_cold.py", "6", "--child")
    got = Got()
    ctx = got.ctx(cid)
    c = PySpyCollector(pyspy, 50)
    c.open(ctx)
    time.sleep(4)
    c.close()
    pids = {r.pid for r in got.rows}
    assert ctx.pid in pids and len(pids) == 2, pids
    child = (pids - {ctx.pid}).pop()
    funcs = {f.function for r in got.rows if r.pid == child for f in r.stack}
    assert "child_work" in funcs and "cold" not in funcs
    assert "child_work" not in {f.function for r in got.rows if r.pid == ctx.pid for f in r.stack}


def test_a_process_that_exits_at_once_is_one_event(pyspy: str, container: list[str]) -> None:
    # the Python process (no site: -S) lives some 20 ms; the container (its shell) goes on
    cid = _run(container, PYTHON, "sh", "-c", "python3 -S /codeprof/quick_exit.py; sleep 3")
    got = Got()
    c = PySpyCollector(pyspy, 100)
    c.open(got.ctx(cid))
    time.sleep(1.0)
    c.close()
    assert got.rows == []
    notes = [e for e in got.events if e.data.get("code") == "none"]
    assert len(notes) == 1 and notes[0].message.startswith("no Python stacks were taken: ")
    assert notes[0].kind == "note" and notes[0].target == "t"
    assert all(e.kind == "note" for e in got.events)
    print([e.message for e in got.events])


def test_native_hot_function_through_perf(container: list[str], engine: str) -> None:
    perf = find_perf()
    if perf is None:
        pytest.skip("no perf on this host (Debian: linux-perf)")
    why = paranoid_reason()
    if why is not None:
        pytest.skip(why)
    res = subprocess.run(["docker", "image", "inspect", NATIVE], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"{NATIVE} was not built (no gcc on this host)")
    cid = _run(container, NATIVE, "/usr/local/bin/hot-native", "6")
    got = Got()
    c = PerfCollector(perf, 99)
    c.open(got.ctx(cid))
    docker("wait", cid, timeout=60)
    c.close()
    if any(e.data.get("code") == "perf-failed" for e in got.events):
        pytest.skip(f"perf cannot run here: {got.events[0].message}")
    share = got.self_share(kind="native")
    hot, cold = share.get("hot_native", 0.0), share.get("cold_native", 0.0)
    assert hot + cold > 0, (share, got.events)
    assert abs(100 * hot / (hot + cold) - 80) <= 10, share  # symbols read from the image
    assert {r.process for r in got.rows} == {"hot-native"}


def test_code_samples_round_trip_on_postgres(pg_url: str) -> None:
    from tests.unit.test_codeprof import check_round_trip

    check_round_trip(pg_url)


def test_a_version_4_database_of_commit_516ca7d_migrates_on_postgres(pg_url: str) -> None:
    import psycopg

    from edgeprof.store.schema import PgDialect
    from tests.unit.test_codeprof import check_516ca7d_v4_migrates, make_516ca7d_v4

    with psycopg.connect(pg_url) as conn:
        make_516ca7d_v4(conn, PgDialect)
    check_516ca7d_v4_migrates(pg_url)


SPEC = """\
name: codeprof
image: {image}
run:
  volumes: ["{data}:/codeprof:ro"]
profiling:
  interval: 0.5
  code: {{python: true, rate: 100}}
  targets:
    - name: hotcold
      args: ["python3", "/codeprof/hot_cold.py", "5", "--child"]
"""


def test_edgeprof_run_stores_the_stacks(pyspy: str, engine: str, tmp_path: Path) -> None:
    spec = tmp_path / "code.yaml"
    spec.write_text(SPEC.format(image=PYTHON, data=DATA))
    db = tmp_path / "run.db"
    edgeprof("run", str(spec), db=db, check=0)
    store = open_store(f"sqlite:///{db}", readonly=True)
    [t] = store.targets(store.resolve_run("latest").id)
    assert t.config["code"] == {"python": True, "native": False, "rate": 100, "idle": False}
    rows = store.code_samples(t.id)
    assert len({r.pid for r in rows}) == 2, "the parent and its multiprocessing child"
    c: Counter[str] = Counter()
    for r in rows:
        c[r.stack[-1].function] += r.count
    hot, cold = c["hot"], c["cold"]
    assert hot > cold > 0
    assert t.started_ns is not None and min(r.t_ns for r in rows) >= t.started_ns - 1e9
    store.close()


KILLED = """\
name: killed
image: {image}
run:
  volumes: ["{data}:/codeprof:ro"]
profiling:
  code: {{python: true, native: true, rate: 50}}
  targets:
    - name: {name}
      args: ["python3", "/codeprof/hot_cold.py", "120"]
"""


def _children(pid: int) -> dict[int, tuple[str, list[str]]]:
    """The processes whose parent is ``pid``: their command name and argv."""
    out: dict[int, tuple[str, list[str]]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = [a.decode() for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if int(stat[stat.rindex(b")") + 2 :].split()[1]) == pid:
            out[int(d)] = (stat[stat.index(b"(") + 1 : stat.rindex(b")")].decode(), argv)
    return out


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 :].split()[0] not in (b"Z", b"X")


def test_a_killed_edgeprof_leaves_no_profiler_behind(
    pyspy: str, engine: str, tmp_path: Path
) -> None:
    perf = find_perf()
    if perf is None or paranoid_reason() is not None:
        pytest.skip("perf cannot sample other processes here")
    name = f"killed-{secrets.token_hex(3)}"
    spec = tmp_path / "killed.yaml"
    spec.write_text(KILLED.format(image=PYTHON, data=DATA, name=name))
    p = subprocess.Popen(
        [*EDGEPROF, "run", str(spec), "--db", f"sqlite:///{tmp_path / 'k.db'}", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        perfs: dict[int, tuple[str, list[str]]] = {}
        spies: dict[int, tuple[str, list[str]]] = {}
        deadline = time.monotonic() + 90
        while not (perfs and spies) and time.monotonic() < deadline:
            kids = _children(p.pid)
            perfs = {k: v for k, v in kids.items() if v[0] == "perf"}
            spies = {k: v for k, v in kids.items() if v[0] in ("py-spy", "nsenter")}
            time.sleep(0.2)
        assert perfs and spies, f"no perf and py-spy under edgeprof: {_children(p.pid)}"
        [(perf_pid, (_, argv))] = perfs.items()
        data = Path(argv[argv.index("-o") + 1])
        for k in list(spies):  # py-spy under nsenter: a grandchild (it ends with its window)
            spies.update(_children(k))
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    deadline = time.monotonic() + 5
    while any(map(_running, [perf_pid, *spies])) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in [perf_pid, *spies] if _running(pid)]
    for pid in left:  # do not leave it running for the next tests
        os.kill(pid, signal.SIGKILL)
    assert not left, "perf or py-spy outlived edgeprof"
    assert data.parent.parent.name.startswith(name)  # in the target's folder
    assert data.parent.parent.parent.name.startswith("edgeprof-run")
    deadline = time.monotonic() + 20  # the reaper removes the run's folder, perf.data too
    while data.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not data.parent.exists()
    deadline = time.monotonic() + 20
    while docker("ps", "-aq", "--filter", f"label=edgeprof.target={name}").strip():
        assert time.monotonic() < deadline, "the reaper did not remove the container"
        time.sleep(0.5)


def test_ctrl_c_starts_no_new_py_spy_window(pyspy: str, engine: str, tmp_path: Path) -> None:
    name = f"ctrlc-{secrets.token_hex(3)}"
    spec = tmp_path / "ctrlc.yaml"
    spec.write_text(KILLED.format(image=PYTHON, data=DATA, name=name).replace(", native: true", ""))
    db = tmp_path / "c.db"
    p = subprocess.Popen(
        [*EDGEPROF, "run", str(spec), "--db", f"sqlite:///{db}", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own group: the test is the terminal
    )
    try:
        deadline = time.monotonic() + 90
        spies: set[int] = set()
        while not spies and time.monotonic() < deadline:
            spies = {k for k, v in _children(p.pid).items() if v[0] in ("py-spy", "nsenter")}
            time.sleep(0.1)
        assert spies, "py-spy never started"
        time.sleep(2.5)  # some windows
        kids = _children(p.pid)
        before = set(kids)
        for k, v in kids.items():  # py-spy is in a session of its own: the Ctrl-C misses it
            if v[0] in ("py-spy", "nsenter"):
                assert os.getsid(k) != os.getsid(p.pid)
        os.killpg(p.pid, signal.SIGINT)  # Ctrl-C at a terminal: the foreground group
        later: set[int] = set()
        while p.poll() is None and time.monotonic() < deadline:
            later |= {
                k
                for k, v in _children(p.pid).items()
                if v[0] in ("py-spy", "nsenter") and k not in before
            }
            time.sleep(0.02)
        assert p.wait(60) == 130
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert later == set(), "a py-spy window started after Ctrl-C"
    store = open_store(f"sqlite:///{db}", readonly=True)
    [t] = store.targets(store.resolve_run("latest").id)
    assert t.status == "interrupted" and sum(r.count for r in store.code_samples(t.id)) > 100
    store.close()
