"""Drive the pure MQTT core without sockets: a fake client around one Connection."""

from __future__ import annotations

from appliance.mqtt.broker import Broker
from appliance.mqtt.codec import MQTT_5, Connect, PacketReader
from appliance.mqtt.session import Connection, DeferredAck


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class FakeClient:
    def __init__(self, broker: Broker, clock: Clock, version: int = MQTT_5, durable: bool = True) -> None:
        self.broker = broker
        self.clock = clock
        self.version = version
        self.conn = Connection(broker, "test", clock.now)
        self.reader = PacketReader(version=version)
        self.held: list[DeferredAck] = []
        self.durable = durable  # False: keep deferred acks pending until release_acks()
        self._early: list = []

    def connect(self, client_id: str = "c", **kw) -> object:
        self.send(Connect(client_id, self.version, **kw))
        got = self.received()
        self._early = got[1:]  # packets that followed the CONNACK (retransmissions, queued messages)
        return got[0]

    def send(self, packet) -> None:
        self.conn.receive(packet, self.clock.now)

    def received(self) -> list:
        out, self._early = self._early, []
        for item in self.conn.take_output():
            if isinstance(item, DeferredAck):
                if not self.durable:
                    self.held.append(item)
                    continue
                self.conn.ack_written(item, True)
                item = item.ok
            self.reader.feed(item)
            out.extend(self.reader)
        return out

    async def settled(self) -> list:
        """Like received(), but each deferred ack is sent only once its durability waiter returns
        (as the socket adapter does)."""
        out, self._early = self._early, []
        for item in self.conn.take_output():
            if isinstance(item, DeferredAck):
                await item.waiter
                self.conn.ack_written(item, True)
                item = item.ok
            self.reader.feed(item)
            out.extend(self.reader)
        return out

    def release_acks(self) -> list:
        out = []
        for item in self.held:
            self.conn.ack_written(item, True)
            self.reader.feed(item.ok)
            out.extend(self.reader)
        self.held.clear()
        return out

    def drop(self) -> None:
        """The network connection dies without DISCONNECT."""
        self.conn.connection_lost(self.clock.now)
