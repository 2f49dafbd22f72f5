"""The same workload priced on two designs, every line item with its quantity, unit price and why.

(a) broker_attached: Kafka-style brokers keeping `replication_factor` replicas on block storage, one
    per zone. Cross-zone bytes: producers reaching a leader in another zone, followers replicating,
    and consumers unless they fetch from an in-zone replica.
(b) object_storage: brokers like Millstream's cloud role: a small WAL disk per broker, one copy of
    the data in a regional bucket (its redundancy is in its price), PUT/GET requests for uploads,
    compaction and catch-up reads, no broker-to-broker replication.

Both designs size brokers by peak network traffic (average x peak-to-average) against a share of the
instance's sustained bandwidth, at least one broker per zone, plus the controllers. Units: bytes and
seconds in; the sheet's "GB" is 2^30 bytes, a month is `hours_per_month` hours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from appliance.cost.prices import PriceSheet
from appliance.inventory.measurements import TopicMeasurement
from appliance.inventory.units import format_bytes, format_duration, format_rate

GB = 1 << 30
MIB = 1 << 20
CATEGORIES = ("compute", "storage", "requests", "network")


@dataclass(frozen=True)
class Workload:
    ingress_bytes_per_s: float  # average produce rate, all topics
    egress_bytes_per_s: float  # average consume rate, all groups
    peak_ingress_bytes_per_s: float
    peak_egress_bytes_per_s: float
    partitions: int
    retained_bytes: float  # one copy, at steady state
    topics: int = 0
    retention_note: str = "measured per topic"

    @classmethod
    def from_measurements(cls, measurements: Sequence[TopicMeasurement]) -> Workload:
        """Retained bytes per topic: ingress x retention when the topic has one (steady state),
        else the bytes measured now. Peaks add up per topic (assumes they coincide: conservative)."""
        retained = 0.0
        for m in measurements:
            retained += m.bytes_in_per_s * m.retention_s if m.retention_s is not None else m.retained_bytes
        return cls(
            ingress_bytes_per_s=sum(m.bytes_in_per_s for m in measurements),
            egress_bytes_per_s=sum(m.egress_bytes_per_s for m in measurements),
            peak_ingress_bytes_per_s=sum(m.bytes_in_per_s * m.peak_to_average for m in measurements),
            peak_egress_bytes_per_s=sum(m.egress_bytes_per_s * m.peak_to_average for m in measurements),
            partitions=sum(m.partitions for m in measurements),
            retained_bytes=retained,
            topics=len(measurements),
        )

    @property
    def peak_to_average(self) -> float:
        return self.peak_ingress_bytes_per_s / self.ingress_bytes_per_s if self.ingress_bytes_per_s else 1.0

    def scaled(self, factor: float) -> Workload:
        """The same shape with every rate, the retained bytes and the partitions times `factor`."""
        if factor <= 0:
            raise ValueError("scale factor must be > 0")
        return replace(
            self,
            ingress_bytes_per_s=self.ingress_bytes_per_s * factor,
            egress_bytes_per_s=self.egress_bytes_per_s * factor,
            peak_ingress_bytes_per_s=self.peak_ingress_bytes_per_s * factor,
            peak_egress_bytes_per_s=self.peak_egress_bytes_per_s * factor,
            partitions=max(1, math.ceil(self.partitions * factor)),
            retained_bytes=self.retained_bytes * factor,
        )

    def with_retention(self, retention_s: float) -> Workload:
        """Every topic kept for `retention_s`: retained bytes = ingress x retention."""
        if retention_s < 0:
            raise ValueError("retention cannot be negative")
        return replace(self, retained_bytes=self.ingress_bytes_per_s * retention_s,
                       retention_note=f"{format_duration(retention_s)} for every topic (projection)")

    def as_dict(self) -> dict[str, Any]:
        return {"ingress_bytes_per_s": self.ingress_bytes_per_s, "egress_bytes_per_s": self.egress_bytes_per_s,
                "peak_ingress_bytes_per_s": self.peak_ingress_bytes_per_s,
                "peak_egress_bytes_per_s": self.peak_egress_bytes_per_s, "partitions": self.partitions,
                "retained_bytes": self.retained_bytes, "topics": self.topics, "retention": self.retention_note}


@dataclass(frozen=True)
class LineItem:
    category: str  # one of CATEGORIES
    item: str
    quantity: float
    unit: str
    unit_price: float
    note: str = ""

    @property
    def monthly(self) -> float:
        return self.quantity * self.unit_price

    def as_dict(self) -> dict[str, Any]:
        return {"category": self.category, "item": self.item, "quantity": self.quantity, "unit": self.unit,
                "unit_price": self.unit_price, "monthly": self.monthly, "note": self.note}


@dataclass(frozen=True)
class DesignCost:
    design: str  # "broker_attached" | "object_storage"
    title: str
    brokers: int
    lines: tuple[LineItem, ...]

    @property
    def total(self) -> float:
        return sum(line.monthly for line in self.lines)

    def by_category(self) -> dict[str, float]:
        return {c: sum(line.monthly for line in self.lines if line.category == c) for c in CATEGORIES}

    def line(self, item: str) -> LineItem:
        return next(line for line in self.lines if line.item == item)

    def as_dict(self) -> dict[str, Any]:
        return {"design": self.design, "title": self.title, "brokers": self.brokers, "total": self.total,
                "by_category": self.by_category(), "lines": [line.as_dict() for line in self.lines]}


@dataclass(frozen=True)
class Comparison:
    workload: Workload
    sheet_name: str
    currency: str
    designs: tuple[DesignCost, DesignCost]
    assumptions: tuple[str, ...]

    @property
    def broker_attached(self) -> DesignCost:
        return self.designs[0]

    @property
    def object_storage(self) -> DesignCost:
        return self.designs[1]

    def as_dict(self) -> dict[str, Any]:
        return {"price_sheet": self.sheet_name, "currency": self.currency, "workload": self.workload.as_dict(),
                "designs": {d.design: d.as_dict() for d in self.designs}, "assumptions": list(self.assumptions)}


def _brokers_for(peak_in: float, peak_out: float, replicas: float, sheet: PriceSheet, floor: int) -> int:
    per_broker = sheet.instance.network_mib_s * MIB * sheet.instance.target_utilization
    by_network = math.ceil(max(peak_in, peak_out) / per_broker - 1e-9)
    by_partitions = math.ceil(replicas / sheet.sizing.max_partitions_per_broker)
    return max(floor, by_network, by_partitions)


def _compute_lines(brokers: int, sheet: PriceSheet, why: str) -> list[LineItem]:
    inst, hours = sheet.instance, sheet.sheet.hours_per_month
    lines = [LineItem("compute", "brokers", brokers * hours, "instance-hours", inst.per_hour,
                      f"{brokers} x {inst.type}: {why}")]
    if sheet.sizing.controllers:
        lines.append(LineItem("compute", "controllers", sheet.sizing.controllers * hours, "instance-hours",
                              inst.per_hour, f"{sheet.sizing.controllers} x {inst.type}"))
    return lines


def broker_attached(w: Workload, sheet: PriceSheet) -> DesignCost:
    z, rf = sheet.sizing.zones, sheet.sizing.replication_factor
    month_s = sheet.sheet.hours_per_month * 3600
    xz = sheet.network.cross_zone_per_gb
    other_zones = (z - 1) / z
    # Each produced byte lands once on the leader and (rf-1) times on followers; each follower fetch
    # also leaves the leader. Consumers add egress only.
    peak_in = w.peak_ingress_bytes_per_s * rf
    peak_out = w.peak_egress_bytes_per_s + w.peak_ingress_bytes_per_s * (rf - 1)
    brokers = _brokers_for(peak_in, peak_out, w.partitions * rf, sheet, floor=max(z, rf))
    why = f"peak {format_rate(peak_in)} in, {format_rate(peak_out)} out across the cluster"
    lines = _compute_lines(brokers, sheet, why)
    fill = sheet.sizing.block_storage_fill
    lines.append(LineItem("storage", "block storage", w.retained_bytes * rf / fill / GB, "GB-month",
                          sheet.block_storage.gb_month,
                          f"{rf} replicas of {format_bytes(w.retained_bytes)} on disks kept <= {fill:.0%} full"))
    lines.append(LineItem("network", "cross-zone: producers to leaders", w.ingress_bytes_per_s * month_s
                          * other_zones / GB, "GB", xz, f"{other_zones:.0%} of produce reaches a leader in another zone"))
    followers_elsewhere = min(rf - 1, z - 1)
    lines.append(LineItem("network", "cross-zone: replication", w.ingress_bytes_per_s * month_s * followers_elsewhere
                          / GB, "GB", xz, f"{followers_elsewhere} follower copies in other zones"))
    consumer_share = 0.0 if sheet.sizing.consumers_fetch_in_zone else other_zones
    lines.append(LineItem("network", "cross-zone: consumers", w.egress_bytes_per_s * month_s * consumer_share / GB,
                          "GB", xz, "consumers fetch from an in-zone replica" if consumer_share == 0
                          else f"{other_zones:.0%} of consume crosses zones"))
    return DesignCost("broker_attached", f"broker-attached storage, RF={rf} across {z} zones", brokers, tuple(lines))


def object_storage(w: Workload, sheet: PriceSheet) -> DesignCost:
    s = sheet.sizing
    z, month_s = s.zones, sheet.sheet.hours_per_month * 3600
    xz, obj = sheet.network.cross_zone_per_gb, sheet.object_storage
    other_zones = (z - 1) / z
    # A broker takes produce in, uploads it once, and compaction reads part of it back and rewrites it;
    # consumers are served from the log cache except the cold share, which is read from the bucket.
    peak_in = w.peak_ingress_bytes_per_s * (1 + s.compaction_rewrite) + w.peak_egress_bytes_per_s * s.cold_read_fraction
    peak_out = w.peak_egress_bytes_per_s + w.peak_ingress_bytes_per_s * (1 + s.compaction_rewrite)
    brokers = _brokers_for(peak_in, peak_out, w.partitions, sheet, floor=z)
    why = f"peak {format_rate(peak_in)} in, {format_rate(peak_out)} out incl. bucket traffic"
    lines = _compute_lines(brokers, sheet, why)
    lines.append(LineItem("storage", "object storage", w.retained_bytes / GB, "GB-month", obj.gb_month,
                          f"one copy of {format_bytes(w.retained_bytes)} in a regional bucket"))
    lines.append(LineItem("storage", "WAL volumes", brokers * s.wal_volume_gb, "GB-month",
                          sheet.block_storage.gb_month, f"{brokers} x {s.wal_volume_gb:g} GB"))
    ingested = w.ingress_bytes_per_s * month_s
    lines.append(LineItem("requests", "PUT: WAL uploads", ingested / s.upload_bytes / 1000, "1,000 PUTs",
                          obj.put_per_1000, f"{format_bytes(s.upload_bytes)} per PUT"))
    rewritten = ingested * s.compaction_rewrite
    lines.append(LineItem("requests", "PUT: compaction", rewritten / s.upload_bytes / 1000, "1,000 PUTs",
                          obj.put_per_1000, f"{s.compaction_rewrite:.0%} of ingested bytes rewritten once"))
    lines.append(LineItem("requests", "GET: compaction reads", rewritten / s.get_bytes / 1000, "1,000 GETs",
                          obj.get_per_1000, f"{format_bytes(s.get_bytes)} per ranged GET"))
    cold = w.egress_bytes_per_s * month_s * s.cold_read_fraction
    lines.append(LineItem("requests", "GET: catch-up reads", cold / s.get_bytes / 1000, "1,000 GETs",
                          obj.get_per_1000, f"{s.cold_read_fraction:.0%} of consumer reads come from the bucket"))
    producer_share = 0.0 if s.object_store_producers_in_zone else other_zones
    lines.append(LineItem("network", "cross-zone: producers to brokers", ingested * producer_share / GB, "GB", xz,
                          "producers write to a broker in their zone" if producer_share == 0
                          else f"{other_zones:.0%} of produce crosses zones"))
    consumer_share = 0.0 if s.consumers_fetch_in_zone else other_zones
    lines.append(LineItem("network", "cross-zone: consumers", w.egress_bytes_per_s * month_s * consumer_share / GB,
                          "GB", xz, "any broker serves reads, consumers use their zone's" if consumer_share == 0
                          else f"{other_zones:.0%} of consume crosses zones"))
    return DesignCost("object_storage", f"object-storage-backed brokers across {z} zones", brokers, tuple(lines))


def assumptions(w: Workload, sheet: PriceSheet) -> tuple[str, ...]:
    s, inst = sheet.sizing, sheet.instance
    return (
        f"prices: {sheet.sheet.name} ({sheet.source}); a month is {sheet.sheet.hours_per_month:g} h; GB = 2^30 bytes",
        f"workload: {format_rate(w.ingress_bytes_per_s)} in, {format_rate(w.egress_bytes_per_s)} out on average, "
        f"peak/average {w.peak_to_average:.2f}, {w.partitions} partitions, {format_bytes(w.retained_bytes)} "
        f"retained (retention: {w.retention_note})",
        f"brokers sized for peak traffic at {inst.target_utilization:.0%} of {inst.type}'s "
        f"{inst.network_mib_s:g} MiB/s sustained network, at least one per zone, at most "
        f"{s.max_partitions_per_broker} partition replicas each; plus {s.controllers} controllers",
        f"broker-attached: RF={s.replication_factor} with replicas in {s.zones} zones; disks kept <= "
        f"{s.block_storage_fill:.0%} full; consumers "
        + ("fetch from an in-zone replica" if s.consumers_fetch_in_zone else "fetch from the leader"),
        f"object storage: one copy in a regional bucket; {format_bytes(s.upload_bytes)} per upload PUT; compaction "
        f"rewrites {s.compaction_rewrite:.0%} of ingested bytes; {format_bytes(s.get_bytes)} per GET; "
        f"{s.cold_read_fraction:.0%} of reads from the bucket; producers "
        + ("use an in-zone broker" if s.object_store_producers_in_zone else "cross zones like Kafka's"),
        f"cross-zone transfer {sheet.network.cross_zone_per_gb:g} {sheet.sheet.currency}/GB (both directions "
        "billed); traffic between brokers and a bucket in the same region is free",
    )


def compare(w: Workload, sheet: PriceSheet) -> Comparison:
    return Comparison(w, sheet.sheet.name, sheet.sheet.currency,
                      (broker_attached(w, sheet), object_storage(w, sheet)), assumptions(w, sheet))


def compare_projected(measurements: Sequence[TopicMeasurement], sheet: PriceSheet, *, scale: float | None = None,
                      retention_s: float | None = None) -> tuple[Comparison, Comparison | None, dict[str, float]]:
    """The comparison for the measured workload, or for its projection (scaled by `scale`, every topic
    kept `retention_s`) together with the measured baseline. Returns (result, baseline or None,
    projection as {"scale", "retention_s"} for what was asked). ValueError for a bad factor."""
    base = Workload.from_measurements(measurements)
    workload, projection = base, {}
    if scale is not None:
        workload = workload.scaled(scale)
        projection["scale"] = float(scale)
    if retention_s is not None:
        workload = workload.with_retention(retention_s)
        projection["retention_s"] = float(retention_s)
    result = compare(workload, sheet)
    return result, (compare(base, sheet) if projection else None), projection
