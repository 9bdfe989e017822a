"""From parsed app messages to samples and events: counters, totals, gauges, sets, stats.

Model of kinds, as samples (every series is ``app.<name>`` with the message's meta as
labels, at the app's own timestamp when it sent one):

* gauge: the value; an Etsy ``+n``/``-n`` gauge changes the last value of its series.
* timer: the value in ms (a distribution: summaries give p50/p95/p99).
* counter: each increment is a sample of ``app.<name>`` (its value is the increment, the
  sample rate applied), and the running total of the series is a sample of
  ``app.<name>.total`` (kind ``total``: it starts at zero and may go down with
  decrements, so its total over the run is its last value, and its rate is derived).
* set: ``app.<name>`` is the number of distinct members seen so far in the run.
* DogStatsD events and service checks become ``app_event`` / ``app_service_check``
  events (the first :data:`MAX_APP_EVENTS`; the rest are counted).

Rejected messages are counted by reason; the first few per reason become
``app_metric_rejected`` events. :meth:`Aggregator.stats` gives received = accepted +
rejected, plus what clients reported as dropped on their side. No sockets, no threads:
testable with plain lists of messages.
"""

from __future__ import annotations

import threading
from typing import Any

from edgeprof.collect.app.messages import REASONS, AppMessage, Meta, Rejection
from edgeprof.model import Event, Labels, MetricSpec, Sample

EVENTS_PER_REASON = 5
MAX_APP_EVENTS = 10_000
MAX_SET_MEMBERS = 1_000_000
DOGSTATSD_DROPPED = "app.datadog.dogstatsd.client.packets_dropped"
"""DogStatsD clients report their own drops in this telemetry counter (every 10 s)."""


