"""Filters on a run's metadata: ``--where KEY=VALUE|KEY~VALUE``, ``--tag k=v``, ``--since``.

Keys are the stored names, lower case: ``device.<k>`` is ``meta["device"][k]``, ``ci.<k>``
is ``meta["ci"][k]``, ``tag.<k>`` is ``meta["tags"][k]`` (a tag's name as it was given),
``spec``, ``image``, ``status`` and ``uuid`` are the run's own columns. ``KEY=VALUE`` holds
when the value is exactly ``VALUE`` (case-sensitive), ``KEY~VALUE`` when it contains
``VALUE`` ignoring case. A run without the key matches neither, except ``KEY=`` (nothing
after ``=``: runs without the key, or with it empty); ``KEY~`` holds for every run that has
the key. Every condition given must hold.

Pure: no store, no SQL. :func:`select_runs` only calls ``Store.list_runs``, which pushes
the equalities on its columns (spec, image, status) and ``since`` into SQL and tests the
rest on each row, newest first, a page at a time.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from edgeprof.errors import UserError
from edgeprof.store.base import RunRecord, RunRow, Store

DEVICE_KEYS = (
    "hostname",
    "model",
    "cpu_model",
    "cpu_cores",
    "memory_bytes",
    "gpu_model",
    "gpu_driver",
    "cuda",
    "jetpack",
    "l4t",
    "os",
    "kernel",
    "engine",
    "engine_version",
    "arch",
)
CI_KEYS = (
    "system",
    "commit",
    "branch",
    "build_url",
    "build_tag",
    "job_name",
    "node_name",
    "repo",
)
RUN_KEYS = {"spec": "spec_name", "image": "image", "status": "status", "uuid": "uuid"}
"""Query key → the run's own attribute."""
PUSHED = ("spec", "image", "status")
"""Keys whose equality ``list_runs`` tests in SQL."""

Op = Literal["=", "~"]


def known_keys() -> list[str]:
    return [
        *RUN_KEYS,
        *(f"device.{k}" for k in DEVICE_KEYS),
        *(f"ci.{k}" for k in CI_KEYS),
        "tag.NAME",
    ]


def check_key(key: str, option: str = "--where") -> str:
    """The key as stored (section lower case; a tag's name kept as given), or a
    UserError naming the known keys."""
    k = key.strip()
    head, dot, rest = k.partition(".")
    head = head.lower()
    if not dot and head in RUN_KEYS:
        return head
    if dot and head == "tag" and rest:
        return f"tag.{rest}"
    if dot and head == "device" and rest.lower() in DEVICE_KEYS:
        return f"device.{rest.lower()}"
    if dot and head == "ci" and rest.lower() in CI_KEYS:
        return f"ci.{rest.lower()}"
    raise UserError(f"{option}: unknown key {key!r}; use one of {', '.join(known_keys())}")


@dataclass(frozen=True)
class Condition:
    """One filter: ``key`` (as stored), ``=`` (equals) or ``~`` (contains, any case)."""

    key: str
    op: Op
    value: str

    @property
    def text(self) -> str:
        return f"{self.key}{self.op}{self.value}"

    def holds(self, row: RunRow | RunRecord) -> bool:
        v = run_value(row, self.key)
        if self.op == "=":
            return (v or "") == "" if self.value == "" else v == self.value
        return v is not None and self.value.casefold() in v.casefold()


def parse_where(text: str, option: str = "--where") -> Condition:
    """``"device.model~Orin"`` → ``Condition("device.model", "~", "Orin")``: the first
    ``=`` or ``~`` splits key from value."""
    m = re.match(r"^([^=~]*)([=~])(.*)$", text, re.S)
    if not m or not m.group(1).strip():
        raise UserError(
            f"{option} {text!r} is not KEY=VALUE (equals) or KEY~VALUE (contains, any case); "
            "write e.g. device.model~Orin or ci.branch=main"
        )
    op: Op = "=" if m.group(2) == "=" else "~"
    return Condition(check_key(m.group(1), option), op, m.group(3))


def parse_tag(text: str) -> Condition:
    """``--tag build=42`` → the condition ``tag.build=42``."""
    name, eq, value = text.partition("=")
    if not eq or not name.strip():
        raise UserError(f"--tag {text!r} is not NAME=VALUE; write e.g. --tag build=42")
    return Condition(f"tag.{name.strip()}", "=", value)


def conditions(where: Iterable[str] = (), tags: Iterable[str] = ()) -> list[Condition]:
    """The conditions of a command's ``--where`` and ``--tag`` options."""
    return [parse_where(w) for w in where] + [parse_tag(t) for t in tags]


def _scalar(v: Any) -> str | None:
    if v is None or isinstance(v, (dict, list)):
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def run_value(row: RunRow | RunRecord, key: str) -> str | None:
    """The value of a (checked) key for a run; None when the run does not have it."""
    attr = RUN_KEYS.get(key)
    if attr is not None:
        return _scalar(getattr(row, attr, None))
    head, _, rest = key.partition(".")
    section = {"device": "device", "ci": "ci", "tag": "tags"}.get(head)
    if section is None:
        return None
    meta = row.meta if isinstance(row.meta, dict) else {}
    part = meta.get(section)
    if not isinstance(part, dict):
        return None
    return _scalar(part.get(rest))


