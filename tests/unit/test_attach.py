"""``attach`` on the scripted engine (no Docker): restarts followed, removals ended, exits
in the first tick recorded, ``--all`` picking up new containers, label filters, Ctrl-C —
and never a stop or remove of a container attach did not start."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeprof.analyze.summary import summarize
from edgeprof.attach import AttachHooks, attach_profile, parse_duration, parse_labels
from edgeprof.cli.main import main as cli_main
from edgeprof.engine.fake import FakeEngine, Script
from edgeprof.errors import UserError
from edgeprof.hostinfo import HostCaps
from edgeprof.model import Event, MetricSpec, Sample
from edgeprof.sinks import MemberInfo
from edgeprof.store import open_store


def _attach(tmp: Path, engine: FakeEngine, *refs: str, **kw: Any) -> Any:
    store = open_store(f"sqlite:///{tmp}/a.db")
    kw.setdefault("interval_s", 0.05)
    kw.setdefault("restart_wait_s", 0.3)
    try:
        return attach_profile(engine, store, list(refs), caps=HostCaps(ncpu=2), reaper=False, **kw)
    finally:
        store.close()


def _summary(tmp: Path, run: str = "latest") -> Any:
    store = open_store(f"sqlite:///{tmp}/a.db", readonly=True)
    try:
        return summarize(store, run)
    finally:
        store.close()


def _kinds(t: Any) -> list[str]:
    return [e.kind for e in t.events]


def _later(*steps: tuple[float, Callable[[], Any]]) -> threading.Thread:
    """Do each step ``s`` seconds after the previous one, in the background."""

    def go() -> None:
        for delay, fn in steps:
            time.sleep(delay)
            fn()

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def _untouched(engine: FakeEngine) -> None:
    assert not [c for c in engine.calls if c.startswith(("stop", "remove"))]


def test_two_containers_restart_and_removal(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.run_detached("web", Script(run_s=1.5, cpu_per_s=0.5), cpus=0.5)
    engine.run_detached("db", Script(run_s=None, cpu_per_s=0.25), image="fake:db")
    bg = _later((0.5, lambda: engine.restart("db")), (0.6, lambda: engine.remove_container("db")))
    res = _attach(tmp_path, engine, "web", "db")
    bg.join()
    _untouched(engine)
    assert res.status == "completed" and res.ended_by == "exited"
    got = {t.name: (t.status, t.exit_code, t.restarts, t.removed) for t in res.targets}
    assert got == {"web": ("exited", 0, 0, False), "db": ("failed", 137, 1, True)}
    s = _summary(tmp_path)
    assert s.run.spec_name == "attach"
    assert s.run.image == "fake:latest, fake:db"
    web, db = s.target("web"), s.target("db")
    # the fake stats stream's CPU counter grows at exactly cpu_per_s
    assert web.gauge("cpu.percent").mean == pytest.approx(50, abs=1)
    assert db.gauge("cpu.percent").mean == pytest.approx(25, abs=1)
    assert web.config["container_name"] == "web" and web.config["image"] == "fake:latest"
    assert web.config["limits"] == {"cpus": 0.5}
    assert _kinds(db).count("container_restarted") == 1
    assert "container_removed" in _kinds(db)
    assert _kinds(db).index("container_removed") > _kinds(db).index("container_restarted")
    # app metrics cannot reach a container edgeprof did not start: said once per container
    for t in (web, db):
        app = [e for e in t.events if e.kind == "collector_unavailable" and "app" in e.message]
        assert len(app) == 1


def test_restart_policy_followed_until_the_last_exit(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.run_detached("flaky", Script(run_s=0.3, exit_code=1, restarts=2))
    res = _attach(tmp_path, engine, "flaky")
    _untouched(engine)
    (t,) = res.targets
    assert (t.restarts, t.status, t.exit_code) == (2, "failed", 1)
    kinds = _kinds(_summary(tmp_path).target("flaky"))
    assert kinds.count("container_restarted") == 2
    assert kinds.count("exited") == 3


def test_exit_in_the_first_tick_is_recorded(tmp_path: Path) -> None:
    engine = FakeEngine()
    # alive when attach looks it up (a loaded machine is slow), gone within the first tick
    engine.run_detached("blink", Script(run_s=0.5, exit_code=0))
    res = _attach(tmp_path, engine, "blink", interval_s=1.0)
    assert res.status == "completed"
    (t,) = res.targets
    assert (t.status, t.exit_code) == ("exited", 0)
    assert "exited" in _kinds(_summary(tmp_path).target("blink"))


def test_gone_before_the_first_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = FakeEngine()
    cid = engine.run_detached("gone", Script(run_s=None))
    real = engine.handle_of

    def exited_meanwhile(info: Any) -> Any:
        engine.kill(cid, 0)
        return real(engine.inspect(cid) or info)

    monkeypatch.setattr(engine, "handle_of", exited_meanwhile)
    res = _attach(tmp_path, engine, "gone")
    assert [(t.status, t.exit_code) for t in res.targets] == [("exited", 0)]
    assert "exited_before_sampling" in _kinds(_summary(tmp_path).target("gone"))


def test_all_picks_up_new_containers_and_filters(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.run_detached("a1", Script(run_s=None), labels={"team": "a"})
    engine.run_detached("b1", Script(run_s=None), labels={"team": "b"})
    bg = _later(
        (0.3, lambda: engine.run_detached("a2", Script(run_s=None), labels={"team": "a"})),
        (0.0, lambda: engine.run_detached("b2", Script(run_s=None), labels={"team": "b"})),
    )
    res = _attach(tmp_path, engine, all_running=True, label_filters={"team": "a"}, duration_s=1.2)
    bg.join()
    _untouched(engine)
    assert res.ended_by == "duration"
    assert sorted(t.name for t in res.targets) == ["a1", "a2"]
    assert {t.status for t in res.targets} == {"detached"}
    s = _summary(tmp_path)
    assert s.target("a2").gauge("cpu.percent") is not None
    assert "detached" in _kinds(s.target("a1"))
    # every running container without a filter
    res = _attach(tmp_path, engine, all_running=True, duration_s=0.3)
    assert sorted(t.name for t in res.targets) == ["a1", "a2", "b1", "b2"]


def test_ctrl_c_stores_everything_and_leaves_the_containers(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.run_detached("svc", Script(run_s=None))

    class CtrlC(AttachHooks):
        def tick(self, elapsed_s: float) -> None:
            if elapsed_s > 0.6:
                raise KeyboardInterrupt

    # hooks' errors are contained; Ctrl-C is not (it is a BaseException)
    with pytest.raises(KeyboardInterrupt):
        _attach(tmp_path, engine, "svc", hooks=CtrlC())
    _untouched(engine)
    assert engine.running() == ["svc"]
    s = _summary(tmp_path)
    assert s.run.status == "interrupted"
    t = s.target("svc")
    assert t.status == "detached"
    assert t.gauge("cpu.percent") is not None


class _Members:
    """A sink that records which containers it was told about."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.samples = 0

    def describe(self, specs: list[MetricSpec]) -> None:
        return None

    def write(self, batch: list[Sample]) -> None:
        self.samples += len(batch)

    def event(self, ev: Event) -> None:
        return None

    def member_started(self, info: MemberInfo) -> None:
        assert info.role == "attached"
        self.log.append(f"+{info.target}")

    def member_ended(self, target: str) -> None:
        self.log.append(f"-{target}")


