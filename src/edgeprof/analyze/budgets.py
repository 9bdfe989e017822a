"""Budgets: k6-style pass/fail expressions on a run's summary statistics.

A spec (and each target) may hold ``budgets:``, a mapping of a metric key to a list of
expressions::

    budgets:
      cpu.percent: ["p95 < 150", "mean < 90"]
      memory.working_set_bytes: ["max < 1.5GiB"]
      app.fps: ["p50 >= 10"]
      exit_code: ["== 0"]

An expression is ``STATISTIC OPERATOR NUMBER[UNIT]``:

* statistics of a gauge (or a derived rate): ``mean min max p50 p95 p99 count`` (k6's
  ``avg``, ``med``, ``p(95)`` are read as ``mean``, ``p50``, ``p95``); of a counter:
  ``total last count``;
* operators ``< <= > >= == !=``;
* units: sizes ``B``, ``KB MB GB TB`` (decimal, 1000) and ``KiB MiB GiB TiB`` (binary,
  1024), and docker's bare ``k m g t`` (binary, as in ``resources.memory: 512m``); times
  ``ns us µs ms s min h``; ``%``; rates ``MiB/s``…, ``/s``; ``Hz kHz MHz GHz``; ``mW W kW``;
  ``C`` / ``degC``. A number without a unit is in the metric's own unit (``ms`` for app
  timers, ``%`` for ``cpu.percent``, bytes for ``…_bytes``).

Target fields take no statistic: ``exit_code: ["== 0"]``, ``duration_s: ["< 2min"]``,
``oom_killed: ["== false"]``.

A key is a metric as ``edgeprof summary`` shows it (``cpu.percent``), ``app.<name>``, or a
labelled key (``process.cpu.percent{process=python}``): a key matches every series of that
metric whose labels include the key's, and each matching series is checked on its own (so
``gpu.utilization_percent`` checks every GPU). A key that matches nothing fails with "no
data" — a budget never passes silently.

Everything that can be checked without data (unknown metric, statistic, operator or unit, a
unit that does not fit a known metric's) is checked when the spec loads, before any
container starts. What only data can tell (the unit or kind of an ``app.*`` metric) is a
budget that errors at evaluation, with the reason.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, cast

from edgeprof.analyze.model import CounterStats, MetricStats, RunSummary, TargetSummary

Op = Literal["<", "<=", ">", ">=", "==", "!="]
Verdict = Literal["pass", "fail", "no data", "error"]

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
GAUGE_STATS = ("mean", "min", "max", "p50", "p95", "p99", "count")
COUNTER_STATS = ("total", "last", "count")
STAT_ALIASES = {"avg": "mean", "med": "p50", "median": "p50"}
TARGET_FIELDS = {"exit_code": "1", "duration_s": "s", "oom_killed": "bool"}
"""Budget keys that are facts of the target rather than metrics, with their unit."""

# -- units --------------------------------------------------------------------------------

_BASE_UNIT = {
    "bytes": "B",
    "byterate": "B/s",
    "time": "s",
    "percent": "%",
    "freq": "Hz",
    "power": "W",
    "temp": "degC",
    "rate": "/s",
}
_DIM_WORD = {
    "bytes": "a size",
    "byterate": "a byte rate",
    "time": "a time",
    "percent": "a percentage",
    "freq": "a frequency",
    "power": "a power",
    "temp": "a temperature",
    "rate": "a rate",
}
METRIC_UNITS: dict[str, tuple[str | None, float]] = {
    "B": ("bytes", 1.0),
    "B/s": ("byterate", 1.0),
    "s": ("time", 1.0),
    "ms": ("time", 1e-3),
    "%": ("percent", 1.0),
    "s/s": ("percent", 100.0),  # a share of time: 0.3 s/s = 30 %
    "Hz": ("freq", 1.0),
    "W": ("power", 1.0),
    "degC": ("temp", 1.0),
    "1/s": ("rate", 1.0),
    "1": (None, 1.0),
}
"""A metric's stored unit → (dimension, size of one stored unit in the dimension's base
unit). A threshold's value in the metric's unit is its base value divided by that size."""

_UNIT_EXAMPLES = {
    "bytes": "B, KB, MB, GB (decimal), KiB, MiB, GiB (binary) or m, g (docker's binary)",
    "byterate": "B/s, KB/s, MB/s, KiB/s, MiB/s, GiB/s",
    "time": "ns, us, ms, s, min or h",
    "percent": "%",
    "freq": "Hz, kHz, MHz or GHz",
    "power": "mW, W or kW",
    "temp": "C or degC",
    "rate": "/s",
}
_TIME = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "min": 60.0,
    "h": 3600.0,
}
_FREQ = {"hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}
_POWER = {"mW": 1e-3, "W": 1.0, "kW": 1e3}
_TEMP = {"C": 1.0, "degC": 1.0, "°C": 1.0}
_SIZE_RE = re.compile(r"^(?:([kmgt])(i?)(b?)|b)$", re.IGNORECASE)
_POW = {"k": 1, "m": 2, "g": 3, "t": 4}


def _size_factor(token: str) -> float | None:
    m = _SIZE_RE.match(token)
    if not m:
        return None
    if m.group(1) is None:
        return 1.0  # B
    prefix, binary, b = m.group(1).lower(), m.group(2), m.group(3)
    if binary or not b:  # KiB, Ki, and docker's bare k/m/g/t are binary
        return float(1024 ** _POW[prefix])
    return float(1000 ** _POW[prefix])  # KB, MB, GB, TB: decimal


def parse_unit(token: str) -> tuple[str, float]:
    """A threshold's unit → (dimension, size in the dimension's base unit).

    Raises ValueError with a sentence for a unit edgeprof does not know."""
    t = token.strip()
    if t == "%":
        return "percent", 1.0
    if t in _TIME:
        return "time", _TIME[t]
    if t in _POWER:
        return "power", _POWER[t]
    if t in _TEMP:
        return "temp", 1.0
    if t.lower() in _FREQ:
        return "freq", _FREQ[t.lower()]
    if t in ("/s", "1/s"):
        return "rate", 1.0
    if t.endswith("/s"):
        f = _size_factor(t[:-2])
        if f is not None:
            return "byterate", f
    f = _size_factor(t)
    if f is not None:
        return "bytes", f
    raise ValueError(
        f"unknown unit {t!r}; use a size (B, MB, MiB, GiB…), a time (ms, s…), %, "
        "a rate (MiB/s, /s), Hz, W or C — or no unit for the metric's own"
    )


# -- the metrics edgeprof knows -----------------------------------------------------------


@dataclass(frozen=True)
class MetricInfo:
    name: str
    unit: str
    kind: Literal["gauge", "counter"]
    """``counter`` for stored counters and running totals (statistics total, last, count)."""


@lru_cache(maxsize=1)
def metric_catalog() -> dict[str, MetricInfo]:
    """Every metric a collector declares, with the rates the sampler derives from counters.

    ``app.*`` metrics are declared by the app at run time and are not in here."""
    from edgeprof.collect.cgroup import NET_METRICS, container_metrics
    from edgeprof.collect.gpu.jetson import JetsonGpuLoadCollector
    from edgeprof.collect.gpu.nvml import PROCESS_METRICS, SUMMARY_METRICS
    from edgeprof.collect.gpu.tegrastats_parse import TEGRASTATS_METRICS
    from edgeprof.collect.host import host_metrics
    from edgeprof.collect.procs import process_metrics

    specs = [
        *container_metrics(),
        *NET_METRICS,
        *host_metrics(),
        *process_metrics(),
        *SUMMARY_METRICS,
        *PROCESS_METRICS,
        *TEGRASTATS_METRICS,
        *JetsonGpuLoadCollector().metrics(),
    ]
    out: dict[str, MetricInfo] = {}
    for m in specs:
        out[m.name] = MetricInfo(m.name, m.unit, "gauge" if m.kind == "gauge" else "counter")
        if m.kind != "gauge":
            r = m.rate_spec()
            out[r.name] = MetricInfo(r.name, r.unit, "gauge")
    return dict(sorted(out.items()))


def is_app_metric(name: str) -> bool:
    return name.startswith("app.") and len(name) > 4


def check_metric_name(name: str) -> None:
    """Raise ValueError with one sentence when ``name`` is neither a known metric, an
    ``app.*`` metric nor a target field."""
    if name in TARGET_FIELDS or is_app_metric(name) or name in metric_catalog():
        return
    choices = [*metric_catalog(), *TARGET_FIELDS]
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.75)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(
        f"unknown metric {name!r}; {hint}use a metric name 'edgeprof summary' shows "
        "(e.g. cpu.percent, memory.working_set_bytes), app.<name> for the app's own, "
        "or exit_code, duration_s, oom_killed"
    )


# -- keys and expressions -----------------------------------------------------------------

_KEY_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(?:\{(.*)\})?\s*$")
_LABEL_SPLIT = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_.\-]*\s*=)")
_EXPR_RE = re.compile(r"^\s*(?P<stat>[^\s<>=!]*)\s*(?P<op>[<>=!]*)\s*(?P<rest>.*?)\s*$")
_NUM_RE = re.compile(r"^(?P<num>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>.*)$")
_PCT_RE = re.compile(r"^p\((\d+(?:\.\d+)?)\)$|^p(\d+(?:\.\d+)?)$")


def parse_labels(inner: str) -> dict[str, str]:
    """``k=v,k2=v2`` (a summary key's braces) → labels; a value may hold commas."""
    out: dict[str, str] = {}
    if not inner.strip():
        return out
    for part in _LABEL_SPLIT.split(inner):
        k, eq, v = part.partition("=")
        if not eq or not k.strip():
            raise ValueError(f"label {part.strip()!r} must be NAME=VALUE")
        out[k.strip()] = v.strip()
    return out


def split_key(key: str) -> tuple[str, dict[str, str]]:
    """``metric`` or ``metric{k=v,…}`` → (metric, labels)."""
    m = _KEY_RE.match(key)
    if not m:
        raise ValueError(
            f"budget key {key!r} must be a metric name, optionally with labels as "
            "'edgeprof summary' shows them, e.g. process.cpu.percent{process=python}"
        )
    return m.group(1), parse_labels(m.group(2) or "")


@dataclass(frozen=True)
class Threshold:
    number: float
    """The number as written."""
    unit: str
    """The unit as written ('' for none)."""
    dim: str | None
    """The unit's dimension (None: a plain number, in the metric's own unit)."""
    factor: float
    """Size of the written unit in the dimension's base unit."""

    def in_unit(self, metric: str, metric_unit: str | None) -> float:
        """The limit in the metric's stored unit; ValueError when the unit does not fit."""
        if self.dim is None:
            return self.number
        dim, scale = METRIC_UNITS.get(metric_unit or "1", (None, 1.0))
        if dim != self.dim:
            what = _DIM_WORD[self.dim]
            if dim is None:
                raise ValueError(
                    f"{self.unit!r} is {what} but {metric} is a plain number; "
                    "write the limit without a unit"
                )
            if metric_unit == "%":
                fits = "write the limit in % or as a plain number"
            elif dim == "percent":
                fits = f"write the limit in % or as a plain number in {metric_unit}"
            else:
                fits = f"write it in {_UNIT_EXAMPLES[dim]}, or as a plain number in {metric_unit}"
            raise ValueError(
                f"{self.unit!r} is {what} but {metric} is measured in {metric_unit}; {fits}"
            )
        return self.number * self.factor / scale


@dataclass(frozen=True)
class Budget:
    key: str
    """The key as written: ``cpu.percent``, ``process.cpu.percent{process=python}``."""
    metric: str
    labels: dict[str, str]
    stat: str | None
    """Normalised statistic (``p95``); None for a target field."""
    op: Op
    threshold: Threshold
    text: str
    """The expression as written (stripped)."""
    limit: str = ""
    """The operator and limit as written: ``< 1.5GiB``."""

    @property
    def name(self) -> str:
        """``cpu.percent p95 < 150``: how results and JUnit test cases are named."""
        return f"{self.key} {self.text}"

    @property
    def is_field(self) -> bool:
        return self.metric in TARGET_FIELDS


def _norm_stat(word: str) -> str:
    w = STAT_ALIASES.get(word.lower(), word.lower())
    m = _PCT_RE.match(w)
    if m:
        q = m.group(1) or m.group(2)
        if q in ("50", "95", "99"):
            return f"p{q}"
        raise ValueError(f"statistic {word!r} is not kept; the percentiles are p50, p95 and p99")
    return w


def parse_expression(key: str, text: str) -> Budget:
    """One expression of the budget ``key`` → a :class:`Budget`; ValueError with a
    sentence naming what is wrong and how to write it."""
    metric, labels = split_key(key)
    check_metric_name(metric)
    if metric in TARGET_FIELDS and labels:
        raise ValueError(f"{metric} takes no labels; write the key as {metric}")
    if not isinstance(text, str):
        raise ValueError(f'budget {text!r} must be a string such as "p95 < 150" (quote it in YAML)')
    expr = " ".join(text.split())
    try:
        return _parse(key.strip(), metric, labels, expr)
    except ValueError as e:
        raise ValueError(f"budget {expr!r}: {e}") from None


def _parse(key: str, metric: str, labels: dict[str, str], expr: str) -> Budget:
    info = metric_catalog().get(metric)
    m = _EXPR_RE.match(expr)
    assert m is not None  # the pattern matches any text
    stat_word, op, rest = m.group("stat"), m.group("op"), m.group("rest")
    if not op:
        raise ValueError(
            'no operator; write STATISTIC OPERATOR LIMIT, e.g. "p95 < 150", '
            "with one of < <= > >= == !="
        )
    if op not in OPERATORS:
        raise ValueError(f"unknown operator {op!r}; use one of < <= > >= == !=")
    oper = cast(Op, op)
    field_unit = TARGET_FIELDS.get(metric)
    stat: str | None = None
    if field_unit is not None:
        if stat_word:
            raise ValueError(
                f'{metric} is a fact of the target and takes no statistic; write e.g. "{op} {rest}"'
            )
    else:
        if not stat_word:
            stats = "total, last or count" if info and info.kind == "counter" else "mean, p95, max…"
            raise ValueError(f'no statistic; write e.g. "p95 {op} {rest}" ({metric} takes {stats})')
        stat = _norm_stat(stat_word)
        if stat not in GAUGE_STATS and stat not in COUNTER_STATS:
            raise ValueError(
                f"unknown statistic {stat_word!r}; use one of {', '.join(GAUGE_STATS)} "
                f"(counters: {', '.join(COUNTER_STATS)})"
            )
        if info is not None:
            allowed = COUNTER_STATS if info.kind == "counter" else GAUGE_STATS
            if stat not in allowed:
                why = f"{metric} is a {info.kind}: its statistics are {', '.join(allowed)}"
                if info.kind == "counter":
                    why += f" (for its rate, budget {info.name}_per_second)"
                raise ValueError(f"statistic {stat!r} does not apply: {why}")
    if field_unit == "bool":
        if op not in ("==", "!="):
            raise ValueError(f'oom_killed is true or false; write "== false", not {op!r}')
        word = rest.lower()
        if word not in ("true", "false", "0", "1", "yes", "no"):
            raise ValueError('oom_killed is true or false; write "== false" or "== true"')
        value = 1.0 if word in ("true", "1", "yes") else 0.0
        th = Threshold(value, "", None, 1.0)
        return Budget(key, metric, labels, None, oper, th, expr, f"{op} {rest}")
    n = _NUM_RE.match(rest)
    if not n:
        example = f"{stat_word} {op} 150" if stat_word else f"{op} 0"
        raise ValueError(f'no number after {op!r}; write e.g. "{example}"')
    number = float(n.group("num"))
    if not math.isfinite(number):
        raise ValueError("the limit must be a finite number")
    unit = n.group("unit").strip()
    threshold = Threshold(number, "", None, 1.0)
    if not unit and stat != "count" and info is not None and info.unit == "s/s":
        # stored as a share (0.3), shown everywhere as a percentage (30 %): a plain 5 would
        # read as 500 % and never fail, so the unit must be written
        raise ValueError(
            f"{metric} is a share of the time, shown in %; write the limit with its unit, "
            f'e.g. "{stat_word} {op} {number:g}%"'
        )
    if unit:
        if stat == "count":
            raise ValueError("count is a number of samples; write it without a unit")
        dim, factor = parse_unit(unit)
        threshold = Threshold(number, unit, dim, factor)
        known_unit = field_unit if field_unit is not None else (info.unit if info else None)
        if known_unit is not None:
            threshold.in_unit(metric, known_unit)
    return Budget(key, metric, labels, stat, oper, threshold, expr, f"{op} {rest}")


class BudgetError(ValueError):
    """A budget that cannot be read; ``loc`` is where, under the ``budgets:`` mapping
    (``("cpu.percent", 0)``), so the spec loader can name its file and line."""

    def __init__(self, message: str, loc: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.loc = loc


def validate_budgets(value: Any) -> dict[str, list[str]]:
    """The ``budgets:`` mapping of a spec, checked → ``{key: [expression, …]}``.

    A single string stands for a list of one. Raises :class:`BudgetError`."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BudgetError(
            "budgets must be a mapping of metric to a list of expressions, e.g. "
            'cpu.percent: ["p95 < 150"]',
            (),
        )
    out: dict[str, list[str]] = {}
    for key, exprs in value.items():
        if not isinstance(key, str):
            raise BudgetError(f"budget key {key!r} must be a metric name", ())
        items = [exprs] if isinstance(exprs, str) else exprs
        if not isinstance(items, list) or not items:
            raise BudgetError(
                f'the budgets of {key} must be a list of expressions, e.g. {key}: ["p95 < 150"]',
                (key,),
            )
        try:
            split_key(key)
            check_metric_name(split_key(key)[0])
        except ValueError as e:
            raise BudgetError(str(e), (key,)) from None
        for i, text in enumerate(items):
            try:
                parse_expression(key, text)
            except ValueError as e:
                raise BudgetError(str(e), (key, i)) from None
        out[key] = [" ".join(t.split()) for t in items]
    return out


def compile_budgets(mapping: Mapping[str, Iterable[str]]) -> list[Budget]:
    """Checked budgets → :class:`Budget` objects, in the mapping's order."""
    return [parse_expression(k, t) for k, exprs in mapping.items() for t in exprs]


def merge_budgets(
    base: Mapping[str, list[str]], override: Mapping[str, list[str]]
) -> dict[str, list[str]]:
    """A target's budgets over the spec's: for a key both name, the target's list wins."""
    return {**base, **override}


# -- evaluation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetResult:
    target: str
    budget: Budget
    series: str | None
    """The summary key checked (``gpu.utilization_percent{gpu=0}``); None: no data."""
    verdict: Verdict
    measured: float | None
    """In the metric's stored unit."""
    unit: str | None
    message: str

    @property
    def name(self) -> str:
        key = self.series if self.series is not None else self.budget.key
        return f"{key} {self.budget.text}"

    @property
    def ok(self) -> bool:
        return self.verdict == "pass"

    def shown(self) -> str:
        """The measured value, in the threshold's unit when it names one."""
        if self.measured is None:
            return "-"
        return format_measured(self.measured, self.unit, self.budget)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "name": self.name,
            "key": self.budget.key,
            "series": self.series,
            "expression": self.budget.text,
            "statistic": self.budget.stat,
            "verdict": self.verdict,
            "measured": self.measured,
            "unit": self.unit,
            "message": self.message,
        }


def _num(v: float) -> str:
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v)}"
    return f"{v:.6g}"


