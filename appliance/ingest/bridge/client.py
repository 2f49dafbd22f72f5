"""The bridge's MQTT 5 client protocol state machine. Sans-IO: bytes in, events and bytes out.

    client = BridgeClient(options)
    send(client.start(now))                  # CONNECT: clean start off, session expiry set
    for event in client.receive(data, now):  # Connected, Subscribed, Inbound, Closed
        ...
    send(client.acknowledge(inbound))        # PUBACK / PUBREC once the message is durable here
    send(client.tick(now))                   # PINGREQ when due; raises BridgeError when the server is silent
    pid, data = client.publish(topic, payload, qos=1, retain=True, now=now)  # our own messages (host STATE)

The session is persistent (clean start 0 + session expiry), so after a reconnect the upstream
broker resends every QoS 1/2 message we had not acknowledged, and keeps queueing while we are
away. We subscribe again on every connect (harmless when the session is present, and it picks
up changed filters), with retain handling 1 so retained messages come only for new subscriptions.
QoS 2 inbound: PUBREC after durability, PUBCOMP on PUBREL. The ids acknowledged with PUBREC and
not yet released live in a set the runner may share across connections (and persist): a
PUBLISH resent with DUP=1 whose id is in it becomes a `Repeated` event (the runner answers PUBREC
again once that set is durable), never a second delivery. A PUBLISH with DUP=0 is always a new
message: its id may be in the set only because a PUBREL was seen but its removal not yet saved.
An optional will (the Sparkplug host's death certificate) goes in the CONNECT; `publish` sends
our own QoS 0/1 messages and a `PublishAcked` event reports each PUBACK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from appliance.errors import ProtocolError
from appliance.mqtt.codec import (
    MQTT_5,
    ConnAck,
    Connect,
    Disconnect,
    PacketReader,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    SubscriptionOptions,
    Will,
    encode,
)
from appliance.mqtt.codec.properties import PropertyId as P

RECEIVE_MAXIMUM = 256  # QoS 1/2 messages the upstream may have in flight towards us


class BridgeError(ProtocolError):
    """The upstream refused us or broke the protocol; the runner reconnects after a back-off."""


@dataclass(frozen=True)
class BridgeOptions:
    client_id: str
    filters: tuple[str, ...]
    qos: int = 1
    session_expiry: int = 86400
    keep_alive: int = 30
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class Connected:
    session_present: bool


@dataclass(frozen=True)
class Subscribed:
    granted: tuple[int, ...]  # reason codes per filter (0-2 granted QoS, >= 0x80 refused)


@dataclass(frozen=True)
class Inbound:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    packet_id: int
    properties: dict[int, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Closed:
    reason_code: int


@dataclass(frozen=True)
class Repeated:
    """A QoS 2 PUBLISH resent (DUP) whose id we already acknowledged: answer PUBREC again."""

    packet_id: int


@dataclass(frozen=True)
class Released:
    """PUBREL received (PUBCOMP already sent): the id left the awaiting set."""

    packet_id: int


@dataclass(frozen=True)
class PublishAcked:
    packet_id: int
    reason_code: int


class BridgeClient:
    def __init__(self, options: BridgeOptions, *, awaiting_rel: set[int] | None = None) -> None:
        """`awaiting_rel`: QoS 2 ids acknowledged with PUBREC and waiting for PUBREL, shared by the
        runner across connections (it survives reconnects; the runner persists it)."""
        self.options = options
        self.reader = PacketReader(version=MQTT_5)
        self.connected = False
        self.keep_alive = options.keep_alive
        self._awaiting_rel: set[int] = awaiting_rel if awaiting_rel is not None else set()
        self._next_pid = 1
        self._last_sent = 0.0
        self._last_heard = 0.0
        self._ping_outstanding = False

    def start(self, now: float, will: Will | None = None) -> bytes:
        o = self.options
        props = {P.SESSION_EXPIRY_INTERVAL: o.session_expiry, P.RECEIVE_MAXIMUM: RECEIVE_MAXIMUM,
                 P.TOPIC_ALIAS_MAXIMUM: 0}
        self._last_sent = self._last_heard = now
        return encode(Connect(o.client_id, MQTT_5, clean_start=False, keep_alive=o.keep_alive, username=o.username,
                              password=o.password.encode() if o.password is not None else None,
                              will=will, properties=props), MQTT_5)

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool, now: float) -> tuple[int, bytes]:
        """One PUBLISH of our own (QoS 0 or 1); returns (packet id, bytes). PUBACK -> PublishAcked."""
        if qos not in (0, 1):
            raise ValueError("the bridge publishes at QoS 0 or 1")
        pid = 0
        if qos:
            pid = self._next_pid
            self._next_pid = pid % 65535 + 1
        self._last_sent = now
        return pid, encode(Publish(topic, payload, qos, retain, packet_id=pid), MQTT_5)

    def receive(self, data: bytes, now: float) -> tuple[list[object], bytes]:
        """Events for the runner and bytes to send at once (SUBSCRIBE, PUBCOMP, repeated PUBREC)."""
        self._last_heard = now
        self._ping_outstanding = False
        self.reader.feed(data)
        events: list[object] = []
        out = bytearray()
        for packet in self.reader:
            if isinstance(packet, ConnAck):
                if packet.reason_code != 0:
                    raise BridgeError(f"upstream refused the connection: reason 0x{packet.reason_code:02x}")
                self.connected = True
                ka = packet.properties.get(P.SERVER_KEEP_ALIVE)
                if ka is not None:
                    self.keep_alive = ka
                events.append(Connected(packet.session_present))
                opts = SubscriptionOptions(qos=self.options.qos, retain_as_published=True, retain_handling=1)
                out += encode(Subscribe(1, [(f, opts) for f in self.options.filters]), MQTT_5)
            elif not self.connected:
                raise BridgeError(f"{type(packet).__name__} before CONNACK")
            elif isinstance(packet, Publish):
                if packet.qos == 2 and packet.packet_id in self._awaiting_rel:
                    if packet.dup:
                        events.append(Repeated(packet.packet_id))
                        continue
                    self._awaiting_rel.discard(packet.packet_id)  # DUP=0: a new message reusing a released id
                props = {k: v for k, v in packet.properties.items()
                         if k not in (P.TOPIC_ALIAS, P.SUBSCRIPTION_IDENTIFIER)}
                events.append(Inbound(packet.topic, packet.payload, packet.qos, packet.retain, packet.packet_id, props))
            elif isinstance(packet, PubRel):
                self._awaiting_rel.discard(packet.packet_id)
                out += encode(PubComp(packet.packet_id), MQTT_5)
                events.append(Released(packet.packet_id))
            elif isinstance(packet, PubAck):
                events.append(PublishAcked(packet.packet_id, packet.reason_code))
            elif isinstance(packet, SubAck):
                events.append(Subscribed(tuple(packet.reason_codes)))
            elif isinstance(packet, Disconnect):
                events.append(Closed(packet.reason_code))
            elif isinstance(packet, PingResp):
                pass
            else:
                raise BridgeError(f"unexpected {type(packet).__name__} from upstream")
        if out:
            self._last_sent = now
        return events, bytes(out)

    def acknowledge(self, msg: Inbound, now: float) -> bytes:
        """PUBACK (QoS 1) or PUBREC (QoS 2), to send once the message is durable locally."""
        self._last_sent = now
        if msg.qos == 1:
            return encode(PubAck(msg.packet_id), MQTT_5)
        if msg.qos == 2:
            self._awaiting_rel.add(msg.packet_id)
            return encode(PubRec(msg.packet_id), MQTT_5)
        return b""

    def acknowledge_repeat(self, packet_id: int, now: float) -> bytes:
        """PUBREC again for a `Repeated` QoS 2 message (once the awaiting set is durable)."""
        self._last_sent = now
        return encode(PubRec(packet_id), MQTT_5)

    def tick(self, now: float) -> bytes:
        if not self.keep_alive:
            return b""
        if now - self._last_heard > self.keep_alive * 1.5:
            raise BridgeError(f"upstream silent for {now - self._last_heard:.1f}s (keep-alive {self.keep_alive}s)")
        if not self._ping_outstanding and now - self._last_sent >= self.keep_alive / 2:
            self._ping_outstanding = True
            self._last_sent = now
            return encode(PingReq(), MQTT_5)
        return b""

    def disconnect(self) -> bytes:
        """A normal DISCONNECT: the upstream keeps the session (and queues for us) until it expires."""
        return encode(Disconnect(0), MQTT_5)
