"""Kafka -> MQTT: records of configured Kafka topics published to local MQTT subscribers.

Adapter (trio). One task follows every partition of each `[[mqtt_out]]` topic through the
LogStore port (`wait_for_data`, then `read`) and publishes each record through the MQTT broker
core, so local subscribers (HMIs, historians) see what Kafka clients produce.

- MQTT topic: the rule's template over {topic}, {partition} and {key} (the record key as UTF-8;
  wildcard characters `+` `#` become `_`); payload: the record value; Kafka headers become MQTT 5
  user properties (`content-type` becomes the content type).
- Position: partitions that exist at start-up are followed from their end (a live mirror, no
  replay after a restart); partitions that appear later are followed from their start.
- Loops are cut: these messages carry the `$millstream/` origin, which the ingest sink skips.
- gzip batches are decompressed with the stdlib; other codecs are skipped with a counter.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import trio

from appliance.config import MqttOutRule
from appliance.errors import MillstreamError
from appliance.ingest.pipeline import LOCAL_ORIGIN
from appliance.ingest.templates import Template
from appliance.kafka.records import decode_records, read_header
from appliance.logs import get_logger
from appliance.mqtt.codec.properties import PropertyId as P
from appliance.mqtt.session import Message

log = get_logger("ingest")

_READ_BYTES = 1 << 20
_RESCAN_SECONDS = 1.0  # how often new topics / partitions are looked for


@dataclass
class EgressStats:
    published: int = 0
    skipped_compressed: int = 0
    errors: int = 0


@dataclass
class _Follow:
    rule: MqttOutRule
    template: Template
    topic: str
    partition: int
    offset: int


def _decompress(codec: int, data: bytes) -> bytes:
    if codec == 1:
        return gzip.decompress(data)
    raise ValueError(f"compression codec {codec} is not supported here")


class KafkaToMqtt:
    def __init__(self, rules: Sequence[MqttOutRule], kafka: Any, mqtt: Any) -> None:
        self.rules = list(rules)
        self.kafka = kafka
        self.mqtt = mqtt
        self.stats = EgressStats()
        self._follows: dict[int, _Follow] = {}  # stream id -> position
        self._templates = [Template(r.mqtt_topic) for r in self.rules]

    def _scan(self, from_end: bool) -> None:
        logs = self.kafka.logs
        for rule, tpl in zip(self.rules, self._templates, strict=True):
            topic = self.kafka.topics.get(rule.kafka_topic)
            if topic is None:
                continue
            for p, sid in enumerate(topic.streams):
                if sid in self._follows:
                    continue
                try:
                    offs = logs.offsets(sid)
                except MillstreamError:
                    continue
                start = offs.high_watermark if from_end else offs.log_start
                self._follows[sid] = _Follow(rule, tpl, rule.kafka_topic, p, start)
                log.info("mqtt_out_following", topic=rule.kafka_topic, partition=p, offset=start)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._scan(from_end=True)
        task_status.started()
        logs = self.kafka.logs
        next_scan = trio.current_time() + _RESCAN_SECONDS
        while True:
            interests = {sid: f.offset for sid, f in self._follows.items()}
            with trio.move_on_at(next_scan):
                if interests:
                    await logs.wait_for_data(interests)
                else:
                    await trio.sleep_forever()
            if trio.current_time() >= next_scan:
                self._scan(from_end=False)
                next_scan = trio.current_time() + _RESCAN_SECONDS
            for sid, f in list(self._follows.items()):
                try:
                    offs = logs.offsets(sid)
                    if offs.high_watermark <= f.offset:
                        continue
                    if f.offset < offs.log_start:
                        f.offset = offs.log_start
                    res = await logs.read(sid, f.offset, _READ_BYTES)
                except MillstreamError as e:  # deleted topic, truncated log
                    self.stats.errors += 1
                    log.warning("mqtt_out_read_failed", topic=f.topic, partition=f.partition, error=str(e))
                    self._follows.pop(sid, None)
                    continue
                for batch in res.batches:
                    self._publish_batch(f, batch)

    def _publish_batch(self, f: _Follow, batch: bytes) -> None:
        h = read_header(batch)
        if h.is_control:
            f.offset = max(f.offset, h.last_offset + 1)
            return
        try:
            records = decode_records(batch, _decompress)
        except (ValueError, OSError, MillstreamError):
            self.stats.skipped_compressed += h.records_count
            f.offset = max(f.offset, h.last_offset + 1)
            return
        now = trio.current_time()
        for rec in records:
            if rec.offset < f.offset:
                continue
            key = (rec.key or b"").decode("utf-8", "replace")
            extra = {"topic": f.topic, "partition": str(f.partition), "key": key}
            mqtt_topic = f.template.render((), None, extra).replace("+", "_").replace("#", "_") or f.topic
            props: dict[int, Any] = {}
            users = []
            for hk, hv in rec.headers:
                value = (hv or b"").decode("utf-8", "replace")
                if hk == "content-type":
                    props[P.CONTENT_TYPE] = value
                else:
                    users.append((hk, value))
            if users:
                props[P.USER_PROPERTY] = users
            msg = Message(mqtt_topic, rec.value or b"", f.rule.qos, f.rule.retain, props, None, LOCAL_ORIGIN + "kafka")
            try:
                self.mqtt.publish(msg, now, None)
                self.stats.published += 1
            except MillstreamError as e:
                self.stats.errors += 1
                log.warning("mqtt_out_publish_failed", topic=mqtt_topic, error=str(e))
            f.offset = rec.offset + 1
        f.offset = max(f.offset, h.last_offset + 1)

    def snapshot(self) -> dict[str, int]:
        return asdict(self.stats)
