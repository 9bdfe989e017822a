"""Resource requests and limits from a stored run, with the evidence behind each number.

Two published rules are implemented; ``vpa`` is the default.

``vpa`` — the Kubernetes Vertical Pod Autoscaler's recommender
(kubernetes/autoscaler, ``vertical-pod-autoscaler/pkg/recommender``):

* CPU request: the 90th percentile of the CPU samples (its ``targetCPUPercentile``) ×
  (1 + the safety margin, 15 %);
* memory request: the peak working set × (1 + margin). VPA takes the 90th percentile of
  *daily* peaks; a profiling run is far shorter than a day, so its one peak is the max;
* minimums 25 millicores and 250 MiB (``--pod-recommendation-min-cpu-millicores``,
  ``--pod-recommendation-min-memory-mb``);
* after an OOM kill, the memory it needed is taken as ``max(base × 1.2, base + 100 MiB)``
  (``OOMBumpUpRatio``, ``OOMMinBumpUp``) where base is the larger of the limit it was
  killed at and its measured peak; the margin applies on top, as in VPA (the OOM sample
  enters the same peaks histogram).

VPA sets no limits of its own (it keeps the limit:request ratio a pod already had). A
plugin on a shared edge node needs one, so this rule's limits are edgeprof's: CPU limit =
the peak CPU demand × (1 + margin) (never throttled at any moment the run saw), memory
limit = the memory request (memory cannot be taken back without a kill).

``krr`` — robusta-dev/krr's ``simple`` strategy: CPU request = the 95th percentile (of each
repeat; the highest of them, as krr takes the highest pod), **no** CPU limit and no margin
on CPU; memory request = limit = peak × (1 + 15 %) (``memory_buffer_percentage``); with
its OOM data on, at least the limit it was killed at × 1.25 (``oom_memory_buffer_percentage``).
krr applies no minimums of its own; edgeprof keeps the VPA minimums for both rules, and says
when one was applied.

Why ``vpa`` is the default: it is the rule Kubernetes itself ships, it gives a CPU margin
(a short profiling run sees fewer peaks than a week of production), and it yields a CPU
limit — Waggle nodes run several plugins side by side, and an unlimited plugin can starve
the others. ``krr`` is there for those who prefer bursting over limits.

CPU throttling: a container held by its CPU quota uses no more than the quota, so its usage
understates what it needs. The time its runnable threads waited on the quota is stored as
``cpu.throttled_seconds`` (cgroup ``cpu.stat`` ``throttled_usec``/``throttled_time``; the
sampler derives ``cpu.throttled_seconds_per_second``). Each sample's CPU *demand* is its
usage plus that throttled time per second (capped at the host's CPU count): the CPU it
would have used without the quota. Both rules take their percentile of demand, not of
usage. A CPU burner held at 0.5 cores uses 0.5 and waits 0.5 s per second: demand 1 core.

Memory is the working set (``memory.working_set_bytes``: usage minus inactive file cache,
what cAdvisor, VPA and the kernel's OOM decisions see).

Repeats of one target (``name#1``, ``name#2``…) are pooled; service rows
(``config.role == "service"``) are recommended on their own and labelled as services, one
recommendation per service: a target-scope service's rows (one per target or scenario it
served: ``gpu/playback``, ``cpu/playback``…) are pooled under its name (``playback``), and
the rows pooled are named.
Figures are rounded up: CPU to a whole millicore, memory to a whole MiB.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from edgeprof.errors import UserError
from edgeprof.stats import percentile
from edgeprof.store.base import SeriesRecord, Store, TargetRecord

Rule = Literal["vpa", "krr"]
RULES: tuple[Rule, ...] = ("vpa", "krr")
FORMATS = ("pluginctl", "k8s", "compose", "docker")

MiB = 1024 * 1024
DEFAULT_HEADROOM = 0.15
MIN_CPU_CORES = 0.025
"""VPA's ``--pod-recommendation-min-cpu-millicores`` default: 25 m."""
MIN_MEMORY_BYTES = 250 * MiB
"""VPA's ``--pod-recommendation-min-memory-mb`` default: 250 (MiB in its code)."""
OOM_BUMP_RATIO = 1.2
OOM_MIN_BUMP_BYTES = 100 * MiB
KRR_OOM_BUFFER = 0.25
MIN_SAMPLES = 100
"""Fewer samples than krr's ``points_required``: a p90 then rests on fewer than 10 samples
above it, and the number is not to be trusted."""
MIN_DURATION_S = 60.0
"""A run shorter than a minute rarely covers an app's start, steady state and peaks (VPA
waits a day, krr three hours of history before trusting theirs)."""
THROTTLE_NOTE_S = 0.01
"""Throttled for more than 1 % of the time: said, with the figure it changed."""

