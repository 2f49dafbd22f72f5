"""Admin API views for the measured workload: live measurements, the cost comparison, the inventory.

Pure like `views`: they read the running Appliance and take the time as an argument. `monotonic`
is the broker's monotonic clock (`app.broker.monotonic()`), the clock its traffic meter counts on.

What they read: `app.broker.meter` (bytes in/out per topic over the window), the topic catalogue
(partitions, retention.ms), `app.broker.logs.streams()` (retained bytes), the group coordinator's
snapshot (which groups commit offsets on a topic), and the `[[streams]]` inventory of the settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from appliance.cost.model import compare_projected
from appliance.cost.prices import PriceSheet
from appliance.cost.render import to_json
from appliance.inventory.checks import Finding, check_inventory, stream_for_topic, summarize
from appliance.inventory.measurements import Measurements, TopicMeasurement, measurements_to_json

STATUS_FINDINGS = 5  # inventory findings listed in the status warnings; the rest are counted


def _groups_by_topic(app: Any) -> dict[str, set[str]]:
    snapshot = getattr(app.broker.groups, "snapshot", None)
    out: dict[str, set[str]] = {}
    for g in snapshot() if snapshot is not None else ():
        for o in g.get("offsets", ()):
            out.setdefault(str(o["topic"]), set()).add(str(g["group_id"]))
    return out


def _retention_s(value: str) -> float | None:
    try:
        ms = int(value)
    except ValueError:
        return None
    return None if ms < 0 else ms / 1000


def live_measurements(app: Any, *, monotonic: float) -> Measurements:
    """Every topic in the catalogue with its measured rates (zero for a topic nothing touched yet)."""
    broker = app.broker
    meter = broker.meter
    topics = broker.topics.all()
    names = {t.name for t in topics}
    for gone in [n for n in meter.topics() if n not in names]:
        meter.forget(gone)  # deleted: a topic created again under the name starts from zero
    streams = broker.logs.streams()
    groups = _groups_by_topic(app)
    out = []
    for t in sorted(topics, key=lambda t: t.name):
        tr = meter.traffic(t.name, monotonic)
        out.append(TopicMeasurement(
            topic=t.name,
            bytes_in_per_s=tr.bytes_in_per_s,
            bytes_out_per_s=tr.bytes_out_per_s,
            consumer_groups=len(groups.get(t.name, ())),
            peak_to_average=tr.peak_to_average,
            partitions=t.partitions,
            retained_bytes=sum(streams[sid].size_bytes for sid in t.streams if sid in streams),
            retention_s=_retention_s(t.config("retention.ms")),
            bytes_in_total=tr.bytes_in_total,
            bytes_out_total=tr.bytes_out_total,
        ))
    return Measurements(tuple(out), window_s=meter.window_s, covered_s=round(meter.covered_s(monotonic), 3),
                        bucket_s=meter.bucket_s)


def measurements_view(app: Any, *, monotonic: float) -> dict[str, Any]:
    """GET /api/v1/measurements: the document `millstream cost --admin` and `--measurements` read."""
    m = live_measurements(app, monotonic=monotonic)
    doc = measurements_to_json(m.topics, m.window_s)
    doc.update(covered_s=m.covered_s, bucket_s=m.bucket_s)
    return doc


def cost_view(app: Any, sheet: PriceSheet, *, monotonic: float, scale: float | None = None,
              retention_s: float | None = None) -> dict[str, Any]:
    """GET /api/v1/cost: the live workload priced on both designs (`millstream cost --json`'s shape,
    plus "measured_s"). ValueError for a bad projection."""
    m = live_measurements(app, monotonic=monotonic)
    result, baseline, projection = compare_projected(m.topics, sheet, scale=scale, retention_s=retention_s)
    doc = to_json(result, projection=projection or None, baseline=baseline)
    doc["measured_s"] = m.covered_s
    return doc


def _stream_entry(s: Any, matched: list[TopicMeasurement]) -> dict[str, Any]:
    return {"topic": s.topic, "placement": s.placement, "forwarded": s.forwarded, "local_action": s.local_action,
            "owner": s.owner, "source": s.source, "retention_s": s.retention, "consumers": list(s.consumers),
            "topics": [m.topic for m in matched], "bytes_in_per_s": sum(m.bytes_in_per_s for m in matched)}


def inventory_view(app: Any, *, monotonic: float, measured: Measurements | None = None) -> dict[str, Any]:
    """GET /api/v1/inventory: declared streams, placement findings (checked against the live rates)
    and the topics with traffic that no stream declares."""
    s = app.settings
    m = measured if measured is not None else live_measurements(app, monotonic=monotonic)
    findings = check_inventory(s.streams, s.inventory, m)
    covered: Mapping[str, list[TopicMeasurement]] = {st.topic: [] for st in s.streams}
    for tm in m.topics:
        owner = stream_for_topic(s.streams, tm.topic)
        if owner is not None:
            covered[owner.topic].append(tm)
    return {"streams": [_stream_entry(st, covered[st.topic]) for st in s.streams],
            "findings": [f.as_dict() for f in findings],
            "unowned": [f.stream for f in findings if f.rule == "unowned"],
            "counts": summarize(findings),
            "worst_wan_outage_s": s.inventory.worst_wan_outage}


def status_findings(app: Any, *, monotonic: float) -> list[Finding]:
    """The inventory's errors and warnings against the live rates, for the status; none while no
    `[[streams]]` are declared (a site that keeps no inventory is not warned about every topic)."""
    s = app.settings
    if not s.streams:
        return []
    return [f for f in check_inventory(s.streams, s.inventory, live_measurements(app, monotonic=monotonic))
            if f.severity in ("error", "warning")]

