"""The pure session state machine and broker core, driven with a fake clock (no sockets)."""

import pytest

from appliance.mqtt.broker import Broker
from appliance.mqtt.codec import (
    MQTT_5,
    MQTT_311,
    ConnAck,
    Disconnect,
    MqttError,
    PingReq,
    PingResp,
    PropertyId,
    ProtocolViolation,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    SubAck,
    Subscribe,
    SubscriptionOptions,
    UnsubAck,
    Unsubscribe,
    Will,
)
from appliance.mqtt.session import Limits
from appliance.mqtt.sink import RecordingSink

from .helpers import Clock, FakeClient

P = PropertyId


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sink():
    return RecordingSink()


@pytest.fixture
def broker(sink):
    return Broker(Limits(max_inflight=10, max_queued_messages=5, keep_alive_max=120, session_expiry_max=3600),
                  sink, id_factory=iter(f"auto-{i}" for i in range(100)).__next__)


def client(broker, clock, cid="c", version=MQTT_5, **kw):
    c = FakeClient(broker, clock, version)
    ack = c.connect(cid, **kw)
    return c, ack


def subscribe(c, topic_filter, qos=1, **opts):
    props = {P.SUBSCRIPTION_IDENTIFIER: opts.pop("sub_id")} if "sub_id" in opts else {}
    c.send(Subscribe(1, [(topic_filter, SubscriptionOptions(qos, **opts))], props))
    return c.received()


def test_connect_negotiates_limits_and_assigns_client_id(broker, clock):
    c, ack = client(broker, clock, "", keep_alive=0, properties={P.SESSION_EXPIRY_INTERVAL: 999_999})
    assert isinstance(ack, ConnAck) and ack.reason_code == 0 and not ack.session_present
    assert ack.properties[P.ASSIGNED_CLIENT_IDENTIFIER] == "auto-0"
    assert ack.properties[P.SERVER_KEEP_ALIVE] == 120  # 0 asked, capped by keep_alive_max
    assert ack.properties[P.SESSION_EXPIRY_INTERVAL] == 3600  # capped
    assert ack.properties[P.RECEIVE_MAXIMUM] == 10
    assert c.conn.keepalive_deadline() == clock.now + 180  # 1.5x keep alive
    c.send(PingReq())
    assert c.received() == [PingResp()]


def test_311_empty_client_id_needs_clean_session(broker, clock):
    _, ack = client(broker, clock, "", MQTT_311, clean_start=False)
    assert ack.reason_code == ReasonCode.CLIENT_IDENTIFIER_NOT_VALID
    _, ack = client(broker, clock, "", MQTT_311, clean_start=True)
    assert ack.reason_code == 0


def test_keepalive_deadline_moves_with_traffic(broker, clock):
    c, _ = client(broker, clock, "k", keep_alive=10)
    assert not c.conn.keepalive_expired(clock.advance(14))
    c.send(PingReq())
    assert not c.conn.keepalive_expired(clock.advance(14.9))
    assert c.conn.keepalive_expired(clock.advance(0.2))


def test_qos2_inbound_is_exactly_once(broker, clock, sink):
    sub, _ = client(broker, clock, "sub")
    subscribe(sub, "t/#", 2)
    pub, _ = client(broker, clock, "pub")
    pub.send(Publish("t/1", b"x", 2, packet_id=5))
    assert pub.received() == [PubRec(5)]
    pub.send(Publish("t/1", b"x", 2, dup=True, packet_id=5))  # lost PUBREC: retransmission
    assert pub.received() == [PubRec(5)]
    pub.send(PubRel(5))
    assert pub.received() == [PubComp(5)]
    pub.send(PubRel(5))  # unknown now
    assert pub.received() == [PubComp(5, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)]
    got = sub.received()
    assert [(p.topic, p.qos) for p in got] == [("t/1", 2)]
    assert len(sink.messages) == 1
    # outbound QoS 2 handshake towards the subscriber
    pid = got[0].packet_id
    sub.send(PubRec(pid))
    assert sub.received() == [PubRel(pid)]
    sub.send(PubComp(pid))
    assert sub.conn.session.inflight == {}


def test_acks_wait_for_durability_and_keep_order(broker, clock):
    pub = FakeClient(broker, clock)
    pub.durable = False
    pub.connect("p")
    for i in range(1, 4):
        pub.send(Publish("t", b"x", 1, packet_id=i))
    assert pub.received() == []  # nothing acknowledged before the sink says durable
    assert pub.release_acks() == [PubAck(1), PubAck(2), PubAck(3)]


