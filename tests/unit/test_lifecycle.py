"""The run lifecycle, driven through a scripted engine (no Docker): timeouts, SIGKILL after
the grace, OOM, start failures, apps that exit at once, Ctrl-C at every step — and the
container is removed every time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgeprof.analyze.summary import summarize
from edgeprof.engine.fake import FakeEngine, Script
from edgeprof.errors import EngineError, StoreError
from edgeprof.hostinfo import HostCaps
from edgeprof.plan import TargetRun
from edgeprof.runner import RunSettings, run_profile
from edgeprof.spec import parse_spec
from edgeprof.store import open_store
from edgeprof.target import RunHooks, TargetResult

SPEC = """
name: life
image: fake:latest
profiling:
  interval: 0.05
  grace: 0.3
  metrics: [container, system]
  targets:
{targets}
"""


def _run(
    tmp: Path,
    targets: str,
    engine: FakeEngine,
    hooks: RunHooks | None = None,
    sinks: list[Any] | None = None,
) -> Any:
    loaded = parse_spec(SPEC.format(targets=targets), "life.yaml")
    store = open_store(f"sqlite:///{tmp}/life.db")
    try:
        res = run_profile(
            loaded,
            store,
            engine,
            RunSettings(reaper=False, sinks=sinks or []),
            hooks,
            caps=HostCaps(ncpu=2),
        )
    finally:
        store.close()
    return res


def _summary(tmp: Path) -> Any:
    store = open_store(f"sqlite:///{tmp}/life.db", readonly=True)
    try:
        return summarize(store, "latest")
    finally:
        store.close()


def _kinds(t: Any) -> list[str]:
    return [e.kind for e in t.events]


def test_every_ending_recorded_and_every_container_removed(tmp_path: Path) -> None:
    engine = FakeEngine(
        {
            "quick": Script(run_s=0.3, exit_code=0),
            "fails": Script(run_s=0.2, exit_code=3),
            "hang": Script(run_s=None),
            "stubborn": Script(run_s=None, ignores_sigterm=True),
            "oom": Script(run_s=0.2, oom=True),
            "nostart": Script(start_error="no such runtime: nvidia"),
            "instant": Script(exits_before_sampling=True, exit_code=0),
        }
    )
    res = _run(
        tmp_path,
        "    - {name: quick}\n    - {name: fails}\n    - {name: hang, timeout: 0.4}\n"
        "    - {name: stubborn, timeout: 0.4}\n    - {name: oom}\n    - {name: nostart}\n"
        "    - {name: instant}\n",
        engine,
    )
    assert engine.running() == []  # nothing left behind
    got = {t.name: (t.status, t.exit_code) for t in res.targets}
    assert got == {
        "quick": ("exited", 0),
        "fails": ("failed", 3),
        "hang": ("timed_out", 143),
        "stubborn": ("timed_out", 137),
        "oom": ("oom_killed", 137),
        "nostart": ("error", None),
        "instant": ("exited", 0),
    }
    assert [t.name for t in res.failed] == ["fails", "oom", "nostart"]
    s = _summary(tmp_path)
    assert s.run.status == "completed"
    assert "sigkill_after_grace" in _kinds(s.target("stubborn"))
    assert "sigkill_after_grace" not in _kinds(s.target("hang"))
    assert "no such runtime" in (s.target("nostart").error or "")
    assert "exited_before_sampling" in _kinds(s.target("instant"))
    quick = s.target("quick")
    assert quick.gauge("cpu.percent") is not None  # sampled through the engine's stats API
    assert {"target_started", "exited", "sampler_timing"} <= set(_kinds(quick))
    # the stubborn one got SIGTERM, then SIGKILL after the grace
    stubborn = next(
        c for c in engine.containers.values() if c.req.labels["edgeprof.target"] == "stubborn"
    )
    assert stubborn.signals == ["SIGTERM", "SIGKILL"]


class InterruptAt(RunHooks):
    """Ctrl-C (KeyboardInterrupt) at one step of the run."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.ticks = 0

    def target_started(self, tr: TargetRun, timeout: float) -> None:
        if self.step == "started" and tr.name == "b":
            raise KeyboardInterrupt

    def target_tick(self, tr: TargetRun, elapsed: float, latest: dict[str, float]) -> None:
        self.ticks += 1
        if self.step == "tick" and tr.name == "b" and self.ticks > 3:
            raise KeyboardInterrupt

    def target_ended(self, tr: TargetRun, result: TargetResult) -> None:
        if self.step == "ended" and tr.name == "a":
            raise KeyboardInterrupt