def test_sinks_learn_of_every_container(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.run_detached("x", Script(run_s=None))
    sink = _Members()
    bg = _later((0.3, lambda: engine.restart("x")), (0.4, lambda: engine.kill("x", 0)))
    _attach(tmp_path, engine, "x", sinks=[sink])
    bg.join()
    assert sink.log == ["+x", "-x", "+x", "-x"]
    assert sink.samples > 0


def test_bad_references_are_one_sentence(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.run_detached("up", Script(run_s=None))
    engine.run_detached("down", Script(run_s=None))
    engine.kill("down", 0)
    with pytest.raises(UserError, match="no container named or with id 'nope'"):
        _attach(tmp_path, engine, "up", "nope")
    with pytest.raises(UserError, match="container 'down' is not running"):
        _attach(tmp_path, engine, "down")
    with pytest.raises(UserError, match="not both"):
        _attach(tmp_path, engine, "up", all_running=True)
    with pytest.raises(UserError, match="name at least one"):
        _attach(tmp_path, engine)
    with pytest.raises(UserError, match="unknown metric group 'gpus'"):
        _attach(tmp_path, engine, "up", metrics=["gpus"])
    # nothing was stored for a refused attach
    assert (
        not (tmp_path / "a.db").exists()
        or open_store(f"sqlite:///{tmp_path}/a.db", readonly=True).list_runs() == []
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("1.5m", 90), (" 3 s", 3)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5", "10x", "m", "1h30m", "ten"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UserError, match="90, 90s, 10m, 2h"):
        parse_duration(text)


def test_labels() -> None:
    assert parse_labels(["a=1", "b", "c=x=y"]) == {"a": "1", "b": "", "c": "x=y"}
    with pytest.raises(UserError, match="has no key"):
        parse_labels(["=1"])


def test_cli_bad_duration_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli_main(["attach", "web", "--duration", "10y"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeprof: error: --duration '10y' is not a duration")
    assert len(err.strip().splitlines()) == 1


def test_a_label_without_value_takes_containers_already_running(tmp_path: Path) -> None:
    """``--label team`` means any value: it must find the running ones, not only new ones."""
    engine = FakeEngine()
    engine.run_detached("a1", Script(run_s=None), labels={"team": "a"})
    engine.run_detached("b1", Script(run_s=None), labels={"team": "b"})
    engine.run_detached("x1", Script(run_s=None), labels={"other": "1"})
    res = _attach(tmp_path, engine, label_filters={"team": ""}, duration_s=0.4)
    assert sorted(t.name for t in res.targets) == ["a1", "b1"]
    _untouched(engine)


def test_a_restarted_container_does_not_keep_its_old_exit_code(tmp_path: Path) -> None:
    engine = FakeEngine()
    cid = engine.run_detached("phoenix", Script(run_s=None))
    _later((0.3, lambda: engine.restart(cid)))
    res = _attach(tmp_path, engine, "phoenix", duration_s=1.2)
    (t,) = res.targets
    assert t.restarts == 1
    assert (t.status, t.exit_code) == ("detached", None)
