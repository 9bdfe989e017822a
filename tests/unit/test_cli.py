"""The CLI as users run it: a subprocess, exit codes, one-line errors, no tracebacks.

No container engine is needed: the database for summary/export is built through the store
API, and ``run`` is only exercised up to the errors it reports before starting anything.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeprof import __version__
from edgeprof.cli.main import COMMANDS
from edgeprof.model import Event, MetricSpec, Sample, labels_of
from edgeprof.store import BatchWriter, open_store
from edgeprof.store.base import RunInfo, TargetInfo
from edgeprof.store.schema import SCHEMA_VERSION

CLI = [sys.executable, "-m", "edgeprof.cli.main"]

VALID_SPEC = """\
name: objcounter
namespace: waggle
version: "0.0.0"
profiling:
  targets:
    - {args: "-interval 1 --use-gpu", timeout: 120}
    - {args: "--use-cpu", timeout: 0}
"""

TYPO_SPEC = """\
name: objcounter
profiling:
  targets:
    - args: --use-gpu
      timeout: 120
    - args: --use-cpu
      timout: 60
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEPROF_DB", "DOCKER_HOST")}
    env.update(extra)
    env.setdefault("COLUMNS", "200")
    return env


def edgeprof(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("edgeprof: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database with one run of two targets, built through the store API."""
    path = tmp_path_factory.mktemp("db") / "runs.db"
    url = f"sqlite:///{path}"
    store = open_store(url)
    run_id = store.begin_run(
        RunInfo(
            spec_name="objcounter",
            image="waggle/objcounter:0.0.0",
            spec_path="sage.yaml",
            spec_text=VALID_SPEC,
            started_ns=1_700_000_000_000_000_000,
            interval_s=1.0,
            host={"hostname": "edge"},
            version=__version__,
        )
    )
    describe = [
        MetricSpec("cpu.percent", "%"),
        MetricSpec("memory.working_set_bytes", "B"),
        MetricSpec("cpu.usage_seconds", "s", "counter"),
    ]
    for idx, name, args in ((0, "t1", ["--use-gpu"]), (1, "t2", ["--use-cpu"])):
        tid = store.begin_target(TargetInfo(run_id, idx, name, args))
        lab = labels_of(target=name)
        w = BatchWriter(store, run_id, tid)
        w.describe(describe)
        for i in range(5):
            t = 1_700_000_000_000_000_000 + i * 1_000_000_000
            w.write(
                [
                    Sample("cpu.usage_seconds", lab, t, float(i)),
                    Sample("cpu.percent", lab, t, 10.0 * (i + 1) * (idx + 1)),
                    Sample("memory.working_set_bytes", lab, t, 1024.0 * 1024 * (i + 1)),
                ]
            )
        w.close()
        store.update_target(tid, status="exited", exit_code=0, duration_s=5.0)
        store.add_event(run_id, tid, Event(1, "exited", f"{name} exited", name))
    store.end_run(run_id, "completed", 1_700_000_010_000_000_000)
    store.close()
    return url


# -- basics -----------------------------------------------------------------------------------


def test_version(tmp_path: Path) -> None:
    res = edgeprof("--version", cwd=tmp_path)
    assert res.returncode == 0
    assert res.stdout.strip() == f"edgeprof {__version__}"


def test_console_script_version(tmp_path: Path) -> None:
    exe = shutil.which("edgeprof")
    if exe is None:
        pytest.skip("the edgeprof console script is not on PATH")
    res = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == f"edgeprof {__version__}"


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(tmp_path: Path, command: str | None) -> None:
    res = edgeprof(*([command] if command else []), "--help", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "usage: edgeprof" in res.stdout and len(res.stdout.strip()) > 100
    if command is None:
        for c in COMMANDS:
            assert c in res.stdout
    else:
        assert command in res.stdout
    if command in ("run", "runs", "summary", "export", "logs"):
        assert "--db" in res.stdout


def test_usage_errors_exit_2_in_one_sentence(tmp_path: Path) -> None:
    for args, expected in (
        (["summary"], "RUN_ID is missing; see 'edgeprof summary --help'"),
        (["bogus-command"], "no command 'bogus-command' (commands: run, runs"),
        (["runs", "--limit", "0"], "--limit: 0 must be at least 1"),
        (["run", "x.yaml", "--interval", "0.001"], "below the shortest interval, 0.01 s"),
        (["runs", "--bogus"], "unrecognized arguments: --bogus"),
        (["export", "1", "--format", "xml"], "invalid choice: 'xml'"),
    ):
        line = _one_line_error(edgeprof(*args, cwd=tmp_path))
        assert expected in line, (args, line)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_names_its_values(tmp_path: Path, command: str | None) -> None:
    """Values are named for what they are (URL, SECONDS), never by a Python type."""
    res = edgeprof(*([command] if command else []), "--help", cwd=tmp_path)
    for internal in ("<bool>", "<str>", "<int>", "<float", "<list[", "<path>", "TEXT", "FLOAT"):
        assert internal not in res.stdout, (command, internal)
    if command in ("run", "runs", "summary", "export", "logs", "cleanup", "migrate", "report",
                   "check", "compare", "plot"):  # fmt: skip
        assert "--db URL" in res.stdout


# -- stored runs ----------------------------------------------------------------------------


def test_reading_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/missing.db"
    for args in (
        ["runs"],
        ["summary", "latest"],
        ["export", "1"],
        ["logs", "1"],
        ["report", "1", "-o", "r.html"],
        ["check", "1"],
        ["compare", "1", "2"],
        ["plot", "1", "-m", "cpu.percent", "-o", "c.png"],
    ):
        line = _one_line_error(edgeprof(*args, "--db", url, cwd=tmp_path))
        assert f"no database at {tmp_path}/missing.db" in line, line
        line = _one_line_error(edgeprof(*args, cwd=tmp_path))  # the default ./edgeprof.db
        assert "no database at ./edgeprof.db" in line, line
    assert list(tmp_path.iterdir()) == []


def test_runs_on_empty_db(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    open_store(url).close()
    res = edgeprof("runs", "--db", url, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"no runs stored in {url}"
    res = edgeprof("runs", "--json", cwd=tmp_path, env=_env(EDGEPROF_DB=url))
    assert res.returncode == 0 and json.loads(res.stdout) == []


def test_runs_lists_stored_run(tmp_path: Path, db: str) -> None:
    res = edgeprof("runs", "--db", db, "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [(r["id"], r["spec_name"], r["targets"], r["status"]) for r in rows] == [
        (1, "objcounter", 2, "completed")
    ]
    assert rows[0]["failed_targets"] == 0 and rows[0]["duration_s"] == 10.0
    res = edgeprof("runs", "--db", db, cwd=tmp_path)
    assert res.returncode == 0 and "objcounter" in res.stdout


def test_runs_counts_apps_and_services_apart(tmp_path: Path) -> None:
    """Service rows are neither targets nor failed targets; they are counted as services."""
    url = f"sqlite:///{tmp_path}/svc.db"
    store = open_store(url)
    run_id = store.begin_run(
        RunInfo(spec_name="svc", image="app:1", started_ns=1_000_000_000, interval_s=1.0)
    )
    rows = [  # (name, config, status)
        ("a", {}, "exited"),
        ("b", {}, "error"),
        ("a/playback", {"role": "service", "service": "playback", "for": "a"}, "ok"),
        ("b/playback", {"role": "service", "service": "playback", "for": "b"}, "failed"),
        ("service/db", {"role": "service", "service": "db", "scope": "run"}, "error"),
    ]
    for idx, (name, config, status) in enumerate(rows):
        tid = store.begin_target(TargetInfo(run_id, idx, name, [], config))
        store.update_target(tid, status=status)
    store.end_run(run_id, "completed", 3_000_000_000)
    store.close()
    res = edgeprof("runs", "--db", url, "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(res.stdout)
    assert (row["targets"], row["failed_targets"], row["services"]) == (2, 1, 3)
    res = edgeprof("runs", "--db", url, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "2 +3 svc" in res.stdout and "completed, 1 failed" in res.stdout


def test_summary_json_and_tables(tmp_path: Path, db: str) -> None:
    res = edgeprof("summary", "latest", "--db", db, "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    assert s["run"]["id"] == 1
    t1, t2 = s["targets"]
    assert t1["metrics"]["cpu.percent"]["mean"] == 30.0
    assert t2["metrics"]["cpu.percent"]["max"] == 100.0
    assert t1["metrics"]["cpu.usage_seconds"]["total"] == 4.0
    res = edgeprof("summary", "1", "--db", db, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "objcounter" in res.stdout and "CPU" in res.stdout and "--use-cpu" in res.stdout
    assert "30.0 %" in res.stdout and "5.0 MiB" in res.stdout  # units on every row


def test_summary_unknown_run(tmp_path: Path, db: str) -> None:
    line = _one_line_error(edgeprof("summary", "999", "--db", db, cwd=tmp_path))
    assert "999" in line


def test_summary_non_numeric_run(tmp_path: Path, db: str) -> None:
    line = _one_line_error(edgeprof("summary", "abc", "--db", db, cwd=tmp_path))
    assert "'abc'" in line


def test_export_csv_to_file_and_jsonl_to_stdout(tmp_path: Path, db: str) -> None:
    out = tmp_path / "run.csv"
    res = edgeprof("export", "latest", "--db", db, "-o", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"wrote 30 samples to {out}" in res.stderr
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == ["run_id", "target", "metric", "labels", "unit", "t_ns", "value"]
    assert len(rows) == 31
    res = edgeprof("export", "1", "--format", "jsonl", "--db", db, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    recs = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(recs) == 30 and {r["target"] for r in recs} == {"t1", "t2"}


def test_export_into_a_reader_that_stops_early_is_quiet(tmp_path: Path) -> None:
    """`edgeprof export 1 | head -1`: no traceback, exit status 1 (as rich's tables do)."""
    url = f"sqlite:///{tmp_path}/big.db"
    store = open_store(url)
    run_id = store.begin_run(RunInfo(spec_name="s", image="i", started_ns=1, interval_s=0.01))
    w = BatchWriter(store, run_id, None)
    w.write([Sample("m", labels_of(k="a"), i, float(i)) for i in range(200_000)])
    w.close()
    store.close()
    p = subprocess.Popen(
        [*CLI, "export", "1", "--db", url],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stderr is not None
    assert p.stdout.readline().startswith("run_id,")
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=60) == 1
    assert err == ""


def test_a_reader_gone_before_buffered_output_is_flushed_is_quiet(tmp_path: Path, db: str) -> None:
    """Short output stays in Python's buffer until exit: a closed pipe is still quiet."""
    env = {k: v for k, v in _env().items() if k != "PYTHONUNBUFFERED"}
    p = subprocess.Popen(
        [*CLI, "runs", "--db", db],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # gone before the command has started
    err = p.stderr.read()
    assert (p.wait(timeout=60), err) == (1, "")


def test_export_bad_format(tmp_path: Path, db: str) -> None:
    line = _one_line_error(
        edgeprof("export", "latest", "--format", "xml", "--db", db, cwd=tmp_path)
    )
    assert "'xml'" in line and "csv" in line


def test_export_parquet_to_file_and_to_a_pipe(tmp_path: Path, db: str) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "run.parquet"
    res = edgeprof("export", "1", "-f", "parquet", "--db", db, "-o", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"wrote 30 samples to {out}" in res.stderr
    res = edgeprof("export", "1", "--db", db, "-f", "jsonl", cwd=tmp_path)
    want = [json.loads(x) for x in res.stdout.splitlines()]
    got = pq.read_table(out).to_pylist()
    for g in got:
        g["labels"] = dict(g["labels"])
    assert got == want
    piped = subprocess.run(
        [*CLI, "export", "1", "-f", "parquet", "--db", db],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        timeout=60,
    )
    assert piped.returncode == 0 and piped.stdout[:4] == piped.stdout[-4:] == b"PAR1"


def test_export_parquet_without_pyarrow_says_which_extra(tmp_path: Path, db: str) -> None:
    fake = tmp_path / "nopyarrow" / "pyarrow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no pyarrow here')\n")
    env = _env(PYTHONPATH=str(fake.parent))
    line = _one_line_error(
        edgeprof(
            "export", "1", "-f", "parquet", "--db", db, "-o", "x.parquet", cwd=tmp_path, env=env
        )
    )
    assert "pip install 'edgeprof[parquet]'" in line
    assert not (tmp_path / "x.parquet").exists()


def test_export_unwritable_output(tmp_path: Path, db: str) -> None:
    line = _one_line_error(
        edgeprof("export", "1", "--db", db, "-o", str(tmp_path / "no" / "x.csv"), cwd=tmp_path)
    )
    assert "x.csv" in line


def test_unsupported_db_url(tmp_path: Path) -> None:
    line = _one_line_error(edgeprof("runs", "--db", "ftp://x", cwd=tmp_path))
    assert "ftp://x" in line


def test_a_path_as_db_gets_the_url_it_meant(tmp_path: Path) -> None:
    line = _one_line_error(edgeprof("runs", "--db", "/tmp/x.db", cwd=tmp_path))
    assert "sqlite:////tmp/x.db" in line
    line = _one_line_error(edgeprof("runs", "--db", "runs.db", cwd=tmp_path))
    assert "sqlite:///runs.db" in line


def test_passwords_never_printed(tmp_path: Path) -> None:
    """Every command, with a database URL carrying a password: never shown."""
    secret = "s3cr3t-P4ss"
    (tmp_path / "valid.yaml").write_text(VALID_SPEC)
    urls = [
        f"postgresql://edge:{secret}@127.0.0.1:1/runs",
        f"postgresql://edge@127.0.0.1:1/runs?password={secret}",
        f"postgres://edge:{secret}@127.0.0.1:1/runs",
        f"postgresql://edge:{secret}@[::1/runs",  # malformed
        f"postgresql://edge:{secret}@x@127.0.0.1:1/runs",  # an unencoded @ in the password
        f"postgresql://edge:{secret}/y@127.0.0.1:1/runs",  # an unencoded /
        f"host=127.0.0.1 port=1 user=edge password={secret}",  # libpq's key=value form
    ]
    for url in urls:
        for args in (
            ["runs"],
            ["summary", "1"],
            ["export", "1"],
            ["logs", "1"],
            ["migrate"],
            ["cleanup"],
            ["run", "valid.yaml", "--quiet"],
        ):
            for how in ("--db", "env"):
                if how == "--db":
                    res = edgeprof(*args, "--db", url, cwd=tmp_path)
                else:
                    res = edgeprof(*args, cwd=tmp_path, env=_env(EDGEPROF_DB=url))
                out = res.stdout + res.stderr
                assert secret not in out, (args, out)
                assert "Traceback" not in out, (args, out)


# -- run: errors before anything starts ----------------------------------------------------------


def test_run_missing_spec(tmp_path: Path) -> None:
    line = _one_line_error(edgeprof("run", "missing.yaml", cwd=tmp_path))
    assert "missing.yaml" in line


def test_run_spec_with_typo(tmp_path: Path) -> None:
    (tmp_path / "typo.yaml").write_text(TYPO_SPEC)
    line = _one_line_error(edgeprof("run", "typo.yaml", cwd=tmp_path))
    assert "typo.yaml:7:" in line
    assert "profiling.targets[1].timout" in line
    assert not list(tmp_path.glob("*.db"))  # nothing was created for a bad spec


def test_run_engine_not_reachable(tmp_path: Path) -> None:
    (tmp_path / "valid.yaml").write_text(VALID_SPEC)
    host = "unix:///nonexistent.sock"
    res = edgeprof(
        "run",
        "valid.yaml",
        "--db",
        f"sqlite:///{tmp_path}/r.db",
        "--quiet",
        cwd=tmp_path,
        env=_env(DOCKER_HOST=host),
    )
    line = _one_line_error(res)
    assert f"DOCKER_HOST={host}" in line


def test_run_bad_stats_source(tmp_path: Path) -> None:
    (tmp_path / "valid.yaml").write_text(VALID_SPEC)
    line = _one_line_error(edgeprof("run", "valid.yaml", "--stats-source", "magic", cwd=tmp_path))
    assert "'magic'" in line and "engine-api" in line


def test_migrate_an_old_database_with_progress(tmp_path: Path) -> None:
    """A database of the first release (one row a sample) is migrated in place, with
    progress shown, and every old sample reads back exactly."""
    import random
    import sqlite3

    from test_store import V1_SCHEMA

    db = tmp_path / "old.db"
    c = sqlite3.connect(db)
    for stmt in V1_SCHEMA[:-1]:  # the schema and one run, without its two samples
        c.execute(stmt)
    rng = random.Random(3)
    rows = [
        (1, 1_000 + i * 10_000_000, rng.choice([rng.random() * 100, float(i)]))
        for i in range(150_000)
    ]
    c.executemany("INSERT INTO samples VALUES (?, ?, ?)", rows)
    c.commit()
    c.close()
    url = f"sqlite:///{db}"
    line = _one_line_error(edgeprof("summary", "1", "--db", url, cwd=tmp_path))
    assert "edgeprof migrate" in line  # reading never migrates
    res = edgeprof("migrate", "--db", url, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"migrated from schema version 1 to {SCHEMA_VERSION}" in res.stdout
    progress = [x for x in res.stderr.splitlines() if "migrating samples to chunks" in x]
    assert len(progress) >= 5 and progress[-1].endswith("100 % (150,000 of 150,000)")
    store = open_store(url, readonly=True)
    t, v = store.series_samples(1)
    store.close()
    assert t.tolist() == [r[1] for r in rows] and v.tolist() == [r[2] for r in rows]
    res = edgeprof("migrate", "--db", url, cwd=tmp_path)
    assert f"is at schema version {SCHEMA_VERSION} already" in res.stdout


def test_settle_gc_collects_then_freezes_and_raises_the_young_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc

    from edgeprof.cli import common

    calls: list[str] = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append("collect") or 0)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "get_threshold", lambda: (700, 10, 10))
    monkeypatch.setattr(gc, "set_threshold", lambda *a: calls.append(f"threshold {a}"))
    common.settle_gc()
    assert calls == ["collect", "freeze", f"threshold {(common.GC_YOUNG_THRESHOLD, 10, 10)}"]