@pytest.mark.parametrize("step", ["started", "create", "tick", "ended"])
def test_ctrl_c_at_each_step_stores_and_removes(tmp_path: Path, step: str) -> None:
    engine = FakeEngine({"a": Script(run_s=0.2), "b": Script(run_s=None), "c": Script(run_s=0.1)})
    if step == "create":

        def on_start(req: Any) -> None:
            if req.labels["edgeprof.target"] == "b":
                raise KeyboardInterrupt

        engine.on_start = on_start
    with pytest.raises(KeyboardInterrupt):
        _run(
            tmp_path,
            "    - {name: a}\n    - {name: b}\n    - {name: c}\n",
            engine,
            InterruptAt(step),
        )
    assert engine.running() == []
    s = _summary(tmp_path)
    assert s.run.status == "interrupted"
    assert [t.name for t in s.targets] == ["a", "b", "c"]  # every planned target is listed
    assert s.target("c").status == "not_run"
    assert s.target("a").status == "exited"
    if step != "ended":
        assert s.target("b").status == "interrupted"


class Flaky(FakeEngine):
    """The engine fails in cleanup: logs cannot be read."""

    def logs(self, handle: Any) -> tuple[str, str]:
        raise EngineError("the engine hung up while reading logs")


def test_cleanup_removes_the_container_even_when_a_step_fails(tmp_path: Path) -> None:
    engine = Flaky({"a": Script(run_s=0.1), "b": Script(run_s=0.1)})
    res = _run(tmp_path, "    - {name: a}\n    - {name: b}\n", engine)
    assert engine.running() == []
    assert "remove" in engine.calls[-1]
    s = _summary(tmp_path)
    for name in ("a", "b"):  # logs were lost: the target is an error, and the run went on
        t = s.target(name)
        assert t.status == "error"
        assert "hung up while reading logs" in (t.error or "")
        assert "target_error" in _kinds(t)
    assert [t.name for t in res.failed] == ["a", "b"]


class Broken(FakeEngine):
    """An unexpected failure (a bug, an engine answer we did not foresee) in one target."""

    def exit_info(self, handle: Any) -> Any:
        if "-a-" in handle.name:
            raise RuntimeError("unexpected answer from the engine")
        return super().exit_info(handle)


def test_an_unexpected_failure_in_one_target_does_not_lose_the_others(tmp_path: Path) -> None:
    engine = Broken({"a": Script(run_s=0.2), "b": Script(run_s=0.2, exit_code=0)})
    res = _run(tmp_path, "    - {name: a}\n    - {name: b}\n", engine)
    assert engine.running() == []
    s = _summary(tmp_path)
    assert s.run.status == "completed"
    a = s.target("a")
    assert a.status == "error" and a.error == "RuntimeError: unexpected answer from the engine"
    (ev,) = [e for e in a.events if e.kind == "target_error"]
    assert "Traceback" in ev.data["traceback"]
    assert a.gauge("cpu.percent") is not None  # what was sampled before the failure is kept
    assert s.target("b").status == "exited"
    assert [t.name for t in res.failed] == ["a"]


