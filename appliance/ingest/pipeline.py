"""One MQTT message in, Kafka records and commands out: mapping + Sparkplug B. Pure.

`Ingestor.process(msg, now)` is called synchronously by the Kafka sink for every accepted
PUBLISH, in arrival order, so the Sparkplug state sees messages in the order the broker did and
a refusal (IngestRejectedError) can still reach the publisher as a reason code.

Messages the appliance publishes itself (Kafka -> MQTT, rebirth requests) carry a client id
starting with `$millstream/` and are not ingested again, which keeps Kafka -> MQTT -> Kafka
loops out.

Sparkplug B (when `[sparkplug] enabled`): every `spBv1.0/...` message gives
- one record per metric to `[sparkplug] kafka_topic`, key `group/edge_node[/device]/metric`, value
  a JSON object (asset, group, edge_node, device, metric, alias, timestamp, datatype, value,
  quality, message_type, seq, historical, transient), headers mqtt.topic, sparkplug.type and the
  asset context;
- the raw protobuf payload, byte for byte, to `[sparkplug] raw_topic` (one record per MQTT message,
  key `group/edge_node[/device]`), so nothing the decoder does not understand is lost. A separate
  topic rather than a header: the raw payload is the size of all its metrics, and most
  consumers only want the normalised form.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from appliance.config import Settings
from appliance.ingest.assets import AssetMap
from appliance.ingest.mapping import Mapper, OutRecord, mqtt_headers
from appliance.ingest.sparkplug.host import Command, MetricRecord, SparkplugHost, parse_topic
from appliance.ingest.templates import Template, kafka_topic_name
from appliance.mqtt.sink import InboundMessage

LOCAL_ORIGIN = "$millstream/"  # client id prefix of messages the appliance publishes itself


@dataclass(slots=True)
class Routed:
    records: list[OutRecord] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)


_NO_COMMANDS: list[Command] = []  # shared by plain messages, which never carry commands: do not append


class Ingestor:
    def __init__(self, settings: Settings) -> None:
        self.assets = AssetMap(settings.assets)
        self.mapper = Mapper(settings.mqtt_map, self.assets, settings.ingest)
        sp = settings.sparkplug
        self.sparkplug: SparkplugHost | None = SparkplugHost(sp.rebirth_min_interval) if sp.enabled else None
        self._sp_topic = Template(sp.kafka_topic)
        self._sp_raw = Template(sp.raw_topic) if sp.raw_topic else None
        self.skipped_local = 0

    def needs_time(self, msg: InboundMessage) -> bool:
        """Whether `process` reads `now` for this message (only Sparkplug does), so that a caller
        on the hot path can skip reading the clock for every other message."""
        return self.sparkplug is not None and msg.topic.startswith("spBv1.0/")

    def process(self, msg: InboundMessage, now: float) -> Routed:
        if msg.client_id.startswith(LOCAL_ORIGIN):
            self.skipped_local += 1
            return Routed()
        if self.sparkplug is not None and msg.topic.startswith("spBv1.0/"):
            t = parse_topic(msg.topic)
            if t is not None:
                return self._sparkplug(msg, t, now)
        return Routed([self.mapper.map(msg)], _NO_COMMANDS)

    def _sparkplug(self, msg: InboundMessage, t, now: float) -> Routed:
        assert self.sparkplug is not None
        outcome = self.sparkplug.handle(t, msg.payload, now, msg.received_at_ms)
        levels = msg.topic.split("/")
        context = self.assets.lookup(levels)
        asset = context.as_dict() if context.levels else {"path": t.asset}
        aheaders = context.headers() if context.levels else [("isa95.path", t.asset.encode())]
        extra = {"group": t.group, "edge_node": t.edge_node, "device": t.device or ""}
        routed = Routed(commands=outcome.commands)
        base = [("mqtt.topic", msg.topic.encode()), ("sparkplug.type", t.message_type.encode()), *aheaders]
        if outcome.records:
            topic = kafka_topic_name(self._sp_topic.render(levels, None, extra))
            routed.records.extend(self._metric_record(topic, r, asset, base, msg.received_at_ms)
                                  for r in outcome.records)
        if self._sp_raw is not None:
            headers = mqtt_headers(msg)
            headers.append(("sparkplug.type", t.message_type.encode()))
            if outcome.payload is not None and outcome.payload.seq is not None:
                headers.append(("sparkplug.seq", b"%d" % outcome.payload.seq))
            if outcome.error is not None:
                headers.append(("sparkplug.error", outcome.error.encode()))
            headers.extend(aheaders)
            routed.records.append(OutRecord(kafka_topic_name(self._sp_raw.render(levels, None, extra)),
                                            t.asset.encode(), msg.payload, tuple(headers), msg.received_at_ms))
        self.mapper.stats.records += len(routed.records)
        return routed

    @staticmethod
    def _metric_record(topic: str, r: MetricRecord, asset: dict, headers: Sequence, ts: int) -> OutRecord:
        value = json.dumps(r.as_dict(asset), separators=(",", ":"), default=str).encode()
        key = f"{r.topic.asset}/{r.name}".encode()
        return OutRecord(topic, key, value, tuple(headers), ts)

    def stats(self) -> dict[str, int]:
        out = asdict(self.mapper.stats)
        out["skipped_local"] = self.skipped_local
        if self.sparkplug is not None:
            out.update({f"sparkplug_{k}": v for k, v in asdict(self.sparkplug.stats).items()})
        return out
