"""The MQTT listener and the frame budget, over real loopback sockets: large packets wait for
room without being read, one larger than the whole budget is refused, a stalled one times out."""

from __future__ import annotations

from functools import partial

import trio
import trio.testing

from appliance.config import HostPort
from appliance.mqtt.broker import Broker
from appliance.mqtt.codec import MQTT_5, Disconnect, PubAck, Publish, encode
from appliance.mqtt.session import Limits
from appliance.mqtt.sink import RecordingSink
from appliance.transport.frame_budget import FrameBudget
from appliance.transport.mqtt_server import serve_mqtt
from tests.mqtt.conftest import RawClient

KIB = 1 << 10


async def _server(nursery: trio.Nursery, budget: FrameBudget) -> int:
    broker = Broker(Limits(max_packet_size=1 << 20, keep_alive_max=60), RecordingSink())
    bound = await nursery.start(partial(serve_mqtt, broker, HostPort("127.0.0.1", 0), grace=1.0,
                                        frame_budget=budget, frame_timeout=1.0))
    return bound.port


def _publish(payload_kib: int, packet_id: int) -> bytes:
    return encode(Publish("big/x", bytes(payload_kib * KIB), 1, packet_id=packet_id), MQTT_5)


async def wait_until(predicate, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def test_large_packets_queue_for_the_budget_and_go_through_in_turn(nursery):
    budget = FrameBudget(100 * KIB)
    port = await _server(nursery, budget)
    first, _ = await RawClient.connect(port, "first")
    second, _ = await RawClient.connect(port, "second")
    a, b = _publish(80, 1), _publish(60, 2)
    await first.send_raw(a[:-10])
    await wait_until(lambda: budget.in_use == len(a))
    await second.send_raw(b[:-10])
    await wait_until(lambda: budget.waiting == 1)  # 80 + 60 KiB do not fit in 100 KiB
    await first.send_raw(a[-10:])
    assert await first.recv() == PubAck(1)
    await wait_until(lambda: budget.in_use == len(b))
    await second.send_raw(b[-10:])
    assert await second.recv() == PubAck(2)
    await wait_until(lambda: budget.in_use == 0)
    assert budget.peak <= budget.capacity and budget.waits == 1


async def test_a_packet_larger_than_the_budget_is_refused_and_a_stalled_one_times_out(nursery):
    budget = FrameBudget(100 * KIB)
    port = await _server(nursery, budget)
    client, _ = await RawClient.connect(port, "huge")
    await client.send_raw(_publish(200, 1)[:1000])
    reply = await client.recv()
    assert isinstance(reply, Disconnect) and reply.reason_code == 0x95
    assert budget.refused == 1

    client, _ = await RawClient.connect(port, "stalled")
    await client.send_raw(_publish(50, 1)[:-1])
    await wait_until(lambda: budget.in_use > 0)
    reply = await client.recv(timeout=10)
    assert isinstance(reply, Disconnect) and reply.reason_code == 0x97
    await wait_until(lambda: budget.in_use == 0)
