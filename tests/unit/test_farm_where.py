"""Filters on run metadata: ``--where``/``--tag``/``--since`` parsing and matching, the
filters ``list_runs`` pushes into SQL, ``edgeprof runs`` with them (limit after filtering,
``--json`` with uuid and meta, the device and tag columns, 80 columns), errors (exit 2)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from edgeprof.cli.main import main
from edgeprof.errors import UserError
from edgeprof.farm import where as W
from edgeprof.report.terminal import runs_table, short_image, short_model
from edgeprof.store import open_store
from edgeprof.store.base import RunInfo, RunRow, TargetInfo

NOW = 1_800_000_000 * 10**9
ORIN = "NVIDIA Jetson AGX Orin Developer Kit"
XAVIER = "NVIDIA Jetson Xavier NX Developer Kit"


def row(meta: dict[str, Any], **kw: Any) -> RunRow:
    base: dict[str, Any] = dict(
        id=1,
        spec_name="objcounter",
        image="reg.example.com/team/objcounter:1.0",
        started_ns=NOW,
        ended_ns=None,
        status="completed",
        targets=1,
        failed_targets=0,
        uuid="0a1b2c3d-0000-4000-8000-000000000001",
        meta=meta,
    )
    base.update(kw)
    return RunRow(**base)


META = {
    "device": {"model": ORIN, "hostname": "orin-01", "cpu_cores": 12},
    "ci": {"system": "jenkins", "branch": "main", "commit": "abc123"},
    "tags": {"build": "42", "Variant": "int8"},
}


# -- parsing -----------------------------------------------------------------------------


def test_parse_where_operators_and_keys() -> None:
    assert W.parse_where("device.model~Orin") == W.Condition("device.model", "~", "Orin")
    assert W.parse_where("ci.branch=main") == W.Condition("ci.branch", "=", "main")
    # the first operator splits: a value may hold = and ~
    assert W.parse_where("tag.opts=a=b~c") == W.Condition("tag.opts", "=", "a=b~c")
    # sections are lower-cased; a tag's own name is kept as given
    assert W.parse_where("Device.Model=x").key == "device.model"
    assert W.parse_where("TAG.Variant=int8").key == "tag.Variant"
    assert W.parse_where("Spec=objcounter").key == "spec"
    assert W.parse_tag("build=42") == W.Condition("tag.build", "=", "42")
    assert W.conditions(["status=completed"], ["build=42"]) == [
        W.Condition("status", "=", "completed"),
        W.Condition("tag.build", "=", "42"),
    ]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("device.model", "is not KEY=VALUE"),
        ("=Orin", "is not KEY=VALUE"),
        ("device.colour=red", "unknown key 'device.colour'"),
        ("host=x", "unknown key 'host'"),
        ("tag.=x", "unknown key 'tag.'"),
    ],
)
def test_parse_where_errors(text: str, words: str) -> None:
    with pytest.raises(UserError) as e:
        W.parse_where(text)
    msg = str(e.value)
    assert words in msg and "\n" not in msg
    if "unknown key" in msg:
        assert "device.model" in msg and "ci.branch" in msg and "tag.NAME" in msg


def test_parse_tag_error() -> None:
    with pytest.raises(UserError, match="--tag 'build' is not NAME=VALUE"):
        W.parse_tag("build")


@pytest.mark.parametrize(
    ("text", "age_s"),
    [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 7 * 86400), ("2w", 14 * 86400)],
)
def test_parse_since_ages(text: str, age_s: int) -> None:
    assert W.parse_since(text, now_ns=NOW) == NOW - age_s * 10**9
    assert W.parse_since(text.upper(), now_ns=NOW) == NOW - age_s * 10**9


def test_parse_since_dates_are_local_time_unless_zoned() -> None:
    local = dt.datetime(2026, 11, 20).timestamp()
    assert W.parse_since("2026-11-20") == int(local) * 10**9
    assert W.parse_since("2026-11-20T10:00") == int(local + 36000) * 10**9
    zoned = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.timezone.utc).timestamp()
    assert W.parse_since("2026-11-20T10:00:00+00:00") == int(zoned) * 10**9
    assert W.parse_since("2026-11-20T10:00Z") == int(zoned) * 10**9  # also on Python 3.10


def test_parse_since_out_of_range_is_clamped() -> None:
    """Ages and dates beyond what a 64-bit start time holds: every run, or none (never
    an OverflowError from the database)."""
    assert W.parse_since("99999999999999d", now_ns=NOW) == 0
    assert W.parse_since("0001-01-01") == 0
    assert W.parse_since("9999-12-31") == 2**63 - 1
    assert W.parse_since("9999-12-31T23:59:59-05:00") == 2**63 - 1


def test_runs_since_far_dates(tmp_path: Path, capsys: Any) -> None:
    db = make_db(tmp_path)
    for since, ids in (("0001-01-01", [6, 5, 4, 3, 2, 1]), ("9999-12-31", [])):
        rc, out, err = run_cli(capsys, "runs", "--db", db, "--since", since, "--json")
        assert rc == 0, err
        assert [e["id"] for e in json.loads(out)] == ids


def test_latest_by_is_the_run_started_last_not_stored_last(tmp_path: Path) -> None:
    """``import`` stores an older run of a device after a newer one: the newest is the
    one started last (equal starts: the larger id)."""
    db = f"sqlite:///{tmp_path / 'l.db'}"
    store = open_store(db)
    for start, model, build in (
        (NOW + 3600 * 10**9, ORIN, "43"),  # 1: started last
        (NOW, ORIN, "42"),  # 2: imported later, started earlier
        (NOW, XAVIER, "41"),  # 3
        (NOW, XAVIER, "42"),  # 4: the same start as 3: the larger id
    ):
        rid = store.begin_run(
            RunInfo(
                "s", "i", start, 0.5, meta={"device": {"model": model}, "tags": {"build": build}}
            )
        )
        store.end_run(rid, "completed", start + 10**9)
    got = W.latest_by(store, "device.model", [])
    assert {v: r.id for v, r in got.items()} == {ORIN: 1, XAVIER: 4}
    got = W.latest_by(store, "device.model", W.conditions([], ["build=42"]))
    assert {v: r.id for v, r in got.items()} == {ORIN: 2, XAVIER: 4}
    store.close()


@pytest.mark.parametrize("bad", ["yesterday", "7", "7y", "-1d", "2026-13-01"])
def test_parse_since_errors(bad: str) -> None:
    with pytest.raises(UserError) as e:
        W.parse_since(bad)
    msg = str(e.value)
    assert msg.startswith(f"--since {bad!r}") and "7d" in msg and "2026-11-20" in msg


# -- matching ----------------------------------------------------------------------------


def test_run_value_maps_the_keys() -> None:
    r = row(META)
    assert W.run_value(r, "device.model") == ORIN
    assert W.run_value(r, "device.cpu_cores") == "12"  # numbers compare as text
    assert W.run_value(r, "ci.branch") == "main"
    assert W.run_value(r, "tag.build") == "42"
    assert W.run_value(r, "tag.Variant") == "int8"
    assert W.run_value(r, "spec") == "objcounter"
    assert W.run_value(r, "image") == "reg.example.com/team/objcounter:1.0"
    assert W.run_value(r, "status") == "completed"
    assert W.run_value(r, "uuid") == "0a1b2c3d-0000-4000-8000-000000000001"
    assert W.run_value(r, "device.gpu_model") is None
    assert W.run_value(row({}), "ci.branch") is None
    assert W.run_value(row({"device": "garbage"}), "device.model") is None


def test_matches_equals_contains_and_absent() -> None:
    r = row(META)

    def m(*texts: str) -> bool:
        return W.matches(r, [W.parse_where(t) for t in texts])

    assert m("device.model~orin")  # contains: any case
    assert m("device.model~AGX Orin")
    assert not m("device.model~xavier")
    assert m("device.model=" + ORIN)
    assert not m("device.model=nvidia jetson agx orin developer kit")  # equals: exact case
    assert m("ci.branch=main", "tag.build=42", "device.model~Orin")  # all must hold
    assert not m("ci.branch=main", "tag.build=43")
    assert not m("device.gpu_model~a")  # absent: no match
    assert m("device.gpu_model=")  # KEY= : absent (or empty)
    assert not m("ci.branch=")
    assert m("ci.commit~")  # KEY~ : has the key
    assert not m("device.gpu_model~")
    assert W.matches(r, [])


def test_pushed_filters() -> None:
    conds = W.conditions(
        ["spec=objcounter", "spec=other", "image~obj", "status=completed", "ci.branch=main"]
    )
    assert W.pushed_filters(conds) == {"spec": "objcounter", "status": "completed"}


# -- the store: list_runs filters --------------------------------------------------------


def make_db(tmp_path: Path, url: str | None = None) -> str:
    """Runs 1..6, newest last: devices, tags, specs, statuses set so each filter tells
    them apart. Each run has 2 apps (run 4: one failed) and run 5 a service."""
    db = url or f"sqlite:///{tmp_path / 'w.db'}"
    store = open_store(db)
    plan: list[tuple[str, str, dict[str, Any], str, int]] = [
        ("objcounter", "img:1", {"device": {"model": ORIN}, "tags": {"build": "41"}}, "completed", 10),
        ("objcounter", "img:1", {"device": {"model": XAVIER}, "tags": {"build": "41"}}, "completed", 9),
        ("other", "img:1", {"device": {"model": ORIN}, "tags": {"build": "42"}}, "completed", 8),
        ("objcounter", "img:2", {"device": {"model": ORIN}, "tags": {"build": "42"}, "ci": {"branch": "main"}}, "completed", 3),
        ("objcounter", "img:2", {"device": {"model": XAVIER}, "tags": {"build": "42"}}, "error", 2),
        ("objcounter", "img:2", {}, "completed", 1),
    ]  # fmt: skip
    for i, (spec, image, meta, status, age_d) in enumerate(plan):
        t0 = NOW - age_d * 86400 * 10**9
        rid = store.begin_run(RunInfo(spec, image, t0, 0.5, meta=meta))
        for k in range(2):
            tid = store.begin_target(TargetInfo(rid, k, f"app{k}", []))
            store.update_target(tid, status="failed" if (i == 3 and k == 1) else "exited")
        if i == 4:
            store.begin_target(TargetInfo(rid, 2, "db", [], {"role": "service"}))
        store.end_run(rid, status, t0 + 10**9)
    store.close()
    return db


def test_list_runs_filters_in_sql_and_in_python(tmp_path: Path) -> None:
    check_list_runs(make_db(tmp_path))


@pytest.mark.integration
def test_list_runs_filters_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    """The same SQL on PostgreSQL (placeholders, LIMIT, the IN batches of target counts)."""
    check_list_runs(make_db(tmp_path, pg_url))
    store = open_store(pg_url)
    for i in range(1100):  # past two pages of 500, ids not contiguous (7 and 8 deleted)
        store.begin_run(RunInfo("p", "i", NOW + i, 0.5, meta={"device": {"model": str(i % 3)}}))
    with store._cursor(commit=True) as cur:
        cur.execute("DELETE FROM runs WHERE id IN (7, 8)")
    got = W.select_runs(store, W.conditions(["device.model=0", "spec=p"]), None, 1000)
    want = [7 + i for i in range(1100) if i % 3 == 0 and 7 + i not in (7, 8)][::-1]
    assert [r.id for r in got] == want
    latest = W.latest_by(store, "device.model", W.conditions(["spec=p"]), status=None)
    assert {v: r.id for v, r in latest.items()} == {"0": 7 + 1098, "1": 7 + 1099, "2": 7 + 1097}
    store.close()


def check_list_runs(db: str) -> None:
    store = open_store(db, readonly=True)
    assert [r.id for r in store.list_runs()] == [6, 5, 4, 3, 2, 1]
    assert [r.id for r in store.list_runs(spec="objcounter")] == [6, 5, 4, 2, 1]
    assert [r.id for r in store.list_runs(status="error")] == [5]
    assert [r.id for r in store.list_runs(image="img:1")] == [3, 2, 1]
    since = NOW - 5 * 86400 * 10**9
    assert [r.id for r in store.list_runs(since_ns=since)] == [6, 5, 4]
    orin = W.conditions(["device.model~orin"])
    assert [r.id for r in store.list_runs(keep=lambda r: W.matches(r, orin))] == [4, 3, 1]
    # the limit counts the runs kept: the newest 2 that match
    assert [r.id for r in store.list_runs(2, keep=lambda r: W.matches(r, orin))] == [4, 3]
    # target counts are those of the runs kept (not of the runs between them)
    rows = {r.id: r for r in store.list_runs(keep=lambda r: r.id in (5, 4, 1))}
    assert (rows[4].targets, rows[4].failed_targets, rows[4].services) == (2, 1, 0)
    assert (rows[5].targets, rows[5].failed_targets, rows[5].services) == (2, 0, 1)
    assert (rows[1].targets, rows[1].failed_targets) == (2, 0)
    assert rows[4].meta["ci"] == {"branch": "main"} and rows[4].uuid
    got = W.select_runs(store, W.conditions(["spec=objcounter"], ["build=42"]), since, 10)
    assert [r.id for r in got] == [5, 4]
    assert [r.id for r in W.select_runs(store, [], None, 10, status="error")] == [5]
    latest = W.latest_by(store, "device.model", W.conditions(["spec=objcounter"]))
    assert {v: r.id for v, r in latest.items()} == {ORIN: 4, XAVIER: 2}  # 5: error
    store.close()


def test_list_runs_pages_through_many_rows(tmp_path: Path) -> None:
    """More rows than a page (500): the filter still sees them all, newest first."""
    db = f"sqlite:///{tmp_path / 'm.db'}"
    store = open_store(db)
    for i in range(1200):
        meta = {"device": {"model": ORIN if i % 300 == 0 else XAVIER}}
        store.begin_run(RunInfo("s", "i", NOW + i, 0.5, meta=meta))
    store.close()
    store = open_store(db, readonly=True)
    orin = W.conditions(["device.model~orin"])
    ids = [r.id for r in W.select_runs(store, orin, None, 50)]
    assert ids == [901, 601, 301, 1]
    store.close()


# -- the CLI -----------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_runs_where_tag_since_limit_json(tmp_path: Path, capsys: Any) -> None:
    db = make_db(tmp_path)
    rc, out, err = run_cli(capsys, "runs", "--db", db, "--where", "device.model~orin", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert [e["id"] for e in doc] == [4, 3, 1]
    e = doc[0]
    for k in ("spec_name", "image", "started_ns", "ended_ns", "status", "targets"):
        assert k in e  # the existing fields are kept
    assert (e["targets"], e["failed_targets"]) == (2, 1)
    assert e["meta"]["device"]["model"] == ORIN and len(e["uuid"]) == 36
    rc, out, _ = run_cli(
        capsys, "runs", "--db", db, "--where", "device.model~orin", "-n", "2", "--json"
    )
    assert [e["id"] for e in json.loads(out)] == [4, 3]  # the newest 2 that match
    rc, out, _ = run_cli(
        capsys, "runs", "--db", db, "--tag", "build=42", "--where", "spec=objcounter", "--json"
    )
    assert [e["id"] for e in json.loads(out)] == [5, 4]
    since = dt.datetime.fromtimestamp((NOW - 5 * 86400 * 10**9) / 1e9).isoformat()
    rc, out, _ = run_cli(capsys, "runs", "--db", db, "--since", since, "--json")
    assert [e["id"] for e in json.loads(out)] == [6, 5, 4]
    rc, out, _ = run_cli(capsys, "runs", "--db", db, "--where", "ci.branch=release")
    assert rc == 0 and "no runs in" in out and "match the filters" in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--where", "device.colour=red"], "--where: unknown key 'device.colour'"),
        (["--where", "orin"], "--where 'orin' is not KEY=VALUE"),
        (["--tag", "build"], "--tag 'build' is not NAME=VALUE"),
        (["--since", "last week"], "--since 'last week' is neither an age nor a date"),
    ],
)
def test_runs_filter_errors_exit_2(
    tmp_path: Path, capsys: Any, args: list[str], words: str
) -> None:
    rc, out, err = run_cli(capsys, "runs", "--db", make_db(tmp_path), *args)
    assert rc == 2 and out == ""
    assert err.startswith("edgeprof: error: ") and words in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_short_names() -> None:
    assert short_model(ORIN) == "Jetson AGX Orin"
    assert short_model(XAVIER) == "Jetson Xavier NX"
    assert short_model("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super") == (
        "Jetson Orin Nano Super"
    )
    assert short_model("PowerEdge R740 (SKU=1234)") == "PowerEdge R740"
    assert short_image("reg.example.com:5000/team/objcounter:1.2.3") == "objcounter:1.2.3"
    assert short_image("app@sha256:" + "ab" * 32) == "app@sha256:" + "ab" * 6


def test_runs_table_device_and_tag_columns(tmp_path: Path) -> None:
    store = open_store(make_db(tmp_path), readonly=True)
    rows = store.list_runs()
    store.close()
    con = Console(width=160, record=True)
    con.print(runs_table(rows, 160))
    text = con.export_text()
    head = next(x for x in text.splitlines() if "spec" in x)
    assert "device" in head and "tags" in head
    line4 = next(x for x in text.splitlines() if x.startswith("│  4 "))
    assert "Jetson AGX Orin" in line4 and "build=42" in line4 and "img:2" in line4
    # no metadata on any run listed: the columns are left out
    con = Console(width=160, record=True)
    con.print(runs_table([r for r in rows if r.id == 6], 160))
    head = next(x for x in con.export_text().splitlines() if "spec" in x)
    assert "device" not in head and "tags" not in head


def test_runs_table_fits_80_columns(tmp_path: Path, capsys: Any, monkeypatch: Any) -> None:
    db = f"sqlite:///{tmp_path / 'n.db'}"
    store = open_store(db)
    meta = {
        "device": {"model": "NVIDIA Jetson AGX Orin 64GB Developer Kit"},
        "tags": {"build": "1234", "variant": "int8-tensorrt"},
    }
    rid = store.begin_run(
        RunInfo(
            "object-counter-long-spec",
            "registry.example.com:5000/team/objcounter:1.2.3",
            NOW,
            0.5,
            meta=meta,
        )  # fmt: skip
    )
    store.end_run(rid, "completed", NOW + 65 * 10**9)
    store.close()
    monkeypatch.setenv("COLUMNS", "80")
    rc, out, _ = run_cli(capsys, "runs", "--db", db)
    assert rc == 0
    lines = out.splitlines()
    assert max(len(x) for x in lines) <= 80
    text = "\n".join(lines)
    # the worst case: long spec, image, model and tags all cut to fit, nothing dropped
    for word in ("object-c…", "objcounter:1", "completed", "Jetson AGX O", "build=1234"):
        assert word in text, text
    assert "variant=" in text.replace(" ", "").replace("\n", "")
    started = dt.datetime.fromtimestamp(NOW / 1e9).strftime("%m-%d %H:%M")
    assert started in text


def test_compact_table_keeps_a_status_word_whole() -> None:
    rows = [
        row(
            META, id=7, status="interrupted", spec_name="object-counter-long-spec", failed_targets=1
        )
    ]
    con = Console(width=80, record=True)
    con.print(runs_table(rows, 80))
    text = con.export_text()
    assert max(len(x) for x in text.splitlines()) <= 80
    assert "interrupted" in text, text
