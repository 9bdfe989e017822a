"""``edgeprof compare``: Mann–Whitney U against scipy, the block bootstrap on AR(1) series
whose truth the test sets, the JSON shape, Markdown, and --fail-on with its exit codes."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeprof.analyze import compare as C
from edgeprof.cli.main import main
from edgeprof.errors import UserError
from edgeprof.model import MetricSpec, Sample
from edgeprof.store import BatchWriter, open_store
from edgeprof.store.base import RunInfo, TargetInfo

scipy_stats = pytest.importorskip("scipy.stats")
signal = pytest.importorskip("scipy.signal")


def ar1(n: int, phi: float, rng: np.random.Generator, mu: float = 50.0, sd: float = 5.0) -> Any:
    """A stationary AR(1) series: mean ``mu``, standard deviation ``sd``."""
    e = rng.normal(size=n) * sd * math.sqrt(1 - phi * phi)
    return mu + signal.lfilter([1.0], [1.0, -phi], e, zi=[phi * rng.normal() * sd])[0]


# -- Mann–Whitney U ----------------------------------------------------------------------


def test_mwu_matches_scipy_on_random_samples() -> None:
    rng = np.random.default_rng(0)
    for _ in range(1500):
        n1, n2 = (int(v) for v in rng.integers(1, 14, 2))
        x = rng.normal(size=n1)
        y = rng.normal(rng.uniform(-1.5, 1.5), size=n2)
        u, p, how = C.mann_whitney_u(x, y)
        ref = scipy_stats.mannwhitneyu(x, y)
        assert u == pytest.approx(float(ref.statistic), abs=1e-9)
        assert p == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-12), (x, y)
        assert how == ("exact" if min(n1, n2) <= 8 else "asymptotic")


def test_mwu_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(1)
    asym = 0
    for _ in range(1500):
        n1, n2 = (int(v) for v in rng.integers(1, 25, 2))
        x = rng.integers(0, 4, n1).astype(float)
        y = rng.integers(0, 5, n2).astype(float)
        u, p, how = C.mann_whitney_u(x, y)
        ref = scipy_stats.mannwhitneyu(x, y)
        assert u == pytest.approx(float(ref.statistic), abs=1e-9)
        assert p == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-12), (x, y)
        asym += how == "asymptotic"
    assert asym > 1000  # ties: the normal approximation with tie correction


def test_mwu_exact_and_large_samples_match_scipy() -> None:
    rng = np.random.default_rng(2)
    for n1, n2 in [(4, 4), (3, 8), (8, 200), (1, 1), (5, 60), (40, 50), (300, 7)]:
        x, y = rng.normal(size=n1), rng.normal(0.3, size=n2)
        ref = scipy_stats.mannwhitneyu(x, y)
        assert C.mann_whitney_u(x, y)[1] == pytest.approx(float(ref.pvalue), rel=1e-9)


def test_mwu_four_vs_four_can_be_significant() -> None:
    u, p, how = C.mann_whitney_u([1, 2, 3, 4], [5, 6, 7, 8])
    assert (u, how) == (0.0, "exact")
    assert p == pytest.approx(2 / 70)  # the smallest two-sided p of 4 vs 4: 0.0286
    assert C.mann_whitney_u([7, 7, 7, 7], [7, 7, 7, 7])[1] == 1.0


# -- block bootstrap ---------------------------------------------------------------------


def _significant(a: Any, b: Any, stat: str, seed: int) -> bool:
    ra, _ = C.bootstrap_replicates([a], stat, np.random.default_rng([seed, 1]))
    rb, _ = C.bootstrap_replicates([b], stat, np.random.default_rng([seed, 2]))
    lo, hi = np.quantile(rb - ra, [0.025, 0.975])
    return bool(lo > 0 or hi < 0)


@pytest.mark.parametrize(("n", "phi"), [(2000, 0.9), (500, 0.6)])
def test_bootstrap_same_process_is_not_significant(n: int, phi: float) -> None:
    seeds = 60
    for stat in ("mean", "p95", "max"):
        hits = 0
        for s in range(seeds):
            rng = np.random.default_rng(s)
            hits += _significant(ar1(n, phi, rng), ar1(n, phi, rng), stat, s)
        assert hits <= 0.10 * seeds, (stat, hits)


@pytest.mark.parametrize(("n", "phi"), [(2000, 0.9), (500, 0.6), (30, 0.3)])
def test_bootstrap_doubling_is_significant(n: int, phi: float) -> None:
    for s in range(20):
        rng = np.random.default_rng(s)
        a = ar1(n, phi, rng)
        b = ar1(n, phi, rng) * 2  # +100 %
        for stat in ("mean", "p95", "max"):
            assert _significant(a, b, stat, s), (stat, s)


def test_bootstrap_replicates_center_on_the_statistic() -> None:
    rng = np.random.default_rng(5)
    x = ar1(50_000, 0.8, rng)  # long: the mean by the normal law, p95 by Bahadur
    reps, (L,) = C.bootstrap_replicates([x], "mean", np.random.default_rng(0))
    assert 5 <= L <= 200
    assert float(np.mean(reps)) == pytest.approx(float(x.mean()), abs=0.02)
    # the spread is the long-run standard error: sd/√n · √((1+φ)/(1-φ)) = 0.067
    assert float(np.std(reps)) == pytest.approx(5 / math.sqrt(50_000) * 3, rel=0.3)
    reps95, _ = C.bootstrap_replicates([x], "p95", np.random.default_rng(0))
    assert float(np.median(reps95)) == pytest.approx(float(np.percentile(x, 95)), abs=0.05)
    # a short series takes the exact path; both paths agree on the spread of a p95
    y = x[:1000]
    exact, _ = C.bootstrap_replicates([y], "p95", np.random.default_rng(0))
    old = C.MAX_EXACT_QUANTILE_N
    try:
        C.MAX_EXACT_QUANTILE_N = 10
        lin, _ = C.bootstrap_replicates([y], "p95", np.random.default_rng(0))
    finally:
        C.MAX_EXACT_QUANTILE_N = old
    assert float(np.std(lin)) == pytest.approx(float(np.std(exact)), rel=0.35)


def test_block_length_follows_autocorrelation() -> None:
    rng = np.random.default_rng(3)
    assert C.block_length(rng.normal(size=5000)) <= 3
    assert C.block_length(ar1(5000, 0.95, rng)) >= 20
    assert C.block_length(np.full(100, 4.0)) == 1
    assert C.block_length(np.array([1.0, 2.0])) == 1


def test_bootstrap_is_reproducible_and_handles_constants() -> None:
    x = ar1(300, 0.5, np.random.default_rng(0))
    r1, _ = C.bootstrap_replicates([x], "p95", np.random.default_rng(9))
    r2, _ = C.bootstrap_replicates([x], "p95", np.random.default_rng(9))
    assert np.array_equal(r1, r2)
    c, _ = C.bootstrap_replicates([np.full(50, 3.0)], "max", np.random.default_rng(0))
    assert np.all(c == 3.0)


# -- runs in a store ---------------------------------------------------------------------

Series = Mapping[str, tuple[Sequence[float], str, str]]  # metric → (values, unit, kind)


def add_run(db: str, targets: Mapping[str, Sequence[Series]], t0: int = 10**18) -> int:
    """A run with each target's repeats (name#1… when more than one), values as given."""
    store = open_store(db)
    rid = store.begin_run(RunInfo(spec_name="s", image="img", started_ns=t0, interval_s=0.1))
    idx = 0
    for base, reps in targets.items():
        for r, series in enumerate(reps):
            name = base if len(reps) == 1 else f"{base}#{r + 1}"
            tid = store.begin_target(TargetInfo(rid, idx, name, [], {"repeat_index": r}))
            idx += 1
            w = BatchWriter(store, rid, tid)
            w.describe([MetricSpec(m, u, k) for m, (_, u, k) in series.items()])  # type: ignore[arg-type]
            n = max(len(v) for v, _, _ in series.values())
            for i in range(n):
                w.write(
                    [
                        Sample(m, (), t0 + i * 100_000_000, float(v[i]))
                        for m, (v, _, _) in series.items()
                        if i < len(v)
                    ]
                )
            w.close()
            store.update_target(tid, status="exited", exit_code=0)
    store.end_run(rid, "completed", t0 + 10**10)
    store.close()
    return rid


