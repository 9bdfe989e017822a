"""``edgeprof report`` of real runs, opened in headless Chromium (Debian's ``chromium``).

A real run on the engine: a CPU burner at ``cpus: 0.5`` with a memory limit that publishes
app metrics named ``<img src=x onerror=alert(1)>`` (and a label and a rejected message
carrying markup) and prints ``</script><script>alert(2)</script>`` to its log. The report of
that run is opened in Chromium, driven by Playwright (its ``dialog``, ``console``,
``pageerror`` and ``request`` events are exactly what these checks need; no browser is
downloaded: the Debian binary is used). It must draw a chart for every metric group the run
has, log no console error, make no request but the page's own file, run none of the
injected scripts (no dialog, no global flag, no ``img`` or extra ``script`` element) — also
with its Content-Security-Policy removed, so the escaping alone is proven — and render in
under 2 s. A screenshot is saved under ``tests/artifacts/`` (or
``$EDGEPROF_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from .helpers import edgeprof

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

XSS_METRIC = "<img src=x onerror=alert(1)>"
XSS_FLAG_METRIC = '<img src=x onerror="window.__pwned=1;alert(11)">'
XSS_LOG = "</script><script>window.__pwned=2;alert(2)</script>"
XSS_LABEL = '"><svg onload="window.__pwned=3;alert(3)">'

APP = r"""
import json, os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(os.environ["EDGEPROF_METRICS_SOCKET"])
names = sys.argv[1:3]
label = sys.argv[3]
print("starting", flush=True)
print("</script><script>alert(2)</script>", flush=True)
print(sys.argv[4], flush=True)
blob = bytearray(48 * 1024 * 1024)  # a working set well under the 128 MiB limit
for i in range(len(blob) // 4096):
    blob[i * 4096] = 1
end = time.time() + 4
i = 0
while time.time() < end:
    t = time.time() + 0.05
    while time.time() < t:
        pass  # burn CPU (capped at cpus: 0.5)
    for n in names:
        s.send(json.dumps({"name": n, "value": i % 10, "meta": {"camera": label}}).encode())
    i += 1
s.send(json.dumps({"name": "<script>window.__pwned=4</script>", "value": "NaN-ish"}).encode())
print("done", i, flush=True)
"""


def _needs(chromium: str) -> str:
    """The Chromium to drive, once Playwright and the report extra are known to be here."""
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    if (
        importlib.util.find_spec("uplot") is None
        or importlib.util.find_spec("tsdownsample") is None
    ):
        pytest.skip("the report extra is not installed (pip install -e '.[report]')")
    return chromium


def artifacts_dir() -> Path:
    d = Path(os.environ.get("EDGEPROF_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


def open_report(path: Path, chromium: str, screenshot: Path | None = None) -> dict[str, Any]:
    """Open a report from disk; what happened: requests, console errors, dialogs, charts."""
    from playwright.sync_api import sync_playwright

    seen: dict[str, Any] = {"requests": [], "errors": [], "dialogs": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_needs(chromium), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
            page.on(
                "console",
                lambda m: seen["errors"].append(m.text) if m.type in ("error", "warning") else None,
            )
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.goto(path.as_uri())
            page.wait_for_selector("html[data-rendered=true]", timeout=30_000)
            page.wait_for_timeout(300)  # any late onerror/onload would have fired by now
            seen["render"] = page.evaluate("window.__edgeprofRender")
            seen["pwned"] = page.evaluate("window.__pwned === undefined ? null : window.__pwned")
            seen["canvases"] = page.evaluate(
                "Object.fromEntries(Array.from(document.querySelectorAll('.charts[data-group]'))"
                ".map(b => [b.dataset.group, b.querySelectorAll('.uplot canvas').length]))"
            )
            seen["imgs"] = page.evaluate("document.querySelectorAll('img, svg, iframe').length")
            seen["scripts"] = page.evaluate("document.querySelectorAll('script').length")
            seen["text"] = page.evaluate("document.body.textContent")
            seen["legend"] = page.evaluate(
                "Array.from(document.querySelectorAll('.u-legend .u-label')).map(e => e.textContent)"
            )
            seen["titles"] = page.evaluate(
                "Array.from(document.querySelectorAll('.u-title')).map(e => e.textContent)"
            )
            # hover the first chart: the legend shows a value with its unit
            over = page.locator(".uplot .u-over").first
            over.scroll_into_view_if_needed()
            box = over.bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
            page.wait_for_timeout(100)
            seen["hover"] = page.evaluate(
                "Array.from(document.querySelector('.u-legend').querySelectorAll('.u-value'))"
                ".map(e => e.textContent)"
            )
            # drag to zoom, double-click to reset
            y = box["y"] + box["height"] * 0.5
            page.mouse.move(box["x"] + box["width"] * 0.2, y)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.4, y, steps=5)
            page.mouse.up()
            page.wait_for_timeout(100)
            seen["zoomed_ticks"] = page.evaluate(_X_TICKS)
            page.mouse.dblclick(box["x"] + box["width"] * 0.5, y)
            page.wait_for_timeout(100)
            seen["reset_ticks"] = page.evaluate(_X_TICKS)
            if screenshot is not None:
                page.mouse.move(0, 0)
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen


# the first chart's x-axis range, read back from uPlot's hover readout is indirect; the axis
# is drawn on canvas, so compare the chart's caption-independent state: the legend's time at
# the left and right edges of the plot after moving the cursor there
_X_TICKS = """() => {
  const over = document.querySelector('.uplot .u-over');
  const r = over.getBoundingClientRect();
  const at = x => { over.dispatchEvent(new MouseEvent('mousemove', {bubbles: true, clientX: x, clientY: r.top + r.height / 2}));
    return document.querySelector('.u-legend .u-series .u-value').textContent; };
  return [at(r.left + 1), at(r.right - 1)];
}"""


@pytest.fixture(scope="module")
def xss_run(
    engine: str, chromium: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    _needs(chromium)
    tmp = tmp_path_factory.mktemp("report")
    (tmp / "app.py").write_text(APP)
    for p in (tmp, tmp / "app.py"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    args = [XSS_METRIC, XSS_FLAG_METRIC, XSS_LABEL, XSS_LOG]
    spec = tmp / "xss.yaml"
    spec.write_text(
        "name: xss\nimage: edgeprof-test/python:latest\n"
        f"run:\n  volumes: ['{tmp}:/work:ro']\n"
        "profiling:\n  interval: 0.1\n  metrics: [container, process, system]\n  targets:\n"
        f"    - name: burn\n      args: {json.dumps(['python3', '/work/app.py', *args])}\n"
        "      timeout: 60\n      resources: {cpus: 0.5, memory: 128m}\n"
    )
    db = tmp / "x.db"
    edgeprof("run", str(spec), db=db, check=0, timeout=180)
    out = tmp / "report.html"
    res = edgeprof("report", "latest", "-o", str(out), db=db, check=0)
    assert "wrote" in res.stderr
    return db, out


def _data(page: str) -> dict[str, Any]:
    m = re.search(r'id="edgeprof-data">(.*?)</script>', page, re.S)
    assert m is not None
    return json.loads(m.group(1))


def test_report_of_a_real_run_in_chromium(xss_run: tuple[Path, Path], chromium: str) -> None:
    _, out = xss_run
    shot = artifacts_dir() / "report-xss-run.png"
    seen = open_report(out, chromium, shot)
    data = _data(out.read_text())
    expected: dict[str, int] = {}
    for c in data["charts"]:
        expected[c["g"]] = expected.get(c["g"], 0) + 1
    # the groups this run has: container CPU/memory/IO/network/processes, host, app metrics
    assert {"cpu", "memory", "io", "net", "processes", "host", "app"} <= set(expected)
    # every chart drawn: uPlot draws one canvas per chart
    assert seen["canvases"] == expected
    assert seen["render"]["charts"] == len(data["charts"])
    assert seen["errors"] == []
    assert seen["requests"] == [out.as_uri()]
    assert seen["render"]["ms"] < 2000
    # no injected script ran, and the markup is shown as text
    assert seen["dialogs"] == [] and seen["pwned"] is None
    assert seen["imgs"] == 0 and seen["scripts"] == 3
    assert "</script><script>alert(2)</script>" in seen["text"]  # the log tail, as text
    assert XSS_LOG in seen["text"]
    assert f"app.{XSS_METRIC}" in seen["titles"]  # chart title via textContent
    assert any(XSS_LABEL in label for label in seen["legend"])
    # the CPU chart has the limit line; hover shows values with units
    cpu = next(c for c in data["charts"] if c["g"] == "cpu" and c["unit"] == "%")
    assert any(s["limit"] and "cpus 0.5" in s["label"] for s in cpu["series"])
    assert any(v.endswith(" %") for v in seen["hover"][1:]), seen["hover"]
    # zoom narrowed the x range; double-click restored it
    z, r = seen["zoomed_ticks"], seen["reset_ticks"]
    assert float(z[0].split()[0]) > float(r[0].split()[0])
    assert float(z[1].split()[0]) < float(r[1].split()[0])
    assert shot.stat().st_size > 10_000


def test_escaping_holds_without_the_csp(
    xss_run: tuple[Path, Path], chromium: str, tmp_path: Path
) -> None:
    """The CSP would block inline handlers anyway: remove it and the page is still inert."""
    _, out = xss_run
    page = out.read_text()
    stripped, n = re.subn(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    assert n == 1
    bare = tmp_path / "no-csp.html"
    bare.write_text(stripped)
    seen = open_report(bare, chromium)
    assert seen["dialogs"] == [] and seen["pwned"] is None
    assert seen["imgs"] == 0 and seen["scripts"] == 3
    assert seen["errors"] == [] and seen["requests"] == [bare.as_uri()]
