"""The trio listener with raw sockets: bad input closes only the offending connection, with the
right reason code; keep-alive; durable acknowledgements; back-pressure from the ingest sink."""

from functools import partial

import paho.mqtt.client as mqtt
import trio

from appliance.config import HostPort
from appliance.errors import StorageFullError
from appliance.mqtt.broker import Broker
from appliance.mqtt.codec import (
    MQTT_5,
    MQTT_311,
    ConnAck,
    Connect,
    Disconnect,
    PingReq,
    PingResp,
    PropertyId,
    PubAck,
    Publish,
    ReasonCode,
    SubAck,
    Subscribe,
    SubscriptionOptions,
    encode,
)
from appliance.mqtt.session import Limits
from appliance.transport.mqtt_server import serve_mqtt

from .conftest import RawClient


async def test_malformed_packet_closes_only_that_connection(mqtt_server, paho_clients):
    good = await paho_clients(mqtt_server.port, "good", mqtt.MQTTv5)
    await good.subscribe("ok/#", 1)
    bad, ack = await RawClient.connect(mqtt_server.port, "bad")
    assert ack.reason_code == 0
    await bad.send_raw(b"\x30\x05\x00\x03a\x00b")  # topic with U+0000
    assert await bad.recv() == Disconnect(ReasonCode.MALFORMED_PACKET,
                                          {PropertyId.REASON_STRING: "UTF-8 string contains U+0000"})
    assert await bad.recv() is None  # closed
    assert mqtt_server.broker.stats.protocol_errors == 1
    await good.publish("ok/still", b"fine", 1)
    (m,) = await good.receive(1)
    assert m.payload == b"fine"


async def test_v311_malformed_packet_just_closes(mqtt_server):
    bad, ack = await RawClient.connect(mqtt_server.port, "bad4", MQTT_311)
    assert ack == ConnAck(False, 0)
    await bad.send_raw(b"\x36\x03\x00\x01a")  # QoS 3
    assert await bad.recv() is None


async def test_oversize_packet_rejected_with_0x95(mqtt_server):
    c, _ = await RawClient.connect(mqtt_server.port, "big")
    await c.send(Publish("t", b"x" * 100_000, 0))  # limit in the fixture: 64 KiB
    got = await c.recv()
    assert isinstance(got, Disconnect) and got.reason_code == ReasonCode.PACKET_TOO_LARGE
    assert await c.recv() is None
    # a packet at the limit is fine
    ok, _ = await RawClient.connect(mqtt_server.port, "fits")
    await ok.send(Publish("t", b"x" * 60_000, 1, packet_id=1))
    assert await ok.recv() == PubAck(1)


async def test_unsupported_protocol_version(mqtt_server):
    stream = await trio.open_tcp_stream("127.0.0.1", mqtt_server.port)
    data = bytearray(encode(Connect("x", MQTT_311), MQTT_311))
    data[8] = 3  # MQTT 3.1 is not supported
    await stream.send_all(bytes(data))
    with trio.fail_after(3):
        reply = await stream.receive_some(100)
    assert reply == b"\x20\x02\x00\x01"  # 3.1.1-format CONNACK: unacceptable protocol version


async def test_first_packet_must_be_connect(mqtt_server):
    stream = await trio.open_tcp_stream("127.0.0.1", mqtt_server.port)
    await stream.send_all(encode(PingReq(), MQTT_5))
    with trio.fail_after(3):
        assert await stream.receive_some(100) == b""


async def test_keepalive_timeout_disconnects(mqtt_server):
    c, ack = await RawClient.connect(mqtt_server.port, "sleepy", keep_alive=1)
    assert ack.reason_code == 0
    await c.send(PingReq())
    assert await c.recv() == PingResp()
    start = trio.current_time()
    assert await c.recv(timeout=4) == Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT)
    assert 1.4 <= trio.current_time() - start <= 2.5
    assert mqtt_server.broker.stats.keepalive_timeouts == 1


async def test_a_client_that_keeps_talking_is_not_timed_out(mqtt_server):
    # The reader moves its keep-alive deadline lazily; an early wake-up must not disconnect.
    c, ack = await RawClient.connect(mqtt_server.port, "chatty", keep_alive=1)
    assert ack.reason_code == 0
    end = trio.current_time() + 4
    while trio.current_time() < end:
        await c.send(PingReq())
        assert await c.recv(timeout=4) == PingResp()
        await trio.sleep(0.4)
    assert mqtt_server.broker.stats.keepalive_timeouts == 0
    await c.send(Disconnect())


class GatedSink:
    """Durability is signalled by the test; optionally refuses with back-pressure."""

    def __init__(self) -> None:
        self.gate = trio.Event()
        self.full = False

    def submit(self, msg):
        if self.full:
            raise StorageFullError("WAL budget spent")
        return self.gate.wait()