_BYTE_STEPS = (("KiB", 1024.0), ("MiB", 1024.0**2), ("GiB", 1024.0**3), ("TiB", 1024.0**4))


def _bytes(v: float) -> str:
    name, size = next(((n, s) for n, s in reversed(_BYTE_STEPS) if abs(v) >= s), ("B", 1.0))
    return f"{_num(v / size)} {name}"


def format_measured(v: float, unit: str | None, budget: Budget) -> str:
    """``49.8712 %``, ``1.61963 GiB``, ``187.5 ms``: sizes in the binary unit that fits the
    value, other values in the threshold's unit when it names one, else the metric's."""
    if budget.metric == "oom_killed":
        return "true" if v else "false"
    if budget.stat == "count" or unit in (None, "", "1"):
        return _num(v)
    if unit == "B":
        return _bytes(v)
    if unit == "B/s":
        return _bytes(v) + "/s"
    th = budget.threshold
    if th.dim is not None:
        dim, scale = METRIC_UNITS.get(unit, (None, 1.0))
        if dim == th.dim:
            return f"{_num(v * scale / th.factor)} {th.unit}"
    return f"{_num(v)} {unit}"


def exact(v: float, unit: str | None) -> str:
    """The measured value in full precision, in the metric's stored unit."""
    text = str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))
    return text if unit in (None, "", "1", "bool") else f"{text} {unit}"


