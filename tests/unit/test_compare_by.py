"""``edgeprof compare --by KEY``: runs grouped by a metadata value (three "devices" whose
samples the test writes, so every figure is known exactly), the group of several runs,
``--latest`` picking, ``--baseline``, the JSON and Markdown shapes, and the errors."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeprof.analyze import compare as C
from edgeprof.cli.main import main
from edgeprof.model import MetricSpec, Sample
from edgeprof.store import BatchWriter, open_store
from edgeprof.store.base import RunInfo, TargetInfo

ORIN = "NVIDIA Jetson AGX Orin Developer Kit"
XAVIER = "NVIDIA Jetson Xavier NX Developer Kit"
X86 = "Dell PowerEdge R740"
N = 40
T0 = 10**18


def cpu(base: float) -> list[float]:
    """base, base+1, base+2, base+3, … (N samples): mean base + 1.5, p95 and max base + 3."""
    return [base + i % 4 for i in range(N)]


def io(step: float) -> list[float]:
    """A counter rising by ``step`` a sample: its total is step × (N − 1)."""
    return [step * i for i in range(N)]


def add_run(
    db: str,
    model: str | None,
    reps: Sequence[tuple[list[float], list[float]]],
    spec: str = "objcounter",
    status: str = "completed",
    t0: int = T0,
) -> int:
    """A run of target ``burn`` (repeats burn#1… when more than one) on device ``model``."""
    store = open_store(db)
    meta: dict[str, Any] = {"device": {"model": model}} if model else {}
    rid = store.begin_run(RunInfo(spec, "img", t0, 0.1, meta=meta))
    for r, (c, b) in enumerate(reps):
        name = "burn" if len(reps) == 1 else f"burn#{r + 1}"
        tid = store.begin_target(TargetInfo(rid, r, name, [], {"repeat_index": r}))
        w = BatchWriter(store, rid, tid)
        w.describe([MetricSpec("cpu.percent", "%"), MetricSpec("io.read_bytes", "B", "counter")])
        for i in range(N):
            t = t0 + i * 100_000_000
            w.write([Sample("cpu.percent", (), t, c[i]), Sample("io.read_bytes", (), t, b[i])])
        w.close()
        store.update_target(tid, status="exited", exit_code=0)
    if status != "running":
        store.end_run(rid, status, t0 + 10**10)
    store.close()
    return rid


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


@pytest.fixture
def three(tmp_path: Path) -> str:
    """Run 1 on the Orin (cpu 50…53, io +100/sample), run 2 on the Xavier (100…103,
    +200), run 3 on the x86 box (25…28, +100), run 4 on the Xavier again (102…105, +200),
    run 5 with no device model."""
    db = f"sqlite:///{tmp_path / 'd.db'}"
    add_run(db, ORIN, [(cpu(50), io(100))])
    add_run(db, XAVIER, [(cpu(100), io(200))])
    add_run(db, X86, [(cpu(25), io(100))])
    add_run(db, XAVIER, [(cpu(102), io(200))])
    add_run(db, None, [(cpu(50), io(100))])
    return db


def pct(a: float, b: float) -> float:
    return (b - a) / abs(a) * 100


def test_three_devices_json_every_number(three: str, capsys: Any) -> None:
    rc, out, err = run_cli(
        capsys, "compare", "--by", "device.model", "1", "2", "3", "--db", three, "--json"
    )
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["by"] == "device.model" and doc["baseline"] == ORIN
    assert doc["groups"] == [
        {"value": ORIN, "runs": [1]},
        {"value": XAVIER, "runs": [2]},
        {"value": X86, "runs": [3]},
    ]
    (t,) = doc["targets"]
    assert t["name"] == "burn"
    assert t["repeats"] == {ORIN: 1, XAVIER: 1, X86: 1}
    assert t["units"] == {"cpu.percent": "%", "io.read_bytes": "B"}
    c = t["metrics"]["cpu.percent"]
    assert set(c) == {"mean", "p95", "max"}
    assert c["mean"]["values"] == {ORIN: 51.5, XAVIER: 101.5, X86: 26.5}
    assert c["p95"]["values"] == {ORIN: 53.0, XAVIER: 103.0, X86: 28.0}
    assert c["max"]["values"] == {ORIN: 53.0, XAVIER: 103.0, X86: 28.0}
    for stat in ("mean", "p95", "max"):
        vs = c[stat]["vs_baseline"]
        assert set(vs) == {XAVIER, X86}  # the baseline is not compared with itself
        for dev in (XAVIER, X86):
            e = vs[dev]
            assert e["a"] == c[stat]["values"][ORIN] and e["b"] == c[stat]["values"][dev]
            assert e["change_pct"] == pytest.approx(pct(e["a"], e["b"]), rel=1e-12)
            assert e["method"] == "block-bootstrap" and e["significant"] is True
            assert (e["n_a"], e["n_b"]) == (1, 1)
    io_ = t["metrics"]["io.read_bytes"]
    assert set(io_) == {"total"}
    assert io_["total"]["values"] == {ORIN: 3900.0, XAVIER: 7800.0, X86: 3900.0}
    assert io_["total"]["vs_baseline"][XAVIER]["change_pct"] == 100.0
    same = io_["total"]["vs_baseline"][X86]
    assert same["change_pct"] == 0.0 and same["significant"] is False
    assert t["methods"] == {XAVIER: "block-bootstrap", X86: "block-bootstrap"}


def test_the_same_verdicts_as_two_run_compare(three: str, capsys: Any) -> None:
    """Each group against the baseline is the two-run comparison of the same runs."""
    store = open_store(three, readonly=True)
    g = C.compare_groups(store, "device.model", [(ORIN, [1]), (XAVIER, [2]), (X86, [3])])
    for other, rid in ((XAVIER, 2), (X86, 3)):
        pair = C.compare(store, 1, rid)
        for key, m in pair.targets[0].metrics.items():
            for stat, s in m.stats.items():
                assert g.targets[0].metrics[key].vs_baseline[stat][other] == s
    store.close()


def table_rows(out: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("│").split("│")]
        for line in out.splitlines()
        if line.startswith("│")
    ]


