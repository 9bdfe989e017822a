"""Code-profile outputs: top functions, flame graphs (SVG, HTML), speedscope JSON, the
``flame`` command, ``summary``'s code section and the report's.

Stacks are synthetic with known shares (80 % hot / 20 % cold, a recursive function), written
through the store (``Store.add_code_samples``) where a command reads them, so every printed
percentage is checked against a number the test chose.
"""

from __future__ import annotations

import base64
import hashlib
import html
import importlib.util
import json
import re
import shutil
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from edgeprof.codeprof.flame import (
    build_tree,
    render_html,
    render_svg,
    speedscope,
)
from edgeprof.codeprof.model import SLICE_NS, CodeSample, Frame
from edgeprof.codeprof.top import top_functions
from edgeprof.errors import UserError

SEC = 1_000_000_000
T0 = 1_700_000_000 * SEC
APP = "/app/app.py"
MAIN = Frame("<module>", APP, 30)
WORK = Frame("work", APP, 20)
HOT = Frame("hot", APP, 5)
COLD = Frame("cold", APP, 12)


def hot_cold(t0: int = T0, slices: int = 4, pid: int = 4242) -> list[CodeSample]:
    """80 % hot, 20 % cold, every slice alike: 80 + 20 samples per second."""
    out = []
    for k in range(slices):
        t = t0 + k * SLICE_NS
        out.append(CodeSample(pid, "python", t, (MAIN, WORK, HOT), 80))
        out.append(CodeSample(pid, "python", t, (MAIN, WORK, COLD), 20))
    return out


def recursive() -> list[CodeSample]:
    """fib recursing 3 deep in 30 samples, fib → helper in 10, other in 60."""
    fib = [Frame("fib", APP, 3), Frame("fib", APP, 4), Frame("fib", APP, 4)]
    return [
        CodeSample(7, "python", T0, (MAIN, *fib), 30),
        CodeSample(7, "python", T0, (MAIN, fib[0], Frame("helper", APP, 9)), 10),
        CodeSample(7, "python", T0, (MAIN, Frame("other", APP, 40)), 60),
    ]


# -- top functions ------------------------------------------------------------------------


def test_top_functions_hot_and_cold_exact() -> None:
    code = top_functions(hot_cold())
    assert code.samples == 400
    rows = [(f.function, f.line, f.self_pct, f.total_pct) for f in code.top]
    assert rows == [
        ("hot", 5, 80.0, 80.0),
        ("cold", 12, 20.0, 20.0),
        ("<module>", 30, 0.0, 100.0),
        ("work", 20, 0.0, 100.0),
    ]
    assert code.to_json()["top"][0] == {
        "function": "hot",
        "file": APP,
        "line": 5,
        "self_pct": 80.0,
        "total_pct": 80.0,
    }


def test_recursion_is_counted_once_in_total() -> None:
    code = top_functions(recursive())
    by = {f.function: f for f in code.top}
    assert code.samples == 100
    assert (by["fib"].self_pct, by["fib"].total_pct) == (30.0, 40.0)  # not 30 × 3 + 10
    assert by["fib"].line == 4  # the line most of its samples were taken at (70 of 110)
    assert (by["helper"].self_pct, by["helper"].total_pct) == (10.0, 10.0)
    assert (by["other"].self_pct, by["other"].total_pct) == (60.0, 60.0)
    assert [f.function for f in code.top][:3] == ["other", "fib", "helper"]
    assert all(f.total_pct <= 100.0 for f in code.top)


def test_the_line_of_a_function_is_where_it_ran_itself() -> None:
    # loop() calls inner() at line 10 in 90 samples and runs itself at line 12 in 10: its
    # self time is at line 12; a function without self samples keeps its busiest line
    loop_calls, loop_runs = Frame("loop", APP, 10), Frame("loop", APP, 12)
    rows = [
        CodeSample(1, "p", T0, (MAIN, loop_calls, Frame("inner", APP, 50)), 90),
        CodeSample(1, "p", T0, (MAIN, loop_runs), 10),
    ]
    by = {f.function: f for f in top_functions(rows).top}
    assert (by["loop"].line, by["loop"].self_pct, by["loop"].total_pct) == (12, 10.0, 100.0)
    assert by["inner"].line == 50 and by["<module>"].line == 30


