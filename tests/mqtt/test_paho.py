"""End to end with paho-mqtt 2.x (MQTT 3.1.1 and 5.0) against the real listener on loopback."""

import paho.mqtt.client as mqtt
import pytest
import trio

PROTOCOLS = pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["v311", "v5"])


@PROTOCOLS
async def test_every_qos_round_trips(mqtt_server, paho_clients, protocol):
    sub = await paho_clients(mqtt_server.port, "sub", protocol)
    codes = await sub.subscribe("plant/#", 2)
    assert [int(getattr(c, "value", c)) for c in codes] == [2]
    pub = await paho_clients(mqtt_server.port, "pub", protocol)
    for qos in (0, 1, 2):
        await pub.publish(f"plant/line1/q{qos}", f"v{qos}".encode(), qos)
    got = await sub.receive(3)
    assert sorted((m.topic, m.payload, m.qos) for m in got) == [
        ("plant/line1/q0", b"v0", 0), ("plant/line1/q1", b"v1", 1), ("plant/line1/q2", b"v2", 2)]
    assert [m.topic for m in mqtt_server.sink.messages] == ["plant/line1/q0", "plant/line1/q1", "plant/line1/q2"]


@PROTOCOLS
async def test_wildcards_route_only_matching_topics(mqtt_server, paho_clients, protocol):
    a = await paho_clients(mqtt_server.port, "a", protocol)
    await a.subscribe("site/+/temp", 1)
    b = await paho_clients(mqtt_server.port, "b", protocol)
    await b.subscribe("site/l1/#", 1)
    pub = await paho_clients(mqtt_server.port, "pub", protocol)
    for t in ("site/l1/temp", "site/l2/temp", "site/l1/press/x", "other/l1/temp", "$SYS/site/l1"):
        await pub.publish(t, b"x", 1)
    assert sorted(m.topic for m in await a.receive(2)) == ["site/l1/temp", "site/l2/temp"]
    assert sorted(m.topic for m in await b.receive(2)) == ["site/l1/press/x", "site/l1/temp"]
    assert await a.nothing_more() and await b.nothing_more()


@PROTOCOLS
async def test_retained_message_reaches_late_subscriber_and_can_be_cleared(mqtt_server, paho_clients, protocol):
    pub = await paho_clients(mqtt_server.port, "pub", protocol)
    await pub.publish("cfg/line1/setpoint", b"42", 1, retain=True)
    late = await paho_clients(mqtt_server.port, "late", protocol)
    await late.subscribe("cfg/#", 1)
    (m,) = await late.receive(1)
    assert (m.topic, m.payload, m.retain) == ("cfg/line1/setpoint", b"42", True)
    await pub.publish("cfg/line1/setpoint", b"", 1, retain=True)
    later = await paho_clients(mqtt_server.port, "later", protocol)
    await later.subscribe("cfg/#", 1)
    assert await later.nothing_more()


@PROTOCOLS
async def test_will_published_on_abnormal_drop_only(mqtt_server, paho_clients, protocol):
    watcher = await paho_clients(mqtt_server.port, "watcher", protocol)
    await watcher.subscribe("status/#", 1)
    polite = await paho_clients(mqtt_server.port, "polite", protocol, will=("status/polite", b"lost", 1, False))
    await polite.disconnect()
    dev = await paho_clients(mqtt_server.port, "dev", protocol, will=("status/dev", b"lost", 1, False))
    await dev.kill()
    (m,) = await watcher.receive(1)
    assert (m.topic, m.payload) == ("status/dev", b"lost")
    assert await watcher.nothing_more()


@PROTOCOLS
async def test_persistent_session_gets_queued_messages_after_reconnect(mqtt_server, paho_clients, protocol):
    kw = {"clean": False, "session_expiry": 300} if protocol == mqtt.MQTTv5 else {"clean": False}
    sub = await paho_clients(mqtt_server.port, "historian", protocol, **kw)
    await sub.subscribe("data/#", 1)
    await sub.disconnect()
    pub = await paho_clients(mqtt_server.port, "pub", protocol)
    for i in range(5):
        await pub.publish(f"data/{i}", str(i).encode(), 1)
    back = await paho_clients(mqtt_server.port, "historian", protocol, **kw)
    assert back.connack[0].session_present
    got = await back.receive(5)
    assert [m.payload for m in got] == [b"0", b"1", b"2", b"3", b"4"]


async def test_shared_subscription_spreads_messages(mqtt_server, paho_clients):
    workers = [await paho_clients(mqtt_server.port, f"w{i}", mqtt.MQTTv5) for i in range(2)]
    for w in workers:
        await w.subscribe("$share/loggers/jobs/#", 1)
    pub = await paho_clients(mqtt_server.port, "pub", mqtt.MQTTv5)
    for i in range(10):
        await pub.publish(f"jobs/{i}", str(i).encode(), 1)
    counts = [len(await w.receive(5)) for w in workers]
    assert counts == [5, 5]
    assert all([await w.nothing_more() for w in workers])


async def test_graceful_shutdown_tells_v5_clients(mqtt_server, paho_clients):
    c = await paho_clients(mqtt_server.port, "c", mqtt.MQTTv5)
    reasons = []
    done = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def on_disconnect(client, userdata, flags, reason_code, properties):
        reasons.append(int(reason_code.value))
        token.run_sync_soon(done.set)

    c.client.on_disconnect = on_disconnect
    mqtt_server.stop.set()
    with trio.fail_after(3):
        await done.wait()
    assert reasons == [0x8B]