def _stat_value(m: MetricStats, stat: str) -> float | None:
    if stat == "count":
        return float(m.count)
    v = getattr(m, stat, None)
    return None if v is None or not math.isfinite(v) else float(v)


def matching_series(t: TargetSummary, b: Budget) -> list[tuple[str, MetricStats]]:
    """The target's series a budget checks: the metric's, with at least the key's labels."""
    out: list[tuple[str, MetricStats]] = []
    for key, stats in t.metrics.items():
        try:
            metric, labels = split_key(key)
        except ValueError:
            continue
        if metric == b.metric and all(labels.get(k) == v for k, v in b.labels.items()):
            out.append((key, stats))
    return out


def _field_result(t: TargetSummary, b: Budget) -> BudgetResult:
    raw: float | bool | None = getattr(t, b.metric)
    unit = TARGET_FIELDS[b.metric]
    if raw is None:
        return BudgetResult(
            t.name, b, None, "no data", None, unit, f"{b.name}: no data (target {t.status})"
        )
    v = float(raw)
    limit = b.threshold.in_unit(b.metric, unit) if unit != "bool" else b.threshold.number
    ok = OPERATORS[b.op](v, limit)
    res = BudgetResult(t.name, b, b.metric, "pass" if ok else "fail", v, unit, "")
    return _with_message(res)


