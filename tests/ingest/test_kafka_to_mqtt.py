"""Kafka -> MQTT: records produced by a Kafka client reach local MQTT subscribers."""

from __future__ import annotations

import time

from confluent_kafka import Producer

from tests.harness import ApplianceProcess
from tests.ingest.helpers import Client, read_topic, write_config

CONFIG = """
[[mqtt_out]]
kafka_topic = "setpoints"
mqtt_topic = "plant/setpoints/{key}"
qos = 1

[[mqtt_map]]
filter = "plant/#"
kafka_topic = "plant-in"
"""


def test_kafka_records_are_published_to_mqtt_subscribers_without_looping_back(tmp_path):
    app = ApplianceProcess(tmp_path / "data", config=write_config(tmp_path, CONFIG)).start()
    try:
        sub = Client(app.mqtt_port, "hmi")
        sub.subscribe("plant/setpoints/#", 1)
        p = Producer({"bootstrap.servers": app.bootstrap, "acks": "all"})
        for i in range(5):
            p.produce("setpoints", key=f"press-{i % 2}".encode(), value=f"sp={i}".encode(),
                      headers=[("content-type", b"text/plain"), ("origin", b"mes")])
        assert p.flush(10) == 0
        got = [sub.receive(timeout=10) for _ in range(5)]
        assert [(m.topic, m.payload) for m in got] == [(f"plant/setpoints/press-{i % 2}", f"sp={i}".encode())
                                                      for i in range(5)]
        assert got[0].qos == 1
        assert got[0].properties.ContentType == "text/plain"
        assert ("origin", "mes") in got[0].properties.UserProperty
        # a device publishing under plant/ is ingested; the mirrored records are not
        dev = Client(app.mqtt_port, "dev")
        assert dev.publish("plant/line1/temp", b"20", 1) == 0
        time.sleep(0.5)
        msgs = read_topic(app.bootstrap, "plant-in", 1)
        assert [m.value() for m in msgs] == [b"20"]
        for c in (sub, dev):
            c.close()
    finally:
        app.kill()


def test_two_rules_on_one_kafka_topic_publish_each_record_to_both(tmp_path):
    config = """
[[mqtt_out]]
kafka_topic = "setpoints"
mqtt_topic = "plant/setpoints/{key}"
qos = 1

[[mqtt_out]]
kafka_topic = "setpoints"
mqtt_topic = "plant/latest/{key}"
retain = true
"""
    app = ApplianceProcess(tmp_path / "data", config=write_config(tmp_path, config)).start()
    clients = []
    try:
        events = Client(app.mqtt_port, "historian")
        clients.append(events)
        events.subscribe("plant/setpoints/#", 1)
        p = Producer({"bootstrap.servers": app.bootstrap, "acks": "all"})
        for i in range(4):
            p.produce("setpoints", key=f"press-{i % 2}".encode(), value=f"sp={i}".encode())
        assert p.flush(10) == 0
        got = [events.receive(timeout=10) for _ in range(4)]
        assert [(m.topic, m.payload, m.qos) for m in got] == [
            (f"plant/setpoints/press-{i % 2}", f"sp={i}".encode(), 1) for i in range(4)]
        # an HMI that connects later gets the latest value per key from the retained rule
        hmi = Client(app.mqtt_port, "hmi")
        clients.append(hmi)
        hmi.subscribe("plant/latest/#", 0)
        latest = sorted((m.topic, m.payload, m.retain) for m in (hmi.receive(timeout=10) for _ in range(2)))
        assert latest == [("plant/latest/press-0", b"sp=2", True), ("plant/latest/press-1", b"sp=3", True)]
        assert events.messages.empty()  # each record once per rule, no more
    finally:
        for c in clients:
            c.close()
        app.kill()
