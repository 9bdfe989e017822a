"""Jetson ``tegrastats`` parser and collectors (metric group ``tegrastats``).

``parse_line`` is a pure function turning one ``tegrastats`` line (JetPack 4 to 7, with or
without the leading timestamp, with or without root) into metric values in SI base units.
Unknown fields are skipped; a line with nothing recognisable gives an empty reading.

Decisions worth knowing:

* Memory sizes printed as ``MB``/``kB`` are binary units (MiB/KiB), as in ``/proc/meminfo``.
* Temperatures: the first value is used (JetPack 7 prints ``name@XC/YC``; the meaning of the
  second value is not documented, so it is not recorded). Placeholder readings are skipped:
  anything below -40 C (offline sensors print -256C) and ``PMIC@100C``, a fixed value the
  PMIC "sensor" prints on Nano/TX2/Xavier boards.
* Power rails: ``NAME cur/avg`` in mW (unit optional, ``mW`` on JetPack 5+). JetPack 7 adds
  a third value; with current and average first, it is taken to be the peak (maximum) since
  tegrastats started and stored as ``jetson.power.max_watts``. This is an inference from
  the field order (all three are equal on a steady line), not from NVIDIA documentation.
* Board total (``jetson.power.total_watts`` / ``jetson.power.total_average_watts``):
  ``POM_5V_IN`` (Nano) or ``VDD_IN`` (TX2, Xavier NX, Orin NX/Nano) when printed; otherwise
  the sum of every rail (AGX Xavier; AGX Orin, where ``VIN_SYS_5V0`` is only one of the
  module's input rails, so the total is VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0
  [+ VDDQ_VDD2_1V8AO when printed]). This is the rule jetson-stats uses
  (``jtop/core/power.py: total_power``, after rbonghi/jetson_stats#344 and the NVIDIA forum
  thread "tegrastats monitoring" it cites); on AGX Orin it covers the module, not the
  carrier board. Rails named ``NC`` (not connected) are ignored.
* ``gpu.power_watts`` is emitted only for a rail that powers the GPU alone (``POM_5V_GPU``,
  ``VDD_SYS_GPU``, ``GPU``, ``VDD_GPU``); shared rails such as ``VDD_GPU_SOC`` or
  ``VDD_CPU_GPU_CV`` stay rail series only.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from datetime import datetime

from edgeprof.model import Labels, MetricSpec, labels_of

MIB = 1024 * 1024
_UNIT_BYTES = {"": 1, "k": 1024, "K": 1024, "M": MIB, "G": 1024 * MIB}
MHZ = 1_000_000.0

# ---------------------------------------------------------------------------- patterns
# All compiled once at import; parse_line only runs them.
_TS_RE = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s+")
_RAM_RE = re.compile(r"(?<![A-Z])RAM (\d+)/(\d+)([kKMG]?)B")
_SWAP_RE = re.compile(r"\bSWAP (\d+)/(\d+)([kKMG]?)B(?: ?\(cached (\d+)([kKMG]?)B\))?")
_CPU_RE = re.compile(r"\bCPU \[([^\]]*)\](?:@(\d+))?")
_CORE_RE = re.compile(r"^\s*(\d+)%(?:@(\d+))?\s*$")
_MTS_RE = re.compile(r"\bMTS fg (\d+)% bg (\d+)%")
# NAME value where value is: off | L%@[F,F] | L%@F | L% | @[F,F] | @F | F
_FIELD_RE = re.compile(
    r"(?:(?<=\s)|^)([A-Z][A-Z0-9_]*) "
    r"(off|(?:(\d+)%)?(?:@(?:\[([\d,]+)\]|(\d+)))?|\d+)(?=\s|$)"
)
_RAIL_RE = re.compile(
    r"(?:(?<=\s)|^)([A-Za-z][A-Za-z0-9_]*) "
    r"(\d+(?:\.\d+)?)(?:mW)?/(\d+(?:\.\d+)?)(?:mW)?(?:/(\d+(?:\.\d+)?)(?:mW)?)?(?=\s|$)"
)
_TEMP_RE = re.compile(
    r"(?:(?<=\s)|^)([A-Za-z][A-Za-z0-9_\-]*)@(-?\d+(?:\.\d+)?)C(?:/-?\d+(?:\.\d+)?C)?(?=\s|$)"
)

# Fields handled by their own pattern (or deliberately not exported) in the generic pass.
_NOT_ENGINES = frozenset({"RAM", "SWAP", "IRAM", "CPU", "MTS"})
_TOTAL_RAILS = ("POM_5V_IN", "VDD_IN")
_GPU_ONLY_RAILS = frozenset({"POM_5V_GPU", "VDD_SYS_GPU", "GPU", "VDD_GPU"})
_MIN_VALID_CELSIUS = -40.0

Value = tuple[str, Labels, float]


@dataclass(frozen=True, slots=True)
class TegraReading:
    """The metrics of one tegrastats line: ``(metric, labels, value)`` triples.

    ``timestamp`` is the line's own (local, naive) time when it has one. ``total_rule``
    says how ``jetson.power.total_watts`` was obtained (``rail:VDD_IN``, ``sum`` or ``""``).
    """

    values: tuple[Value, ...] = ()
    timestamp: datetime | None = None
    total_rule: str = ""

    def __bool__(self) -> bool:
        return bool(self.values)

    def get(self, metric: str, **labels: str) -> float | None:
        """The value of ``metric`` with exactly these labels, or None."""
        want = labels_of(labels)
        for name, lab, value in self.values:
            if name == metric and lab == want:
                return value
        return None

    def series(self, metric: str) -> dict[Labels, float]:
        return {lab: v for name, lab, v in self.values if name == metric}


@dataclass
class _Builder:
    values: list[Value] = field(default_factory=list)

    def add(self, metric: str, value: float, labels: Labels = ()) -> None:
        self.values.append((metric, labels, float(value)))


def _engine_name(raw: str) -> str:
    return raw[:-5] if raw.endswith("_FREQ") else raw


def _parse_fields(text: str, b: _Builder) -> None:
    for m in _FIELD_RE.finditer(text):
        raw, whole, load, gpcs, freq = m.groups()
        if raw in _NOT_ENGINES or not whole:
            continue
        name = _engine_name(raw)
        if whole == "off":
            if name not in ("GR3D", "EMC"):
                b.add("jetson.engine.online", 0, (("engine", name),))
            continue
        freqs: list[float] = []
        if gpcs:
            freqs = [float(f) * MHZ for f in gpcs.split(",") if f]
        elif freq:
            freqs = [float(freq) * MHZ]
        elif load is None and whole.isdigit():
            freqs = [float(whole) * MHZ]  # "APE 150", "VIC_FREQ 115": a clock in MHz
        if name == "GR3D":
            if load is not None:
                b.add("gpu.utilization_percent", float(load))
            if gpcs:
                for i, f in enumerate(freqs):
                    b.add("gpu.freq_hz", f, (("gpc", str(i)),))
            elif freqs:
                b.add("gpu.freq_hz", freqs[0])
        elif name == "EMC":
            if load is not None:
                b.add("jetson.emc.utilization_percent", float(load))
            if freqs:
                b.add("jetson.emc.freq_hz", freqs[0])
        else:
            lab = (("engine", name),)
            b.add("jetson.engine.online", 1, lab)
            if load is not None:
                b.add("jetson.engine.utilization_percent", float(load), lab)
            if freqs:
                b.add("jetson.engine.freq_hz", freqs[0], lab)


def _parse_cpu(text: str, b: _Builder) -> None:
    m = _CPU_RE.search(text)
    if not m:
        return
    shared_freq = m.group(2)  # old form: CPU [X%,Y%]@Z
    for i, item in enumerate(m.group(1).split(",")):
        lab = (("core", str(i)),)
        if item.strip() == "off":
            b.add("jetson.cpu.online", 0, lab)
            continue
        cm = _CORE_RE.match(item)
        if not cm:
            continue
        b.add("jetson.cpu.online", 1, lab)
        b.add("jetson.cpu.utilization_percent", float(cm.group(1)), lab)
        freq = cm.group(2) or shared_freq
        if freq:
            b.add("jetson.cpu.freq_hz", float(freq) * MHZ, lab)


def _parse_power(text: str, b: _Builder) -> str:
    rails: dict[str, tuple[float, float]] = {}
    for m in _RAIL_RE.finditer(text):
        name, cur, avg, peak = m.groups()
        if name == "NC" or name.startswith("NC_"):
            continue
        cur_w, avg_w = float(cur) / 1000.0, float(avg) / 1000.0
        lab = (("rail", name),)
        b.add("jetson.power.current_watts", cur_w, lab)
        b.add("jetson.power.average_watts", avg_w, lab)
        if peak is not None:
            b.add("jetson.power.max_watts", float(peak) / 1000.0, lab)
        if name in _GPU_ONLY_RAILS:
            b.add("gpu.power_watts", cur_w, lab)
        rails[name] = (cur_w, avg_w)
    if not rails:
        return ""
    for total in _TOTAL_RAILS:
        if total in rails:
            cur_w, avg_w = rails[total]
            rule = f"rail:{total}"
            break
    else:
        cur_w = sum(v[0] for v in rails.values())
        avg_w = sum(v[1] for v in rails.values())
        rule = "sum"
    b.add("jetson.power.total_watts", cur_w)
    b.add("jetson.power.total_average_watts", avg_w)
    return rule


def _parse_temps(text: str, b: _Builder) -> None:
    for m in _TEMP_RE.finditer(text):
        sensor, val = m.group(1), float(m.group(2))
        if val < _MIN_VALID_CELSIUS or (sensor.upper() == "PMIC" and val == 100.0):
            continue
        b.add("jetson.temperature_celsius", val, (("sensor", sensor),))


def parse_line(line: str) -> TegraReading:
    """Parse one tegrastats line into metric values (SI units). Never raises."""
    try:
        return _parse(line)
    except Exception:  # a parser bug must never stop a run: treat the line as unknown
        return TegraReading()


def _parse(line: str) -> TegraReading:
    text = line.strip()
    b = _Builder()
    ts: datetime | None = None
    tm = _TS_RE.match(text)
    if tm:
        with contextlib.suppress(ValueError):
            ts = datetime.strptime(tm.group(1), "%m-%d-%Y %H:%M:%S")
        text = text[tm.end() :]
    m = _RAM_RE.search(text)
    if m:
        unit = _UNIT_BYTES[m.group(3)]
        b.add("jetson.ram.used_bytes", int(m.group(1)) * unit)
        b.add("jetson.ram.total_bytes", int(m.group(2)) * unit)
    m = _SWAP_RE.search(text)
    if m:
        unit = _UNIT_BYTES[m.group(3)]
        b.add("jetson.swap.used_bytes", int(m.group(1)) * unit)
        b.add("jetson.swap.total_bytes", int(m.group(2)) * unit)
        if m.group(4) is not None:
            b.add("jetson.swap.cached_bytes", int(m.group(4)) * _UNIT_BYTES[m.group(5)])
    _parse_cpu(text, b)
    m = _MTS_RE.search(text)
    if m:
        b.add("jetson.mts.foreground_percent", float(m.group(1)))
        b.add("jetson.mts.background_percent", float(m.group(2)))
    _parse_fields(text, b)
    _parse_temps(text, b)
    rule = _parse_power(text, b)
    if not b.values:
        return TegraReading()
    return TegraReading(values=tuple(b.values), timestamp=ts, total_rule=rule)


TEGRASTATS_METRICS: list[MetricSpec] = [
    MetricSpec("gpu.utilization_percent", "%", description="GR3D (iGPU) load"),
    MetricSpec("gpu.freq_hz", "Hz", description="GR3D clock; label gpc when per-GPC"),
    MetricSpec("gpu.power_watts", "W", description="GPU-only rail power, label rail"),
    MetricSpec("jetson.ram.used_bytes", "B"),
    MetricSpec("jetson.ram.total_bytes", "B"),
    MetricSpec("jetson.swap.used_bytes", "B"),
    MetricSpec("jetson.swap.total_bytes", "B"),
    MetricSpec("jetson.swap.cached_bytes", "B"),
    MetricSpec("jetson.cpu.utilization_percent", "%", description="per core, label core"),
    MetricSpec("jetson.cpu.freq_hz", "Hz", description="per core, label core"),
    MetricSpec("jetson.cpu.online", "1", description="0 when tegrastats prints 'off'"),
    MetricSpec("jetson.mts.foreground_percent", "%"),
    MetricSpec("jetson.mts.background_percent", "%"),
    MetricSpec("jetson.emc.utilization_percent", "%"),
    MetricSpec("jetson.emc.freq_hz", "Hz"),
    MetricSpec("jetson.engine.utilization_percent", "%", description="label engine"),
    MetricSpec("jetson.engine.freq_hz", "Hz", description="label engine"),
    MetricSpec("jetson.engine.online", "1", description="0 when the engine is 'off'"),
    MetricSpec("jetson.temperature_celsius", "degC", description="label sensor"),
    MetricSpec("jetson.power.current_watts", "W", description="label rail"),
    MetricSpec("jetson.power.average_watts", "W", description="label rail"),
    MetricSpec("jetson.power.max_watts", "W", description="JetPack 7 third value, label rail"),
    MetricSpec("jetson.power.total_watts", "W", description="board/module total"),
    MetricSpec("jetson.power.total_average_watts", "W"),
]