def _with_message(r: BudgetResult) -> BudgetResult:
    b = r.budget
    lhs = f"{b.metric} {b.stat}" if b.stat else b.metric
    if r.series is not None and r.series != b.metric:
        lhs = f"{r.series} {b.stat}" if b.stat else r.series
    text = f"{lhs} = {r.shown()}, budget {b.limit}"
    verdict = "passed" if r.ok else "failed"
    return BudgetResult(r.target, b, r.series, r.verdict, r.measured, r.unit, f"{text}: {verdict}")


def evaluate_target(t: TargetSummary, budgets: Iterable[Budget]) -> list[BudgetResult]:
    out: list[BudgetResult] = []
    for b in budgets:
        if b.is_field:
            out.append(_field_result(t, b))
            continue
        found = matching_series(t, b)
        if not found:
            out.append(
                BudgetResult(
                    t.name,
                    b,
                    None,
                    "no data",
                    None,
                    None,
                    f"{b.key}: no data (the run stored no such series for {t.name})",
                )
            )
            continue
        for key, stats in found:
            out.append(_series_result(t, b, key, stats))
    return out


def _series_result(t: TargetSummary, b: Budget, key: str, stats: MetricStats) -> BudgetResult:
    assert b.stat is not None
    kind_stats = COUNTER_STATS if isinstance(stats, CounterStats) else GAUGE_STATS
    if b.stat not in kind_stats:
        kind = "a counter" if isinstance(stats, CounterStats) else "a gauge"
        return BudgetResult(
            t.name,
            b,
            key,
            "error",
            None,
            stats.unit,
            f"{key} is {kind}: {b.stat} does not apply; use {', '.join(kind_stats)}",
        )
    v = _stat_value(stats, b.stat)
    if v is None:
        return BudgetResult(t.name, b, key, "no data", None, stats.unit, f"{key} {b.stat}: no data")
    try:
        limit = b.threshold.number if b.stat == "count" else b.threshold.in_unit(key, stats.unit)
    except ValueError as e:
        return BudgetResult(t.name, b, key, "error", v, stats.unit, f"{b.name}: {e}")
    ok = OPERATORS[b.op](v, limit)
    return _with_message(BudgetResult(t.name, b, key, "pass" if ok else "fail", v, stats.unit, ""))


