"""Millstream as a Sparkplug Host Application: spBv1.0/STATE/<host_id> as edge nodes see it (paho)."""

from __future__ import annotations

import json
import time

from tests.harness import ApplianceProcess
from tests.ingest.helpers import Client, read_topic, wait_for_log, write_config

TOPIC = "spBv1.0/STATE/scada-1"


def _state(client: Client, timeout: float = 10.0) -> tuple[bool, int, bool, int]:
    """(online, timestamp, retain flag, qos) of the next STATE message the client receives."""
    msg = client.receive(timeout=timeout)
    assert msg.topic == TOPIC
    doc = json.loads(msg.payload)
    assert set(doc) == {"online", "timestamp"}
    return doc["online"], doc["timestamp"], bool(msg.retain), msg.qos


def test_broker_mode_birth_retained_and_death_on_graceful_stop(tmp_path):
    config = write_config(tmp_path, '[sparkplug]\nhost_id = "scada-1"\n')
    app = ApplianceProcess(tmp_path / "data", config=config).start()
    edge = edge2 = None
    try:
        edge = Client(app.mqtt_port, "press-gw", v5=False)
        edge.subscribe(TOPIC, 1)
        online, born, retained, qos = _state(edge)
        assert online and retained and qos == 1
        assert abs(born - time.time() * 1000) < 120_000  # milliseconds since the epoch
        assert app.stop() == 0  # graceful: connected edge nodes get the death before the broker goes
        assert _state(edge)[:2] == (False, born)
        edge.close()
        app.start()
        edge2 = Client(app.mqtt_port, "press-gw-2", v5=False)
        edge2.subscribe(TOPIC, 1)
        online, born2, retained, _ = _state(edge2)
        assert online and retained and born2 >= born
        # the host's own STATE messages are not ingested as plant data
        assert read_topic(app.bootstrap, "mqtt.unmapped", 0, timeout=5, settle=3) == []
    finally:
        for c in (edge, edge2):
            if c is not None:
                c.close()
        app.kill()


def test_bridge_mode_will_on_kill_9_birth_on_restart_death_on_sigterm(tmp_path, mosquitto):
    config = write_config(tmp_path, f"""
[sparkplug]
host_id = "scada-1"

[bridge]
upstream = "127.0.0.1:{mosquitto.port}"
client_id = "scada-1-bridge"
filters = ["spBv1.0/+/NBIRTH/#"]
session_expiry = 3600
backoff_min = "100ms"
backoff_max = "500ms"
""")
    app = ApplianceProcess(tmp_path / "data", config=config).start()
    edge = late = None
    try:
        wait_for_log(app, "sparkplug_host_state")
        edge = Client(mosquitto.port, "edge-node-1", v5=False)  # an edge node on the plant's Mosquitto
        edge.subscribe(TOPIC, 1)
        online, t1, _, qos = _state(edge)
        assert online and qos == 1
        app.kill()  # kill -9: Mosquitto publishes the will registered at CONNECT
        assert _state(edge) == (False, t1, False, 1)  # same timestamp as the birth of that session
        app.start()
        online, t2, _, _ = _state(edge)
        assert online and t2 > t1
        # a newer death on our topic (another process claiming the host id) is answered with our birth
        other = Client(mosquitto.port, "impostor", v5=False)
        other.c.publish(TOPIC, json.dumps({"online": False, "timestamp": t2 + 1}), 1, retain=True)
        assert _state(edge)[:2] == (False, t2 + 1)
        assert _state(edge)[:2] == (True, t2)
        other.close()
        assert app.stop() == 0  # graceful: the death is published explicitly before DISCONNECT
        assert _state(edge)[:2] == (False, t2)
        # published by the bridge itself, acknowledged, then DISCONNECT (so the will is discarded)
        assert f"area=bridge event=sparkplug_host_state host_id=scada-1 online=False timestamp={t2}" in app.log_text()
        late = Client(mosquitto.port, "edge-node-2", v5=False)
        late.subscribe(TOPIC, 1)
        assert _state(late)[:3] == (False, t2, True)  # retained on the upstream broker
        time.sleep(0.5)
        stray = [] if edge.messages.empty() else [edge.messages.get().payload]
        assert stray == []  # no stray births or deaths (a will on top of the explicit death, say)
    finally:
        for c in (edge, late):
            if c is not None:
                c.close()
        app.kill()
