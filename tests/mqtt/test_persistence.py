"""Retained messages and persistent sessions survive a broker restart (state over the MetaStore port)."""

from functools import partial

import msgpack
import paho.mqtt.client as mqtt
import trio

from appliance.config import HostPort
from appliance.mqtt.broker import Broker
from appliance.mqtt.codec import PropertyId, Publish, Subscribe, SubscriptionOptions
from appliance.mqtt.session import Limits
from appliance.mqtt.state import MetaStoreMqttState
from appliance.transport.mqtt_server import serve_mqtt

from .helpers import Clock, FakeClient


class DictMetaStore:
    """An in-memory MetaStore: values round-trip through msgpack, as a durable store's would."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, bytes]] = {}
        self.writes = 0

    def get(self, namespace, key):
        raw = self.data.get(namespace, {}).get(key)
        return None if raw is None else msgpack.unpackb(raw)

    def items(self, namespace):
        return {k: msgpack.unpackb(v) for k, v in self.data.get(namespace, {}).items()}

    async def put(self, namespace, key, value):
        await self.put_many(namespace, {key: value})

    async def put_many(self, namespace, entries):
        self.writes += 1
        ns = self.data.setdefault(namespace, {})
        for k, v in entries.items():
            if v is None:
                ns.pop(k, None)
            else:
                ns[k] = msgpack.packb(v)

    async def allocate(self, counter, count=1):  # pragma: no cover - not used by MQTT
        raise NotImplementedError


async def test_state_round_trip_in_the_core():
    meta = DictMetaStore()
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
    meta = DictMetaStore()
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


async def test_persistent_session_and_retained_survive_server_restart(paho_clients):
    meta = DictMetaStore()

    async def run_server(nursery):
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
