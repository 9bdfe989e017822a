"""``edgeprof recommend``: the VPA and krr rules on stored runs whose series the test sets,
exact strings in every format, throttling, OOM kills, minimums, warnings and bad input."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeprof.analyze import recommend as R
from edgeprof.cli.main import main
from edgeprof.model import MetricSpec, Sample, labels_of
from edgeprof.store import BatchWriter, open_store
from edgeprof.store.base import RunInfo, TargetInfo

MiB = 1024 * 1024
T0 = 1_700_000_000_000_000_000
STEP = 1_000_000_000  # 1 s between samples


@dataclass
class T:
    """A target row and the series to store for it (one sample per second)."""

    name: str
    cpu_percent: list[float] = field(default_factory=list)
    throttled: list[float] | None = None
    memory: list[float] = field(default_factory=list)
    limit: float | None = None
    status: str = "exited"
    oom_killed: bool = False
    duration_s: float | None = None
    config: dict[str, Any] = field(default_factory=dict)


def make_run(path: Path, *targets: T, cpu_count: int = 8) -> str:
    """A stored run written through the store API, as the sampler writes one."""
    url = f"sqlite:///{path}"
    store = open_store(url)
    rid = store.begin_run(RunInfo("s", "img", T0, 1.0, host={"cpu_count": cpu_count}))
    for idx, t in enumerate(targets):
        tid = store.begin_target(TargetInfo(rid, idx, t.name, [], t.config))
        lab = labels_of(target=t.name)
        w = BatchWriter(store, rid, tid)
        w.describe(
            [
                MetricSpec("cpu.percent", "%"),
                MetricSpec("cpu.throttled_seconds_per_second", "s/s"),
                MetricSpec("memory.working_set_bytes", "B"),
                MetricSpec("memory.limit_bytes", "B"),
            ]
        )
        batch: list[Sample] = []
        for i, v in enumerate(t.cpu_percent):
            batch.append(Sample("cpu.percent", lab, T0 + i * STEP, v))
        for i, v in enumerate(t.throttled or []):
            batch.append(Sample("cpu.throttled_seconds_per_second", lab, T0 + i * STEP, v))
        for i, v in enumerate(t.memory):
            batch.append(Sample("memory.working_set_bytes", lab, T0 + i * STEP, v))
            if t.limit is not None:
                batch.append(Sample("memory.limit_bytes", lab, T0 + i * STEP, t.limit))
        w.write(batch)
        w.close()
        n = max(len(t.cpu_percent), len(t.memory))
        store.update_target(
            tid,
            status=t.status,
            exit_code=137 if t.oom_killed else 0,
            oom_killed=t.oom_killed,
            duration_s=t.duration_s if t.duration_s is not None else float(n),
        )
    store.end_run(rid, "completed", T0 + 1000 * STEP)
    store.close()
    return url


def rec_of(url: str, **kw: Any) -> R.RecommendResult:
    store = open_store(url, readonly=True)
    try:
        return R.recommend(store, "latest", **kw)
    finally:
        store.close()


def one(url: str, **kw: Any) -> R.Recommendation:
    (r,) = rec_of(url, **kw).recommendations
    return r


# -- a checker of Waggle's rules, written from edge-scheduler's tutorial_resources.md -----

_CPU = re.compile(r"^(\d+)(m?)$")
_MEM = re.compile(r"^(\d+)(Mi|Gi)$")


def pluginctl_quantities(s: str) -> dict[str, float]:
    """Parse and check a pluginctl --resource string: every limit has its request, limit ≥
    request, CPU in cores or millicores, memory in Mi or Gi. Returns key → cores or bytes."""
    assert s.startswith("--resource ") and " " not in s[len("--resource ") :], s
    out: dict[str, float] = {}
    for item in s[len("--resource ") :].split(","):
        key, _, val = item.partition("=")
        kind, _, res = key.partition(".")
        assert kind in ("request", "limit") and res in ("cpu", "memory"), item
        if res == "cpu":
            m = _CPU.match(val)
            assert m, item
            out[key] = int(m.group(1)) / (1000 if m.group(2) else 1)
        else:
            m = _MEM.match(val)
            assert m, item
            out[key] = int(m.group(1)) * (MiB if m.group(2) == "Mi" else 1024 * MiB)
    for res in ("cpu", "memory"):
        if f"limit.{res}" in out:
            assert f"request.{res}" in out, s
            assert out[f"limit.{res}"] >= out[f"request.{res}"], s
    return out


# -- the rules on known series -------------------------------------------------------------


@pytest.fixture()
def steady(tmp_path: Path) -> str:
    """0.5 cores and 300 MiB, constant, 120 samples over 120 s."""
    return make_run(tmp_path / "r.db", T("app", [50.0] * 120, [0.0] * 120, [300.0 * MiB] * 120))


def test_constant_half_core_vpa_every_format(steady: str) -> None:
    r = one(steady)
    # 0.5 × 1.15 = 0.575 cores; 300 MiB × 1.15 = 345 MiB; the peak is the same constant
    assert r.cpu_request is not None and r.cpu_request.text == "575m"
    assert r.cpu_limit is not None and r.cpu_limit.text == "575m"
    assert r.memory_request is not None and r.memory_request.text == "345Mi"
    assert r.memory_limit is not None and r.memory_limit.text == "345Mi"
    assert r.cpu_request.statistic == "p90" and r.cpu_request.measured == pytest.approx(0.5)
    assert r.cpu_request.samples == 120 and r.cpu_request.duration_s == 120.0
    assert r.cpu_request.factor == 1.15 and not r.cpu_request.minimum_applied
    assert r.warnings == [] and r.notes == []
    f = r.to_json()["formats"]
    assert f["pluginctl"] == (
        "--resource request.cpu=575m,limit.cpu=575m,request.memory=345Mi,limit.memory=345Mi"
    )
    assert f["k8s"] == (
        "resources:\n"
        "  requests:\n    cpu: 575m\n    memory: 345Mi\n"
        "  limits:\n    cpu: 575m\n    memory: 345Mi"
    )
    assert f["compose"] == (
        "deploy:\n  resources:\n"
        "    reservations:\n      cpus: '0.575'\n      memory: 345M\n"
        "    limits:\n      cpus: '0.575'\n      memory: 345M"
    )
    assert f["docker"] == "--cpus=0.575 --memory=345m"
    pluginctl_quantities(f["pluginctl"])


def test_rendered_output_keeps_the_evidence_as_comments(steady: str) -> None:
    r = one(steady)
    text = R.render(r, "k8s")
    assert text.splitlines()[0] == (
        "# app (app, 1 run, 120.0 s measured); rule vpa (Kubernetes VPA recommender), headroom 15 %"
    )
    assert "    cpu: 575m               # p90 of CPU demand (usage + throttled time) " in text
    assert "0.500 cores × 1.15; 120 samples over 120.0 s" in text
    assert "max working set 300.0 MiB × 1.15; 120 samples over 120.0 s" in text
    # YAML: dropping the comments leaves exactly the uncommented block
    bare = "\n".join(
        line.split("#")[0].rstrip() for line in text.splitlines() if not line.startswith("#")
    )
    assert bare == r.to_json()["formats"]["k8s"]
    p = R.render(r, "pluginctl")
    assert p.splitlines()[-1].startswith("--resource request.cpu=575m,")
    assert "# request.cpu 575m: p90 of CPU demand" in p


def test_ramp_percentiles_vpa_and_krr(tmp_path: Path) -> None:
    cpu = [float(i) for i in range(1, 101)]  # 0.01 … 1.00 cores
    url = make_run(tmp_path / "r.db", T("ramp", cpu, None, [100.0 * MiB] * 100))
    vpa = one(url)
    # p90 by linear interpolation: position 0.9 × 99 = 89.1 → 90.1 % → 0.901 cores
    assert vpa.cpu_request is not None and vpa.cpu_limit is not None
    assert vpa.cpu_request.measured == pytest.approx(0.901)
    assert vpa.cpu_request.text == "1037m"  # 0.901 × 1.15 = 1.03615, rounded up
    assert vpa.cpu_limit.text == "1150m"  # peak 1.00 × 1.15
    assert vpa.cpu_request.measured == pytest.approx(np.percentile(np.array(cpu) / 100, 90))
    krr = one(url, rule="krr")
    # p95: position 94.05 → 95.05 % → 951m, no CPU margin, no CPU limit
    assert krr.cpu_request is not None and krr.cpu_request.text == "951m"
    assert krr.cpu_request.factor == 1.0
    assert krr.cpu_limit is None
    assert krr.memory_request is not None and krr.memory_request.text == "250Mi"  # 115 → min
    f = krr.to_json()["formats"]
    assert f["pluginctl"] == "--resource request.cpu=951m,request.memory=250Mi,limit.memory=250Mi"
    assert f["docker"] == "--memory=250m"
    assert "krr sets no CPU limit" in " ".join(krr.notes)
    # no throttling series at all: no adjustment, and nothing claimed about it
    assert vpa.throttling is None
    assert "CPU usage 0.901 cores" in vpa.cpu_request.how


def test_headroom_changes_every_margin(tmp_path: Path) -> None:
    url = make_run(tmp_path / "r.db", T("app", [50.0] * 120, None, [400.0 * MiB] * 120))
    r0 = one(url, headroom=0.0)
    assert r0.cpu_request is not None and r0.cpu_request.text == "500m"
    assert r0.memory_request is not None and r0.memory_request.text == "400Mi"
    r30 = one(url, headroom=0.30)
    assert r30.cpu_request is not None and r30.cpu_request.text == "650m"
    assert r30.memory_request is not None and r30.memory_request.text == "520Mi"
    k = one(url, rule="krr", headroom=0.30)  # krr: memory buffer only
    assert k.cpu_request is not None and k.cpu_request.text == "500m"
    assert k.memory_request is not None and k.memory_request.text == "520Mi"


def test_throttled_usage_is_raised_by_the_throttled_time(tmp_path: Path) -> None:
    """A burner held at 0.5 cores: usage 0.5, throttled 0.5 s/s → demand 1 core."""
    url = make_run(
        tmp_path / "r.db",
        T(
            "burn",
            [50.0] * 120,
            [0.5] * 120,
            [20.0 * MiB] * 120,
            config={"resources": {"cpus": 0.5}},
        ),
    )
    r = one(url)
    assert r.cpu_request is not None and r.cpu_limit is not None
    assert r.cpu_request.measured == pytest.approx(1.0)
    assert r.cpu_request.text == "1150m" and r.cpu_limit.text == "1150m"
    assert r.throttling is not None
    assert r.throttling.mean_s_per_s == pytest.approx(0.5)
    assert r.throttling.usage_stat == pytest.approx(0.5)
    assert r.throttling.demand_stat == pytest.approx(1.0)
    assert r.throttling.cpu_limit == 0.5
    (note,) = r.notes
    assert note == (
        "CPU throttled 0.50 s per second on average (it ran with cpus: 0.5): its usage "
        "understates its need, so each sample counts usage + throttled time; the p90 rose "
        "from 0.500 cores (usage) to 1.000 cores (demand)"
    )
    # the same run unthrottled would have been 575m: the rule, not a guess, made the change
    plain = make_run(tmp_path / "p.db", T("burn", [50.0] * 120, [0.0] * 120, [1.0] * 120))
    assert one(plain).cpu_request.text == "575m"  # type: ignore[union-attr]


def test_demand_is_capped_at_the_host_cpus(tmp_path: Path) -> None:
    url = make_run(tmp_path / "r.db", T("x", [150.0] * 120, [1.5] * 120, [1.0] * 120), cpu_count=2)
    r = one(url, headroom=0.0)
    assert r.cpu_request is not None and r.cpu_request.text == "2"


def test_cpu_limit_without_throttling_data_is_warned(tmp_path: Path) -> None:
    url = make_run(
        tmp_path / "r.db",
        T("x", [50.0] * 120, None, [1.0] * 120, config={"resources": {"cpus": 0.5}}),
    )
    (w,) = one(url).warnings
    assert "cpus: 0.5 and no throttling data was stored" in w


def test_minimums_are_applied_and_said(tmp_path: Path) -> None:
    url = make_run(tmp_path / "r.db", T("tiny", [1.0] * 120, [0.0] * 120, [10.0 * MiB] * 120))
    r = one(url)
    assert r.cpu_request is not None and r.cpu_request.text == "25m"
    assert r.cpu_request.minimum_applied
    assert "0.010 cores × 1.15 = 11.5m, below the minimum 25m: the minimum" in r.cpu_request.how
    assert r.cpu_limit is not None and r.cpu_limit.text == "25m"  # never below the request
    assert r.memory_request is not None and r.memory_request.text == "250Mi"
    assert r.memory_request.minimum_applied
    assert "= 11.5 MiB, below the minimum 250Mi: the minimum" in r.memory_request.how
    pluginctl_quantities(r.to_json()["formats"]["pluginctl"])


def test_oom_kill_vpa_and_krr(tmp_path: Path) -> None:
    """Killed at a 1 GiB limit, peak seen 1000 MiB."""
    url = make_run(
        tmp_path / "r.db",
        T(
            "hog",
            [20.0] * 120,
            [0.0] * 120,
            [500.0 * MiB] * 119 + [1000.0 * MiB],
            limit=1024.0 * MiB,
            status="oom_killed",
            oom_killed=True,
        ),
    )
    r = one(url)
    # VPA: max(1024 × 1.2, 1024 + 100) = 1228.8 MiB, then × 1.15 = 1413.12 → 1414Mi
    assert r.memory_request is not None and r.memory_request.text == "1414Mi"
    assert r.memory_request.statistic == "oom"
    assert r.memory_request.measured == pytest.approx(1228.8 * MiB)
    assert r.oom_killed == ["hog"]
    assert any("hog was OOM-killed at its limit 1024.0 MiB" in n for n in r.notes)
    assert "VPA's OOM bump" in r.memory_request.how
    k = one(url, rule="krr")
    # krr: max(1000 × 1.15, 1024 × 1.25) = 1280 MiB, no buffer on top of the OOM figure
    assert k.memory_request is not None and k.memory_request.text == "1280Mi"
    # a small limit: the +100 MiB floor of VPA's bump wins (64 + 100 = 164 > 76.8)
    small = make_run(
        tmp_path / "s.db",
        T("h", [1.0] * 120, None, [60.0 * MiB] * 120, limit=64.0 * MiB, status="oom_killed"),
    )
    s = one(small, headroom=0.0)
    assert s.memory_request is not None and s.memory_request.measured == 164 * MiB
    assert s.memory_request.text == "250Mi" and s.memory_request.minimum_applied


def test_oom_limit_from_the_config_when_no_series(tmp_path: Path) -> None:
    url = make_run(
        tmp_path / "r.db",
        T(
            "h",
            [1.0] * 120,
            None,
            [900.0 * MiB] * 120,
            status="oom_killed",
            config={"resources": {"memory": 1024 * MiB}},
        ),
    )
    r = one(url, headroom=0.0)
    assert r.memory_request is not None and r.memory_request.text == "1229Mi"  # 1228.8 up


def test_short_run_and_few_samples_are_warned(tmp_path: Path) -> None:
    url = make_run(tmp_path / "r.db", T("quick", [50.0] * 10, [0.0] * 10, [1.0 * MiB] * 10))
    r = one(url)
    assert len(r.warnings) == 3
    assert r.warnings[0].startswith("only 10 CPU samples: a p90 of fewer than 100")
    assert r.warnings[1].startswith("only 10 memory samples")
    assert r.warnings[2].startswith("quick was measured for 10.0 s only: under 60 s")
    assert "# warning: only 10 CPU samples" in R.render(r, "pluginctl")
    # a number is still given, with its evidence
    assert r.cpu_request is not None and r.cpu_request.text == "575m"


def test_no_data_gives_no_figure_and_says_so(tmp_path: Path) -> None:
    url = make_run(tmp_path / "r.db", T("ghost", duration_s=90.0, status="error"))
    r = one(url)
    assert r.figures() == []
    assert any("no cpu.percent samples" in w for w in r.warnings)
    assert any("no memory.working_set_bytes samples" in w for w in r.warnings)
    assert R.render(r, "pluginctl").splitlines()[-1] == "# no figure to recommend"
    assert r.to_json()["formats"]["k8s"] == "resources:"


def test_repeats_are_pooled_and_services_apart(tmp_path: Path) -> None:
    url = make_run(
        tmp_path / "r.db",
        T("burn#1", [20.0] * 60, [0.0] * 60, [100.0 * MiB] * 60, config={"repeat_index": 0}),
        T("burn#2", [60.0] * 60, [0.0] * 60, [300.0 * MiB] * 60, config={"repeat_index": 1}),
        T(
            "burn#1/playback",
            [5.0] * 60,
            None,
            [40.0 * MiB] * 60,
            config={"role": "service", "service": "playback", "scope": "target"},
        ),
        T(
            "burn#2/playback",
            [7.0] * 60,
            None,
            [40.0 * MiB] * 60,
            config={"role": "service", "service": "playback", "scope": "target"},
        ),
    )
    res = rec_of(url)
    app, svc = res.recommendations
    assert (app.name, app.role, app.targets) == ("burn", "app", ["burn#1", "burn#2"])
    # pooled: 60 × 0.2 then 60 × 0.6; p90 position 107.1 → 0.6 → 690m; peak 300 MiB
    assert app.cpu_request is not None and app.cpu_request.text == "690m"
    assert app.cpu_request.samples == 120 and app.duration_s == 120.0
    assert "2 repeats pooled, 120 samples over 120.0 s" in app.cpu_request.how
    assert app.memory_request is not None and app.memory_request.text == "345Mi"
    assert (svc.name, svc.role, svc.targets) == (
        "playback",
        "service",
        ["burn#1/playback", "burn#2/playback"],
    )
    assert R.render(svc, "k8s").startswith(
        "# playback (service, 2 instances: burn#1/playback, burn#2/playback, 120.0 s"
    )
    # krr: each repeat's p95, the highest (0.6), no margin
    assert one(url, rule="krr", target="burn").cpu_request.text == "600m"  # type: ignore[union-attr]
    # one repeat on its own
    r2 = one(url, target="burn#1")
    assert r2.targets == ["burn#1"] and r2.cpu_request.text == "230m"  # type: ignore[union-attr]


def test_a_service_gets_one_recommendation_over_every_target_it_served(tmp_path: Path) -> None:
    def svc(name: str, cpu: float, mem: float, scope: str = "target") -> Any:
        service = name.rsplit("/", 1)[-1]
        return T(
            name,
            [cpu] * 60,
            None,
            [mem * MiB] * 60,
            config={"role": "service", "service": service, "scope": scope},
        )

    url = make_run(
        tmp_path / "r.db",
        T("a", [20.0] * 60, [0.0] * 60, [100.0 * MiB] * 60),
        T("b-0.5", [20.0] * 60, [0.0] * 60, [100.0 * MiB] * 60),
        svc("a/playback", 10.0, 300.0),
        svc("b-0.5/playback", 30.0, 400.0),
        svc("both/playback", 20.0, 500.0),
        svc("service/db", 10.0, 260.0, scope="run"),
    )
    res = rec_of(url)
    names = [(r.name, r.role, r.targets) for r in res.recommendations]
    assert names == [
        ("a", "app", ["a"]),
        ("b-0.5", "app", ["b-0.5"]),
        ("playback", "service", ["a/playback", "b-0.5/playback", "both/playback"]),
        ("service/db", "service", ["service/db"]),
    ]
    pb = res.recommendations[2]
    # 60 × 0.1, 60 × 0.3, 60 × 0.2 cores: p90 of the 180 pooled is 0.3 → × 1.15 = 345m;
    # the peak of all three, 500 MiB × 1.15 = 575 MiB
    assert pb.cpu_request is not None and pb.cpu_request.text == "345m"
    assert "3 instances pooled, 180 samples over 180.0 s" in pb.cpu_request.how
    assert pb.memory_request is not None and pb.memory_request.text == "575Mi"
    assert (
        "pooled from the service's rows, one per target it served: a/playback, "
        "b-0.5/playback, both/playback"
    ) in pb.notes
    # the service by its name, or one of its rows
    assert one(url, target="playback").targets == pb.targets
    assert one(url, target="b-0.5/playback").targets == ["b-0.5/playback"]


def test_scenario_members_are_their_own_and_say_so(tmp_path: Path) -> None:
    url = make_run(
        tmp_path / "r.db",
        T("burn", [50.0] * 120, [0.0] * 120, [1.0] * 120),
        T(
            "both/burn",
            [30.0] * 120,
            [0.0] * 120,
            [1.0] * 120,
            config={"scenario": "both", "base_target": "burn", "together": ["burn", "gpu"]},
        ),
    )
    alone, together = rec_of(url).recommendations
    assert (alone.name, together.name) == ("burn", "both/burn")
    assert together.cpu_request is not None and together.cpu_request.text == "345m"
    assert together.notes == [
        "measured together with gpu (scenario both): these figures include the contention; "
        "the target alone (burn) has its own"
    ]


@pytest.mark.parametrize(
    ("text", "value"), [("15%", 0.15), ("0%", 0.0), ("100%", 1.0), ("20", 0.2), (" 7.5 % ", 0.075)]
)
def test_parse_headroom(text: str, value: float) -> None:
    assert R.parse_headroom(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["150%", "abc", "-5%", "nan", ""])
def test_parse_headroom_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        R.parse_headroom(text)


def test_units() -> None:
    assert R.cpu_text(1.0) == "1" and R.cpu_text(2.0) == "2" and R.cpu_text(0.5) == "500m"
    assert R.cpu_text(0.0011) == "2m"  # rounded up
    assert R.memory_text(1024 * MiB) == "1Gi" and R.memory_text(1536 * MiB) == "1536Mi"
    assert R.memory_text(300 * MiB + 1) == "301Mi"


# -- the command line ----------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(["recommend", *args])
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_cli_formats_and_json(steady: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "latest", "--db", steady)
    assert code == 0
    assert out.splitlines()[-1] == (
        "--resource request.cpu=575m,limit.cpu=575m,request.memory=345Mi,limit.memory=345Mi"
    )
    code, out, _ = cli(capsys, "latest", "--db", steady, "--format", "docker")
    assert out.splitlines()[-1] == "--cpus=0.575 --memory=345m"
    code, out, _ = cli(capsys, "latest", "--db", steady, "--json", "--headroom", "0%")
    doc = json.loads(out)
    assert doc["rule"] == "vpa" and doc["headroom"] == 0.0
    (r,) = doc["recommendations"]
    assert r["cpu"]["request"] == {
        "value": 0.5,
        "text": "500m",
        "unit": "cores",
        "statistic": "p90",
        "measured": 0.5,
        "factor": 1.0,
        "samples": 120,
        "duration_s": 120.0,
        "minimum_applied": False,
        "how": "p90 of CPU demand (usage + throttled time) 0.500 cores; 120 samples over 120.0 s",
    }
    assert r["memory"]["limit"]["text"] == "300Mi"
    code, out, _ = cli(capsys, "latest", "--db", steady, "--rule", "krr", "--format", "compose")
    assert "      cpus: '0.5'" in out and "limits:" in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["99"], "no run with id 99 in sqlite:///"),
        (["latest", "--target", "nope"], "run 1 has no target 'nope'; its targets are app"),
        (
            ["latest", "--headroom", "150%"],
            "--headroom: 150% is outside 0% to 100%; pass a margin such as 15%",
        ),
        (["latest", "--headroom", "abc"], "--headroom: 'abc' is not a percentage"),
        (["latest", "--format", "helm"], "invalid choice: 'helm'"),
    ],
)
def test_cli_bad_input_is_one_sentence_exit_2(
    steady: str, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    code, out, err = cli(capsys, *args, "--db", steady)
    assert code == 2
    assert out == ""
    assert err.startswith("edgeprof: error: ") and fragment in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
