"""JUnit XML for CI: one ``<testsuite>`` per target, one ``<testcase>`` per check.

The layout is the one Jenkins' ``junit`` step, GitLab and GitHub test reporters read
(the Ant/Maven surefire dialect): ``testsuites > testsuite(name, tests, failures,
errors, skipped, time) > testcase(classname, name, time) > failure(message)|error|skipped``.
Budgets (``run``/``check``) and ``compare --fail-on`` both write it through
:func:`write_junit`.
"""

from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Literal

from edgeprof.errors import UserError

Outcome = Literal["passed", "failed", "error", "skipped"]


@dataclass(frozen=True)
class JUnitCase:
    name: str
    """e.g. ``cpu.percent p95 < 150``."""
    outcome: Outcome
    message: str = ""
    """Why it failed, with the measured value (``p95 = 187.2 %, limit < 150 %``)."""
    detail: str = ""
    """Longer text for the failure body (optional)."""
    time_s: float = 0.0
    kind: str = "budget"
    """The failure's ``type`` attribute (``budget``, ``regression`` …)."""


@dataclass(frozen=True)
class JUnitSuite:
    name: str
    """The target's name (a suite per target)."""
    cases: list[JUnitCase] = field(default_factory=list)
    time_s: float = 0.0
    properties: dict[str, str] = field(default_factory=dict)


def _clean(text: str) -> str:
    """XML 1.0 cannot carry most control characters, whatever the escaping."""
    return "".join(
        ch if ch in "\t\n\r" or (ord(ch) >= 0x20 and ch not in "\ufffe\uffff") else "\ufffd"
        for ch in text
    )


def to_xml(suites: list[JUnitSuite], name: str = "edgeprof") -> bytes:
    root = ET.Element("testsuites", name=_clean(name))
    totals: dict[str, int] = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for s in suites:
        counts: dict[str, int] = {
            "tests": len(s.cases),
            "failures": sum(c.outcome == "failed" for c in s.cases),
            "errors": sum(c.outcome == "error" for c in s.cases),
            "skipped": sum(c.outcome == "skipped" for c in s.cases),
        }
        for k in totals:
            totals[k] += counts[k]
        attrs = {"name": _clean(s.name), "time": f"{s.time_s:.3f}"}
        attrs.update({k: str(v) for k, v in counts.items()})
        el = ET.SubElement(root, "testsuite", attrs)
        if s.properties:
            props = ET.SubElement(el, "properties")
            for k, v in s.properties.items():
                ET.SubElement(props, "property", name=_clean(k), value=_clean(v))
        for c in s.cases:
            tc = ET.SubElement(
                el,
                "testcase",
                classname=_clean(f"{name}.{s.name}"),
                name=_clean(c.name),
                time=f"{c.time_s:.3f}",
            )
            if c.outcome == "failed":
                f = ET.SubElement(tc, "failure", message=_clean(c.message), type=c.kind)
                f.text = _clean(c.detail or c.message)
            elif c.outcome == "error":
                e = ET.SubElement(tc, "error", message=_clean(c.message))
                e.text = _clean(c.detail or c.message)
            elif c.outcome == "skipped":
                ET.SubElement(tc, "skipped", message=_clean(c.message))
    for k, total in totals.items():
        root.set(k, str(total))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(path: str, suites: list[JUnitSuite], name: str = "edgeprof") -> None:
    """Write the report atomically (a CI step never reads half a file)."""
    data = to_xml(suites, name)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".junit-", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would: a CI agent of another user reads it
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(
            f"cannot write JUnit XML to {path}: {e.strerror}; pick another --junit path"
        ) from None
