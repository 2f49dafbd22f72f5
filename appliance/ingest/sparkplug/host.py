"""A Sparkplug B host application's view of the edge nodes. Pure: time passed in, no IO.

`SparkplugHost.handle(topic, payload, now, now_ms)` takes one MQTT message on `spBv1.0/...` and
returns what to do: normalised metric records to write and commands (NCMD rebirth requests) to
publish. The state kept per edge node: online or not, bdSeq of its NBIRTH, the last seq, the
birth certificate (alias -> name and datatype; name -> datatype) of the node and of each device.

Rules (Sparkplug 3.0):
- NBIRTH resets the node: new bdSeq, seq, metrics; its devices are offline until their DBIRTH.
- NDEATH with the matching bdSeq (or none) marks the node and its devices offline; a stale
  NDEATH (an older session's will) is ignored. DDEATH marks one device offline. Every metric
  of what went offline is emitted once more with quality STALE and a null value.
- seq must go up by one per message from a node (births included, 255 wraps to 0). A gap, an
  alias missing from the birth, or data from a node or device never born, asks the node for a
  rebirth (NCMD `Node Control/Rebirth` = true), at most once per `rebirth_min_interval`.
- Data messages are still emitted when a rebirth is requested, with whatever can be resolved.

Quality: from a metric property "Quality" (OPC style: >=192 GOOD, 64-191 UNCERTAIN, <64 BAD) when
present, else GOOD; STALE for metrics of offline nodes/devices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from appliance.ingest.sparkplug.payload import (
    DATATYPES,
    Metric,
    Payload,
    WireError,
    decode_payload,
    metric_value,
    rebirth_request,
)

NAMESPACE = "spBv1.0"
NODE_TYPES = {"NBIRTH", "NDEATH", "NDATA", "NCMD"}
DEVICE_TYPES = {"DBIRTH", "DDEATH", "DDATA", "DCMD"}


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    group: str
    message_type: str
    edge_node: str
    device: str | None

    @property
    def node_key(self) -> tuple[str, str]:
        return self.group, self.edge_node

    @property
    def asset(self) -> str:
        return "/".join(p for p in (self.group, self.edge_node, self.device) if p)


def parse_topic(topic: str) -> SparkplugTopic | None:
    """The parts of a Sparkplug topic, or None for STATE and anything not Sparkplug-shaped."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != NAMESPACE or parts[1] == "STATE":
        return None
    mtype = parts[2]
    if mtype in NODE_TYPES and len(parts) == 4:
        return SparkplugTopic(parts[1], mtype, parts[3], None)
    if mtype in DEVICE_TYPES and len(parts) == 5:
        return SparkplugTopic(parts[1], mtype, parts[3], parts[4])
    return None


@dataclass(frozen=True, slots=True)
class MetricRecord:
    """One normalised metric."""

    topic: SparkplugTopic
    name: str
    alias: int | None
    timestamp: int  # ms since the epoch: the metric's, else the payload's, else arrival
    datatype: str
    value: Any
    quality: str
    seq: int | None
    historical: bool = False
    transient: bool = False

    def as_dict(self, asset: dict[str, str] | None = None) -> dict[str, Any]:
        t = self.topic
        return {"asset": asset or {"path": t.asset}, "group": t.group, "edge_node": t.edge_node,
                "device": t.device, "metric": self.name, "alias": self.alias, "timestamp": self.timestamp,
                "datatype": self.datatype, "value": self.value, "quality": self.quality,
                "message_type": t.message_type, "seq": self.seq, "historical": self.historical,
                "transient": self.transient}


@dataclass(frozen=True, slots=True)
class Command:
    topic: str
    payload: bytes
    reason: str


@dataclass
class Outcome:
    records: list[MetricRecord] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    payload: Payload | None = None
    error: str | None = None  # the payload could not be decoded


@dataclass
class _Certificate:
    by_alias: dict[int, tuple[str, int]] = field(default_factory=dict)  # alias -> (name, datatype)
    by_name: dict[str, int] = field(default_factory=dict)  # name -> datatype
    online: bool = False

    def learn(self, metrics: tuple[Metric, ...]) -> None:
        self.by_alias.clear()
        self.by_name.clear()
        for m in metrics:
            if m.name is None:
                continue
            dt = m.datatype or 0
            self.by_name[m.name] = dt
            if m.alias is not None:
                self.by_alias[m.alias] = (m.name, dt)


@dataclass
class _Node(_Certificate):
    bd_seq: int | None = None
    seq: int | None = None
    devices: dict[str, _Certificate] = field(default_factory=dict)
    last_rebirth_request: float | None = None


@dataclass
class SparkplugStats:
    messages: int = 0
    metrics: int = 0
    births: int = 0
    deaths: int = 0
    seq_gaps: int = 0
    unknown_aliases: int = 0
    rebirth_requests: int = 0
    invalid_payloads: int = 0


def _quality(m: Metric) -> str:
    q = m.properties.get("Quality") if m.properties else None
    if isinstance(q, int):
        return "GOOD" if q >= 192 else "UNCERTAIN" if q >= 64 else "BAD"
    return "GOOD"