def test_top_is_limited_to_ten_by_self() -> None:
    rows = [CodeSample(1, "p", T0, (MAIN, Frame(f"f{i:02d}", APP, i)), i + 1) for i in range(15)]
    code = top_functions(rows)
    assert len(code.top) == 10
    assert [f.function for f in code.top] == [f"f{i:02d}" for i in range(14, 4, -1)]
    assert code.samples == sum(range(1, 16))
    assert top_functions([]).samples == 0


# -- flame graph ----------------------------------------------------------------------------


def test_tree_has_the_process_level_and_exact_widths() -> None:
    rows = hot_cold(slices=1) + [CodeSample(99, "worker", T0, (Frame("child", APP, 1),), 25)]
    root = build_tree(rows)
    assert root.value == 125
    assert set(root.children) == {("python [4242]", ""), ("worker [99]", "")}
    work = root.children[("python [4242]", "")].children[("<module>", APP)].children[("work", APP)]
    assert work.value == 100 and work.self_value == 0
    assert {k[0]: c.value for k, c in work.children.items()} == {"hot": 80, "cold": 20}


def _frames(svg_text: str) -> dict[str, tuple[int, int, str]]:
    """function → (data-x, data-w, tooltip) of the SVG's boxes."""
    root = ET.fromstring(svg_text)
    ns = {"s": "http://www.w3.org/2000/svg"}
    out = {}
    for g in root.iter("{http://www.w3.org/2000/svg}g"):
        title = g.find("s:title", ns)
        assert title is not None
        out[g.get("data-n") or ""] = (
            int(g.get("data-x", -1)),
            int(g.get("data-w", -1)),
            title.text or "",
        )
    return out


def test_svg_is_standalone_xml_with_tooltips_and_script() -> None:
    svg = render_svg(build_tree(hot_cold()), "run 1 · t")
    assert svg.startswith("<?xml")
    frames = _frames(svg)
    assert frames["hot"][1] == 320 and frames["cold"][1] == 80
    assert frames["hot"][2] == f"hot ({APP}:5)\n320 samples, 80.00 %"
    assert frames["cold"][2] == f"cold ({APP}:12)\n80 samples, 20.00 %"
    assert frames["work"][1] == 400
    assert "<![CDATA[" in svg and "edgeprof-flame" in svg
    for bad in ("http://", "https://"):  # nothing fetched (the namespace URI aside)
        assert svg.replace('xmlns="http://www.w3.org/2000/svg"', "").count(bad) == 0


def test_app_strings_are_escaped() -> None:
    evil = Frame("<script>alert(1)</script>", '"><img src=x onerror=alert(2)>', 1)
    rows = [CodeSample(1, "</svg><script>x</script>", T0, (evil,), 5)]
    svg = render_svg(build_tree(rows), "t")
    ET.fromstring(svg)  # still well-formed XML
    assert "<script>alert" not in svg and "<img" not in svg
    page = render_html(build_tree(rows), "<b>t</b>")
    assert "<script>alert" not in page and "<img" not in page and "<b>t" not in page


def test_html_page_carries_search_and_a_hashed_script() -> None:
    page = render_html(build_tree(hot_cold()), "run 1 · t")
    assert 'class="flame-search"' in page
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in page
    assert "unsafe-inline'; img" in page  # styles only; the script is allowed by its hash
    assert "script-src 'unsafe-inline'" not in page


