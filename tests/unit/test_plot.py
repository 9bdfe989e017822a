"""``edgeprof plot``: the figures draw exactly the stored points, errors are one sentence."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_cli import CLI, _env, _one_line_error

from edgeprof.model import MetricSpec, Sample, labels_of
from edgeprof.report.plot import _scale, collect_lines
from edgeprof.store import BatchWriter, open_store
from edgeprof.store.base import RunInfo, TargetInfo

T0 = 1_700_000_000_000_000_000


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/plot.db"
    store = open_store(url)
    run_id = store.begin_run(RunInfo("burn", "busybox", T0, 0.5))
    for idx, (name, cpus) in enumerate((("half", 0.5), ("full", 1.0))):
        tid = store.begin_target(
            TargetInfo(run_id, idx, name, [], config={"resources": {"cpus": cpus}})
        )
        store.update_target(tid, started_ns=T0 + idx * 10**9)
        w = BatchWriter(store, run_id, tid)
        w.describe(
            [
                MetricSpec("cpu.percent", "%"),
                MetricSpec("memory.working_set_bytes", "B"),
                MetricSpec("memory.limit_bytes", "B"),
            ]
        )
        lab = labels_of(target=name)
        for i in range(1, 11):
            t = T0 + idx * 10**9 + i * 500_000_000
            w.write(
                [
                    Sample("cpu.percent", lab, t, cpus * 100 - i * 0.25),
                    Sample("memory.working_set_bytes", lab, t, float(i << 20)),
                    Sample("memory.limit_bytes", lab, t, float(64 << 20)),
                ]
            )
        w.close()
    store.end_run(run_id, "completed", T0 + 10 * 10**9)
    store.close()
    return url


def test_lines_are_the_stored_points_against_each_targets_start(db: str) -> None:
    store = open_store(db, readonly=True)
    targets = store.targets(1)
    lines, unit, limits = collect_lines(store, 1, "cpu.percent", targets)
    assert unit == "%" and limits == [("half", 50.0), ("full", 100.0)]
    assert [ln.target for ln in lines] == ["half", "full"]
    for ln, cpus in zip(lines, (0.5, 1.0), strict=True):
        assert np.array_equal(ln.x_s, np.arange(1, 11) * 0.5)
        assert np.array_equal(ln.y, cpus * 100 - np.arange(1, 11) * 0.25)
    lines, unit, limits = collect_lines(store, 1, "memory.working_set_bytes", targets[:1])
    assert len(lines) == 1 and limits == [("half", float(64 << 20))]
    store.close()


def test_units_are_scaled_for_reading() -> None:
    assert _scale("B", 3 << 30) == (float(1 << 30), "GiB")
    assert _scale("B", 5 << 20) == (float(1 << 20), "MiB")
    assert _scale("B/s", 2048) == (1024.0, "KiB/s")
    assert _scale("s", 0.02) == (1e-3, "ms")
    assert _scale("%", 150) == (1.0, "%")


@pytest.mark.parametrize("suffix", ["png", "svg", "pdf"])
def test_cli_writes_each_format(tmp_path: Path, db: str, suffix: str) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / f"cpu.{suffix}"
    res = subprocess.run(
        [*CLI, "plot", "1", "-m", "cpu.percent", "-m", "memory.working_set_bytes",
         "--db", db, "-o", str(out)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "cpu.percent: 2 line(s), 20 samples" in res.stderr
    head = out.read_bytes()[:64]
    magic = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}[suffix]
    assert head.startswith(magic)
    if suffix == "svg":
        text = out.read_text()
        assert "cpu.percent (%)" in text or "cpu.percent" in text


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-m", "gpu.percent", "-o", "x.png"], "no samples of 'gpu.percent'"),
        (["-m", "cpu.percent", "-o", "x.gif"], "end the -o file name with .png"),
        (["-m", "cpu.percent", "-t", "nope", "-o", "x.png"], "no target named 'nope'"),
        (["-m", "cpu.percent", "-o", "no/dir/x.png"], "cannot write no/dir/x.png"),
        (["-m", "cpu.percent", "--size", "big", "-o", "x.png"], "WIDTHxHEIGHT"),
        (["-o", "x.png"], "--metric"),
    ],
)
def test_cli_errors_are_one_sentence(tmp_path: Path, db: str, args: list[str], says: str) -> None:
    pytest.importorskip("matplotlib")
    res = subprocess.run(
        [*CLI, "plot", "1", "--db", db, *args],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert says in _one_line_error(res)


def test_without_matplotlib_says_which_extra(tmp_path: Path, db: str) -> None:
    fake = tmp_path / "nompl" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    res = subprocess.run(
        [*CLI, "plot", "1", "-m", "cpu.percent", "--db", db, "-o", "x.png"],
        cwd=tmp_path, env=_env(PYTHONPATH=os.pathsep.join(  # the code under test stays
            [str(fake.parent), *filter(None, [os.environ.get("PYTHONPATH")])])),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "pip install 'edgeprof[plot]'" in _one_line_error(res)