def test_receive_maximum_is_enforced(broker, clock):
    pub = FakeClient(broker, clock)
    pub.durable = False
    pub.connect("p")
    for i in range(1, 11):
        pub.send(Publish("t", b"x", 1, packet_id=i))
    pub.received()
    with pytest.raises(MqttError) as e:
        pub.send(Publish("t", b"x", 1, packet_id=11))
    assert e.value.reason_code == ReasonCode.RECEIVE_MAXIMUM_EXCEEDED


def test_outbound_window_is_the_clients_receive_maximum(broker, clock):
    sub, _ = client(broker, clock, "sub", properties={P.RECEIVE_MAXIMUM: 2})
    subscribe(sub, "t", 1)
    pub, _ = client(broker, clock, "pub")
    for i in range(1, 5):
        pub.send(Publish("t", str(i).encode(), 1, packet_id=i))
    got = sub.received()
    assert [p.payload for p in got] == [b"1", b"2"]
    sub.send(PubAck(got[0].packet_id))
    got2 = sub.received()
    assert [p.payload for p in got2] == [b"3"]


def test_persistent_session_queues_and_retransmits(broker, clock):
    sub, _ = client(broker, clock, "sub", clean_start=False, properties={P.SESSION_EXPIRY_INTERVAL: 60})
    subscribe(sub, "t", 1)
    pub, _ = client(broker, clock, "pub")
    pub.send(Publish("t", b"in-flight", 1, packet_id=1))
    first = sub.received()[0]
    sub.drop()  # never acknowledged
    pub.send(Publish("t", b"queued", 1, packet_id=2))
    sub2, ack = client(broker, clock, "sub", clean_start=False, properties={P.SESSION_EXPIRY_INTERVAL: 60})
    assert ack.session_present
    got = sub2.received()
    assert [(p.payload, p.dup) for p in got] == [(b"in-flight", True), (b"queued", False)]
    assert got[0].packet_id == first.packet_id


def test_clean_start_discards_the_old_session(broker, clock):
    sub, _ = client(broker, clock, "sub", clean_start=False, properties={P.SESSION_EXPIRY_INTERVAL: 60})
    subscribe(sub, "t", 1)
    sub.send(Disconnect())
    _, ack = client(broker, clock, "sub", clean_start=True)
    assert not ack.session_present
    assert len(broker.trie) == 0


def test_session_expiry(broker, clock):
    sub, _ = client(broker, clock, "sub", clean_start=False, properties={P.SESSION_EXPIRY_INTERVAL: 30})
    subscribe(sub, "t", 1)
    sub.drop()
    broker.tick(clock.advance(29))
    assert "sub" in broker.sessions
    broker.tick(clock.advance(2))
    assert "sub" not in broker.sessions and len(broker.trie) == 0


def test_offline_queue_is_bounded_qos0_dropped_first(broker, clock):
    sub, _ = client(broker, clock, "sub", clean_start=False, properties={P.SESSION_EXPIRY_INTERVAL: 60})
    subscribe(sub, "t", 1)
    sub.drop()
    pub, _ = client(broker, clock, "pub")
    pub.send(Publish("t", b"q0-a", 0))
    pub.send(Publish("t", b"q0-b", 0))
    for i in range(1, 6):
        pub.send(Publish("t", f"q1-{i}".encode(), 1, packet_id=i))
    assert broker.stats.dropped_qos0 == 2 and broker.stats.dropped_overflow == 0
    pub.send(Publish("t", b"q1-6", 1, packet_id=6))
    assert broker.stats.dropped_overflow == 1  # then the oldest
    sub2, _ = client(broker, clock, "sub", clean_start=False, properties={P.SESSION_EXPIRY_INTERVAL: 60})
    sub2_props = sub2.received()
    assert [p.payload for p in sub2_props] == [b"q1-2", b"q1-3", b"q1-4", b"q1-5", b"q1-6"]


def test_message_expiry_is_decremented_and_enforced(broker, clock):
    sub, _ = client(broker, clock, "sub", clean_start=False, properties={P.SESSION_EXPIRY_INTERVAL: 600})
    subscribe(sub, "t", 1)
    sub.drop()
    pub, _ = client(broker, clock, "pub")
    pub.send(Publish("t", b"short", 1, packet_id=1, properties={P.MESSAGE_EXPIRY_INTERVAL: 5}))
    pub.send(Publish("t", b"long", 1, packet_id=2, properties={P.MESSAGE_EXPIRY_INTERVAL: 100}))
    clock.advance(10)
    sub2, _ = client(broker, clock, "sub", clean_start=False, properties={P.SESSION_EXPIRY_INTERVAL: 600})
    got = sub2.received()
    assert [(p.payload, p.properties[P.MESSAGE_EXPIRY_INTERVAL]) for p in got] == [(b"long", 90)]
    assert broker.stats.dropped_expired == 1