# -- speedscope -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def speedscope_schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """speedscope's own schema, from its npm package (``npm pack speedscope``)."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: speedscope's schema comes from its npm package")
    d = tmp_path_factory.mktemp("speedscope")
    r = subprocess.run(
        [npm, "pack", "speedscope", "--silent"],
        cwd=d,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if r.returncode != 0:
        pytest.skip(f"npm pack speedscope failed: {r.stderr.strip()[-300:]}")
    tgz = next(d.glob("speedscope-*.tgz"))
    with tarfile.open(tgz) as tf:
        f = tf.extractfile("package/dist/release/file-format-schema.json")
        assert f is not None
        return json.load(f)  # type: ignore[no-any-return]


def test_speedscope_is_valid_by_its_schema(speedscope_schema: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    rows = hot_cold(slices=3) + recursive()
    doc = speedscope(rows, "run 1 · t")
    jsonschema.validate(doc, speedscope_schema)
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    names = [f["name"] for f in doc["shared"]["frames"]]
    hot = names.index("hot")
    prof = {p["name"]: p for p in doc["profiles"]}
    py = prof["python [4242]"]
    assert py["type"] == "sampled" and py["endValue"] == 300 == sum(py["weights"])
    assert sum(w for s, w in zip(py["samples"], py["weights"], strict=True) if s[-1] == hot) == 240
    assert sum(prof["python [7]"]["weights"]) == 100
    # a broken document is caught by the same schema (the check is not vacuous)
    bad = json.loads(json.dumps(doc))
    bad["profiles"][0]["type"] = "sampled-ish"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, speedscope_schema)


# -- in a browser -----------------------------------------------------------------------------


def _page_checks(url: str, chromium: str, svg: bool) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    seen: dict[str, Any] = {"requests": [], "errors": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 800})
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.on(
                "console",
                lambda m: seen["errors"].append(m.text) if m.type in ("error", "warning") else None,
            )
            page.goto(url)
            flame = "document.querySelector('svg.edgeprof-flame')"
            if svg:
                seen["matched"] = page.evaluate(f"{flame}.edgeprofFlame.search('hot|cold')")
                seen["matched_text"] = page.evaluate(
                    f"{flame}.querySelector('text.matched').textContent"
                )
            else:
                page.fill("input.flame-search", "^hot")
                seen["matched_text"] = page.evaluate(
                    "document.querySelector('span.flame-matched').textContent"
                )
            seen["magenta"] = page.evaluate(
                f"Array.from({flame}.querySelectorAll('g.f')).filter(g => "
                "g.querySelector('rect').getAttribute('fill') === 'rgb(230,0,230)')"
                ".map(g => g.dataset.n)"
            )
            # hover a box: the details line names it
            page.hover("svg.edgeprof-flame g.f[data-n='cold'] rect")
            seen["details"] = page.evaluate(f"{flame}.querySelector('text.details').textContent")
            # click to zoom: cold fills the width, hot is hidden
            page.click("svg.edgeprof-flame g.f[data-n='cold'] rect")
            seen["zoomed"] = page.evaluate(
                f"[{flame}.querySelector(\"g.f[data-n='cold'] rect\").getAttribute('width'),"
                f"{flame}.querySelector(\"g.f[data-n='hot']\").getAttribute('class')]"
            )
            page.click("svg.edgeprof-flame text.reset")
            seen["reset"] = page.evaluate(
                f"{flame}.querySelector(\"g.f[data-n='hot']\").getAttribute('class')"
            )
        finally:
            browser.close()
    return seen


@pytest.mark.parametrize("suffix", ["svg", "html"])
def test_flame_graph_in_a_browser(tmp_path: Path, chromium: str, suffix: str) -> None:
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    root = build_tree(hot_cold())
    path = tmp_path / f"flame.{suffix}"
    path.write_text(render_svg(root, "t") if suffix == "svg" else render_html(root, "t"))
    seen = _page_checks(path.as_uri(), chromium, svg=suffix == "svg")
    assert seen["errors"] == []
    assert [u for u in seen["requests"] if not u.startswith("file:")] == []
    if suffix == "svg":
        assert seen["matched"] == 400  # samples: hot 320 + cold 80
        assert seen["matched_text"] == "Matched: 100.00 % (2 boxes)"
        assert sorted(seen["magenta"]) == ["cold", "hot"]
    else:
        assert seen["matched_text"] == "Matched: 80.00 % (1 boxes)"
        assert seen["magenta"] == ["hot"]
    assert seen["details"] == f"Function: cold ({APP}:12), 80 samples, 20.00 %"
    assert float(seen["zoomed"][0]) == pytest.approx(1180, abs=0.01)
    assert seen["zoomed"][1] == "f hide"
    assert seen["reset"] == "f"