BudgetsFor = Callable[[TargetSummary], Mapping[str, list[str]]]


def stored_budgets(t: TargetSummary) -> Mapping[str, list[str]]:
    """The budgets a target ran with (merged at plan time, stored in its config)."""
    b = t.config.get("budgets")
    return b if isinstance(b, Mapping) else {}


def base_name(target: str) -> str:
    """``base#2`` (a repeat) → ``base``."""
    return re.sub(r"#\d+$", "", target)


def _unparsable(target: str, key: str, text: str, why: str) -> BudgetResult:
    """A stored budget this edgeprof cannot read (a metric renamed since, a hand-edited
    database): an ``error`` verdict, never a crash and never a silent pass."""
    b = Budget(key, key, {}, None, "==", Threshold(0.0, "", None, 1.0), text)
    return BudgetResult(target, b, None, "error", None, None, f"{key}: {text!r}: {why}")


def evaluate_run(s: RunSummary, budgets_for: BudgetsFor = stored_budgets) -> list[BudgetResult]:
    """Every app's budgets checked against its summary, in target order (the rows of
    services started for the apps are not checked)."""
    out: list[BudgetResult] = []
    for t in s.apps:
        budgets: list[Budget] = []
        bad: list[BudgetResult] = []
        for key, exprs in budgets_for(t).items():
            for text in exprs if isinstance(exprs, list | tuple) else [exprs]:
                try:
                    budgets.append(parse_expression(key, str(text)))
                except ValueError as e:
                    bad.append(_unparsable(t.name, key, str(text), str(e)))
        out += evaluate_target(t, budgets) + bad
    return out


