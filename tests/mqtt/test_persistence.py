"""Retained messages and persistent sessions survive a broker restart (state over the MetaStore port)."""

from functools import partial

import paho.mqtt.client as mqtt
import trio

from appliance.config import HostPort
from appliance.mqtt.broker import Broker
from appliance.mqtt.codec import PropertyId, Publish, Subscribe, SubscriptionOptions
from appliance.mqtt.session import Limits
from appliance.mqtt.state import MetaStoreMqttState
from appliance.storage.memory_meta import MemoryMetaStore
from appliance.storage.meta import LocalMetaStore
from appliance.transport.mqtt_server import serve_mqtt

from .helpers import Clock, FakeClient


async def test_state_round_trip_in_the_core():
    meta = MemoryMetaStore()
    clock = Clock()
    wall = [1_700_000_000_000]
    store = MetaStoreMqttState(meta, wall_ms=lambda: wall[0])
    b1 = Broker(Limits(), state_store=store)
    sub = FakeClient(b1, clock)
    sub.connect("hist", clean_start=False, properties={PropertyId.SESSION_EXPIRY_INTERVAL: 600})
    sub.send(Subscribe(1, [("plant/#", SubscriptionOptions(1, retain_handling=2))],
                       {PropertyId.SUBSCRIPTION_IDENTIFIER: 3}))
    sub.received()
    sub.drop()
    pub = FakeClient(b1, clock)
    pub.connect("pub")
    props = {PropertyId.USER_PROPERTY: [("asset", "press-7")], PropertyId.MESSAGE_EXPIRY_INTERVAL: 100}
    pub.send(Publish("plant/a", b"1", 1, packet_id=1, properties=props))
    pub.send(Publish("plant/cfg", b"retained", 0, retain=True))
    await store.flush(clock.now)
    assert meta.writes == 2  # one write per namespace, however many changes
    (ack,) = await pub.settled()  # the PUBACK waited for the queued message's state to be written
    assert (type(ack).__name__, ack.packet_id) == ("PubAck", 1) and meta.writes == 2

    # "restart": a new broker, 30 s later on both clocks (monotonic clocks restart from anywhere)
    clock2 = Clock(5.0)
    wall[0] += 30_000
    b2 = Broker(Limits(), state_store=MetaStoreMqttState(meta, wall_ms=lambda: wall[0]))
    b2.state_store.restore(b2, clock2.now)
    assert list(b2.retained) == ["plant/cfg"]
    back = FakeClient(b2, clock2)
    ack = back.connect("hist", clean_start=False, properties={PropertyId.SESSION_EXPIRY_INTERVAL: 600})
    assert ack.session_present
    got, cfg = back.received()  # the retained QoS 0 message was queued for the offline session too
    assert (cfg.topic, cfg.payload, cfg.qos, cfg.retain) == ("plant/cfg", b"retained", 0, False)
    assert (got.topic, got.payload, got.qos) == ("plant/a", b"1", 1)
    assert got.properties[PropertyId.USER_PROPERTY] == [("asset", "press-7")]
    assert got.properties[PropertyId.MESSAGE_EXPIRY_INTERVAL] == 70  # 30 s of the 100 passed while down
    assert got.properties[PropertyId.SUBSCRIPTION_IDENTIFIER] == [3]


async def test_sessions_expired_while_down_are_not_restored():
    meta = MemoryMetaStore()
    clock = Clock()
    wall = [1_700_000_000_000]
    store = MetaStoreMqttState(meta, wall_ms=lambda: wall[0])
    b1 = Broker(Limits(), state_store=store)
    c = FakeClient(b1, clock)
    c.connect("short", clean_start=False, properties={PropertyId.SESSION_EXPIRY_INTERVAL: 10})
    c.drop()
    await store.flush(clock.now)
    wall[0] += 60_000
    b2 = Broker(Limits())
    store2 = MetaStoreMqttState(meta, wall_ms=lambda: wall[0])
    store2.restore(b2, 0.0)
    assert b2.sessions == {}
    await store2.flush(0.0)
    assert meta.items("mqtt.sessions") == {}


async def test_persistent_session_and_retained_survive_server_restart(paho_clients, tmp_path):
    metas = []

    async def run_server(nursery):
        meta = LocalMetaStore.open(tmp_path / "meta")  # reopened from disk on every "restart"
        metas.append(meta)
        broker = Broker(Limits(), state_store=MetaStoreMqttState(meta))
        broker.state_store.restore(broker, trio.current_time())
        stop = trio.Event()
        bound = await nursery.start(partial(serve_mqtt, broker, HostPort("127.0.0.1", 0), stop=stop, grace=1.0))
        return bound.port, stop

    async with trio.open_nursery() as n1:
        port, stop = await run_server(n1)
        sub = await paho_clients(port, "historian", mqtt.MQTTv5, clean=False, session_expiry=600)
        await sub.subscribe("line/#", 1)
        await sub.disconnect()
        pub = await paho_clients(port, "plc", mqtt.MQTTv5)
        for i in range(3):
            await pub.publish(f"line/{i}", str(i).encode(), 1)
        await pub.publish("state/line", b"running", 1, retain=True)
        stop.set()  # graceful stop: flushes the state
    await metas[0].close()
    async with trio.open_nursery() as n2:
        port, stop = await run_server(n2)
        back = await paho_clients(port, "historian", mqtt.MQTTv5, clean=False, session_expiry=600)
        assert back.connack[0].session_present
        assert [m.payload for m in await back.receive(3)] == [b"0", b"1", b"2"]
        late = await paho_clients(port, "hmi", mqtt.MQTTv311)
        await late.subscribe("state/#", 1)
        (m,) = await late.receive(1)
        assert (m.topic, m.payload, m.retain) == ("state/line", b"running", True)
        stop.set()
    await metas[1].close()
