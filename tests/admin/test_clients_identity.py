"""The Clients view on a segmented node: each Kafka connection and MQTT session shows the
certificate identity (mTLS) or the listener's zone (plaintext), from real mTLS clients."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
from confluent_kafka import Consumer

from appliance.admin.client import AdminClient
from tests.security.segmented import Segmented, pki_issue


def test_connections_show_certificate_identity_and_zone(tmp_path):
    node = Segmented(tmp_path / "data").start()
    consumers, dev = [], None
    try:
        mes = pki_issue(node.data_dir, "plant-apps", "mes-1")
        press7 = pki_issue(node.data_dir, "cell-line3", "press-7")
        tls = {"security.protocol": "SSL", "ssl.ca.location": str(mes.ca_path),
               "ssl.certificate.location": str(mes.cert_path), "ssl.key.location": str(mes.key_path)}
        for conf in ({"bootstrap.servers": node.addr("kafka-plant"), "client.id": "mes-app", **tls},
                     {"bootstrap.servers": node.addr("kafka-local"), "client.id": "local-tool"}):
            c = Consumer({**conf, "group.id": "mes-1-g"})
            c.list_topics(timeout=10)
            consumers.append(c)
        dev = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="press-7", protocol=mqtt.MQTTv5)
        dev.tls_set(ca_certs=str(press7.ca_path), certfile=str(press7.cert_path), keyfile=str(press7.key_path))
        dev.connect("localhost", node.ports["mqtt-cell"])
        dev.loop_start()

        admin = AdminClient(f"http://127.0.0.1:{node.ports['admin']}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            clients = admin.clients()
            kafka = {k.client_id: k for k in clients.kafka}
            if {"mes-app", "local-tool"} <= set(kafka) and any(s.client_id == "press-7" for s in clients.mqtt):
                break
            for c in consumers:  # librdkafka may close an idle bootstrap connection: ask again
                c.list_topics(timeout=5)
            time.sleep(0.1)
        mes_conn, local_conn = kafka["mes-app"], kafka["local-tool"]
        assert (mes_conn.listener, mes_conn.principal, mes_conn.zone) == ("kafka-plant", "plant-apps/mes-1", "plant-apps")
        assert (local_conn.listener, local_conn.principal, local_conn.zone) == ("kafka-local", None, "local")
        (session,) = [s for s in clients.mqtt if s.client_id == "press-7"]
        assert (session.principal, session.zone, session.connected) == ("cell-line3/press-7", "cell-line3", True)
    finally:
        if dev is not None:
            dev.disconnect()
            dev.loop_stop()
        for c in consumers:
            c.close()
        node.stop()
