"""MQTT QoS 1 across kill -9: a message the broker acknowledged (PUBACK) for an offline persistent
session must reach that session after a restart, at least once.

Before the fix (PUBACK waiting for the queue write, see appliance/mqtt/state.py) 200 of 200 were
lost when the kill followed the last PUBACK at once.
"""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.faults.scale import LONG, report

ROUNDS = 20 if LONG else 2


def _client(port: int, client_id: str, clean: bool, received: list | None = None) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    connected = threading.Event()
    c.on_connect = lambda *args: connected.set()
    if received is not None:
        c.on_message = lambda _c, _u, msg: received.append(msg.payload)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", port, clean_start=clean, properties=props)
    c.loop_start()
    assert connected.wait(10)
    return c


def _close(c: mqtt.Client) -> None:
    c.disconnect()
    c.loop_stop()


def test_qos1_acknowledged_for_an_offline_session_survives_kill_9(make_appliance):
    app = make_appliance().start()
    sub = _client(app.mqtt_port, "historian", clean=True)
    sub.subscribe("plant/#", qos=1)
    time.sleep(0.3)
    _close(sub)
    acked: list[bytes] = []
    received: list[bytes] = []
    for round_ in range(ROUNDS):
        pub = _client(app.mqtt_port, f"pub-{round_}", clean=True)
        infos = [(f"r{round_}-{i}".encode(), pub.publish("plant/line3", f"r{round_}-{i}".encode(), qos=1))
                 for i in range(100)]
        for payload, info in infos:
            info.wait_for_publish(10)
            if info.is_published():  # PUBACK received
                acked.append(payload)
        app.kill()  # right after the acknowledgements
        app.start()
        sub = _client(app.mqtt_port, "historian", clean=False, received=received)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not set(acked) <= set(received):
            time.sleep(0.05)
        _close(sub)
    lost = set(acked) - set(received)
    report("MQTT QoS 1 to an offline persistent session, kill -9 after PUBACK", iterations=ROUNDS,
           acknowledged=len(acked), lost=len(lost), duplicates=len(received) - len(set(received)))
    assert len(acked) == 100 * ROUNDS
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged QoS 1 messages lost"
