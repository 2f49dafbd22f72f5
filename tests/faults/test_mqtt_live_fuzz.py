"""The live MQTT listener hit with hostile packets keeps serving a well-behaved paho client.

Hostile connections send a CONNECT (valid, or mutated) and then mutated PUBLISH / SUBSCRIBE /
UNSUBSCRIBE / ack packets, oversize remaining lengths and garbage, reconnecting whenever the
broker hangs up. Meanwhile a paho-mqtt 5.0 client publishes QoS 1 messages to a topic it is
subscribed to: every message the broker acknowledged (PUBACK) comes back at least once, byte for
byte (duplicates counted), the process stays up and its log shows no unhandled exception.
"""

from __future__ import annotations

import random
import threading
import time

import paho.mqtt.client as mqtt
import trio

from tests.faults.mutate import mutate
from tests.faults.scale import knob, report, seed
from tests.faults.test_mqtt_codec_properties import AFTER_CONNECT, CONNECTS

READ_BACK_S = 0.1  # how long a hostile connection reads answers before hanging up itself


def hostile_bytes(rng: random.Random) -> bytes:
    version = rng.choice(list(CONNECTS))
    connect = CONNECTS[version] if rng.random() < 0.8 else mutate(CONNECTS[version], rng)
    out = [connect]
    for _ in range(rng.randint(1, 30)):
        roll = rng.random()
        v, packet = rng.choice([p for p in AFTER_CONNECT if p[0] == version])
        if roll < 0.7:
            out.append(mutate(packet, rng))
        elif roll < 0.85:
            out.append(packet)
        elif roll < 0.92:
            out.append(bytes([rng.randrange(256)]) + b"\xff\xff\xff\x7f" + rng.randbytes(64))  # 256 MiB claimed
        else:
            out.append(rng.randbytes(rng.randint(1, 100)))
    return b"".join(out)


async def hostile_loop(port: int, rng: random.Random, quota: list[int], counts: dict[str, int]) -> None:
    while quota[0] > 0:
        quota[0] -= 1
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            counts["connect_failures"] += 1
            await trio.sleep(0.05)
            continue
        counts["connections"] += 1
        async with stream:
            try:
                with trio.move_on_after(2.0):
                    await stream.send_all(hostile_bytes(rng))
                with trio.move_on_after(READ_BACK_S):
                    while await stream.receive_some(1 << 16):
                        pass
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass


class HealthyMqtt:
    """paho 5.0, QoS 1, publishing to a topic it subscribes to, from paho's own thread."""

    def __init__(self, port: int) -> None:
        self.acked: set[int] = set()
        self.received: list[int] = []
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="healthy", protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: (c.subscribe("healthy/#", qos=1), self.connected.set())
        self.client.on_message = lambda c, u, msg: self.received.append(int(msg.payload.split(b"|")[0]))
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(10)
        time.sleep(0.2)  # let the SUBACK arrive
        self.sent = 0
        self._infos: list = []
        self._oldest = 0

    def publish(self, n: int) -> None:
        """Publish n more, unless 1000 are still unacknowledged (keep the client's queue bounded:
        paho refuses a message whose packet id, after wrapping at 65535, is still in flight)."""
        while self._oldest < len(self._infos) and self._infos[self._oldest][1].is_published():
            self._oldest += 1
        if len(self._infos) - self._oldest > 1000:
            return
        for _ in range(n):
            seq = self.sent
            self.sent += 1
            self._infos.append((seq, self.client.publish("healthy/line3", f"{seq}|".encode() + b"x" * (seq % 300), qos=1)))

    def settle(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        for seq, info in self._infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if info.is_published():
                self.acked.add(seq)
        while time.monotonic() < deadline and not self.acked <= set(self.received):
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_live_mqtt_listener_survives_hostile_packets(make_appliance):
    total = knob("FAULTS_FUZZ_FRAMES") // 20  # connections; each carries up to 30 packets
    app = make_appliance().start()
    assert app.mqtt_port, "MQTT listener not running"
    healthy = await trio.to_thread.run_sync(HealthyMqtt, app.mqtt_port)
    quota = [total]
    counts = {"connections": 0, "connect_failures": 0}
    started = time.monotonic()

    async def publish_meanwhile() -> None:
        while quota[0] > 0:
            await trio.to_thread.run_sync(healthy.publish, 20)
            await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(publish_meanwhile)
        for i in range(10):
            nursery.start_soon(hostile_loop, app.mqtt_port, random.Random(seed() + i), quota, counts)
    elapsed = time.monotonic() - started
    assert app.proc.poll() is None, f"the appliance died under hostile MQTT input:\n{app.log_text()[-6000:]}"
    await trio.to_thread.run_sync(healthy.settle)
    await trio.to_thread.run_sync(healthy.close)
    missing = healthy.acked - set(healthy.received)
    duplicates = len(healthy.received) - len(set(healthy.received))
    log_text = app.log_text()
    report("live hostile MQTT packets vs. a paho QoS 1 client", iterations=counts["connections"],
           acknowledged=len(healthy.acked), lost=len(missing), duplicates=duplicates,
           connections_per_s=round(counts["connections"] / elapsed))
    assert healthy.acked and len(healthy.acked) == healthy.sent, f"{healthy.sent - len(healthy.acked)} never acknowledged"
    assert not missing, f"{len(missing)} acknowledged QoS 1 messages never delivered, e.g. {sorted(missing)[:5]}"
    assert "Traceback" not in log_text
    assert "mqtt_protocol_error" in log_text  # the hostile packets were seen and refused
