"""JUnit XML as CI reads it: counts per suite and in total, escaped text, atomic writes."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edgeprof.errors import UserError
from edgeprof.report.junit import JUnitCase, JUnitSuite, to_xml, write_junit


def test_counts_outcomes_and_messages(tmp_path: Path) -> None:
    suites = [
        JUnitSuite(
            "gpu#1",
            [
                JUnitCase("cpu.percent p95 < 150", "failed", "p95 = 187.2 %, limit < 150 %"),
                JUnitCase("exit_code == 0", "passed"),
                JUnitCase("app.fps p50 >= 10", "error", "no data"),
            ],
        ),
        JUnitSuite("cpu", [JUnitCase("m", "skipped", "not run")], properties={"run": "3"}),
    ]
    out = tmp_path / "r.xml"
    write_junit(str(out), suites)
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites"
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "4",
        "failures": "1",
        "errors": "1",
        "skipped": "1",
    }
    first, second = root.findall("testsuite")
    assert (first.get("name"), first.get("tests"), first.get("failures")) == ("gpu#1", "3", "1")
    case = first.find("testcase")
    assert case is not None and case.get("name") == "cpu.percent p95 < 150"
    fail = case.find("failure")
    assert fail is not None and fail.get("message") == "p95 = 187.2 %, limit < 150 %"
    assert second.find("properties/property").get("value") == "3"  # type: ignore[union-attr]
    assert not list(tmp_path.glob(".junit-*"))
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # readable by a CI agent


def test_text_from_apps_is_escaped_and_control_characters_replaced() -> None:
    evil = 'app.<img src=x onerror=alert(1)> "q" & \x00\x1b[31m'
    root = ET.fromstring(to_xml([JUnitSuite(evil, [JUnitCase(evil, "failed", evil)])]))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == evil.replace("\x00", "\ufffd").replace(
        "\x1b", "\ufffd"
    )


def test_an_unwritable_path_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot write JUnit XML to .*; pick another --junit"):
        write_junit(str(tmp_path / "no" / "r.xml"), [])