def test_will_only_on_abnormal_disconnect(broker, clock, sink):
    watcher, _ = client(broker, clock, "w")
    subscribe(watcher, "status/#", 1)
    will = Will("status/a", b"gone", 1, False)
    a, _ = client(broker, clock, "a", will=will)
    a.send(Disconnect())  # normal: will deleted
    a.drop()
    assert watcher.received() == []
    a, _ = client(broker, clock, "a", will=will)
    a.drop()  # abnormal
    assert [p.payload for p in watcher.received()] == [b"gone"]
    assert sink.messages[-1].is_will
    a, _ = client(broker, clock, "a", will=will)
    a.send(Disconnect(ReasonCode.DISCONNECT_WITH_WILL))
    a.drop()
    assert [p.payload for p in watcher.received()] == [b"gone"]


def test_will_delay_and_cancel_on_reconnect(broker, clock):
    watcher, _ = client(broker, clock, "w")
    subscribe(watcher, "status/#", 0)
    props = {P.SESSION_EXPIRY_INTERVAL: 300}
    will = Will("status/a", b"gone", 0, False, {P.WILL_DELAY_INTERVAL: 10})
    a, _ = client(broker, clock, "a", clean_start=False, will=will, properties=props)
    a.drop()
    broker.tick(clock.advance(5))
    assert watcher.received() == []
    client(broker, clock, "a", clean_start=False, properties=props)  # back in time: no will
    broker.tick(clock.advance(20))
    assert watcher.received() == []
    a, _ = client(broker, clock, "b", clean_start=False, will=Will("status/b", b"b-gone", 0, False,
                                                                   {P.WILL_DELAY_INTERVAL: 10}), properties=props)
    a.drop()
    broker.tick(clock.advance(9))
    assert watcher.received() == []
    broker.tick(clock.advance(2))
    assert [p.payload for p in watcher.received()] == [b"b-gone"]


def test_takeover_disconnects_the_old_connection(broker, clock):
    old, _ = client(broker, clock, "dup")
    new, ack = client(broker, clock, "dup")
    assert ack.reason_code == 0
    assert old.received() == [Disconnect(ReasonCode.SESSION_TAKEN_OVER)]
    assert old.conn.closing and broker.sessions["dup"].connection is new.conn


def test_topic_aliases_inbound(broker, clock):
    sub, _ = client(broker, clock, "sub")
    subscribe(sub, "#", 0)
    pub, _ = client(broker, clock, "pub")
    pub.send(Publish("plant/line/1", b"a", 0, properties={P.TOPIC_ALIAS: 3}))
    pub.send(Publish("", b"b", 0, properties={P.TOPIC_ALIAS: 3}))
    assert [(p.topic, p.payload) for p in sub.received()] == [("plant/line/1", b"a"), ("plant/line/1", b"b")]
    with pytest.raises(ProtocolViolation):
        pub.send(Publish("", b"c", 0, properties={P.TOPIC_ALIAS: 4}))
    with pytest.raises(MqttError) as e:
        pub.send(Publish("x", b"c", 0, properties={P.TOPIC_ALIAS: 65}))
    assert e.value.reason_code == ReasonCode.TOPIC_ALIAS_INVALID


def test_topic_aliases_outbound(broker, clock):
    sub, _ = client(broker, clock, "sub", properties={P.TOPIC_ALIAS_MAXIMUM: 1})
    subscribe(sub, "#", 0)
    pub, _ = client(broker, clock, "pub")
    for t in ("a", "a", "b"):
        pub.send(Publish(t, b"x", 0))
    got = sub.received()
    assert [(p.topic, p.properties.get(P.TOPIC_ALIAS)) for p in got] == [("a", 1), ("", 1), ("b", None)]


def test_subscription_options(broker, clock):
    me, _ = client(broker, clock, "me")
    subscribe(me, "loop/#", 1, no_local=True)
    me.send(Publish("loop/x", b"mine", 0))
    assert me.received() == []
    subscribe(me, "rap/#", 1, retain_as_published=True, sub_id=7)
    subscribe(me, "rap/+", 1, sub_id=8)
    other, _ = client(broker, clock, "other")
    other.send(Publish("rap/x", b"r", 1, retain=True, packet_id=1))
    got = me.received()
    assert len(got) == 1 and got[0].retain is True
    assert sorted(got[0].properties[P.SUBSCRIPTION_IDENTIFIER]) == [7, 8]