def test_unknown_output_suffix_is_one_sentence() -> None:
    from edgeprof.codeprof.flame import check_output

    with pytest.raises(UserError, match=r"name it flame.svg, flame.html or profile.speedscope"):
        check_output("flame.png")


# -- through the store: the flame command, summary, the report ------------------------------


def make_code_run(
    url: str,
    stacks: dict[str, list[CodeSample]],
    metrics: dict[str, list[float]] | None = None,
    *,
    start_offset_ns: int = 0,
    config: dict[str, Any] | None = None,
) -> int:
    """A finished run: per target its stacks (``add_code_samples``) and, when given, metric
    series at one value per second from the target's start (``BatchWriter``)."""
    from edgeprof.model import Event, MetricSpec, Sample
    from edgeprof.store import BatchWriter, open_store
    from edgeprof.store.base import RunInfo, TargetInfo

    store = open_store(url)
    run_id = store.begin_run(RunInfo(spec_name="code", image="img", started_ns=T0, interval_s=1.0))
    w = BatchWriter(store, run_id)
    units = {"cpu.percent": "%", "memory.working_set_bytes": "B"}
    w.describe([MetricSpec(m, units.get(m, "1")) for m in sorted(metrics or {})])
    for i, (name, rows) in enumerate(stacks.items()):
        tid = store.begin_target(TargetInfo(run_id, i, name, ["app"], dict(config or {})))
        w.add_target(name, tid)
        t_start = T0 + start_offset_ns
        for m, vals in (metrics or {}).items():
            for k, v in enumerate(vals):
                w.write([Sample(m, (("target", name),), t_start + k * SEC, v)])
        w.event(Event(t_start, "start", "started", name, {}))
        w.end_target(tid)
        w.flush()
        store.add_code_samples(tid, rows)
        store.commit()
        end = max([r.t_ns + SLICE_NS for r in rows] + [t_start + SEC])
        store.update_target(
            tid,
            status="exited",
            exit_code=0,
            started_ns=t_start,
            ended_ns=end,
            duration_s=(end - t_start) / SEC,
        )
    w.close()
    store.end_run(run_id, "completed", T0 + 100 * SEC)
    store.close()
    return run_id


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'code.db'}"


