"""Bridge mode against a real Mosquitto broker started by the test."""

from __future__ import annotations

from tests.harness import ApplianceProcess
from tests.ingest.helpers import Client, read_topic, wait_for_log, write_config


def _config(port: int) -> str:
    return f"""
[bridge]
upstream = "127.0.0.1:{port}"
client_id = "plant1-bridge"
filters = ["factory/#"]
qos = 1
session_expiry = 3600
local_prefix = "up/"
backoff_min = "100ms"
backoff_max = "1s"

[[mqtt_map]]
filter = "up/factory/#"
kafka_topic = "bridged"
key = "{{#}}"
"""


def test_bridge_ingests_upstream_messages_and_resumes_its_session(tmp_path, mosquitto):
    app = ApplianceProcess(tmp_path / "data", config=write_config(tmp_path, _config(mosquitto.port))).start()
    try:
        wait_for_log(app, "bridge_subscribed")
        local = Client(app.mqtt_port, "hmi")
        local.subscribe("up/factory/#", 1)
        dev = Client(mosquitto.port, "upstream-device")
        for i in range(10):
            assert dev.publish(f"factory/line{i % 2}/temp", b"a%d" % i, 1) == 0
        msgs = read_topic(app.bootstrap, "bridged", 10)
        assert [(m.key(), m.value()) for m in msgs] == [(f"line{i % 2}/temp".encode(), b"a%d" % i) for i in range(10)]
        assert dict(msgs[0].headers())["mqtt.topic"] == b"up/factory/line0/temp"
        assert local.receive().topic == "up/factory/line0/temp"  # local subscribers see bridged messages too
        local.close()

        # The appliance dies; the upstream queues for its persistent session; a restart resumes it.
        app.kill()
        for i in range(10, 20):
            assert dev.publish(f"factory/line{i % 2}/temp", b"a%d" % i, 1) == 0
        app.start()
        wait_for_log(app, "session_present=True")
        msgs = read_topic(app.bootstrap, "bridged", 20)
        assert [m.value() for m in msgs] == [b"a%d" % i for i in range(20)]
        dev.close()

        # The upstream broker goes away and comes back: the bridge reconnects with back-off.
        subscribed = app.log_text().count("bridge_subscribed")
        mosquitto.stop()
        wait_for_log(app, "bridge_disconnected")
        mosquitto.start()
        wait_for_log(app, "bridge_subscribed", count=subscribed + 1, timeout=15)
        dev = Client(mosquitto.port, "upstream-device-2")
        assert dev.publish("factory/line9/temp", b"after", 1) == 0
        dev.close()
        msgs = read_topic(app.bootstrap, "bridged", 21)
        assert msgs[-1].value() == b"after" and len(msgs) == 21
    finally:
        app.kill()