class SparkplugHost:
    def __init__(self, rebirth_min_interval: float = 5.0) -> None:
        self.rebirth_min_interval = rebirth_min_interval
        self.nodes: dict[tuple[str, str], _Node] = {}
        self.stats = SparkplugStats()

    def node_online(self, group: str, edge_node: str, device: str | None = None) -> bool:
        node = self.nodes.get((group, edge_node))
        if node is None or not node.online:
            return False
        if device is None:
            return True
        dev = node.devices.get(device)
        return dev is not None and dev.online

    def handle(self, t: SparkplugTopic, data: bytes, now: float, now_ms: int) -> Outcome:
        self.stats.messages += 1
        out = Outcome()
        if t.message_type in ("NCMD", "DCMD"):
            return out  # commands to nodes: kept raw only
        try:
            payload = decode_payload(data)
        except (WireError, OverflowError, ValueError) as e:
            self.stats.invalid_payloads += 1
            out.error = str(e)
            return out
        out.payload = payload
        node = self.nodes.get(t.node_key)
        mtype = t.message_type
        if mtype == "NBIRTH":
            self.stats.births += 1
            if node is None:
                node = self.nodes[t.node_key] = _Node()
            node.learn(payload.metrics)
            node.online = True
            node.seq = payload.seq
            node.bd_seq = _bd_seq(payload)
            for dev in node.devices.values():
                dev.online = False
            self._emit(out, t, payload, node, now_ms)
            return out
        if mtype == "NDEATH":
            if node is None or not node.online:
                return out
            bd = _bd_seq(payload)
            if bd is not None and node.bd_seq is not None and bd != node.bd_seq:
                return out  # the will of an older session: this one is alive
            self.stats.deaths += 1
            node.online = False
            self._stale(out, t, node, now_ms)
            for name, dev in node.devices.items():
                if dev.online:
                    dev.online = False
                    self._stale(out, SparkplugTopic(t.group, "DDEATH", t.edge_node, name), dev, now_ms)
            return out
        # everything else from the node counts in its seq
        if node is None or not node.online:
            self._rebirth(out, t, node, now, now_ms, "message from an edge node that has not been born")
            return out
        self._check_seq(out, t, node, payload, now, now_ms)
        if mtype == "NDATA":
            self._emit(out, t, payload, node, now_ms, node, now)
        elif mtype == "DBIRTH":
            self.stats.births += 1
            dev = node.devices.setdefault(t.device or "", _Certificate())
            dev.learn(payload.metrics)
            dev.online = True
            self._emit(out, t, payload, dev, now_ms)
        elif mtype == "DDEATH":
            dev = node.devices.get(t.device or "")
            if dev is not None and dev.online:
                self.stats.deaths += 1
                dev.online = False
                self._stale(out, t, dev, now_ms)
        elif mtype == "DDATA":
            dev = node.devices.get(t.device or "")
            if dev is None or not dev.online:
                self._rebirth(out, t, node, now, now_ms, f"data from device {t.device!r} that has not been born")
                dev = dev or _Certificate()
            self._emit(out, t, payload, dev, now_ms, node, now)
        return out

    def _check_seq(self, out: Outcome, t: SparkplugTopic, node: _Node, payload: Payload, now: float,
                   now_ms: int) -> None:
        seq = payload.seq
        if seq is None:
            return
        if node.seq is not None and seq != (node.seq + 1) % 256:
            self.stats.seq_gaps += 1
            self._rebirth(out, t, node, now, now_ms, f"seq gap: expected {(node.seq + 1) % 256}, got {seq}")
        node.seq = seq

    def _emit(self, out: Outcome, t: SparkplugTopic, payload: Payload, cert: _Certificate, now_ms: int,
              node: _Node | None = None, now: float = 0.0) -> None:
        default_ts = payload.timestamp or now_ms
        for m in payload.metrics:
            name = m.name
            datatype = m.datatype
            if name is None or datatype is None:
                known = cert.by_alias.get(m.alias) if m.alias is not None else None
                if known is None and name is not None:
                    known = (name, cert.by_name.get(name, 0))
                if known is None:
                    self.stats.unknown_aliases += 1
                    if node is not None:
                        self._rebirth(out, t, node, now, now_ms, f"unknown alias {m.alias}")
                    continue
                name = name or known[0]
                datatype = datatype if datatype is not None else known[1]
            self.stats.metrics += 1
            out.records.append(MetricRecord(t, name, m.alias, m.timestamp or default_ts,
                                            DATATYPES.get(datatype, str(datatype)), metric_value(m, datatype),
                                            _quality(m), payload.seq, m.is_historical, m.is_transient))

    def _stale(self, out: Outcome, t: SparkplugTopic, cert: _Certificate, now_ms: int) -> None:
        for name, dt in cert.by_name.items():
            if name == "bdSeq":
                continue
            self.stats.metrics += 1
            out.records.append(MetricRecord(t, name, None, now_ms, DATATYPES.get(dt, str(dt)), None, "STALE", None))

    def _rebirth(self, out: Outcome, t: SparkplugTopic, node: _Node | None, now: float, now_ms: int,
                 reason: str) -> None:
        if node is None:
            node = self.nodes[t.node_key] = _Node()
        last = node.last_rebirth_request
        if last is not None and now - last < self.rebirth_min_interval:
            return
        node.last_rebirth_request = now
        self.stats.rebirth_requests += 1
        out.commands.append(Command(f"{NAMESPACE}/{t.group}/NCMD/{t.edge_node}", rebirth_request(now_ms), reason))


def _bd_seq(payload: Payload) -> int | None:
    for m in payload.metrics:
        if m.name == "bdSeq" and m.raw is not None and isinstance(m.raw[1], int):
            return m.raw[1]
    return None
