"""The admin API's console views over real HTTP against a real appliance: Kafka connections and
MQTT sessions from real clients, a live tail of records produced by a Kafka client (every
compression codec), and the recent log lines."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from confluent_kafka import Consumer, Producer

from appliance.admin.client import AdminAPIError, AdminClient
from tests.admin.test_api import raw


def wait_for(cond, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_kafka_connections_show_listener_peer_and_client_id(appliance):
    AdminClient(appliance.admin_url).create_topic("line3", 1)
    c = Consumer({"bootstrap.servers": appliance.bootstrap, "group.id": "g-" + uuid.uuid4().hex,
                  "client.id": "historian-7"})
    try:
        c.subscribe(["line3"])  # a group member keeps its connections open (heartbeats, fetches)
        c.poll(0.5)
        admin = AdminClient(appliance.admin_url)
        conns = wait_for(lambda: [k for k in admin.clients().kafka if k.client_id == "historian-7"],
                         what="the consumer's connection")
        k = conns[0]
        assert k.listener == "kafka" and k.peer.startswith("127.0.0.1:") and k.requests >= 1
        assert k.principal is None  # plain TCP listener: no certificate identity
        assert k.connected_s >= 0
    finally:
        c.close()
    wait_for(lambda: not [k for k in AdminClient(appliance.admin_url).clients().kafka
                          if k.client_id == "historian-7"], what="the connection to go away")


def test_mqtt_sessions_show_subscriptions_queue_and_version(appliance):
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="press-7", protocol=mqtt.MQTTv5)
    sub.connect("127.0.0.1", appliance.mqtt_port)
    sub.loop_start()
    try:
        sub.subscribe("line1/#", qos=1)
        # a persistent 3.1.1 session that is offline, with messages queued for it
        subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(appliance.mqtt_port), "-i", "historian",
                        "-c", "-q", "1", "-t", "line1/temp", "-E", "-V", "mqttv311"], check=True, timeout=15)
        for i in range(3):
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(appliance.mqtt_port), "-t", "line1/temp",
                            "-m", str(20 + i), "-q", "1"], check=True, timeout=15)
        admin = AdminClient(appliance.admin_url)
        sessions = wait_for(lambda: {s.client_id: s for s in admin.clients().mqtt
                                     if s.client_id in ("press-7", "historian")} if any(
            s.client_id == "historian" and s.queued == 3 for s in admin.clients().mqtt) else None,
            what="the queued messages")
        live, away = sessions["press-7"], sessions["historian"]
        assert live.connected and live.protocol_version == 5 and live.peer.startswith("127.0.0.1:")
        assert [(s.topic_filter, s.qos) for s in live.subscriptions] == [("line1/#", 1)]
        assert not away.connected and away.peer is None and away.queued == 3
        assert [(s.topic_filter, s.qos) for s in away.subscriptions] == [("line1/temp", 1)]
        assert admin.clients().mqtt_enabled
        cut = admin.clients(limit=1)  # connected sessions come first; the total says what was cut
        assert [s.client_id for s in cut.mqtt] == ["press-7"] and cut.mqtt_total == 2
    finally:
        sub.loop_stop()
        sub.disconnect()


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_tail_shows_records_a_kafka_client_produced(appliance, codec):
    admin = AdminClient(appliance.admin_url)
    admin.create_topic("tail", 2)
    p = Producer({"bootstrap.servers": appliance.bootstrap, "linger.ms": 20, "compression.type": codec})
    t0 = int(time.time() * 1000)
    for i in range(30):
        p.produce("tail", key=b"k%d" % i, value=json.dumps({"i": i}).encode(), partition=1,
                  headers=[("unit", b"degC")], timestamp=t0 + i * 1000)
    assert p.flush(15) == 0

    latest = admin.records("tail", 1, limit=5)
    assert [r.offset for r in latest.records] == [25, 26, 27, 28, 29]
    assert latest.high_watermark == 30 and latest.next_offset == 30
    r = latest.records[0]
    assert r.key_bytes == b"k25" and json.loads(r.value_bytes) == {"i": 25}
    assert [(h.key, h.value) for h in r.headers] == [("unit", "ZGVnQw==")]  # base64 of degC
    assert r.timestamp == t0 + 25_000 and r.note is None

    page = admin.records("tail", 1, offset=3, limit=4)  # replay from an offset, page by page
    assert [r.offset for r in page.records] == [3, 4, 5, 6] and page.next_offset == 7
    nxt = admin.records("tail", 1, offset=page.next_offset, limit=100)
    assert [r.offset for r in nxt.records] == list(range(7, 30))

    since = admin.records("tail", 1, timestamp=t0 + 12_500, limit=3)  # replay from a moment
    assert [r.offset for r in since.records] == [13, 14, 15]
    assert admin.records("tail", 1, timestamp=t0 + 3600_000).records == []
    assert admin.records("tail", 0).records == []  # an empty partition


def test_tail_errors_are_clear(appliance):
    admin = AdminClient(appliance.admin_url)
    admin.create_topic("t", 1)
    with pytest.raises(AdminAPIError) as e:
        admin.records("missing", 0)
    assert e.value.status == 404 and "missing" in e.value.message
    with pytest.raises(AdminAPIError) as e:
        admin.records("t", 3)
    assert e.value.status == 404 and "partition 3" in e.value.message
    status, body, _ = raw(appliance, "GET", "/api/v1/topics/t/partitions/0/records?offset=soon")
    assert status == 400 and "offset" in json.loads(body)["error"]
    status, body, _ = raw(appliance, "GET", "/api/v1/topics/t/partitions/0/records?offset=1&timestamp=2")
    assert status == 400
    # an offset past the end is moved into the retained range, not an error
    assert admin.records("t", 0, offset=10**9).start_offset == 0


def test_recent_log_lines_follow_from_a_sequence_number(appliance):
    admin = AdminClient(appliance.admin_url)
    first = admin.logs()
    assert any("event=ready" in line.line for line in first.lines)
    assert first.last_seq == first.lines[-1].seq
    admin.create_topic("logged", 1)  # the broker logs topic creation
    newer = wait_for(lambda: admin.logs(after=first.last_seq).lines, what="a new log line")
    assert all(line.seq > first.last_seq for line in newer)
    assert any("logged" in line.line for line in newer), [line.line for line in newer]
    assert len(admin.logs(limit=2).lines) == 2