def test_terminal_table(three: str, capsys: Any) -> None:
    rc, out, err = run_cli(capsys, "compare", "--by", "device.model", "1", "2", "3", "--db", three)
    assert rc == 0, err
    head = next(x for x in out.splitlines() if x.startswith("┃"))
    cols = [c.strip() for c in head.strip("┃").split("┃")]
    assert cols == [
        "target", "metric", "stat", "Jetson AGX Orin", "Jetson Xavier NX", "change",
        "Dell PowerEdge R740", "change",
    ]  # fmt: skip
    rows = table_rows(out)
    m, p = pct(51.5, 101.5), pct(51.5, 26.5)
    assert rows[0] == ["burn", "cpu.percent", "mean", "51.5 %", "101.5 %", f"{m:+.1f} %", "26.5 %", f"{p:+.1f} %"]  # fmt: skip
    assert rows[0][5] == "+97.1 %" and rows[0][7] == "-48.5 %"
    p95x, p95d = pct(53, 103), pct(53, 28)
    assert rows[1] == ["", "", "p95", "53.0 %", "103.0 %", f"{p95x:+.1f} %", "28.0 %", f"{p95d:+.1f} %"]  # fmt: skip
    assert rows[2][2:] == ["max", "53.0 %", "103.0 %", f"{p95x:+.1f} %", "28.0 %", f"{p95d:+.1f} %"]
    assert rows[3] == [
        "",
        "io.read_bytes",
        "total",
        "3.8 KiB",
        "7.6 KiB",
        "+100.0 %",
        "3.8 KiB",
        "~",
    ]
    assert f"Jetson AGX Orin ({ORIN}): run 1 (baseline)" in out
    assert f"Jetson Xavier NX ({XAVIER}): run 2" in out
    assert "Dell PowerEdge R740: run 3" in out
    assert "one repeat" in out  # the bootstrap's note on a single repeat