def _cpu(mean: float, rng: np.random.Generator, n: int = 200) -> Series:
    return {
        "cpu.percent": (ar1(n, 0.5, rng, mu=mean, sd=2.0), "%", "gauge"),
        "io.read_bytes": (np.cumsum(rng.integers(0, 100, n)).astype(float), "B", "counter"),
    }


@pytest.fixture
def repeat_db(tmp_path: Path) -> str:
    """Run 1: 4 repeats of burn at 50 %; run 2: at 100 %; run 3: again at 50 %."""
    db = f"sqlite:///{tmp_path / 'c.db'}"
    rng = np.random.default_rng(7)
    add_run(db, {"burn": [_cpu(50, rng) for _ in range(4)]})
    add_run(db, {"burn": [_cpu(100, rng) for _ in range(4)]})
    add_run(db, {"burn": [_cpu(50, rng) for _ in range(4)]})
    return db


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_json_shape_and_mann_whitney_verdicts(repeat_db: str, capsys: Any) -> None:
    rc, out, err = run_cli(capsys, "compare", "1", "2", "--db", repeat_db, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["method"] == "mann-whitney-u"
    (t,) = doc["targets"]
    assert t["name"] == "burn" and (t["repeats_a"], t["repeats_b"]) == (4, 4)
    cpu = t["metrics"]["cpu.percent"]
    assert set(cpu) == {"mean", "p95", "max"}
    for stat in ("mean", "p95", "max"):
        e = cpu[stat]
        assert {"a", "b", "change_pct", "p_value", "significant", "method"} <= set(e)
        assert e["method"] == "mann-whitney-u"
        assert e["significant"] is True
        assert e["p_value"] == pytest.approx(2 / 70)
        assert e["change_pct"] == pytest.approx((e["b"] - e["a"]) / e["a"] * 100)
    assert 85 < cpu["mean"]["change_pct"] < 115
    # the figures are the medians of the repeats' own statistics, as `summary` gives them
    store = open_store(repeat_db, readonly=True)
    from edgeprof.analyze.summary import summarize

    s1 = summarize(store, 1)
    store.close()
    means = [t.gauge("cpu.percent").mean for t in s1.targets]  # type: ignore[union-attr]
    assert cpu["mean"]["a"] == pytest.approx(float(np.median(means)), rel=1e-12)
    assert set(t["metrics"]["io.read_bytes"]) == {"total"}


def test_same_process_is_tilde(repeat_db: str, capsys: Any) -> None:
    rc, out, _ = run_cli(capsys, "compare", "1", "3", "--db", repeat_db, "--json")
    cpu = json.loads(out)["targets"][0]["metrics"]["cpu.percent"]
    assert not cpu["mean"]["significant"]
    rc, out, _ = run_cli(capsys, "compare", "1", "3", "--db", repeat_db, "--metric", "cpu.percent")
    assert rc == 0
    line = next(x for x in out.splitlines() if "cpu.percent" in x)
    assert "~" in line
    assert "Mann–Whitney U" in out


def test_markdown_table(repeat_db: str, capsys: Any) -> None:
    rc, out, _ = run_cli(capsys, "compare", "1", "2", "--db", repeat_db, "--markdown")
    assert rc == 0
    assert "| metric | stat | A | B | change | p |" in out
    row = next(x for x in out.splitlines() if x.startswith("| `cpu.percent`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "mean" and cells[4].startswith("+") and cells[4].endswith("%")
    assert cells[5] == "0.029"


def test_fail_on_exit_codes_and_junit(repeat_db: str, capsys: Any, tmp_path: Path) -> None:
    junit = tmp_path / "r.xml"
    rc, out, err = run_cli(
        capsys,
        "compare",
        "1",
        "2",
        "--db",
        repeat_db,
        "--fail-on",
        "cpu.percent.mean:+10%,cpu.percent.p50:-5%,io.read_bytes.total:+1000%",
        "--junit",
        str(junit),
    )
    assert rc == 1, err
    assert "1 --fail-on check failed" in err
    root = ET.parse(junit).getroot()
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "burn"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {
        "cpu.percent.mean:+10%",
        "cpu.percent.p50:-5%",
        "io.read_bytes.total:+1000%",
    }
    fail = cases["cpu.percent.mean:+10%"].find("failure")
    assert fail is not None and "limit +10 %" in (fail.get("message") or "")
    assert cases["cpu.percent.p50:-5%"].find("failure") is None
    # the same rule on two runs of one process passes
    rc, _, _ = run_cli(
        capsys, "compare", "1", "3", "--db", repeat_db, "--fail-on", "cpu.percent.mean:+10%"
    )
    assert rc == 0
    # a rise under the threshold passes: +100 % is not past +150 %
    rc, _, _ = run_cli(
        capsys, "compare", "1", "2", "--db", repeat_db, "--fail-on", "cpu.percent.mean:+150%"
    )
    assert rc == 0


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ("cpu.percent.mean", "not METRIC.STAT"),
        ("cpu.percent.mean:10%", "signed percentage"),
        ("cpu.percent.mean:+ten%", "signed percentage"),
        ("cpu.percent.avg:+10%", "unknown statistic 'avg'"),
        ("nope.metric.mean:+10%", "names metric 'nope.metric'"),
        ("io.read_bytes.mean:+10%", "is a counter"),
        ("cpu.percent.total:+10%", "is a gauge"),
        ("cpu.percent.mean:+10%,", "empty rule"),
    ],
)
def test_bad_fail_on_is_one_sentence(repeat_db: str, capsys: Any, rule: str, words: str) -> None:
    rc, out, err = run_cli(capsys, "compare", "1", "2", "--db", repeat_db, "--fail-on", rule)
    assert rc == 2
    assert err.startswith("edgeprof: error: ") and words in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_target_metric_and_junit_without_rules(repeat_db: str, capsys: Any) -> None:
    for args, words in [
        (("--target", "nope"), "no target 'nope'"),
        (("--metric", "nope"), "no metric 'nope'"),
        (("--junit", "x.xml"), "pass --fail-on too"),
    ]:
        rc, _, err = run_cli(capsys, "compare", "1", "2", "--db", repeat_db, *args)
        assert rc == 2 and words in err, err


def test_parse_fail_on_keeps_labels_with_commas() -> None:
    (r1, r2) = C.parse_fail_on("gpu.util{gpu=0,kind=x}.p95:+10%, app.fps.p50:-5.5%")
    assert (r1.metric, r1.stat, r1.threshold_pct) == ("gpu.util{gpu=0,kind=x}", "p95", 10.0)
    assert (r2.metric, r2.stat, r2.threshold_pct) == ("app.fps", "p50", -5.5)
    with pytest.raises(UserError):
        C.parse_fail_on("")


def test_single_repeat_bootstrap_and_one_sided_targets(tmp_path: Path, capsys: Any) -> None:
    db = f"sqlite:///{tmp_path / 'b.db'}"
    rng = np.random.default_rng(11)
    a = ar1(1500, 0.8, rng, mu=50)
    b = ar1(1500, 0.8, rng, mu=50) * 2
    c = ar1(1500, 0.8, rng, mu=50)
    g = "gauge"
    add_run(
        db,
        {"app": [{"cpu.percent": (a, "%", g), "only.a": (a, "1", g)}], "old": [{"x": (a, "1", g)}]},
    )
    add_run(
        db,
        {"app": [{"cpu.percent": (b, "%", g), "only.b": (b, "1", g)}], "new": [{"x": (b, "1", g)}]},
    )
    add_run(db, {"app": [{"cpu.percent": (c, "%", g)}, {"cpu.percent": (c[::-1], "%", g)}]})
    rc, out, err = run_cli(capsys, "compare", "1", "2", "--db", db, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["method"] == "block-bootstrap"
    t = {x["name"]: x for x in doc["targets"]}
    assert t["old"]["only_in"] == "a" and t["new"]["only_in"] == "b"
    app = t["app"]
    assert app["metrics_only_in_a"] == ["only.a"] and app["metrics_only_in_b"] == ["only.b"]
    for stat in ("mean", "p95", "max"):
        e = app["metrics"]["cpu.percent"][stat]
        assert e["method"] == "block-bootstrap" and e["significant"] is True
        assert e["a"] == pytest.approx(
            float(
                np.mean(a)
                if stat == "mean"
                else np.percentile(a, 95)
                if stat == "p95"
                else np.max(a)
            ),
            rel=1e-9,
        )
        assert e["ci_low"] > 0 and e["ci_low"] <= e["b"] - e["a"] <= e["ci_high"] * 1.5
        assert e["note"].startswith("one repeat: only the noise within each run is seen")
    # deterministic: the same command gives the same document
    assert run_cli(capsys, "compare", "1", "2", "--db", db, "--json")[1] == out
    # 1 vs 2 repeats: bootstrap with the note; same process → ~
    rc, out, _ = run_cli(capsys, "compare", "1", "3", "--db", db, "--json", "--target", "app")
    e = json.loads(out)["targets"][0]["metrics"]["cpu.percent"]["mean"]
    assert e["note"] == "need ≥ 4 repeats for Mann–Whitney U"
    assert e["significant"] is False
    rc, out, _ = run_cli(capsys, "compare", "1", "3", "--db", db, "--target", "app")
    assert "need ≥ 4 repeats" in out and "block bootstrap" in out
    # a rule on a metric one run lacks fails with "no data"
    rc, out, _ = run_cli(capsys, "compare", "1", "2", "--db", db, "--fail-on", "only.a.mean:+10%")
    assert rc == 1 and "no data in run 2" in out


def test_quantiles_of_tied_values_keep_their_spread() -> None:
    """Two runs of the same two-valued process (a pid count: 2, and 3 five % of the time):
    the p95 sits on a tie and must not be called significant (the quantile shortcut for
    long series once gave every replicate the same value: p = 0.0005, +50 %)."""
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(40):
        a = np.where(rng.random(1000) < 0.05, 3.0, 2.0)
        b = np.where(rng.random(1000) < 0.05, 3.0, 2.0)
        ra, _ = C.bootstrap_replicates([a], "p95", np.random.default_rng(1))
        rb, _ = C.bootstrap_replicates([b], "p95", np.random.default_rng(2))
        assert ra.std() > 0 or rb.std() > 0 or np.percentile(a, 95) == np.percentile(b, 95)
        diff = rb - ra
        lo, hi = np.quantile(diff, [0.025, 0.975])
        hits += bool(lo > 0 or hi < 0)
    assert hits <= 4, hits  # ≈ α, not the 56 % the shortcut gave


def test_short_series_and_missing_values_get_no_verdict(tmp_path: Path, capsys: Any) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    g = "gauge"
    add_run(db, {"t": [{"cpu.percent": (np.full(20, 40.0), "%", g)}]})
    add_run(db, {"t": [{"cpu.percent": (np.full(20, 60.0), "%", g)}]})
    rc, out, _ = run_cli(capsys, "compare", "1", "2", "--db", db, "--json")
    e = json.loads(out)["targets"][0]["metrics"]["cpu.percent"]["mean"]
    assert (e["a"], e["b"], e["change_pct"]) == (40.0, 60.0, 50.0)
    assert e["significant"] is False and e["p_value"] is None
    assert e["note"].startswith("fewer than 30 samples")
    rc, out, _ = run_cli(capsys, "compare", "1", "2", "--db", db)
    assert "~ *" in out and "* fewer than 30 samples" in out


def test_processes_are_matched_by_name_across_runs(tmp_path: Path, capsys: Any) -> None:
    """PIDs differ from run to run: per-process series are compared by process name, and
    processes of one name are added up (two workers at 25 % each are 50 %)."""
    db = f"sqlite:///{tmp_path / 'p.db'}"
    store = open_store(db)
    for run, (pids, level) in enumerate((((11, 12), 25.0), ((21, 22), 50.0))):
        rid = store.begin_run(RunInfo("s", "i", 10**18, 0.1))
        tid = store.begin_target(TargetInfo(rid, 0, "app", [], {"repeat_index": 0}))
        w = BatchWriter(store, rid, tid)
        w.describe([MetricSpec("process.cpu.percent", "%")])
        rng = np.random.default_rng(run)
        for i in range(300):
            w.write(
                [
                    Sample(
                        "process.cpu.percent",
                        (("pid", str(p)), ("process", "worker")),
                        10**18 + i * 10**8,
                        level + float(rng.normal(0, 0.5)),
                    )
                    for p in pids
                ]
            )
        w.close()
        store.update_target(tid, status="exited", exit_code=0)
        store.end_run(rid, "completed", 10**18 + 10**11)
    store.close()
    rc, out, _ = run_cli(capsys, "compare", "1", "2", "--db", db, "--json")
    t = json.loads(out)["targets"][0]
    assert t["metrics_only_in_a"] == [] and t["metrics_only_in_b"] == []
    e = t["metrics"]["process.cpu.percent{process=worker}"]["mean"]
    assert e["a"] == pytest.approx(50.0, abs=0.2) and e["b"] == pytest.approx(100.0, abs=0.2)
    assert e["significant"] is True
    # a bare metric name in --fail-on names every process of it
    rc, out, _ = run_cli(
        capsys, "compare", "1", "2", "--db", db, "--fail-on", "process.cpu.percent.mean:+10%"
    )
    assert rc == 1 and "FAIL" in out and "process.cpu.percent{process=worker} mean" in out


def test_a_run_still_running_is_said(tmp_path: Path, capsys: Any) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    g = "gauge"
    add_run(db, {"t": [{"cpu.percent": (np.full(50, 40.0), "%", g)}]})
    store = open_store(db)
    rid = store.begin_run(RunInfo(spec_name="s", image="img", started_ns=10**18, interval_s=0.1))
    store.close()
    rc, out, err = run_cli(capsys, "compare", "1", str(rid), "--db", db)
    assert rc == 0
    assert f"run {rid} is still running" in err and "samples stored so far" in err
