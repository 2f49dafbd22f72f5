"""Inputs the fuzzers found that once made the broker fail internally, pinned down one by one."""

from __future__ import annotations

import socket
import struct
import time
import uuid

import pytest

from appliance.kafka.protocol import messages as m
from appliance.mqtt.codec import (
    MQTT_5,
    Connect,
    PacketReader,
    Publish,
    Subscribe,
    SubscriptionOptions,
    encode,
)
from tests.faults import kafka_wire as wire


@pytest.mark.parametrize("version", [10, 11, 12])
def test_metadata_topic_with_null_name(appliance, version):
    """Found by test_live_fuzz: a null topic name in Metadata v10/v11 built a response that could
    not be encoded (name is nullable only from v12), so the connection died with an internal error."""
    M = m.MetadataRequest
    req = M(topics=[M.MetadataRequestTopic(name=None, topic_id=uuid.uuid4())], allow_auto_topic_creation=True)
    with wire.connect(appliance.kafka_port) as s:
        resp = wire.roundtrip(s, 3, version, req)
        expected = 42 if version < 12 else 100  # INVALID_REQUEST, or UNKNOWN_TOPIC_ID (by id, v12+)
        assert [t.error_code for t in resp.topics] == [expected]
        # The same connection keeps working.
        assert wire.roundtrip(s, 3, version, M(topics=None, allow_auto_topic_creation=False)).topics == []
    assert "connection_failed" not in appliance.log_text()


def test_mqtt_subscriber_resetting_mid_send_does_not_stop_the_appliance(appliance):
    """Found by test_mqtt_live_fuzz (long run): a subscriber that resets its connection while the
    broker is blocked sending to it made the writer raise BrokenResourceError inside the
    connection's nursery; trio wrapped it in an exception group that the handler's except clause
    did not match, so it reached the listener and the whole appliance exited."""
    def mqtt_client(client_id: str) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", appliance.mqtt_port), timeout=10)
        s.sendall(encode(Connect(client_id, MQTT_5), MQTT_5))
        reader = PacketReader(version=MQTT_5)
        while not list(reader):
            reader.feed(s.recv(4096))
        return s

    for round_ in range(3):
        sub = mqtt_client(f"stuck-{round_}")
        sub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sub.sendall(encode(Subscribe(1, [("flood/#", SubscriptionOptions(qos=0))]), MQTT_5))
        time.sleep(0.2)
        pub = mqtt_client(f"flood-{round_}")
        pub.sendall(b"".join(encode(Publish("flood/x", b"p" * 8000), MQTT_5) for _ in range(500)))
        time.sleep(0.5)  # the broker is now blocked sending to the subscriber, who never reads
        sub.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sub.close()  # RST
        pub.close()
        time.sleep(0.3)
        assert appliance.proc.poll() is None, appliance.log_text()[-3000:]
    assert wire.api_versions_ok(appliance.kafka_port)
    assert "Traceback" not in appliance.log_text()
