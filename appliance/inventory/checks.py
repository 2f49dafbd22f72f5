"""Placement checks over the declared stream inventory (pure: settings and measurements in, findings out).

Rules (each finding names its rule id so the admin API, the TUI and tests can key on it):
  no-owner                 a stream without a data owner                                    warning
  local-action-over-wan    a local action depends on a stream placed behind the uplink        error (cloud, lake)
                                                                                             warning (regional)
  placement-not-forwarded  placed regional/cloud/lake but not forwarded by the uplink       warning
  outage-retention         a forwarded stream's plant retention is shorter than the worst
                           WAN outage (or not declared)                                     error / warning
  outage-rate              at the measured ingress rate, the outage does not fit the
                           stream's retention_bytes; "not measured yet" without a rate      error / info
  outage-disk-budget       all forwarded streams over the outage exceed plant_disk_budget    error / info
  replay-beyond-retention  consumers expect to replay further back than the plant retains   warning
  unowned                  a measured topic carries traffic but no [[streams]] entry
                           declares it                                                      warning
  declared-no-traffic      a declared stream matched no measured topic with traffic         info

Severities: "error" (the plan loses data or a local action), "warning" (incomplete or risky),
"info" (facts such as what an outage would need, or what is not measured yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from appliance.config import InventorySettings, Settings, StreamSettings
from appliance.inventory.measurements import Measurements, TopicMeasurement
from appliance.inventory.units import format_bytes, format_duration, format_rate

SEVERITIES = ("error", "warning", "info")
UPLINK_PLACEMENTS = ("cloud", "lake")  # only reachable over the WAN
OFFSITE_PLACEMENTS = ("regional", "cloud", "lake")
NOT_MEASURED = "not measured yet"


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" | "warning" | "info"
    stream: str  # the declared topic or pattern, an undeclared topic, or "*" for the whole site
    rule: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "stream": self.stream, "rule": self.rule, "message": self.message}

    def __str__(self) -> str:
        return f"{self.severity}: {self.stream}: {self.message}"


def stream_for_topic(streams: Sequence[StreamSettings], topic: str) -> StreamSettings | None:
    """The stream declaring `topic`: an exact name wins over patterns; among patterns, the first declared."""
    for s in streams:
        if s.topic == topic:
            return s
    for s in streams:
        if fnmatchcase(topic, s.topic):
            return s
    return None


def check_settings(settings: Settings, measurements: Measurements | Sequence[TopicMeasurement] | None = None,
                   ) -> list[Finding]:
    return check_inventory(settings.streams, settings.inventory, measurements)


def check_inventory(streams: Sequence[StreamSettings], inventory: InventorySettings,
                    measurements: Measurements | Sequence[TopicMeasurement] | None = None) -> list[Finding]:
    """All findings, errors first, then in declaration order. `measurements=None`: nothing measured yet."""
    measured: tuple[TopicMeasurement, ...] | None
    if measurements is None:
        measured = None
    elif isinstance(measurements, Measurements):
        measured = measurements.topics
    else:
        measured = tuple(measurements)

    # Which measured topics each declared stream covers (a topic belongs to one stream at most).
    covered: dict[str, list[TopicMeasurement]] = {s.topic: [] for s in streams}
    unowned: list[TopicMeasurement] = []
    for m in measured or ():
        owner_stream = stream_for_topic(streams, m.topic)
        if owner_stream is not None:
            covered[owner_stream.topic].append(m)
        elif m.carries_traffic and not m.topic.startswith("__"):
            unowned.append(m)

    outage = inventory.worst_wan_outage
    findings: list[Finding] = []
    outage_need: dict[str, float] = {}
    for s in streams:
        rate = sum(m.bytes_in_per_s for m in covered[s.topic]) if measured is not None else None
        findings.extend(_stream_findings(s, rate, outage))
        if s.forwarded and rate is not None:
            outage_need[s.topic] = rate * outage
        if measured is not None and not any(m.carries_traffic for m in covered[s.topic]):
            findings.append(Finding("info", s.topic, "declared-no-traffic",
                                    "declared, but no measured topic with traffic matches it"))

    findings.extend(_budget_findings(streams, inventory, outage_need))
    for m in unowned:
        findings.append(Finding("warning", m.topic, "unowned",
                                f"carries {format_rate(m.bytes_in_per_s)} in, {format_rate(m.egress_bytes_per_s)} out "
                                "but no [[streams]] entry declares it: add one with an owner and a placement"))
    order = {sev: i for i, sev in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: order[f.severity])  # stable: declaration order within a severity


def _stream_findings(s: StreamSettings, rate: float | None, outage: float) -> list[Finding]:
    out: list[Finding] = []

    def add(severity: str, rule: str, message: str) -> None:
        out.append(Finding(severity, s.topic, rule, message))

    if not s.owner:
        add("warning", "no-owner", "no data owner: set owner = \"team or person\"")
    if s.local_action and s.placement in UPLINK_PLACEMENTS:
        add("error", "local-action-over-wan",
            f"a local action depends on it, but placement = {s.placement} puts it behind the uplink: "
            "a WAN outage would stop the action; place it at machine or plant_edge (and forward a copy)")
    elif s.local_action and s.placement == "regional":
        add("warning", "local-action-over-wan",
            "a local action depends on it, but placement = regional is reached over the WAN: "
            "make sure the action keeps working through a WAN outage")
    if s.placement in OFFSITE_PLACEMENTS and not s.forwarded:
        add("warning", "placement-not-forwarded",
            f"placement = {s.placement} but forwarded = false: nothing carries it off the plant")
    if s.replay is not None and s.retention is not None and s.replay > s.retention:
        add("warning", "replay-beyond-retention",
            f"consumers expect to replay {format_duration(s.replay)} but the plant keeps {format_duration(s.retention)}")
    if not s.forwarded:
        return out

    need_s = format_duration(outage)
    if s.retention is None:
        add("warning", "outage-retention",
            f"forwarded, but no plant retention declared: it must cover the worst WAN outage ({need_s})")
    elif s.retention < outage:
        add("error", "outage-retention",
            f"plant retention {format_duration(s.retention)} is shorter than the worst WAN outage ({need_s}): "
            "data would be deleted before the uplink can forward it")

    if rate is None:
        what = (f"cannot check that retention_bytes {format_bytes(s.retention_bytes)} holds a {need_s} outage"
                if s.retention_bytes is not None else f"the plant disk a {need_s} outage needs is unknown")
        add("info", "outage-rate", f"{NOT_MEASURED}: {what}")
        return out
    need = rate * outage
    if s.retention_bytes is not None and need > s.retention_bytes:
        covers = s.retention_bytes / rate if rate > 0 else float("inf")
        add("error", "outage-rate",
            f"at the measured {format_rate(rate)} a {need_s} outage needs {format_bytes(need)}, "
            f"but retention_bytes is {format_bytes(s.retention_bytes)} (covers {format_duration(covers)})")
    else:
        add("info", "outage-rate",
            f"at the measured {format_rate(rate)} a {need_s} outage needs {format_bytes(need)} of plant disk")
    return out


def _budget_findings(streams: Sequence[StreamSettings], inventory: InventorySettings,
                     outage_need: dict[str, float]) -> list[Finding]:
    budget = inventory.plant_disk_budget
    forwarded = [s.topic for s in streams if s.forwarded]
    if not budget or not forwarded:
        return []
    missing = [t for t in forwarded if t not in outage_need]
    if missing:
        return [Finding("info", "*", "outage-disk-budget",
                        f"{NOT_MEASURED}: cannot check plant_disk_budget {format_bytes(budget)} "
                        f"({len(missing)} forwarded stream(s) without a rate)")]
    total = sum(outage_need.values())
    if total > budget:
        return [Finding("error", "*", "outage-disk-budget",
                        f"forwarded streams need {format_bytes(total)} to ride out a "
                        f"{format_duration(inventory.worst_wan_outage)} outage, plant_disk_budget is "
                        f"{format_bytes(budget)}")]
    return []


def summarize(findings: Sequence[Finding]) -> dict[str, int]:
    return {sev: sum(1 for f in findings if f.severity == sev) for sev in SEVERITIES}