def cli(*args: str) -> tuple[int, str, str]:
    """``edgeprof ARGS`` in this process: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from edgeprof.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as e:
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_flame_command_writes_svg_html_and_speedscope(url: str, tmp_path: Path) -> None:
    rid = make_code_run(url, {"app": hot_cold()})
    for name in ("flame.svg", "flame.html", "profile.speedscope.json"):
        out = tmp_path / name
        code, _, err = cli("flame", str(rid), "--db", url, "-o", str(out))
        assert code == 0, err
        assert f"to {out}" in err and "400 samples" in err
    frames = _frames((tmp_path / "flame.svg").read_text())
    assert frames["hot"][1] == 320 and frames["cold"][1] == 80
    assert 'class="flame-search"' in (tmp_path / "flame.html").read_text()
    doc = json.loads((tmp_path / "profile.speedscope.json").read_text())
    assert sum(doc["profiles"][0]["weights"]) == 400


def test_flame_window_and_kind_select_a_phase(url: str, tmp_path: Path) -> None:
    # 0-2 s: all hot; 2-4 s: all cold; native stacks in second 1
    rows = [
        CodeSample(5, "python", T0 + 0 * SEC, (MAIN, HOT), 100),
        CodeSample(5, "python", T0 + 1 * SEC, (MAIN, HOT), 100),
        CodeSample(5, "python", T0 + 2 * SEC, (MAIN, COLD), 100),
        CodeSample(5, "python", T0 + 3 * SEC, (MAIN, COLD), 60),
        CodeSample(5, "python", T0 + 1 * SEC, (Frame("memcpy", "libc.so.6", 0),), 40, "native"),
    ]
    rid = make_code_run(url, {"app": rows})
    out = tmp_path / "w.svg"
    code, _, err = cli("flame", str(rid), "--db", url, "-o", str(out), "--from", "2", "--to", "4")
    assert code == 0, err
    frames = _frames(out.read_text())
    assert "hot" not in frames and frames["cold"][1] == 160
    assert "the windows overlapping 2 s to 4 s (2 s to 4 s)" in err
    # whole windows: the title says which span they cover, not only what was asked
    code, _, err = cli("flame", str(rid), "--db", url, "-o", str(out), "--from", "2.5",
                       "--to", "3.2")  # fmt: skip
    assert code == 0, err
    assert _frames(out.read_text())["cold"][1] == 160
    assert "the windows overlapping 2.5 s to 3.2 s (2 s to 4 s) · 160 samples" in err
    code, _, err = cli("flame", str(rid), "--db", url, "-o", str(out), "--to", "0.5")
    assert "the windows overlapping the start to 0.5 s (0 s to 1 s)" in err
    code, _, err = cli("flame", str(rid), "--db", url, "-o", str(out), "--kind", "native")
    assert code == 0, err
    frames = _frames(out.read_text())
    assert set(frames) == {"all", "python [5]", "memcpy"}
    assert frames["memcpy"][1] == 40
    # a window with nothing in it says where the stacks are
    code, _, err = cli("flame", str(rid), "--db", url, "-o", str(out), "--from", "50")
    assert code == 2
    assert "no code samples between 50 s and its end; its stacks span 0 s to 4 s" in err


def test_flame_errors_are_one_sentence(url: str, tmp_path: Path) -> None:
    rid = make_code_run(url, {"a": hot_cold(), "b": hot_cold(pid=9), "c": []})
    out = str(tmp_path / "f.svg")
    code, _, err = cli("flame", str(rid), "--db", url, "-o", out)
    assert code == 2 and "code samples for several targets (a, b); pick one with --target" in err
    code, _, err = cli("flame", str(rid), "--db", url, "-o", out, "--target", "zz")
    assert code == 2 and "no target named 'zz' (its targets: a, b, c)" in err
    code, _, err = cli("flame", str(rid), "--db", url, "-o", out, "--target", "c")
    assert code == 2 and "target 'c' of run 1 stored no code samples" in err
    code, _, err = cli("flame", str(rid), "--db", url, "-o", str(tmp_path / "f.png"))
    assert code == 2 and "cannot tell the format of" in err
    code, _, err = cli("flame", str(rid), "--db", url, "-o", out, "--from", "3", "--to", "2")
    assert code == 2 and "--to 2 is not after --from 3" in err
    code, _, err = cli("flame", str(rid), "--db", url, "-o", out, "--kind", "java")
    assert code == 2 and "java" in err
    assert all("Traceback" not in e for e in (err,))
    code, _, err = cli("flame", str(rid), "--db", url, "-o", out, "--target", "b")
    assert code == 0, err


def test_repeats_are_picked_by_full_or_unique_base_name(url: str, tmp_path: Path) -> None:
    rid = make_code_run(url, {"t#1": hot_cold(), "t#2": hot_cold(pid=8), "u": hot_cold(pid=3)})
    out = str(tmp_path / "f.svg")
    code, _, err = cli("flame", str(rid), "--db", url, "-o", out, "--target", "t")
    assert code == 2 and "--target 't' matches t#1, t#2" in err
    code, _, err = cli("flame", str(rid), "--db", url, "-o", out, "--target", "t#2")
    assert code == 0 and "t#2" in err


def test_summary_json_and_text_show_the_top_functions(url: str) -> None:
    rid = make_code_run(url, {"app": hot_cold() + recursive(), "plain": []})
    code, out, err = cli("summary", str(rid), "--db", url, "--json")
    assert code == 0, err
    doc = json.loads(out)
    app, plain = doc["targets"]
    assert "code" not in plain
    assert app["code"]["samples"] == 500
    top = {f["function"]: f for f in app["code"]["top"]}
    assert top["hot"] == {
        "function": "hot",
        "file": APP,
        "line": 5,
        "self_pct": 64.0,
        "total_pct": 64.0,
    }  # 320 of 500
    assert (top["cold"]["self_pct"], top["cold"]["total_pct"]) == (16.0, 16.0)
    assert (top["fib"]["self_pct"], top["fib"]["total_pct"]) == (6.0, 8.0)  # 30, 40 of 500
    assert top["<module>"]["total_pct"] == 100.0
    assert [f["function"] for f in app["code"]["top"]][:2] == ["hot", "cold"]
    code, out, err = cli("summary", str(rid), "--db", url)
    assert code == 0, err
    assert "Code: top functions of app (500 stack samples)" in out
    line = next(ln for ln in out.splitlines() if " hot " in ln)
    assert "64.0 %" in line and f"{APP}:5" in line


def test_report_embeds_a_flame_graph_per_target(url: str) -> None:
    pytest.importorskip("tsdownsample", reason="the report extra is not installed")
    if importlib.util.find_spec("uplot") is None:
        pytest.skip("the report extra (uplot-python) is not installed")
    from edgeprof.report.html import build_report
    from edgeprof.store import open_store

    rid = make_code_run(
        url,
        {"a": hot_cold(), "b": recursive(), "c": []},
        {"cpu.percent": [50.0, 60.0, 70.0]},
    )
    store = open_store(url, readonly=True)
    try:
        page, _ = build_report(store, [rid])
        plain, _ = build_report(store, [rid], target="c")
    finally:
        store.close()
    assert "<section id='code'" in page and "<section id='code'" not in plain
    assert page.count("<details class='flame'>") == 2  # collapsed, one per target with stacks
    assert page.count('<svg role="img" class="edgeprof-flame"') == 2
    assert "a: top functions (400 stack samples)" in page
    assert "<td class='n'>80.0 %</td>" in page
    from edgeprof.codeprof.flame import flame_js
    from edgeprof.report.html import _script, _sha256

    flame = _script(flame_js())
    assert f"<script>{flame}</script>" in page
    csp = re.search(r'Content-Security-Policy" content="([^"]*)"', page)
    assert csp is not None and html.escape(_sha256(flame)) in csp.group(1)
    assert "flame" not in plain.split("<main>")[1].split("<footer>")[0].lower()


def test_report_flame_graph_works_in_a_browser(url: str, tmp_path: Path, chromium: str) -> None:
    pytest.importorskip("tsdownsample", reason="the report extra is not installed")
    if importlib.util.find_spec("uplot") is None or importlib.util.find_spec("playwright") is None:
        pytest.skip("the report extra or playwright is not installed")
    from playwright.sync_api import sync_playwright

    from edgeprof.report.html import write_report
    from edgeprof.store import open_store

    rid = make_code_run(url, {"a": hot_cold(), "b": recursive()}, {"cpu.percent": [5.0, 9.0]})
    path = tmp_path / "r.html"
    store = open_store(url, readonly=True)
    try:
        write_report(store, [rid], str(path))
    finally:
        store.close()
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "console",
                lambda m: errors.append(m.text) if m.type in ("error", "warning") else None,
            )
            page.goto(path.as_uri())
            page.wait_for_selector("html[data-rendered=true]", timeout=30_000)
            second = "details.flame >> nth=1"
            page.click(f"{second} >> summary")
            page.fill(f"{second} >> input.flame-search", "fib")
            matched = page.text_content(f"{second} >> span.flame-matched")
            first = page.text_content("details.flame >> nth=0 >> span.flame-matched")
        finally:
            browser.close()
    assert errors == []
    assert matched == "Matched: 40.00 % (3 boxes)"  # fib's 40 of 100 samples, nested once
    assert first == ""