def test_retained_messages_and_retain_handling(broker, clock):
    pub, _ = client(broker, clock, "pub")
    pub.send(Publish("cfg/a", b"A", 1, retain=True, packet_id=1))
    pub.send(Publish("cfg/b", b"B", 0, retain=True))
    s, _ = client(broker, clock, "s")
    got = subscribe(s, "cfg/#", 1)
    assert isinstance(got[0], SubAck)
    assert sorted((p.topic, p.payload, p.retain, p.qos) for p in got[1:]) == [("cfg/a", b"A", True, 1),
                                                                             ("cfg/b", b"B", True, 0)]
    for p in got[1:]:
        if p.qos:
            s.send(PubAck(p.packet_id))
    assert len(subscribe(s, "cfg/#", 1, retain_handling=1)) == 1  # not new: no retained
    assert len(subscribe(s, "cfg/+", 1, retain_handling=2)) == 1  # never
    pub.send(Publish("cfg/a", b"", 0, retain=True))  # clears
    s.received()
    assert [p.topic for p in subscribe(s, "cfg/a", 0)[1:]] == []
    assert list(broker.retained) == ["cfg/b"]


def test_shared_subscription_distributes(broker, clock):
    workers = [client(broker, clock, f"w{i}")[0] for i in range(3)]
    for w in workers:
        subscribe(w, "$share/g/jobs/#", 0)
    pub, _ = client(broker, clock, "pub")
    for i in range(9):
        pub.send(Publish(f"jobs/{i}", b"x", 0))
    assert [len(w.received()) for w in workers] == [3, 3, 3]


def test_unsubscribe(broker, clock):
    s, _ = client(broker, clock, "s")
    subscribe(s, "a/#", 0)
    s.send(Unsubscribe(2, ["a/#", "nope"]))
    assert s.received() == [UnsubAck(2, [ReasonCode.SUCCESS, ReasonCode.NO_SUBSCRIPTION_EXISTED])]
    assert len(broker.trie) == 0


def test_invalid_filter_gets_a_failure_code(broker, clock):
    s, _ = client(broker, clock, "s")
    assert subscribe(s, "a/#/b", 1) == [SubAck(1, [ReasonCode.TOPIC_FILTER_INVALID])]
    s4, _ = client(broker, clock, "s4", MQTT_311)
    assert subscribe(s4, "a/#/b", 1) == [SubAck(1, [0x80])]


def test_slow_consumer_is_disconnected(broker, clock):
    sub, _ = client(broker, clock, "slow", properties={P.RECEIVE_MAXIMUM: 1})
    subscribe(sub, "t", 1)
    pub, _ = client(broker, clock, "pub")
    for i in range(1, 8):  # 1 in flight + 5 queued allowed, the 7th overflows
        pub.send(Publish("t", b"x", 1, packet_id=i))
        pub.received()
    assert sub.conn.closing
    assert broker.stats.slow_consumer_disconnects == 1
    assert sub.received()[-1] == Disconnect(ReasonCode.QUOTA_EXCEEDED)


def test_second_connect_and_v5_disconnect_on_violation(broker, clock):
    from appliance.mqtt.codec import Connect
    c, _ = client(broker, clock, "c")
    with pytest.raises(ProtocolViolation) as e:
        c.send(Connect("c"))
    c.conn.fail(e.value)
    assert c.received() == [Disconnect(ReasonCode.PROTOCOL_ERROR,
                                       {P.REASON_STRING: "second CONNECT on one connection"})]


def test_retained_message_expires(broker, clock):
    pub, _ = client(broker, clock, "pub")
    pub.send(Publish("cfg/x", b"soon gone", 0, retain=True, properties={P.MESSAGE_EXPIRY_INTERVAL: 5}))
    pub.send(Publish("cfg/y", b"stays", 0, retain=True))
    s, _ = client(broker, clock, "s")
    got = subscribe(s, "cfg/#", 0)[1:]
    assert sorted(p.topic for p in got) == ["cfg/x", "cfg/y"]
    broker.tick(clock.advance(6))
    assert list(broker.retained) == ["cfg/y"]
    s2, _ = client(broker, clock, "s2")
    assert [p.topic for p in subscribe(s2, "cfg/#", 0)[1:]] == ["cfg/y"]