def matches(row: RunRow | RunRecord, conds: Sequence[Condition]) -> bool:
    """Whether every condition holds for the run."""
    return all(c.holds(row) for c in conds)


_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now_ns: int | None = None, option: str = "--since") -> int:
    """The earliest start time (ns since the epoch) ``--since`` allows: an age (``90s``,
    ``30m``, ``12h``, ``7d``, ``2w``: that long before now) or an ISO date or time
    (``2026-11-20``, ``2026-11-20T10:00``; local time unless it names its zone)."""
    t = text.strip()
    now = time.time_ns() if now_ns is None else now_ns
    m = _AGE.match(t.lower())
    if m:
        return _clamp(now - int(float(m.group(1)) * _UNIT_S[m.group(2)] * 1_000_000_000))
    try:
        # Python 3.10's fromisoformat does not take the "Z" of UTC
        when = dt.datetime.fromisoformat(t[:-1] + "+00:00" if t[-1:] in "Zz" and t else t)
    except ValueError:
        raise UserError(
            f"{option} {text!r} is neither an age nor a date; write an age such as 90s, "
            "30m, 12h, 7d or 2w, or an ISO date or time such as 2026-11-20 or "
            "2026-11-20T10:00"
        ) from None
    try:
        stamp = when.timestamp()
    except (ValueError, OverflowError, OSError):  # year 1 or 9999 in local time
        return 0 if when.year < 1970 else _NS_MAX
    return _clamp(int(stamp) * 1_000_000_000 + when.microsecond * 1000)


_NS_MAX = 2**63 - 1


def _clamp(ns: int) -> int:
    """A start time a database's 64-bit integer holds (before 1970: every run)."""
    return min(max(ns, 0), _NS_MAX)


def pushed_filters(conds: Sequence[Condition]) -> dict[str, str]:
    """The equalities ``list_runs`` tests in SQL: ``{"spec": …, "image": …, "status": …}``
    (the first condition of each; every condition is tested on the rows as well)."""
    out: dict[str, str] = {}
    for c in conds:
        if c.op == "=" and c.key in PUSHED and c.value and c.key not in out:
            out[c.key] = c.value
    return out


def select_runs(
    store: Store,
    conds: Sequence[Condition],
    since_ns: int | None = None,
    limit: int = 50,
    status: str | None = None,
) -> list[RunRow]:
    """The newest ``limit`` runs (newest first) started at or after ``since_ns`` for which
    every condition holds (and of ``status``, when given)."""
    pushed = pushed_filters(conds)
    if status is not None:
        if pushed.get("status", status) != status:
            return []
        pushed["status"] = status
    conds = list(conds)
    return store.list_runs(
        limit,
        spec=pushed.get("spec"),
        status=pushed.get("status"),
        image=pushed.get("image"),
        since_ns=since_ns,
        keep=(lambda r: matches(r, conds)) if conds else None,
    )


__all__ = [
    "CI_KEYS",
    "DEVICE_KEYS",
    "Condition",
    "check_key",
    "conditions",
    "known_keys",
    "latest_by",
    "matches",
    "parse_since",
    "parse_tag",
    "parse_where",
    "run_value",
    "select_runs",
]


def latest_by(
    store: Store,
    key: str,
    conds: Sequence[Condition],
    since_ns: int | None = None,
    status: str | None = "completed",
) -> dict[str, RunRow]:
    """For each value of ``key`` among the runs matching ``conds`` (started at or after
    ``since_ns``, of ``status``), the newest such run: the one started last (not the one
    stored last: ``import`` stores a device's older runs after newer ones; the larger id
    breaks a tie); runs without the key are left out."""
    pushed = pushed_filters(conds)
    if status is not None:
        if pushed.get("status", status) != status:
            return {}
        pushed["status"] = status
    conds = list(conds)
    best: dict[str, tuple[int, int]] = {}

    def note_newest(r: RunRow) -> bool:
        """Remembers the newest run of each value; keeps none (read in a second pass)."""
        v = run_value(r, key)
        if v is not None and matches(r, conds) and (r.started_ns, r.id) > best.get(v, (-1, -1)):
            best[v] = (r.started_ns, r.id)
        return False

    filters: dict[str, Any] = {
        "spec": pushed.get("spec"),
        "status": pushed.get("status"),
        "image": pushed.get("image"),
        "since_ns": since_ns,
    }
    store.list_runs(2**62, **filters, keep=note_newest)
    ids = {rid for _, rid in best.values()}
    if not ids:
        return {}
    rows = store.list_runs(len(ids), **filters, keep=lambda r: r.id in ids)
    return {str(run_value(r, key)): r for r in rows}