class Aggregator:
    """Turns messages into samples; ``ingest`` from one thread, ``take`` from another."""

    def __init__(self, base_labels: Labels = (), target: str | None = None) -> None:
        self._base = base_labels
        self._base_keys = frozenset(k for k, _ in base_labels)
        self._target = target
        self._label_cache: dict[Meta, Labels] = {}
        self._lock = threading.Lock()
        self._out: list[Sample] = []
        self._events: list[Event] = []
        self._totals: dict[tuple[str, Labels], float] = {}
        self._gauges: dict[tuple[str, Labels], float] = {}
        self._sets: dict[tuple[str, Labels], set[str]] = {}
        self._client: dict[str, tuple[int, int]] = {}
        self._client_reports = 0
        self._dogstatsd_dropped = 0.0
        # name → kind ("gauge", "timer", "counter", "set"): the metrics seen so far
        self._kinds: dict[str, str] = {}
        self.metrics_version = 0
        self.received = 0
        self.accepted = 0
        self.datagrams = 0
        self.app_events = 0
        self.app_events_dropped = 0
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)

    # -- what was seen ---------------------------------------------------------------------

    def metrics(self) -> list[MetricSpec]:
        """Every app metric seen so far, declared (units: ms for timers, 1 otherwise)."""
        with self._lock:
            kinds = sorted(self._kinds.items())
        specs: list[MetricSpec] = []
        for name, kind in kinds:
            if kind == "timer":
                specs.append(MetricSpec(name, "ms", "gauge", "app timer (distribution)"))
            elif kind == "counter":
                specs.append(MetricSpec(name, "1", "gauge", "app counter increment"))
                specs.append(MetricSpec(name + ".total", "1", "total", "app counter running total"))
            elif kind == "set":
                specs.append(MetricSpec(name, "1", "gauge", "distinct set members"))
            else:
                specs.append(MetricSpec(name, "1", "gauge", "app gauge"))
        return specs

    def kinds(self) -> dict[str, list[str]]:
        with self._lock:
            items = sorted(self._kinds.items())
        out: dict[str, list[str]] = {"gauges": [], "timers": [], "counters": [], "sets": []}
        for name, kind in items:
            out[kind + "s"].append(name)
        return out

    def _seen(self, name: str, kind: str) -> None:
        if self._kinds.get(name) != kind:
            with self._lock:
                self._kinds[name] = kind
                self.metrics_version += 1

    def _labels(self, meta: Meta | None) -> Labels:
        if meta is None:
            return self._base
        labels = self._label_cache.get(meta)
        if labels is None:
            merged = dict(self._base)
            for k, v in meta:
                merged["app_" + k if k in self._base_keys else k] = v
            labels = tuple(sorted(merged.items()))
            if len(self._label_cache) < 10000:
                self._label_cache[meta] = labels
        return labels

    # -- ingest (receiver thread) ----------------------------------------------------------

    def ingest(self, msgs: list[AppMessage], rejs: list[Rejection], datagrams: int = 1) -> None:
        """Account for one or more datagrams' messages and queue their samples."""
        out: list[Sample] = []
        events: list[Event] = []
        n_other = 0
        gauges = self._gauges
        kinds = self._kinds
        append = out.append
        for m in msgs:
            kind = m.kind
            labels = self._labels(m.meta)
            if kind == "gauge":
                append(Sample(m.name, labels, m.t_ns, m.value))
                gauges[(m.name, labels)] = m.value  # the base of later Etsy +n/-n
                if m.name not in kinds:
                    self._seen(m.name, "gauge")
            elif kind == "timer":
                append(Sample(m.name, labels, m.t_ns, m.value))
                if kinds.get(m.name) != "timer":
                    self._seen(m.name, "timer")
            elif kind == "counter":
                key = (m.name, labels)
                total = self._totals.get(key, 0.0) + m.value
                self._totals[key] = total
                append(Sample(m.name, labels, m.t_ns, m.value))
                append(Sample(m.name + ".total", labels, m.t_ns, total))
                if kinds.get(m.name) != "counter":
                    self._seen(m.name, "counter")
                if m.name == DOGSTATSD_DROPPED:
                    self._dogstatsd_dropped += m.value
            elif kind == "gauge_delta":
                key = (m.name, labels)
                value = gauges.get(key, 0.0) + m.value
                gauges[key] = value
                append(Sample(m.name, labels, m.t_ns, value))
                if m.name not in kinds:
                    self._seen(m.name, "gauge")
            elif kind == "set":
                members = self._sets.setdefault((m.name, labels), set())
                if len(members) < MAX_SET_MEMBERS:
                    members.add(m.member or "")
                append(Sample(m.name, labels, m.t_ns, float(len(members))))
                if kinds.get(m.name) != "set":
                    self._seen(m.name, "set")
            elif kind == "client_stats":
                info = m.info or {}
                with self._lock:
                    pid = info.get("pid", "") or f"anon{len(self._client)}"
                    self._client[pid] = (int(info.get("sent", 0)), int(info.get("dropped", 0)))
                    self._client_reports += 1
                n_other += 1
            elif kind in ("event", "service_check"):
                ev = self._app_event(m)
                if ev is not None:
                    events.append(ev)
        with self._lock:
            self.datagrams += datagrams
            self.received += len(msgs) - n_other + len(rejs)
            self.accepted += len(msgs) - n_other
            if out:
                self._out.extend(out)
            self._events.extend(events)
            for r in rejs:
                count = self.rejected.get(r.reason, 0) + 1
                self.rejected[r.reason] = count
                if count <= EVENTS_PER_REASON:
                    self._events.append(
                        Event(
                            r.t_ns,
                            "app_metric_rejected",
                            f"app metric rejected ({r.reason}): {r.detail}",
                            self._target,
                            {"reason": r.reason, "detail": r.detail, "excerpt": r.excerpt},
                        )
                    )

    def _app_event(self, m: AppMessage) -> Event | None:
        if self.app_events >= MAX_APP_EVENTS:
            self.app_events_dropped += 1
            return None
        self.app_events += 1
        info = dict(m.info or {})
        data: dict[str, Any] = {"tags": dict(m.meta or ()), **info, "app_ts": m.app_ts}
        if m.kind == "event":
            data["title"] = m.name
            text = info.get("text", "")
            msg = m.name + (f": {text[:200]}" if text else "")
            return Event(m.t_ns, "app_event", msg, self._target, data)
        data["check"] = m.name
        msg = f"service check {m.name}: {info.get('status', '?')}"
        if info.get("message"):
            msg += f" ({info['message'][:200]})"
        return Event(m.t_ns, "app_service_check", msg, self._target, data)

    # -- hand-over (sampler thread) --------------------------------------------------------

    def take(self) -> tuple[list[Sample], list[Event]]:
        """Samples and events queued since the last call."""
        with self._lock:
            out, self._out = self._out, []
            events, self._events = self._events, []
        return out, events

    def take_events(self) -> list[Event]:
        """Events queued since the last call (samples stay for the next ``take``)."""
        with self._lock:
            events, self._events = self._events, []
        return events

    def stats(self) -> dict[str, Any]:
        """received = accepted + rejected_total; client_* come from the clients' reports."""
        with self._lock:
            rejected = dict(self.rejected)
            return {
                "received": self.received,
                "accepted": self.accepted,
                "rejected": rejected,
                "rejected_total": sum(rejected.values()),
                "datagrams": self.datagrams,
                "client_reports": self._client_reports,
                "client_sent": sum(s for s, _ in self._client.values()),
                "client_dropped": sum(d for _, d in self._client.values()),
                "dogstatsd_reported_dropped": int(self._dogstatsd_dropped),
                "app_events": self.app_events,
                "app_events_dropped": self.app_events_dropped,
                "not_sampled": len(self._out),
            }

    def closing_events(self, now_ns: int, extra: dict[str, Any] | None = None) -> list[Event]:
        """``app_metric_kinds`` (when any metric arrived) and ``app_metrics_stats``."""
        events: list[Event] = []
        kinds = self.kinds()
        if any(kinds.values()):
            counts = ", ".join(f"{len(v)} {k}" for k, v in kinds.items() if v)
            events.append(
                Event(
                    now_ns, "app_metric_kinds", f"app metric kinds: {counts}", self._target, kinds
                )
            )
        st = {**self.stats(), **(extra or {})}
        msg = (
            f"app metrics: {st['received']} received, {st['accepted']} accepted, "
            f"{st['rejected_total']} rejected, {st['client_dropped']} dropped by the app"
        )
        if st["dogstatsd_reported_dropped"]:
            msg += f", {st['dogstatsd_reported_dropped']} reported dropped by a DogStatsD client"
        lost = st.get("pump_dropped", 0)
        if lost is None:
            msg += (
                "; the profiler's reader was stopped before it finished, so datagrams still "
                "queued at the end may be lost (count unknown)"
            )
        elif lost:
            msg += f", {lost} lost by the profiler (its buffer was full)"
        events.append(Event(now_ns, "app_metrics_stats", msg, self._target, st))
        return events
