"""The batch writer across a lost database connection: rollback of its state, retry,
bounded buffering with exact drop counts, an unanswered commit, deferred direct writes and
the spool (a SQLite store behind a wrapper that loses its "connection" on demand)."""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeprof.errors import StoreError, StoreUnavailable
from edgeprof.model import Event, Sample, labels_of
from edgeprof.store import chunks, open_store, writer
from edgeprof.store.base import RunInfo, TargetInfo
from edgeprof.store.resilient import ResilientStore
from edgeprof.store.writer import BatchWriter

_WRITES = frozenset(
    {
        "series_id",
        "add_timeblock",
        "write_chunks",
        "write_open_block",
        "supersede_open",
        "drop_open_blocks",
        "write_events",
        "add_code_samples",
        "begin_target",
        "update_target",
        "add_log",
        "add_event",
        "end_run",
    }
)


class Flaky:
    """A SQLite store whose writes fail like a lost PostgreSQL connection: at the Nth
    statement (``fail_at``), or at a commit whose answer is lost (``commit_mode``)."""

    can_lose_connection = True

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.url = inner.url
        self.count = 0
        self.fail_at: int | None = None
        self.down = False
        self.stay_down = 0  # reconnects that fail before one succeeds
        self.reconnects = 0
        self.commit_mode: str | None = None  # "committed" | "aborted": the answer is lost
        self.xids: dict[int, bool] = {}

    def _tick(self) -> None:
        if self.down:
            raise StoreUnavailable("the connection is closed")
        self.count += 1
        if self.fail_at is not None and self.count >= self.fail_at:
            self.fail_at = None
            self.down = True
            raise StoreUnavailable("server closed the connection unexpectedly")

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in _WRITES:
            return attr

        def call(*a: Any, **kw: Any) -> Any:
            self._tick()
            return attr(*a, **kw)

        return call

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self.down:
            raise StoreUnavailable("the connection is closed")
        with self.inner.transaction():
            yield
            mode, self.commit_mode = self.commit_mode, None
            if mode is not None:
                xid = len(self.xids) + 100
                self.xids[xid] = mode == "committed"
                if mode == "committed":
                    self.inner.conn.commit()
                self.down = True
                raise StoreUnavailable("lost during COMMIT", xid)

    def reconnect(self) -> None:
        self.reconnects += 1
        if self.stay_down > 0:
            self.stay_down -= 1
            raise StoreUnavailable("connection refused")
        self.down = False

    def committed(self, xid: int) -> bool:
        if self.down:
            raise StoreUnavailable("the connection is closed")
        return self.xids[xid]


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "BACKOFF_S", (0.01, 0.04))
    monkeypatch.setattr(chunks, "CHUNK_SAMPLES", 8)  # final chunks (and supersedes) often


def _open(tmp_path: Path) -> tuple[Any, Flaky, int, list[int]]:
    inner = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    run_id = inner.begin_run(RunInfo("s", "img", 0, 0.1))
    tids = [inner.begin_target(TargetInfo(run_id, i, f"t{i}", [])) for i in range(2)]
    return inner, Flaky(inner), run_id, tids


def _batch(k: int, n_series: int = 3) -> list[Sample]:
    """Tick k: one sample per series; its value is unique (k * 10 + series)."""
    return [
        Sample("m", labels_of(target=f"t{s % 2}", s=str(s)), 1_000_000 * (k + 1), float(k * 10 + s))
        for s in range(n_series)
    ]