CPU_METRIC = "cpu.percent"
THROTTLE_METRIC = "cpu.throttled_seconds_per_second"
MEMORY_METRIC = "memory.working_set_bytes"
LIMIT_METRIC = "memory.limit_bytes"

_REPEAT = re.compile(r"#\d+(?=/|$)")


def parse_headroom(text: str) -> float:
    """``15%`` or ``15`` → 0.15; ValueError with one sentence outside 0–100 %."""
    t = text.strip()
    num = t[:-1].strip() if t.endswith("%") else t
    try:
        v = float(num)
    except ValueError:
        raise ValueError(f"{text!r} is not a percentage; pass a margin such as 15%") from None
    if not (math.isfinite(v) and 0 <= v <= 100):
        raise ValueError(f"{text} is outside 0% to 100%; pass a margin such as 15%")
    return v / 100.0


# -- the result ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One number of a recommendation and how it was found."""

    resource: Literal["cpu", "memory"]
    kind: Literal["request", "limit"]
    value: float
    """Cores or bytes, rounded up to a whole millicore or MiB."""
    statistic: str
    """``p90``, ``p95``, ``max``, ``oom`` (the OOM rule) or ``request`` (a limit = request)."""
    measured: float
    """The statistic's value (cores or bytes) before the factor."""
    factor: float
    samples: int
    duration_s: float
    minimum_applied: bool
    how: str
    """One sentence: how the number came out of the measurements."""

    @property
    def text(self) -> str:
        return cpu_text(self.value) if self.resource == "cpu" else memory_text(self.value)

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "text": self.text,
            "unit": "cores" if self.resource == "cpu" else "bytes",
            "statistic": self.statistic,
            "measured": self.measured,
            "factor": self.factor,
            "samples": self.samples,
            "duration_s": self.duration_s,
            "minimum_applied": self.minimum_applied,
            "how": self.how,
        }


@dataclass(frozen=True)
class Throttling:
    mean_s_per_s: float
    """Mean throttled seconds per second over the samples."""
    usage_stat: float
    """The rule's CPU statistic of usage alone (cores)."""
    demand_stat: float
    """The same statistic of demand (usage + throttled time), which the rule used."""
    cpu_limit: float | None
    """The ``cpus:`` the target ran with, if any."""

    def to_json(self) -> dict[str, Any]:
        return {
            "throttled_seconds_per_second_mean": self.mean_s_per_s,
            "usage_statistic": self.usage_stat,
            "demand_statistic": self.demand_stat,
            "cpu_limit": self.cpu_limit,
        }


@dataclass(frozen=True)
class Recommendation:
    name: str
    role: Literal["app", "service"]
    targets: list[str]
    rule: Rule
    headroom: float
    duration_s: float
    cpu_request: Figure | None
    cpu_limit: Figure | None
    memory_request: Figure | None
    memory_limit: Figure | None
    throttling: Throttling | None = None
    oom_killed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        what = "service" if self.role == "service" else "app"
        if len(self.targets) == 1:
            reps = "1 run"
        elif self.role == "service":
            reps = f"{len(self.targets)} instances: {', '.join(self.targets)}"
        else:
            reps = f"{len(self.targets)} repeats"
        return f"{self.name} ({what}, {reps}, {self.duration_s:.1f} s measured)"

    def figures(self) -> list[Figure]:
        return [
            f
            for f in (self.cpu_request, self.cpu_limit, self.memory_request, self.memory_limit)
            if f is not None
        ]

    def to_json(self) -> dict[str, Any]:
        def fig(f: Figure | None) -> dict[str, Any] | None:
            return None if f is None else f.to_json()

        return {
            "name": self.name,
            "role": self.role,
            "targets": self.targets,
            "rule": self.rule,
            "headroom": self.headroom,
            "duration_s": self.duration_s,
            "cpu": {"request": fig(self.cpu_request), "limit": fig(self.cpu_limit)},
            "memory": {"request": fig(self.memory_request), "limit": fig(self.memory_limit)},
            "throttling": None if self.throttling is None else self.throttling.to_json(),
            "oom_killed": self.oom_killed,
            "notes": self.notes,
            "warnings": self.warnings,
            "formats": {f: render(self, f, comments=False) for f in FORMATS},
        }