def test_a_database_that_fails_mid_run_is_one_sentence_and_no_container_stays(
    tmp_path: Path,
) -> None:
    engine = FakeEngine({"a": Script(run_s=0.3)})
    loaded = parse_spec(SPEC.format(targets="    - {name: a}\n"), "life.yaml")
    store = open_store(f"sqlite:///{tmp_path}/gone.db")
    real_update = store.update_target

    def update(tid: int, **fields: Any) -> None:
        if fields.get("status") == "running":
            store.conn.close()  # as if the database went away under the run
        real_update(tid, **fields)

    store.update_target = update  # type: ignore[method-assign]
    with pytest.raises(StoreError, match="the database at .* failed"):
        run_profile(loaded, store, engine, RunSettings(reaper=False), caps=HostCaps(ncpu=2))
    assert engine.running() == []


# The `summary --json` keys of the release before the typed summary model (a contract).
RUN_KEYS = {
    "id",
    "spec_name",
    "image",
    "spec_path",
    "status",
    "started_ns",
    "ended_ns",
    "interval_s",
    "host",
    "edgeprof_version",
    "events",
}
TARGET_KEYS = {
    "name",
    "args",
    "status",
    "exit_code",
    "oom_killed",
    "timed_out",
    "duration_s",
    "error",
    "container_id",
    "config",
    "metrics",
    "events",
}
GAUGE_KEYS = ["mean", "min", "p50", "p95", "p99", "max", "count", "unit"]
COUNTER_KEYS = ["total", "last", "count", "unit", "kind"]
EVENT_KEYS = ["t_ns", "kind", "message", "data"]


def test_summary_json_keys_are_those_of_the_previous_release(tmp_path: Path) -> None:
    import json

    engine = FakeEngine({"a": Script(run_s=0.4)})
    _run(tmp_path, "    - {name: a}\n", engine)
    doc = json.loads(json.dumps(_summary(tmp_path).to_json()))
    assert set(doc) == {"run", "targets"}
    assert set(doc["run"]) == RUN_KEYS
    (t,) = doc["targets"]
    assert set(t) == TARGET_KEYS
    kinds = {"gauge": 0, "counter": 0}
    for m in t["metrics"].values():
        if "kind" in m:
            assert list(m) == COUNTER_KEYS and m["kind"] == "counter"
            kinds["counter"] += 1
        else:
            assert list(m) == GAUGE_KEYS
            kinds["gauge"] += 1
    assert kinds["gauge"] and kinds["counter"]
    for e in t["events"] + doc["run"]["events"]:
        assert list(e) == EVENT_KEYS


class RecordingSink:
    """An extra consumer, as a live view or an exporter is: sees samples and containers."""

    def __init__(self, fail_on_write: bool = False) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.samples = 0
        self.fail = fail_on_write

    def describe(self, specs: Any) -> None:
        return None

    def write(self, batch: Any) -> None:
        if self.fail:
            raise RuntimeError("display broke")
        self.samples += len(batch)

    def event(self, ev: Any) -> None:
        return None

    def member_started(self, info: Any) -> None:
        self.calls.append(("started", info))

    def member_ended(self, target: str) -> None:
        self.calls.append(("ended", target))


def test_extra_sinks_see_every_container_and_a_failing_one_never_stops_the_store(
    tmp_path: Path,
) -> None:
    engine = FakeEngine({"a": Script(run_s=0.3), "b": Script(run_s=0.3)})
    good, bad = RecordingSink(), RecordingSink(fail_on_write=True)
    _run(
        tmp_path,
        "    - {name: a, resources: {cpus: 0.5, memory: 64m}}\n    - {name: b}\n",
        engine,
        sinks=[good, bad],
    )
    assert [(k, v if k == "ended" else v.target) for k, v in good.calls] == [
        ("started", "a"),
        ("ended", "a"),
        ("started", "b"),
        ("ended", "b"),
    ]
    a = good.calls[0][1]
    assert (a.role, a.limits) == ("app", {"cpus": 0.5, "memory_bytes": 64 * 2**20})
    assert a.container_id in engine.containers and a.image
    s = _summary(tmp_path)
    stored = sum(t.samples for t in s.targets)
    assert good.samples > 0 and stored > 0
    notes = [e.message for e in s.target("a").events if e.kind == "note"]
    assert any("RecordingSink failed" in m and "display broke" in m for m in notes), notes