def _stored(store: Any, run_id: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    arrays = store.series_arrays(run_id)
    for s in store.series(run_id):
        t, v = arrays[s.id]
        key = dict(s.labels)["s"]
        assert key not in out, "a series registered twice"
        out[key] = [float(x) for x in v]
    return out


def _wait_up(w: BatchWriter, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while w._outage is not None and time.monotonic() < end:
        time.sleep(0.01)
    assert w._outage is None, "the writer did not reconnect"


@pytest.mark.parametrize("fail_at", range(1, 40, 3))
def test_lost_at_any_statement_loses_and_repeats_nothing(tmp_path: Path, fail_at: int) -> None:
    inner, store, run_id, tids = _open(tmp_path)
    w = BatchWriter(store, run_id, flush_s=60)
    w.add_target("t0", tids[0])
    w.add_target("t1", tids[1])
    sent = 0
    for k in range(30):
        if k == 5:
            store.count, store.fail_at = 0, fail_at
        if k == 12:
            w.end_target(tids[1])  # finalizes t1's series, in whichever flush it falls
        batch = [x for x in _batch(k) if not (k >= 12 and x[1][1][1] == "t1")]
        sent += len(batch)
        w.write(batch)
        w.flush()
        if w._outage is not None:
            _wait_up(w)
    w.close()
    got = _stored(inner, run_id)
    want: dict[str, list[float]] = {}
    for k in range(30):
        for _, labels, _, v in _batch(k):
            if k >= 12 and dict(labels)["target"] == "t1":
                continue
            want.setdefault(dict(labels)["s"], []).append(v)
    assert got == want
    assert inner.sample_count(run_id) == sent
    assert w.written() == sent
    assert w.outages == 1


def test_a_series_registered_in_a_failed_flush_is_registered_again(tmp_path: Path) -> None:
    """The writer finds series through a memo by labels: a flush that registered a series
    and then lost its connection must not leave the memo pointing at the rolled-back id."""
    inner, store, run_id, tids = _open(tmp_path)
    w = BatchWriter(store, run_id, flush_s=60)
    w.add_target("t0", tids[0])
    w.write(_batch(0, 1))
    w.flush()
    new = labels_of(target="t0", s="9")
    store.count, store.fail_at = 0, 2  # the new series' row is written, the block is not
    w.write([Sample("m", new, 5_000_000, 1.0)])
    w.flush()
    _wait_up(w)
    w.write([Sample("m", new, 6_000_000, 2.0)])
    w.flush()
    w.close()
    assert _stored(inner, run_id) == {"0": [0.0], "9": [1.0, 2.0]}


def test_undo_restores_state_when_the_flush_that_finalized_fails(tmp_path: Path) -> None:
    inner, store, run_id, tids = _open(tmp_path)
    w = BatchWriter(store, run_id, flush_s=60)
    w.add_target("t0", tids[0])
    w.add_target("t1", tids[1])
    for k in range(5):
        w.write(_batch(k))
        w.flush()
    before = {
        key: (list(b.t), list(b.v), b.written, list(b.blocks), b.hint)
        for key, b in w._series.items()
    }
    live, written = dict(w._live), dict(w._written)
    # the next flush finalizes (8 samples per chunk) and supersedes, then its commit fails
    store.stay_down = 1_000_000
    store.commit_mode = "aborted"
    w.write(_batch(5))
    w.write(_batch(6))
    w.write(_batch(7))
    w.flush()
    deadline = time.monotonic() + 5
    while w._outage is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w._outage is not None and w._outage.undo is not None
    w._outage.undo.restore(w)  # what the retry does once the store says "aborted"
    after = {
        key: (list(b.t), list(b.v), b.written, list(b.blocks), b.hint)
        for key, b in w._series.items()
    }
    assert after == before
    assert w._live == live and w._written == written
    store.stay_down = 0  # the writer restores again (idempotent) and writes the batches
    _wait_up(w)
    w.close()
    assert inner.sample_count(run_id) == 8 * 3


@pytest.mark.parametrize("mode", ["committed", "aborted"])
def test_commit_without_answer_is_written_exactly_once(tmp_path: Path, mode: str) -> None:
    inner, store, run_id, tids = _open(tmp_path)
    w = BatchWriter(store, run_id, flush_s=60)
    w.add_target("t0", tids[0])
    w.add_target("t1", tids[1])
    for k in range(20):
        if k == 6:
            store.commit_mode = mode
            store.stay_down = 3
        w.write(_batch(k))
        w.event(Event(k, "note", f"n{k}", None, {}))
        w.flush()
        if w._outage is not None:
            _wait_up(w)
    w.close()
    assert inner.sample_count(run_id) == 20 * 3
    events = inner.events(run_id)
    assert [e.message for e in events if "unreachable_s" not in e.data] == [
        f"n{k}" for k in range(20)
    ]
    assert len([e for e in events if "unreachable_s" in e.data]) == 1  # "back after x s"
    assert _stored(inner, run_id)["0"] == [float(k * 10) for k in range(20)]


def test_bound_drops_oldest_batches_with_exact_counts(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("EDGEPROF_PG_BUFFER_SAMPLES", "30")
    inner, store, run_id, tids = _open(tmp_path)
    warned: list[str] = []
    w = BatchWriter(store, run_id, flush_s=60, warn=warned.append)
    w.add_target("t0", tids[0])
    w.add_target("t1", tids[1])
    w.write(_batch(0))
    w.flush()
    store.down = True  # lost from here on; reconnects fail until stay_down is 0
    store.stay_down = 1_000_000
    w.write(_batch(1))
    w.flush()  # fails: the outage begins
    for k in range(2, 41):  # 40 batches of 3 wait; the bound keeps the newest 10
        w.write(_batch(k))
        w.event(Event(k, "note", f"n{k}", None, {}))
        w.flush()
    store.stay_down = 0
    _wait_up(w)
    w.close()
    assert w.dropped == 30 * 3
    # the span as clock times (ticks 1 and 30: 2 ms and 31 ms after the epoch)
    assert warned == [
        f"90 samples were dropped while the database at {inner.url} was unreachable (more"
        " than 30 waited; taken from 1970-01-01 00:00:00.002 to 1970-01-01 00:00:00.031 UTC;"
        " EDGEPROF_PG_BUFFER_SAMPLES keeps more)"
    ]
    assert w.dropped_span == (1_000_000 * 2, 1_000_000 * 31)  # ticks 1..30
    got = _stored(inner, run_id)
    assert got["0"] == [0.0] + [float(k * 10) for k in range(31, 41)]
    ev = [e for e in inner.events(run_id) if e.kind == "samples_dropped"]
    assert len(ev) == 1
    assert ev[0].data == {"count": 90, "from_ns": 2_000_000, "to_ns": 31_000_000, "bound": 30}
    notes = [e for e in inner.events(run_id) if e.kind == "note"]
    assert [e.message for e in notes if not e.data] == [f"n{k}" for k in range(2, 41)]
    assert [e.data["tries"] for e in notes if e.data] == [t for _, t in w.outage_log]


def test_deferred_direct_writes_and_provisional_target(tmp_path: Path) -> None:
    inner, flaky, run_id, tids = _open(tmp_path)
    store = ResilientStore(flaky)
    store._run_id = run_id
    w = BatchWriter(store, run_id, flush_s=60)
    w.add_target("t0", tids[0])
    w.write(_batch(0, 1))
    w.flush()
    flaky.down = True
    flaky.stay_down = 2
    new = store.begin_target(TargetInfo(run_id, 7, "late", ["x"]))
    assert new < 0  # provisional
    store.update_target(new, status="running", container_id="c7")
    store.add_log(new, "stdout", "hello")
    store.add_event(run_id, new, Event(5, "note", "direct", "late", {}))
    w.add_target("late", new)
    w.write([Sample("m", labels_of(target="late", s="L"), 2_000_000, 1.5)])
    w.flush()
    _wait_up(w)
    w.close()
    rows = {t.name: t for t in inner.targets(run_id)}
    real = rows["late"].id
    assert rows["late"].status == "running" and rows["late"].container_id == "c7"
    assert inner.logs(real) == {"stdout": "hello"}
    assert [e.target_id for e in inner.events(run_id) if e.message == "direct"] == [real]
    series = [s for s in inner.series(run_id) if dict(s.labels).get("s") == "L"]
    assert [s.target_id for s in series] == [real]
    assert not store.down and not store.has_deferred()


def test_spool_when_the_database_never_returns(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("EDGEPROF_PG_FINAL_RETRY_S", "0.2")
    monkeypatch.setenv("EDGEPROF_SPOOL_DIR", str(tmp_path))
    inner = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    flaky = Flaky(inner)
    store = ResilientStore(flaky, warn=lambda m: warned.append(m))
    warned: list[str] = []
    info = RunInfo("s", "img", 0, 0.1, meta={"tags": {"build": "1"}})
    run_id = store.begin_run(info)
    tids = [store.begin_target(TargetInfo(run_id, i, f"t{i}", [], {"c": i})) for i in range(2)]
    w = BatchWriter(store, run_id, flush_s=60)
    w.add_target("t0", tids[0])
    w.add_target("t1", tids[1])
    for k in range(4):
        w.write(_batch(k))
        w.flush()
    flaky.down = True
    flaky.stay_down = 1_000_000
    for k in range(4, 10):
        w.write(_batch(k))
        w.event(Event(k, "note", f"n{k}", "t0", {}))
    w.code("t1", [])
    w.close()  # final retries fail: handed to the store
    store.update_target(tids[0], status="exited", exit_code=0)
    store.add_log(tids[1], "stderr", "bye")
    store.end_run(run_id, "completed", 99)
    assert store.spool_path is not None
    assert len(warned) == 1 and "edgeprof import" in warned[0] and store.spool_path in warned[0]
    assert inner.sample_count(run_id) == 4 * 3
    sp = open_store(f"sqlite:///{store.spool_path}", readonly=True)
    rec = sp.resolve_run("latest")
    assert rec.uuid == info.uuid and rec.status == "completed" and rec.ended_ns == 99
    assert rec.meta["tags"] == {"build": "1"} and rec.meta["spool"]["of_url"] == inner.url
    targets = {t.name: t for t in sp.targets(rec.id)}
    assert [(t.idx, t.config) for t in sp.targets(rec.id)] == [(0, {"c": 0}), (1, {"c": 1})]
    assert targets["t0"].status == "exited" and targets["t0"].exit_code == 0
    assert sp.logs(targets["t1"].id) == {"stderr": "bye"}
    assert sp.sample_count(rec.id) == 6 * 3
    got = _stored(sp, rec.id)
    assert got["0"] == [float(k * 10) for k in range(4, 10)]
    assert [e.message for e in sp.events(rec.id)] == [f"n{k}" for k in range(4, 10)]
    assert {s.target_id for s in sp.series(rec.id)} == {targets["t0"].id, targets["t1"].id}
    sp.close()
    with sqlite3.connect(store.spool_path) as c:
        assert c.execute("SELECT version FROM schema_version").fetchone()[0] == 6


def test_backoff_doubles_and_the_writer_does_not_spin(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(writer, "BACKOFF_S", (0.5, 30.0))  # the real schedule
    inner, store, run_id, tids = _open(tmp_path)
    w = BatchWriter(store, run_id, flush_s=0.5)
    w.add_target("t0", tids[0])
    store.down = True
    store.stay_down = 1_000_000
    w.write(_batch(0))
    w.flush()
    cpu0, t0 = time.process_time(), time.monotonic()
    k = 1
    while time.monotonic() - t0 < 3.2:
        w.write(_batch(k))  # new data keeps arriving meanwhile
        k += 1
        time.sleep(0.1)
    cpu = time.process_time() - cpu0
    # waits of 0.25-0.5, 0.5-1, 1-2 s (jittered doubling): 2 to 4 tries in 3.2 s
    assert 2 <= store.reconnects <= 4, store.reconnects
    assert w._outage is not None and w._outage.delay == min(0.5 * 2**store.reconnects, 30.0)
    assert cpu < 0.5, f"{cpu:.2f} s of CPU in 3.2 s of outage"
    store.stay_down = 0
    end = time.monotonic() + 10
    while w._outage is not None and time.monotonic() < end:
        time.sleep(0.05)
    w.close()
    assert inner.sample_count(run_id) == 3 * k and w.dropped == 0
    assert _stored(inner, run_id)["0"] == [float(i * 10) for i in range(k)]


def test_messages_mask_a_password_from_the_environment(monkeypatch: Any) -> None:
    from edgeprof.urls import redact_text

    monkeypatch.setenv("PGPASSWORD", "env-s3cret")
    msg = 'connection failed: FATAL: password "env-s3cret" rejected for postgresql://u:url-pw@h/d'
    out = redact_text(msg, "postgresql://u:url-pw@h/d")
    assert "env-s3cret" not in out and "url-pw" not in out
    assert out.count("***") == 2


def test_events_of_a_target_added_in_the_same_flush(tmp_path: Path) -> None:
    inner, store, run_id, tids = _open(tmp_path)
    w = BatchWriter(store, run_id, flush_s=60)
    w.add_target("t0", tids[0])
    w.event(Event(1, "note", "mine", "t0", {}))
    w.close()
    assert [e.target_id for e in inner.events(run_id)] == [tids[0]]


def _outage_to_the_end(tmp_path: Path, warned: list[str]) -> tuple[Any, ResilientStore, int]:
    """A run whose database goes away after its first batch and never comes back."""
    inner = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    flaky = Flaky(inner)
    store = ResilientStore(flaky, warn=warned.append)
    run_id = store.begin_run(RunInfo("s", "img", 0, 0.1))
    tid = store.begin_target(TargetInfo(run_id, 0, "t0", []))
    w = BatchWriter(store, run_id, flush_s=60, warn=warned.append)
    w.add_target("t0", tid)
    w.write(_batch(0, 1))
    w.flush()
    flaky.down = True
    flaky.stay_down = 1_000_000
    w.write(_batch(1, 1))
    w.write(_batch(2, 1))
    w.flush()
    w.close(timeout=0.2)  # shorter than the final retries: they are waited for all the same
    assert w.spooled and w.error is None
    store.end_run(run_id, "completed", 99)
    return inner, store, run_id


def test_close_waits_for_the_final_retries_and_says_so(tmp_path: Path, monkeypatch: Any) -> None:
    # EDGEPROF_PG_FINAL_RETRY_S longer than close()'s timeout (the runner's 120 s) made the
    # run an error ("still writing after ...") though the writer went on to spool
    monkeypatch.setenv("EDGEPROF_PG_FINAL_RETRY_S", "1")
    monkeypatch.setenv("EDGEPROF_SPOOL_DIR", str(tmp_path))
    warned: list[str] = []
    t0 = time.monotonic()
    inner, store, _ = _outage_to_the_end(tmp_path, warned)
    assert time.monotonic() - t0 >= 1.0
    assert "retrying for up to 1 s (EDGEPROF_PG_FINAL_RETRY_S)" in warned[0]
    assert "spool" in warned[0] and inner.url in warned[0]
    assert store.spool_path is not None
    sp = open_store(f"sqlite:///{store.spool_path}", readonly=True)
    assert sp.sample_count(sp.resolve_run("latest").id) == 2
    sp.close()


def test_pg_variables_checked_before_the_run_and_ignored_by_sqlite(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("EDGEPROF_PG_BUFFER_SAMPLES", "lots")
    inner = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    run_id = inner.begin_run(RunInfo("s", "img", 0, 0.1))
    w = BatchWriter(inner, run_id)  # a SQLite run: not its business
    w.write(_batch(0, 1))
    w.close()
    assert inner.sample_count(run_id) == 1
    with pytest.raises(StoreError, match="EDGEPROF_PG_BUFFER_SAMPLES='lots' is not a number"):
        ResilientStore(Flaky(inner))  # a PostgreSQL run: told before it begins


def test_spool_folder_created_or_else_the_temporary_folder(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("EDGEPROF_PG_FINAL_RETRY_S", "0.05")
    missing = tmp_path / "spools" / "new"
    monkeypatch.setenv("EDGEPROF_SPOOL_DIR", str(missing))
    (tmp_path / "a").mkdir()
    warned: list[str] = []
    _, store, _ = _outage_to_the_end(tmp_path / "a", warned)
    assert store.spool_path is not None and Path(store.spool_path).parent == missing
    # a folder that cannot be one (a file is there): the system's temporary folder
    blocked = tmp_path / "file"
    blocked.write_text("x")
    monkeypatch.setenv("EDGEPROF_SPOOL_DIR", str(blocked))
    fallback = tmp_path / "tmp"
    fallback.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(fallback))
    (tmp_path / "b").mkdir()
    warned = []
    _, store, _ = _outage_to_the_end(tmp_path / "b", warned)
    assert store.spool_path is not None and Path(store.spool_path).parent == fallback
    assert any("could not be written where asked" in m and str(blocked) in m for m in warned)
    sp = open_store(f"sqlite:///{store.spool_path}", readonly=True)
    assert sp.sample_count(sp.resolve_run("latest").id) == 2
    sp.close()


@pytest.mark.parametrize("mode", ["committed", "aborted"])
def test_run_end_whose_commit_lost_its_answer_is_not_written_twice(
    tmp_path: Path, monkeypatch: Any, mode: str
) -> None:
    # end_run's transaction (with the deferred log and event) committed, its answer lost,
    # and the first reconnect to ask failed: it was applied a second time
    monkeypatch.setenv("EDGEPROF_SPOOL_DIR", str(tmp_path))
    inner, flaky, run_id, tids = _open(tmp_path)
    store = ResilientStore(flaky)
    store._run_id = run_id
    # PostgreSQL's end_run is one statement (SQLite's space release would commit early)
    monkeypatch.setattr(inner, "release_free_space", lambda: None)
    flaky.down = True
    store.add_log(tids[0], "stdout", "once\n")
    store.add_event(run_id, tids[0], Event(5, "note", "once", "t0", {}))
    flaky.down = False
    flaky.commit_mode = mode
    real = flaky.reconnect
    calls: list[int] = []

    def reconnect() -> None:  # the second (the first after the lost answer) fails
        calls.append(1)
        if len(calls) == 2:
            raise StoreUnavailable("connection refused")
        real()

    monkeypatch.setattr(flaky, "reconnect", reconnect)
    store.end_run(run_id, "completed", 99)
    assert len(calls) >= 3
    assert store.spool_path is None and not store.has_deferred()
    assert inner._rows("SELECT stream, text FROM logs") == [{"stream": "stdout", "text": "once\n"}]
    assert [e.message for e in inner.events(run_id)] == ["once"]
    assert inner.resolve_run(run_id).status == "completed"