async def test_puback_waits_until_durable_and_storage_full_gets_0x97(nursery):
    sink = GatedSink()
    broker = Broker(Limits(), sink)
    bound = await nursery.start(partial(serve_mqtt, broker, HostPort("127.0.0.1", 0)))
    c, _ = await RawClient.connect(bound.port, "p")
    await c.send(Publish("t", b"a", 1, packet_id=1))
    await c.send(Publish("t", b"b", 1, packet_id=2))
    with trio.move_on_after(0.3):
        await c.recv()
        raise AssertionError("PUBACK before the message was durable")
    sink.gate.set()
    assert [await c.recv(), await c.recv()] == [PubAck(1), PubAck(2)]
    sink.full = True
    await c.send(Publish("t", b"c", 1, packet_id=3))
    assert await c.recv() == PubAck(3, ReasonCode.QUOTA_EXCEEDED)
    # 3.1.1 has no way to say "not accepted": the connection is closed so the client retries
    c4, _ = await RawClient.connect(bound.port, "p4", MQTT_311)
    await c4.send(Publish("t", b"d", 1, packet_id=1))
    assert await c4.recv() is None


async def test_subscriber_gets_what_raw_publisher_sends_with_properties(mqtt_server):
    sub, _ = await RawClient.connect(mqtt_server.port, "s", properties={PropertyId.TOPIC_ALIAS_MAXIMUM: 4})
    await sub.send(Subscribe(1, [("a/#", SubscriptionOptions(1))], {PropertyId.SUBSCRIPTION_IDENTIFIER: 9}))
    assert await sub.recv() == SubAck(1, [1])
    pub, _ = await RawClient.connect(mqtt_server.port, "p")
    props = {PropertyId.USER_PROPERTY: [("asset", "line1/press")], PropertyId.CONTENT_TYPE: "application/json"}
    await pub.send(Publish("a/b", b"{}", 1, packet_id=1, properties=props))
    assert await pub.recv() == PubAck(1)
    got = await sub.recv()
    assert got.properties == {**props, PropertyId.SUBSCRIPTION_IDENTIFIER: [9], PropertyId.TOPIC_ALIAS: 1}
    assert mqtt_server.sink.messages[-1].properties == props


async def test_slow_qos0_subscriber_is_bounded_and_does_not_stall_the_publisher(mqtt_server, nursery):
    stuck, _ = await RawClient.connect(mqtt_server.port, "stuck")  # subscribes, then never reads
    await stuck.send(Subscribe(1, [("flood/#", SubscriptionOptions(0))]))
    fast, _ = await RawClient.connect(mqtt_server.port, "fast")
    await fast.send(Subscribe(1, [("flood/#", SubscriptionOptions(0))]))
    assert await fast.recv() == SubAck(1, [0])
    fast_got = []

    async def read_fast():
        while (p := await fast.recv(timeout=30)) is not None:
            fast_got.append(p)

    nursery.start_soon(read_fast)
    pub, _ = await RawClient.connect(mqtt_server.port, "pub")
    payload = b"x" * 16_000
    count = 0
    with trio.fail_after(10):
        while mqtt_server.broker.stats.dropped_qos0 == 0 and count < 5000:  # ~80 MB at most
            await pub.send(Publish("flood/a", payload, 0))
            count += 1
    assert mqtt_server.broker.stats.dropped_qos0 > 0
    assert len(mqtt_server.broker.sessions["stuck"].connection.outbox) <= 100  # max_queued_messages
    await pub.send(Publish("ok", b"still served", 1, packet_id=1))
    assert await pub.recv() == PubAck(1)
    assert len(fast_got) > 100  # the healthy subscriber kept receiving


async def test_qos1_backlog_over_its_bound_disconnects_the_subscriber(mqtt_server):
    slow, _ = await RawClient.connect(mqtt_server.port, "slow", properties={PropertyId.RECEIVE_MAXIMUM: 1})
    await slow.send(Subscribe(1, [("work/#", SubscriptionOptions(1))]))
    assert await slow.recv() == SubAck(1, [1])
    pub, _ = await RawClient.connect(mqtt_server.port, "pub")
    for i in range(1, 103):  # 1 in flight + 100 queued, then one more
        await pub.send(Publish("work/x", b"job", 1, packet_id=i))
    for i in range(1, 103):
        assert await pub.recv() == PubAck(i)
    got = [await slow.recv()]
    got.append(await slow.recv())
    assert isinstance(got[0], Publish)
    assert got[1] == Disconnect(ReasonCode.QUOTA_EXCEEDED)
    assert mqtt_server.broker.stats.slow_consumer_disconnects == 1