@dataclass(frozen=True)
class RecommendResult:
    run_id: int
    rule: Rule
    headroom: float
    recommendations: list[Recommendation]

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "rule": self.rule,
            "headroom": self.headroom,
            "recommendations": [r.to_json() for r in self.recommendations],
        }


# -- units --------------------------------------------------------------------------------


def _ceil(x: float) -> int:
    """Round up, ignoring float noise below a millionth (0.5 × 1.15 × 1000 is 575)."""
    return math.ceil(round(x, 6))


def millicores(cores: float) -> int:
    return _ceil(cores * 1000)


def mebibytes(nbytes: float) -> int:
    return _ceil(nbytes / MiB)


def cpu_text(cores: float) -> str:
    """Kubernetes/pluginctl CPU: whole cores (``1``, ``2``) or millicores (``575m``)."""
    m = millicores(cores)
    return str(m // 1000) if m % 1000 == 0 else f"{m}m"


def memory_text(nbytes: float) -> str:
    """Kubernetes/pluginctl memory: ``Gi`` when whole, else ``Mi``."""
    mi = mebibytes(nbytes)
    return f"{mi // 1024}Gi" if mi % 1024 == 0 else f"{mi}Mi"


def _cores_decimal(cores: float) -> str:
    """Docker/compose ``cpus``: a decimal number of cores (``0.575``)."""
    m = millicores(cores)
    whole, frac = divmod(m, 1000)
    return str(whole) if frac == 0 else f"{whole}.{frac:03d}".rstrip("0")


def _fmt_cores(c: float) -> str:
    return f"{c:.3f} cores"


def _fmt_mib(b: float) -> str:
    return f"{b / MiB:.1f} MiB"


def _pct(h: float) -> str:
    return f"{h * 100:g} %"


# -- reading the run ----------------------------------------------------------------------


@dataclass
class _Measured:
    """What one target row contributes."""

    target: TargetRecord
    cpu: list[float]
    usage: list[float]
    throttled: list[float] | None
    memory: list[float]
    limit_bytes: float | None


def group_name(t: TargetRecord) -> str:
    """A repeat's pool: ``burn#2`` → ``burn``, ``gpu#1/playback`` → ``gpu/playback``."""
    return _REPEAT.sub("", t.name)


def _is_service(t: TargetRecord) -> bool:
    return isinstance(t.config, dict) and t.config.get("role") == "service"


def _group_key(t: TargetRecord) -> tuple[Literal["app", "service"], str]:
    """The recommendation a row is pooled into: an app's repeats together
    (:func:`group_name`); a target-scope service's rows, one per target it served, under
    the service's name; a run-scope service's one row on its own (``service/NAME``)."""
    if not _is_service(t):
        return "app", group_name(t)
    service = t.config.get("service")
    if t.config.get("scope") == "target" and isinstance(service, str) and service:
        return "service", service
    return "service", group_name(t)


def _plain(series: Sequence[SeriesRecord], metric: str) -> SeriesRecord | None:
    """The target's own series of ``metric`` (no labels besides ``target``)."""
    for s in series:
        if s.metric == metric and not {k for k in s.labels if k != "target"}:
            return s
    return None


def _measure(store: Store, t: TargetRecord, series: list[SeriesRecord], ncpu: float) -> _Measured:
    def values(metric: str) -> tuple[list[int], list[float]] | None:
        s = _plain(series, metric)
        if s is None:
            return None
        ts, vs = store.series_samples(s.id)
        return [int(x) for x in ts], [float(v) for v in vs]

    cpu = values(CPU_METRIC)
    thr = values(THROTTLE_METRIC)
    mem = values(MEMORY_METRIC)
    lim = values(LIMIT_METRIC)
    usage: list[float] = []
    demand: list[float] = []
    throttled: list[float] | None = None
    if cpu is not None:
        usage = [v / 100.0 for v in cpu[1] if math.isfinite(v)]
        if thr is not None:
            by_t = dict(zip(thr[0], thr[1], strict=True))
            throttled = []
            for t_ns, v in zip(cpu[0], cpu[1], strict=True):
                if not math.isfinite(v):
                    continue
                w = by_t.get(t_ns, 0.0)
                w = w if math.isfinite(w) and w > 0 else 0.0
                throttled.append(w)
                demand.append(min(v / 100.0 + w, ncpu))
        else:
            demand = list(usage)
    memory = [v for v in (mem[1] if mem else []) if math.isfinite(v)]
    limit = max(lim[1]) if lim and lim[1] else None
    if limit is None:
        res = t.config.get("resources") if isinstance(t.config, dict) else None
        if isinstance(res, dict) and isinstance(res.get("memory"), int | float):
            limit = float(res["memory"])
    return _Measured(t, demand, usage, throttled, memory, limit)


# -- the rules ----------------------------------------------------------------------------


def _cpu_limit_of(t: TargetRecord) -> float | None:
    res = t.config.get("resources") if isinstance(t.config, dict) else None
    if isinstance(res, dict) and isinstance(res.get("cpus"), int | float):
        return float(res["cpus"])
    return None


def _recommend_group(
    name: str, role: Literal["app", "service"], parts: list[_Measured], rule: Rule, h: float
) -> Recommendation:
    targets = [p.target.name for p in parts]
    duration = sum(p.target.duration_s or 0.0 for p in parts)
    notes: list[str] = []
    warnings: list[str] = []
    margin = 1.0 + h
    unit = "instances" if role == "service" else "repeats"
    pooled = f"{len(parts)} {unit} pooled, " if len(parts) > 1 else ""
    if role == "service" and len(parts) > 1:
        notes.append(
            f"pooled from the service's rows, one per target it served: {', '.join(targets)}"
        )

    # -- CPU --
    cpu_req = cpu_lim = None
    throttling: Throttling | None = None
    demand_all = sorted(v for p in parts for v in p.cpu)
    n_cpu = len(demand_all)
    if n_cpu:
        if rule == "vpa":
            stat_name = "p90"
            stat = percentile(demand_all, 0.90)
            usage_stat = percentile(sorted(v for p in parts for v in p.usage), 0.90)
            cpu_factor = margin
        else:
            stat_name = "p95"
            stat = max(percentile(sorted(p.cpu), 0.95) for p in parts if p.cpu)
            usage_stat = max(percentile(sorted(p.usage), 0.95) for p in parts if p.usage)
            cpu_factor = 1.0
        thr_vals = [v for p in parts if p.throttled is not None for v in p.throttled]
        cpu_limits = {c for p in parts if (c := _cpu_limit_of(p.target)) is not None}
        cpu_limit_set = max(cpu_limits) if cpu_limits else None
        what = "CPU demand (usage + throttled time)" if thr_vals else "CPU usage"
        if thr_vals:
            mean_thr = math.fsum(thr_vals) / len(thr_vals)
            throttling = Throttling(mean_thr, usage_stat, stat, cpu_limit_set)
            if mean_thr > THROTTLE_NOTE_S:
                ran = f" (it ran with cpus: {cpu_limit_set:g})" if cpu_limit_set else ""
                notes.append(
                    f"CPU throttled {mean_thr:.2f} s per second on average{ran}: its usage "
                    f"understates its need, so each sample counts usage + throttled time; "
                    f"the {stat_name} rose from {_fmt_cores(usage_stat)} (usage) to "
                    f"{_fmt_cores(stat)} (demand)"
                )
        elif cpu_limit_set is not None:
            warnings.append(
                f"{name} ran with cpus: {cpu_limit_set:g} and no throttling data was stored "
                "(cpu.throttled_seconds): if it was throttled, its usage understates its need"
            )
        raw = stat * cpu_factor
        value = max(raw, MIN_CPU_CORES)
        applied = raw < MIN_CPU_CORES
        how = f"{stat_name} of {what} {_fmt_cores(stat)}" + (
            f" × {cpu_factor:g}" if cpu_factor != 1.0 else ""
        )
        if rule == "krr":
            how += (
                f" (krr: no CPU margin; highest {unit[:-1]})"
                if len(parts) > 1
                else " (krr: no CPU margin)"
            )
        if applied:
            how += f" = {raw * 1000:.1f}m, below the minimum 25m: the minimum"
        how += f"; {pooled}{n_cpu} samples over {duration:.1f} s"
        cpu_req = Figure(
            "cpu",
            "request",
            millicores(value) / 1000,
            stat_name,
            stat,
            cpu_factor,
            n_cpu,
            duration,
            applied,
            how,
        )
        if rule == "vpa":
            peak = demand_all[-1]
            raw_l = peak * margin
            lim_v = max(raw_l, cpu_req.value)
            how_l = f"max of {what} {_fmt_cores(peak)} × {margin:g}"
            if raw_l < cpu_req.value:
                how_l += f" = {raw_l * 1000:.1f}m, below the request: the request"
            how_l += f"; {pooled}{n_cpu} samples over {duration:.1f} s"
            cpu_lim = Figure(
                "cpu",
                "limit",
                millicores(lim_v) / 1000,
                "max",
                peak,
                margin,
                n_cpu,
                duration,
                raw_l < MIN_CPU_CORES,
                how_l,
            )
        else:
            notes.append("krr sets no CPU limit: the app may burst into idle CPU")
        if n_cpu < MIN_SAMPLES:
            warnings.append(
                f"only {n_cpu} CPU samples: a {stat_name} of fewer than {MIN_SAMPLES} rests on "
                "a handful of samples; profile longer or sample more often (profiling.interval)"
            )
    else:
        warnings.append(f"no {CPU_METRIC} samples were stored for {name}: no CPU figure")

    # -- memory --
    mem_req = mem_lim = None
    mem_all = [v for p in parts for v in p.memory]
    oom_parts = [p for p in parts if p.target.status == "oom_killed" or p.target.oom_killed]
    oom_names = [p.target.name for p in oom_parts]
    if mem_all or oom_parts:
        peak = max(mem_all) if mem_all else 0.0
        stat_name = "max"
        measured = peak
        mem_factor = margin
        how = f"max working set {_fmt_mib(peak)} × {margin:g}"
        for p in oom_parts:
            base = max(p.limit_bytes or 0.0, max(p.memory) if p.memory else 0.0)
            if base <= 0:
                warnings.append(
                    f"{p.target.name} was OOM-killed but neither its memory limit nor its "
                    "usage was stored: the memory figure may be too low"
                )
                continue
            if rule == "vpa":
                # VPA: the bumped OOM sample joins the peaks; the margin applies on top
                need = max(base * OOM_BUMP_RATIO, base + OOM_MIN_BUMP_BYTES)
                factor = margin
                rule_text = "max(× 1.2, + 100 MiB), VPA's OOM bump"
            else:
                # krr: max(peak × (1 + buffer), OOM limit × 1.25), no buffer on the OOM figure
                need = base * (1 + KRR_OOM_BUFFER)
                factor = 1.0
                rule_text = "× 1.25, krr's OOM buffer"
            killed_at = (
                f"its limit {_fmt_mib(p.limit_bytes)}"
                if p.limit_bytes is not None and p.limit_bytes >= base
                else f"its peak {_fmt_mib(base)}"
            )
            notes.append(
                f"{p.target.name} was OOM-killed at {killed_at}: it needs at least "
                f"{_fmt_mib(need)} ({rule_text})"
            )
            if need * factor > measured * mem_factor:
                measured, mem_factor, stat_name = need, factor, "oom"
                how = f"OOM kill of {p.target.name}: {killed_at} {rule_text} = {_fmt_mib(need)}"
                how += f" × {factor:g}" if factor != 1.0 else ""
        raw = measured * mem_factor
        value = max(raw, MIN_MEMORY_BYTES)
        applied = raw < MIN_MEMORY_BYTES
        if applied:
            how += f" = {_fmt_mib(raw)}, below the minimum 250Mi: the minimum"
        how += f"; {pooled}{len(mem_all)} samples over {duration:.1f} s"
        mem_req = Figure(
            "memory",
            "request",
            mebibytes(value) * MiB,
            stat_name,
            measured,
            mem_factor,
            len(mem_all),
            duration,
            applied,
            how,
        )
        mem_lim = Figure(
            "memory",
            "limit",
            mem_req.value,
            "request",
            measured,
            mem_factor,
            len(mem_all),
            duration,
            applied,
            "equal to the request: memory cannot be taken back without a kill",
        )
        if 0 < len(mem_all) < MIN_SAMPLES:
            warnings.append(
                f"only {len(mem_all)} memory samples: a short-lived peak may have been missed; "
                "profile longer or sample more often (profiling.interval)"
            )
    else:
        warnings.append(f"no {MEMORY_METRIC} samples were stored for {name}: no memory figure")

    if duration < MIN_DURATION_S:
        warnings.append(
            f"{name} was measured for {duration:.1f} s only: under {MIN_DURATION_S:g} s a run "
            "rarely covers an app's start, steady state and peaks (VPA waits a day, krr 3 "
            "hours); run it longer (timeout:) or repeat it (repeat:)"
        )
    scen = next((cfg for p in parts if (cfg := p.target.config or {}).get("scenario")), None)
    if scen is not None:
        others = [str(x) for x in scen.get("together") or [] if x != scen.get("base_target")]
        notes.append(
            f"measured together with {', '.join(others) or 'other targets'} (scenario "
            f"{scen['scenario']}): these figures include the contention; the target alone "
            f"({scen.get('base_target') or name}) has its own"
        )
    bad = [p.target.name for p in parts if p.target.status in ("error", "crashed")]
    if bad:
        warnings.append(f"{', '.join(bad)} ended with status error or crashed: its data is partial")
    return Recommendation(
        name,
        role,
        targets,
        rule,
        h,
        duration,
        cpu_req,
        cpu_lim,
        mem_req,
        mem_lim,
        throttling,
        oom_names,
        notes,
        warnings,
    )


def recommend(
    store: Store,
    run_ref: str | int,
    *,
    target: str | None = None,
    rule: Rule = "vpa",
    headroom: float = DEFAULT_HEADROOM,
) -> RecommendResult:
    """Recommendations for every target of a run (repeats pooled, each service's rows
    pooled), or for ``target`` (a target's name as planned, e.g. ``burn``, one repeat,
    ``burn#2``, one service row, ``burn/playback``, or a service's name, ``playback``)."""
    if rule not in RULES:
        raise UserError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
    run = store.resolve_run(run_ref)
    rows = store.targets(run.id)
    if target is not None:
        chosen = (
            [t for t in rows if t.name == target]
            or [t for t in rows if group_name(t) == target]
            or [t for t in rows if _is_service(t) and _group_key(t)[1] == target]
        )
        if not chosen:
            names = sorted({group_name(t) for t in rows} | {_group_key(t)[1] for t in rows})
            raise UserError(
                f"run {run.id} has no target {target!r}; its targets are "
                f"{', '.join(names) or 'none'}"
            )
        rows = chosen
    series_by_target: dict[int | None, list[SeriesRecord]] = {}
    for s in store.series(run.id):
        series_by_target.setdefault(s.target_id, []).append(s)
    ncpu = float(run.host.get("cpu_count") or math.inf) if isinstance(run.host, dict) else math.inf
    groups: dict[tuple[Literal["app", "service"], str], list[_Measured]] = {}
    for t in rows:
        groups.setdefault(_group_key(t), []).append(
            _measure(store, t, series_by_target.get(t.id, []), ncpu)
        )
    recs: list[Recommendation] = []
    for (role, name), parts in sorted(groups.items(), key=lambda kv: kv[0][0] == "service"):
        recs.append(_recommend_group(name, role, parts, rule, headroom))
    return RecommendResult(run.id, rule, headroom, recs)


# -- output formats -----------------------------------------------------------------------


def pluginctl_resource(rec: Recommendation) -> str | None:
    """``request.cpu=…,limit.cpu=…,request.memory=…,limit.memory=…`` (Waggle's rules: every
    limit has its request, limit ≥ request, CPU in cores or millicores, memory in Mi/Gi)."""
    parts = [
        f"{f.kind}.{f.resource}={f.text}"
        for f in (rec.cpu_request, rec.cpu_limit, rec.memory_request, rec.memory_limit)
        if f is not None
    ]
    return ",".join(parts) if parts else None


def _yaml_block(
    rec: Recommendation, indent: str, names: dict[str, str], comments: bool
) -> list[str]:
    """``requests:``/``limits:`` (k8s) or ``reservations:``/``limits:`` (compose) lines."""
    out: list[str] = []
    for kind, key in (("request", names["request"]), ("limit", names["limit"])):
        figs = [
            f
            for f in (rec.cpu_request, rec.memory_request, rec.cpu_limit, rec.memory_limit)
            if f is not None and f.kind == kind
        ]
        if not figs:
            continue
        out.append(f"{indent}{key}:")
        for f in figs:
            if names["style"] == "compose":
                v = (
                    f"'{_cores_decimal(f.value)}'"
                    if f.resource == "cpu"
                    else f"{mebibytes(f.value)}M"
                )
                k = "cpus" if f.resource == "cpu" else "memory"
            else:
                v, k = f.text, f.resource
            line = f"{indent}  {k}: {v}"
            out.append(f"{line:<28}# {f.how}" if comments else line)
    return out


def render(rec: Recommendation, fmt: str, comments: bool = True) -> str:
    """One recommendation in a format; with ``comments``, evidence lines as ``#`` comments
    (shell and YAML both ignore them), so the output can be pasted as it is."""
    lines: list[str] = []
    if comments:
        rule = "Kubernetes VPA recommender" if rec.rule == "vpa" else "robusta krr simple"
        lines.append(f"# {rec.label}; rule {rec.rule} ({rule}), headroom {_pct(rec.headroom)}")
        lines += [f"# note: {n}" for n in rec.notes]
        lines += [f"# warning: {w}" for w in rec.warnings]
    if fmt in ("pluginctl", "docker") and comments:
        lines += [f"# {f.kind}.{f.resource} {f.text}: {f.how}" for f in rec.figures()]
    if fmt == "pluginctl":
        res = pluginctl_resource(rec)
        lines.append(f"--resource {res}" if res else "# no figure to recommend")
    elif fmt == "docker":
        flags: list[str] = []
        if rec.cpu_limit is not None:
            flags.append(f"--cpus={_cores_decimal(rec.cpu_limit.value)}")
        if rec.memory_limit is not None:
            flags.append(f"--memory={mebibytes(rec.memory_limit.value)}m")
        if (
            rec.memory_request is not None
            and rec.memory_limit is not None
            and rec.memory_request.value < rec.memory_limit.value
        ):
            flags.append(f"--memory-reservation={mebibytes(rec.memory_request.value)}m")
        if comments:
            lines.append(
                "# docker has no CPU request: --cpus is the limit"
                + ("" if rec.cpu_limit is not None else " (none under this rule)")
            )
        lines.append(" ".join(flags) if flags else "# no figure to recommend")
    elif fmt == "k8s":
        lines.append("resources:")
        lines += _yaml_block(
            rec, "  ", {"request": "requests", "limit": "limits", "style": "k8s"}, comments
        )
    elif fmt == "compose":
        lines += ["deploy:", "  resources:"]
        lines += _yaml_block(
            rec,
            "    ",
            {"request": "reservations", "limit": "limits", "style": "compose"},
            comments,
        )
    else:
        raise UserError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return "\n".join(lines)


def render_all(result: RecommendResult, fmt: str) -> str:
    return "\n\n".join(render(r, fmt) for r in result.recommendations) + "\n"