def test_markdown(three: str, capsys: Any) -> None:
    rc, out, _ = run_cli(
        capsys, "compare", "--by", "device.model", "1", "2", "3", "--db", three, "--markdown"
    )
    assert rc == 0
    assert "### edgeprof compare by `device.model`" in out
    assert (
        "| target | metric | stat | Jetson AGX Orin | Jetson Xavier NX | change | "
        "Dell PowerEdge R740 | change |" in out
    )
    row = next(x for x in out.splitlines() if x.startswith("| burn |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["burn", "`cpu.percent`", "mean", "51.5 %", "101.5 %", "+97.1 %", "26.5 %", "-48.5 %"]  # fmt: skip


def test_runs_of_one_value_are_that_groups_observations(three: str, capsys: Any) -> None:
    """Runs 2 and 4 are both on the Xavier: two observations; its figure is their median."""
    rc, out, err = run_cli(
        capsys, "compare", "--by", "device.model", "1", "2", "4", "3", "--db", three, "--json"
    )
    assert rc == 0, err
    doc = json.loads(out)
    assert [g["runs"] for g in doc["groups"]] == [[1], [2, 4], [3]]
    t = doc["targets"][0]
    assert t["repeats"] == {ORIN: 1, XAVIER: 2, X86: 1}
    mean = t["metrics"]["cpu.percent"]["mean"]
    assert mean["values"][XAVIER] == float(np.median([101.5, 103.5])) == 102.5
    e = mean["vs_baseline"][XAVIER]
    assert (e["n_a"], e["n_b"], e["b"]) == (1, 2, 102.5)
    assert e["note"] == C.NOTE_FEW
    assert t["metrics"]["io.read_bytes"]["total"]["values"][XAVIER] == 7800.0


def test_four_runs_a_group_use_mann_whitney(tmp_path: Path, capsys: Any) -> None:
    db = f"sqlite:///{tmp_path / 'm.db'}"
    for k in range(4):
        add_run(db, ORIN, [(cpu(50 + k), io(100))])
    for k in range(4):
        add_run(db, XAVIER, [(cpu(60 + k), io(100))])
    ids = [str(i) for i in range(1, 9)]
    rc, out, err = run_cli(capsys, "compare", "--by", "device.model", *ids, "--db", db, "--json")
    assert rc == 0, err
    e = json.loads(out)["targets"][0]["metrics"]["cpu.percent"]["mean"]
    assert e["values"] == {ORIN: 53.0, XAVIER: 63.0}  # medians of 51.5…54.5, 61.5…64.5
    x = e["vs_baseline"][XAVIER]
    assert x["method"] == "mann-whitney-u" and (x["n_a"], x["n_b"]) == (4, 4)
    assert x["p_value"] == pytest.approx(2 / 70) and x["significant"] is True


def test_latest_picks_the_newest_completed_run_of_each_value(tmp_path: Path, capsys: Any) -> None:
    db = f"sqlite:///{tmp_path / 'l.db'}"
    add_run(db, ORIN, [(cpu(50), io(100))])  # 1: older Orin
    add_run(db, XAVIER, [(cpu(100), io(200))])  # 2
    add_run(db, X86, [(cpu(25), io(100))])  # 3
    add_run(db, ORIN, [(cpu(60), io(100))])  # 4: newest completed Orin
    add_run(db, XAVIER, [(cpu(1), io(1))], status="running")  # 5: not completed
    add_run(db, X86, [(cpu(1), io(1))], spec="other")  # 6: another spec
    add_run(db, None, [(cpu(1), io(1))])  # 7: no device model
    base = ["compare", "--latest", "--where", "spec=objcounter", "--by", "device.model"]
    rc, out, err = run_cli(capsys, *base, "--db", db, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    # values in sorted order, the first the baseline
    assert doc["groups"] == [
        {"value": X86, "runs": [3]},
        {"value": ORIN, "runs": [4]},
        {"value": XAVIER, "runs": [2]},
    ]
    mean = doc["targets"][0]["metrics"]["cpu.percent"]["mean"]
    assert mean["values"] == {X86: 26.5, ORIN: 61.5, XAVIER: 101.5}
    rc, out, _ = run_cli(capsys, *base, "--baseline", ORIN, "--db", db, "--json")
    doc = json.loads(out)
    assert doc["baseline"] == ORIN and [g["runs"] for g in doc["groups"]] == [[4], [3], [2]]
    vs = doc["targets"][0]["metrics"]["cpu.percent"]["mean"]["vs_baseline"]
    assert vs[X86]["change_pct"] == pytest.approx(pct(61.5, 26.5), rel=1e-12)
    # --tag / --where on metadata narrow the candidates
    rc, out, err = run_cli(capsys, *base, "--where", "device.model~jetson", "--db", db, "--json")
    assert [g["runs"] for g in json.loads(out)["groups"]] == [[4], [2]]
    rc, out, err = run_cli(capsys, *base, "--where", "device.model~orin", "--db", db)
    assert rc == 2 and "--latest needs completed runs of at least 2 values" in err
    assert f"{ORIN} (run 4)" in err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--by", "device.model", "1", "5"], "run 5 has no device.model"),
        (["--by", "device.model", "2", "4"], f"every run given has device.model = {XAVIER!r}"),
        (["--by", "device.colour", "1", "2"], "--by: unknown key 'device.colour'"),
        (["--by", "device.model", "1"], "takes at least two runs (got 1)"),
        (["1", "2", "3"], "compare takes two runs, RUN_A RUN_B (got 3)"),
        (["--latest", "1", "2"], "--latest goes with --by KEY"),
        (["--by", "device.model", "--latest", "1", "2"], "name runs or pass --latest"),
        (["--by", "device.model", "1", "2", "--where", "spec=x"], "pick the runs of --latest"),
        (["--by", "device.model", "1", "2", "--baseline", "x"], "--baseline 'x' is not a value"),
        (["--by", "device.model", "1", "2", "--fail-on", "cpu.percent.mean:+5%"], "checks two"),
        (["--by", "device.model", "1", "2", "--target", "nope"], "no target 'nope'"),
    ],
)
def test_errors_are_one_sentence_exit_2(
    three: str, capsys: Any, args: list[str], words: str
) -> None:
    rc, out, err = run_cli(capsys, "compare", *args, "--db", three)
    assert rc == 2 and out == "", out
    assert err.startswith("edgeprof: error: ") and words in err, err
    assert err.count("\n") == 1


def test_nan_free_numbers_in_json(three: str, capsys: Any) -> None:
    rc, out, _ = run_cli(
        capsys, "compare", "--by", "device.model", "1", "2", "3", "--db", three, "--json",
        "--metric", "cpu.percent",
    )  # fmt: skip
    doc = json.loads(out)
    assert set(doc["targets"][0]["metrics"]) == {"cpu.percent"}
    for e in doc["targets"][0]["metrics"]["cpu.percent"].values():
        assert all(isinstance(v, float) and math.isfinite(v) for v in e["values"].values())
