"""The bridge's sans-IO client state machine, driven with packets from the project's codec."""

from __future__ import annotations

import pytest

from appliance.ingest.bridge.client import (
    BridgeClient,
    BridgeError,
    BridgeOptions,
    Connected,
    Inbound,
    PublishAcked,
    Released,
    Repeated,
    Subscribed,
)
from appliance.mqtt.codec import (
    MQTT_5,
    ConnAck,
    Connect,
    PacketReader,
    PingReq,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Will,
    encode,
)
from appliance.mqtt.codec.properties import PropertyId as P


def _server_side(data: bytes) -> list:
    r = PacketReader()
    r.feed(data)
    return list(r)


def _opts() -> BridgeOptions:
    return BridgeOptions("br", ("a/#", "b/+"), qos=2, session_expiry=600, keep_alive=10)


def test_connect_subscribe_and_qos_flows():
    c = BridgeClient(_opts())
    [connect] = _server_side(c.start(0.0))
    assert isinstance(connect, Connect) and connect.clean_start is False
    assert connect.properties[P.SESSION_EXPIRY_INTERVAL] == 600
    events, out = c.receive(encode(ConnAck(True), MQTT_5), 0.1)
    assert events == [Connected(True)]
    r = PacketReader(version=MQTT_5)
    r.feed(out)
    [sub] = list(r)
    assert isinstance(sub, Subscribe) and [f for f, _ in sub.subscriptions] == ["a/#", "b/+"]
    events, out = c.receive(encode(SubAck(1, [2, 2]), MQTT_5) + encode(Publish("a/x", b"1", 1, packet_id=7), MQTT_5)
                            + encode(Publish("a/y", b"2", 2, packet_id=8), MQTT_5), 0.2)
    assert events[0] == Subscribed((2, 2))
    m1, m2 = events[1:]
    assert isinstance(m1, Inbound) and (m1.topic, m1.qos, m1.packet_id) == ("a/x", 1, 7)
    assert out == b""  # nothing is acknowledged before the runner says the message is durable
    r.feed(c.acknowledge(m1, 0.3) + c.acknowledge(m2, 0.3))
    assert [type(p) for p in r] == [PubAck, PubRec]
    # a resent QoS 2 PUBLISH before PUBREL: PUBREC again (when the runner says so), not a second delivery
    events, out = c.receive(encode(Publish("a/y", b"2", 2, dup=True, packet_id=8), MQTT_5), 0.4)
    assert events == [Repeated(8)] and out == b""
    r.feed(c.acknowledge_repeat(8, 0.4))
    assert [type(p) for p in r] == [PubRec]
    events, out = c.receive(encode(PubRel(8), MQTT_5), 0.5)
    assert events == [Released(8)]
    r.feed(out)
    assert [type(p) for p in r] == [PubComp]
    # after PUBREL the id is free: a PUBLISH reusing it (DUP=0) is a new message
    events, _ = c.receive(encode(Publish("a/z", b"3", 2, packet_id=8), MQTT_5), 0.6)
    assert [type(e) for e in events] == [Inbound]


def test_awaiting_set_is_shared_across_connections_and_new_messages_are_not_swallowed():
    awaiting = {5}  # e.g. loaded from the store after a restart
    c = BridgeClient(_opts(), awaiting_rel=awaiting)
    c.start(0.0)
    c.receive(encode(ConnAck(True), MQTT_5), 0.1)
    events, _ = c.receive(encode(Publish("a/y", b"2", 2, dup=True, packet_id=5), MQTT_5), 0.2)
    assert events == [Repeated(5)]
    # DUP=0 with an id still in the set: the PUBREL was seen but its removal not saved -> new message
    events, _ = c.receive(encode(Publish("a/y", b"9", 2, packet_id=5), MQTT_5), 0.3)
    assert [(type(e), e.payload) for e in events] == [(Inbound, b"9")] and 5 not in awaiting


def test_own_publish_and_will():
    c = BridgeClient(_opts())
    [connect] = _server_side(c.start(0.0, will=Will("st/h", b"off", 1, True)))
    assert connect.will.topic == "st/h" and connect.will.retain and connect.will.qos == 1
    c.receive(encode(ConnAck(False), MQTT_5), 0.1)
    pid, data = c.publish("st/h", b"on", qos=1, retain=True, now=0.2)
    server = PacketReader(version=MQTT_5)
    server.feed(data)
    [pub] = list(server)
    assert (pub.topic, pub.payload, pub.qos, pub.retain, pub.packet_id) == ("st/h", b"on", 1, True, pid)
    events, _ = c.receive(encode(PubAck(pid), MQTT_5), 0.3)
    assert events == [PublishAcked(pid, 0)]


def test_refusal_and_keep_alive():
    c = BridgeClient(_opts())
    c.start(0.0)
    with pytest.raises(BridgeError, match="0x87"):
        c.receive(encode(ConnAck(False, 0x87), MQTT_5), 0.1)
    c = BridgeClient(_opts())
    c.start(0.0)
    c.receive(encode(ConnAck(False), MQTT_5), 0.0)
    assert c.tick(4.0) == b""
    r = PacketReader(version=MQTT_5)
    r.feed(c.tick(5.0))
    assert [type(p) for p in r] == [PingReq]
    with pytest.raises(BridgeError, match="silent"):
        c.tick(16.0)
