"""``edgeprof import`` into a real PostgreSQL (COPY, ids from the sequences) and ``export
--format sqlite`` out of it: the same checks as tests/unit/test_transfer.py."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from edgeprof.store import open_store
from tests.unit.test_transfer import (
    U,
    check_concurrent_imports,
    check_crashed_run,
    check_older_schemas,
    check_replace,
    check_round_trip,
    check_spool_merge,
    check_spool_overlap,
    cli,
    dst_snap,
    imported,
    make_run,
    run_file,
    src_snap,
)

pytestmark = pytest.mark.integration


def test_round_trip_into_postgres_by_copy(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    seen: list[str] = []
    copy = psycopg.Cursor.copy

    def spy(self: Any, statement: Any, *a: Any, **kw: Any) -> Any:
        seen.append(str(statement))
        return copy(self, statement, *a, **kw)

    monkeypatch.setattr(psycopg.Cursor, "copy", spy)
    check_round_trip(pg_url, tmp_path)
    tables = {s.split()[1] for s in seen}
    assert tables == {
        "targets", "series", "timeblocks", "chunks", "events", "logs", "code_stacks",
        "code_samples",
    }  # fmt: skip
    assert all(s.endswith("FROM STDIN (FORMAT BINARY)") for s in seen)


def test_crashed_run_into_postgres(pg_url: str, tmp_path: Path) -> None:
    check_crashed_run(pg_url, tmp_path)


def test_replace_partial_copy_in_postgres(pg_url: str, tmp_path: Path) -> None:
    check_replace(pg_url, tmp_path)


def test_spool_merge_into_postgres(pg_url: str, tmp_path: Path) -> None:
    check_spool_merge(pg_url, tmp_path)


def test_spool_overlap_into_postgres(pg_url: str, tmp_path: Path) -> None:
    check_spool_overlap(pg_url, tmp_path)


def test_concurrent_imports_into_postgres(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_concurrent_imports(pg_url, tmp_path, monkeypatch)


def test_older_schemas_into_postgres(pg_url: str, tmp_path: Path) -> None:
    check_older_schemas(pg_url, tmp_path)


def test_export_from_postgres_to_sqlite(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = open_store(pg_url)
    rid = make_run(s, uuid=U)
    s.close()
    out = tmp_path / "run.db"
    code, _out, err = cli(
        ["export", str(rid), "-f", "sqlite", "-o", str(out), "--db", pg_url], capsys
    )
    assert code == 0, err
    assert src_snap(out, 1) == dst_snap(pg_url, rid)
    [r], _ = imported([out], pg_url)
    assert (r.action, r.dst_run_id) == ("skipped", rid)


def test_imports_at_once_into_postgres(pg_url: str, tmp_path: Path) -> None:
    """Several importers at once: ids reserved from the sequences never collide; the same
    file imported twice at once is added once (the other import sees it and skips)."""
    open_store(pg_url).close()  # the schema, before the importers race to create it
    files = []
    for i in range(3):
        (tmp_path / str(i)).mkdir()
        files.append(
            run_file(tmp_path / str(i), "run.db", lambda st, i=i: make_run(st, range(i, 2100 + i)))
        )
    jobs = [*files, files[0]]
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            [results[k]], _ = imported([jobs[k]], pg_url)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.action for r in results) == ["added", "added", "added", "skipped"]
    assert results[0].uuid == results[3].uuid and results[0].dst_run_id == results[3].dst_run_id
    for f, r in zip(files, results, strict=False):
        assert dst_snap(pg_url, r.dst_run_id) == src_snap(f)