def failed(results: Iterable[BudgetResult]) -> list[BudgetResult]:
    return [r for r in results if not r.ok]


# -- output -------------------------------------------------------------------------------


def format_table(results: list[BudgetResult]) -> list[str]:
    """Plain lines: target, budget, measured value, verdict; then a count line."""
    if not results:
        return []
    rows = [("TARGET", "BUDGET", "MEASURED", "VERDICT")]
    for r in results:
        verdict = "pass" if r.ok else ("FAIL" if r.verdict == "fail" else r.verdict.upper())
        rows.append((r.target, r.name, r.shown(), verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(row[i].ljust(widths[i]) for i in range(3)) + "  " + row[3] for row in rows]
    bad = failed(results)
    n = len(results)
    lines.append(f"budgets: {n - len(bad)} of {n} passed" + (f", {len(bad)} failed" if bad else ""))
    details = [f"  {r.target}: {r.message}" for r in bad if r.verdict in ("no data", "error")]
    return lines + details


def junit_suites(s: RunSummary, results: list[BudgetResult]) -> list[Any]:
    """One JUnit suite per target (in run order), one case per checked budget."""
    from edgeprof.report.junit import JUnitCase, JUnitSuite

    by_target: dict[str, list[BudgetResult]] = {}
    for r in results:
        by_target.setdefault(r.target, []).append(r)
    suites = []
    for t in s.apps:
        cases = []
        for r in by_target.get(t.name, []):
            outcome: Literal["passed", "failed", "error"] = (
                "passed" if r.ok else "error" if r.verdict == "error" else "failed"
            )
            detail = r.message
            if r.measured is not None:
                detail += f"\nmeasured: {exact(r.measured, r.unit)}"
            cases.append(JUnitCase(r.name, outcome, r.message, detail))
        suites.append(
            JUnitSuite(
                t.name,
                cases,
                time_s=t.duration_s or 0.0,
                properties={"run_id": str(s.run.id), "status": t.status},
            )
        )
    return suites


# -- budgets from a file ------------------------------------------------------------------


def load_budget_file(path: str) -> BudgetsFor:
    """``--budgets FILE``: a YAML file holding a ``budgets:`` mapping (for every target),
    or a whole profile spec (its budgets, and each target's over them, matched by name;
    the repeats ``base#n`` take ``base``'s). Problems are one :class:`SpecError` sentence
    with the file and line."""
    from edgeprof.errors import SpecError
    from edgeprof.spec.load import _data_loc, _loc_path, _node_line, parse_spec, read_yaml

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise SpecError(
            f"{path}: no such file; pass a YAML file holding a 'budgets:' mapping, or a spec"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read the budgets file ({e})") from None
    node, data = read_yaml(text, path)
    if isinstance(data, dict) and "profiling" in data:
        spec = parse_spec(text, path).spec
        common = spec.profiling.budgets
        per_target = {
            t.name or f"t{i + 1}": merge_budgets(common, t.budgets)
            for i, t in enumerate(spec.profiling.targets)
        }
        return lambda t: per_target.get(base_name(t.name), common)
    if not isinstance(data, dict) or "budgets" not in data:
        raise SpecError(
            f"{path}: a budgets file is a YAML mapping with a 'budgets:' key (or a whole "
            "profile spec); add 'budgets:' with metric: [expressions]"
        )
    extra = [k for k in data if k != "budgets"]
    if extra:
        line = _node_line(node, (extra[0],))
        raise SpecError(
            f"{path}:{line}: unknown key '{extra[0]}'; a budgets file holds only 'budgets:' "
            "(or pass a whole profile spec)"
        )
    try:
        budgets = validate_budgets(data["budgets"])
    except BudgetError as e:
        loc = _data_loc(("budgets", *e.loc), node, "value_error")
        line = _node_line(node, loc)
        raise SpecError(f"{path}:{line}: invalid value for '{_loc_path(loc)}': {e}") from None
    if not budgets:
        raise SpecError(f"{path}: 'budgets:' is empty; add metric: [expressions]")
    return lambda t: budgets
