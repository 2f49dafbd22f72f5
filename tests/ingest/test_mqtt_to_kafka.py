"""MQTT -> Kafka with real clients against a real appliance process: paho publishes, confluent-kafka reads."""

from __future__ import annotations

import json

import pytest

from tests.harness import ApplianceProcess
from tests.ingest.helpers import Client, read_topic, write_config

MAPPING = """
[kafka]
num_partitions = 3

[ingest]
unmapped = "default"
default_topic = "mqtt.other"

[[mqtt_map]]
filter = "acme/{site}/{area}/+/+/telemetry"
kafka_topic = "{site}.{area}.telemetry"
key = "{3}/{4}"

[[mqtt_map]]
filter = "acme/+/events/#"
kafka_topic = "events"
key = "{#}"
value = "envelope"

[[assets]]
match = "acme/{site}/{area}/{line}/{cell}/#"
path = "acme/{site}/{area}/{line}/{cell}"

[[assets]]
match = "acme/plant1/press/line3/cell2/#"
path = "acme/plant1/press/line3/cell2/press-7"
"""


@pytest.fixture
def app(tmp_path):
    a = ApplianceProcess(tmp_path / "data", config=write_config(tmp_path, MAPPING)).start()
    yield a
    a.kill()


def _headers(msg) -> dict[str, bytes]:
    return dict(msg.headers() or [])


def test_qos1_message_is_in_the_mapped_topic_with_key_headers_and_asset(app):
    c = Client(app.mqtt_port, "plc-7")
    try:
        rc = c.publish("acme/plant1/press/line3/cell2/telemetry", b'{"temp": 71.5}', 1,
                       user=[("unit", "degC"), ("source", "plc-7")], content_type="application/json")
        assert rc == 0
    finally:
        c.close()
    msgs = read_topic(app.bootstrap, "plant1.press.telemetry", 1)
    assert len(msgs) == 1
    m = msgs[0]
    assert m.key() == b"line3/cell2"
    assert m.value() == b'{"temp": 71.5}'
    h = _headers(m)
    assert h["mqtt.topic"] == b"acme/plant1/press/line3/cell2/telemetry"
    assert h["mqtt.qos"] == b"1"
    assert h["mqtt.client_id"] == b"plc-7"
    assert h["content-type"] == b"application/json"
    assert h["unit"] == b"degC" and h["source"] == b"plc-7"
    # the more specific [[assets]] entry wins
    assert h["isa95.enterprise"] == b"acme" and h["isa95.site"] == b"plant1" and h["isa95.area"] == b"press"
    assert h["isa95.line"] == b"line3" and h["isa95.cell"] == b"cell2" and h["isa95.asset"] == b"press-7"
    assert h["isa95.path"] == b"acme/plant1/press/line3/cell2/press-7"


def test_envelope_unmapped_default_topic_and_mqtt_311(app):
    c = Client(app.mqtt_port, "gw-1", v5=False)
    try:
        c.publish("acme/plant2/events/line1/door", b'{"open": true}', 1)
        c.publish("somewhere/else", b"\x00\x01binary", 1)
    finally:
        c.close()
    [ev] = read_topic(app.bootstrap, "events", 1)
    assert ev.key() == b"line1/door"
    doc = json.loads(ev.value())
    assert doc["topic"] == "acme/plant2/events/line1/door" and doc["payload"] == {"open": True}
    assert doc["asset"]["path"] == "acme/plant2/events/line1/door"
    [other] = read_topic(app.bootstrap, "mqtt.other", 1)
    assert other.key() == b"somewhere/else" and other.value() == b"\x00\x01binary"


def test_per_key_order_across_publishers_and_partitions(app):
    clients = [Client(app.mqtt_port, f"dev-{i}") for i in range(3)]
    try:
        for n in range(150):
            for i, c in enumerate(clients):
                topic = f"acme/plant1/press/line{i}/cell{n % 2}/telemetry"
                c.publish(topic, f"{i}:{n}".encode(), qos=0 if i == 2 else 1, wait=False)  # MQTT orders per QoS level only
        for c in clients:  # a last QoS 1 message per client: its PUBACK follows every earlier one
            c.publish("acme/plant1/press/lineX/cellX/telemetry", b"end", 1)
    finally:
        for c in clients:
            c.close()
    msgs = read_topic(app.bootstrap, "plant1.press.telemetry", 150 * 3 + 3, timeout=30)
    by_key: dict[bytes, list[int]] = {}
    partitions: dict[bytes, set[int]] = {}
    for m in msgs:
        if m.value() == b"end":
            continue
        by_key.setdefault(m.key(), []).append(int(m.value().split(b":")[1]))
        partitions.setdefault(m.key(), set()).add(m.partition())
    assert len(by_key) == 6
    for key, seq in by_key.items():
        assert seq == sorted(seq) and len(seq) == 75, key
        assert len(partitions[key]) == 1
    assert len({p for ps in partitions.values() for p in ps}) > 1  # keys really spread over partitions


def test_acknowledged_messages_survive_kill_9(tmp_path):
    app = ApplianceProcess(tmp_path / "data", config=write_config(tmp_path, MAPPING)).start()
    try:
        c = Client(app.mqtt_port, "plc-9")
        for n in range(200):
            c.publish("acme/plant1/press/line3/cell2/telemetry", b"v%d" % n, 1, wait=False)
        last = c.publish("acme/plant1/press/line3/cell2/telemetry", b"last", 1)
        assert last == 0
        app.kill()  # SIGKILL right after the PUBACK: no drain, no flush
        c.c.loop_stop()
        app.start()
        msgs = read_topic(app.bootstrap, "plant1.press.telemetry", 201)
        values = [m.value() for m in msgs]
        assert values == [b"v%d" % n for n in range(200)] + [b"last"]
    finally:
        app.kill()


REJECT = """
[ingest]
unmapped = "reject"

[[mqtt_map]]
filter = "plant/#"
kafka_topic = "plant"
"""


def test_unmapped_topics_are_refused_when_configured(tmp_path):
    app = ApplianceProcess(tmp_path / "data", config=write_config(tmp_path, REJECT)).start()
    try:
        sub = Client(app.mqtt_port, "hmi")
        sub.subscribe("#", 1)
        c = Client(app.mqtt_port, "dev")
        assert c.publish("elsewhere/x", b"nope", 1) == 0x90  # Topic Name invalid: not accepted
        assert c.publish("plant/a", b"yes", 1) == 0
        got = sub.receive()
        assert got.topic == "plant/a"  # the refused message was not routed either
        old = Client(app.mqtt_port, "old", v5=False)
        old.publish("elsewhere/y", b"nope", 1, wait=False)
        assert old.disconnected.wait(5)  # 3.1.1 cannot refuse a PUBLISH: the link is dropped
        msgs = read_topic(app.bootstrap, "plant", 1)
        assert [m.value() for m in msgs] == [b"yes"]
        for cl in (sub, c, old):
            cl.close()
    finally:
        app.kill()
