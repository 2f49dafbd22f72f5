"""Fixtures for end-to-end MQTT tests: the real listener on loopback, real clients."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from functools import partial

import pytest
import trio

from appliance.config import HostPort
from appliance.mqtt.broker import Broker
from appliance.mqtt.codec import MQTT_5, Connect, PacketReader, encode
from appliance.mqtt.session import Limits
from appliance.mqtt.sink import RecordingSink
from appliance.transport.mqtt_server import serve_mqtt


@dataclass
class Server:
    broker: Broker
    sink: RecordingSink
    port: int
    stop: trio.Event


@pytest.fixture
async def mqtt_server(nursery):
    sink = RecordingSink()
    broker = Broker(Limits(max_packet_size=64 * 1024, max_queued_messages=100, keep_alive_max=60), sink)
    stop = trio.Event()
    bound = await nursery.start(partial(serve_mqtt, broker, HostPort("127.0.0.1", 0), stop=stop, grace=2.0))
    return Server(broker, sink, bound.port, stop)


class RawClient:
    """A client speaking bytes over a real socket, for cases real clients refuse to produce."""

    def __init__(self, stream: trio.SocketStream, version: int) -> None:
        self.stream = stream
        self.reader = PacketReader(version=version)
        self.version = version

    @classmethod
    async def connect(cls, port: int, client_id: str, version: int = MQTT_5, **kw) -> tuple[RawClient, object]:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        self = cls(stream, version)
        await self.send(Connect(client_id, version, **kw))
        return self, await self.recv()

    async def send(self, packet) -> None:
        await self.stream.send_all(encode(packet, self.version))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def recv(self, timeout: float = 3.0):
        """The next packet, or None once the server has closed the connection."""
        with trio.fail_after(timeout):
            while True:
                packet = self.reader.next_packet()
                if packet is not None:
                    return packet
                data = await self.stream.receive_some(65536)
                if not data:
                    return None
                self.reader.feed(data)

    async def aclose(self) -> None:
        await self.stream.aclose()


class Paho:
    """paho-mqtt 2.x running its own network thread; awaited through worker threads."""

    def __init__(self, port: int, client_id: str, protocol: int, *, clean: bool = True,
                 session_expiry: int | None = None, will: tuple[str, bytes, int, bool] | None = None) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.mqtt = mqtt
        self.port = port
        self.v5 = protocol == mqtt.MQTTv5
        kwargs = {} if self.v5 else {"clean_session": clean}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **kwargs)
        self.clean = clean
        self.session_expiry = session_expiry
        if will:
            self.client.will_set(*will)
        self.messages: queue.Queue = queue.Queue()
        self.connected = threading.Event()
        self.connack: tuple = ()
        self.subacks: queue.Queue = queue.Queue()
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subacks.put((mid, codes))

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = (flags, reason_code, properties)
        self.connected.set()

    def _connect(self) -> None:
        if self.v5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            if self.session_expiry is not None:
                props.SessionExpiryInterval = self.session_expiry
            self.client.connect("127.0.0.1", self.port, 30, clean_start=self.clean, properties=props)
        else:
            self.client.connect("127.0.0.1", self.port, 30)
        self.client.loop_start()
        if not self.connected.wait(5):
            raise TimeoutError("no CONNACK")

    async def connect(self) -> Paho:
        await trio.to_thread.run_sync(self._connect)
        return self

    async def subscribe(self, topic_filter: str, qos: int = 0, **opts) -> list:
        def run():
            if self.v5:
                from paho.mqtt.subscribeoptions import SubscribeOptions

                _, mid = self.client.subscribe(topic_filter, options=SubscribeOptions(qos=qos, **opts))
            else:
                _, mid = self.client.subscribe(topic_filter, qos)
            got_mid, codes = self.subacks.get(timeout=5)
            assert got_mid == mid
            return codes

        return await trio.to_thread.run_sync(run)

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        def run():
            info = self.client.publish(topic, payload, qos, retain)
            info.wait_for_publish(5)
            assert info.is_published()

        await trio.to_thread.run_sync(run)

    async def receive(self, count: int, timeout: float = 5.0) -> list:
        def run():
            return [self.messages.get(timeout=timeout) for _ in range(count)]

        return await trio.to_thread.run_sync(run)

    async def nothing_more(self, wait: float = 0.3) -> bool:
        await trio.sleep(wait)
        return self.messages.empty()

    async def disconnect(self) -> None:
        def run():
            self.client.disconnect()
            self.client.loop_stop()

        await trio.to_thread.run_sync(run)

    async def kill(self) -> None:
        """Drop the TCP connection without DISCONNECT (an abnormal disconnect)."""
        def run():
            self.client.loop_stop()
            sock = self.client.socket()
            if sock is not None:
                sock.close()

        await trio.to_thread.run_sync(run)


@pytest.fixture
async def paho_clients():
    made: list[Paho] = []

    async def make(port, client_id, protocol, **kw) -> Paho:
        c = Paho(port, client_id, protocol, **kw)
        made.append(c)
        return await c.connect()

    yield make

    def close(c: Paho) -> None:
        try:
            c.client.disconnect()
        finally:
            c.client.loop_stop()

    async with trio.open_nursery() as n:  # in parallel: each loop thread may take up to 1 s to notice
        for c in made:
            n.start_soon(partial(trio.to_thread.run_sync, close, c))
