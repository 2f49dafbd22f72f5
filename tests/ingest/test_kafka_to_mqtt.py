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
