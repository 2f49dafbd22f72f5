"""MQTT message -> Kafka records: the `[[mqtt_map]]` rules, asset context, unmapped policy. Pure.

Rules are tried in file order; the first whose filter matches the MQTT topic decides the Kafka
topic (a template, rendered then made a legal topic name: `/` -> `.`, other characters -> `_`),
the key (a template; empty = no key) and the value (`payload`: the bytes as published;
`envelope`: a JSON object, see `envelope`). A topic no rule matches goes to
`[ingest] default_topic` (key = the MQTT topic) or is refused with reason 0x90, as configured.

Headers of every record, in this order:
    mqtt.topic, mqtt.qos, mqtt.client_id (when known), mqtt.retain ("1", when set),
    content-type (MQTT 5 content type), mqtt.response_topic, mqtt.correlation_data,
    the MQTT 5 user properties as they came (name -> value, repeats kept), then the asset context
    (isa95.enterprise ... isa95.asset, isa95.path; see assets.py).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass

from appliance.config import IngestSettings, MqttMapRule
from appliance.errors import StorageError
from appliance.ingest.assets import AssetContext, AssetMap
from appliance.ingest.templates import Template, TopicFilter, kafka_topic_name
from appliance.mqtt.codec.properties import PropertyId as P
from appliance.mqtt.sink import InboundMessage

_CACHE_LIMIT = 50_000  # distinct MQTT topics whose routing is remembered


class IngestRejectedError(StorageError):
    """The message is refused for good (unmapped topic with `unmapped = "reject"`, a payload that is
    not what its topic promises). Raised from `IngestSink.submit`, the sink protocol's refusal path:
    the publisher gets this reason code (5.0) or is disconnected (3.1.1); nothing is routed."""

    mqtt_reason = 0x90  # Topic Name invalid: "not accepted by this Server"


class PayloadInvalidError(IngestRejectedError):
    mqtt_reason = 0x99  # Payload format invalid


@dataclass(slots=True)
class OutRecord:  # read-only by contract; not `frozen`, which costs several times more per record
    topic: str  # legal Kafka topic name
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class _Route:
    """What a topic maps to; cached per MQTT topic string."""

    kafka_topic: str
    key: bytes | None
    envelope: bool
    user_properties: bool
    asset: AssetContext
    asset_headers: tuple[tuple[str, bytes], ...]
    mapped: bool


class _Rule:
    __slots__ = ("flt", "topic", "key", "envelope", "user_properties")

    def __init__(self, rule: MqttMapRule) -> None:
        self.flt = TopicFilter.parse(rule.filter)
        self.topic = Template(rule.kafka_topic)
        self.key = Template(rule.key)
        self.envelope = rule.value == "envelope"
        self.user_properties = rule.user_properties


@dataclass
class MappingStats:
    mapped: int = 0  # messages that matched a rule
    unmapped: int = 0  # messages sent to the default topic
    rejected: int = 0  # messages refused (unmapped with reject, invalid payloads)
    records: int = 0  # Kafka records produced (Sparkplug: one per metric)


class Mapper:
    def __init__(self, rules: Sequence[MqttMapRule], assets: AssetMap, settings: IngestSettings) -> None:
        self._rules = [_Rule(r) for r in rules]
        self.assets = assets
        self._reject = settings.unmapped == "reject"
        self._default = Template(settings.default_topic)
        self._cache: dict[str, _Route] = {}
        self._headers: dict[tuple, tuple] = {}  # (topic, client id, qos, retain) -> headers, no MQTT 5 properties
        self.stats = MappingStats()

    def route(self, topic: str) -> _Route | None:
        """The route of an MQTT topic, or None when it is unmapped and unmapped topics are refused."""
        r = self._cache.get(topic)
        if r is not None:
            return r
        levels = topic.split("/")
        asset = self.assets.lookup(levels)
        aheaders = tuple(asset.headers())
        for rule in self._rules:
            if rule.flt.matches(levels):
                key = rule.key.render(levels, rule.flt) if rule.key else ""
                r = _Route(kafka_topic_name(rule.topic.render(levels, rule.flt)), key.encode() if rule.key else None,
                           rule.envelope, rule.user_properties, asset, aheaders, True)
                break
        else:
            if self._reject:
                return None
            r = _Route(kafka_topic_name(self._default.render(levels)), topic.encode(), False, True, asset,
                       aheaders, False)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[topic] = r
        return r

    def map(self, msg: InboundMessage) -> OutRecord:
        r = self.route(msg.topic)
        if r is None:
            self.stats.rejected += 1
            raise IngestRejectedError(f"no [[mqtt_map]] rule for MQTT topic {msg.topic!r} and unmapped topics are refused")
        if r.mapped:
            self.stats.mapped += 1
        else:
            self.stats.unmapped += 1
        self.stats.records += 1
        if msg.properties:
            headers = mqtt_headers(msg, r.user_properties)
            headers.extend(r.asset_headers)
            htuple = tuple(headers)
        else:  # the common case: the same device repeats the same headers; build them once
            hkey = (msg.topic, msg.client_id, msg.qos, msg.retain)
            htuple = self._headers.get(hkey)
            if htuple is None:
                htuple = (*mqtt_headers(msg), *r.asset_headers)
                if len(self._headers) >= _CACHE_LIMIT:
                    self._headers.clear()
                self._headers[hkey] = htuple
        value = envelope(msg, r.asset) if r.envelope else msg.payload
        return OutRecord(r.kafka_topic, r.key, value, htuple, msg.received_at_ms)


def mqtt_headers(msg: InboundMessage, user_properties: bool = True) -> list[tuple[str, bytes | None]]:
    headers: list[tuple[str, bytes | None]] = [("mqtt.topic", msg.topic.encode()), ("mqtt.qos", b"%d" % msg.qos)]
    if msg.client_id:
        headers.append(("mqtt.client_id", msg.client_id.encode()))
    if msg.retain:
        headers.append(("mqtt.retain", b"1"))
    props = msg.properties
    if props:
        ct = props.get(P.CONTENT_TYPE)
        if ct is not None:
            headers.append(("content-type", ct.encode()))
        rt = props.get(P.RESPONSE_TOPIC)
        if rt is not None:
            headers.append(("mqtt.response_topic", rt.encode()))
        cd = props.get(P.CORRELATION_DATA)
        if cd is not None:
            headers.append(("mqtt.correlation_data", bytes(cd)))
        if user_properties:
            for name, value in props.get(P.USER_PROPERTY, ()):
                headers.append((name, value.encode()))
    return headers


def envelope(msg: InboundMessage, asset: AssetContext) -> bytes:
    """JSON: topic, qos, retain, client_id, received_at (ms), asset, properties (MQTT 5 content type and
    user properties), and the payload: as JSON when it parses as JSON, else as text when it is UTF-8,
    else base64 under `payload_base64`."""
    doc: dict = {"topic": msg.topic, "qos": msg.qos, "retain": msg.retain, "client_id": msg.client_id,
                 "received_at": msg.received_at_ms, "asset": asset.as_dict()}
    props = msg.properties
    if props:
        if P.CONTENT_TYPE in props:
            doc["content_type"] = props[P.CONTENT_TYPE]
        if P.USER_PROPERTY in props:
            doc["user_properties"] = [list(p) for p in props[P.USER_PROPERTY]]
    try:
        text = msg.payload.decode()
    except UnicodeDecodeError:
        doc["payload_base64"] = base64.b64encode(msg.payload).decode()
    else:
        try:
            doc["payload"] = json.loads(text) if text.strip() else text
        except ValueError:
            doc["payload"] = text
    return json.dumps(doc, separators=(",", ":")).encode()
