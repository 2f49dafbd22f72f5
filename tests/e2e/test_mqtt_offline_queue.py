"""QoS 1 messages queued for an offline persistent subscriber survive kill -9 once acknowledged."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def _client(port: int, client_id: str, *, clean: bool) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", port, clean_start=clean, properties=props)
    return c


def test_acknowledged_message_for_offline_subscriber_survives_kill_9(make_appliance):
    app = make_appliance().start()
    sub = _client(app.mqtt_port, "historian", clean=True)
    sub.loop_start()
    done = threading.Event()
    sub.on_subscribe = lambda *a: done.set()
    sub.subscribe("line7/#", qos=1)
    assert done.wait(10)
    sub.disconnect()
    sub.loop_stop()

    pub = _client(app.mqtt_port, "plc-7", clean=True)
    pub.loop_start()
    infos = [pub.publish(f"line7/count/{i}", f"{i}".encode(), qos=1) for i in range(20)]
    for info in infos:
        info.wait_for_publish(10)
    assert all(info.is_published() for info in infos)  # PUBACK received for every message
    app.kill()  # immediately after the acknowledgements
    pub.loop_stop()

    app.start()
    got: list[str] = []
    all_in = threading.Event()

    def on_message(client, userdata, msg):
        got.append(msg.payload.decode())
        if len(got) >= 20:
            all_in.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="historian", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    sub.connect("127.0.0.1", app.mqtt_port, clean_start=False, properties=props)
    sub.loop_start()
    all_in.wait(15)
    sub.disconnect()
    sub.loop_stop()
    assert sorted(got, key=int) == [str(i) for i in range(20)]
