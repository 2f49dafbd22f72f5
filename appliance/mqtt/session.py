"""Per-connection MQTT state machine and the session state that outlives a connection.

Pure: packets in, encoded bytes out, time passed in as `now` (monotonic seconds). The trio
adapter feeds `Connection.receive()` with decoded packets and writes what `take_output()` gives
back; the broker (broker.py) routes messages between sessions.

- `SessionState` lives in the broker's session store: subscriptions, the queue of messages not
  yet sent, QoS 1/2 messages in flight (sent, not yet acknowledged) and inbound QoS 2 packet ids
  awaiting PUBREL. A persistent session keeps it while its client is away (bounded queue).
- `Connection` is one network connection: CONNECT negotiation, keep-alive, will, topic aliases
  both ways, receive maximum both ways, QoS flows. Violations raise MqttError subclasses carrying
  the reason code; the adapter then calls `fail()`, which answers as the spec asks and closes.

Output items are `bytes` (write as is) or `DeferredAck` (await `waiter`, then write `ok`; on
StorageError write `failed_ack(item)` or, when that is None, close): acknowledgements of inbound QoS 1/2 wait
until the ingest sink says the message is durable. The outbox is FIFO so acks keep their order.

Access control: the adapter may set `Connection.access` (an `AccessHook`, built from the client
certificate by appliance/security/access.py). Every PUBLISH (and the will at CONNECT) and every
SUBSCRIBE filter is checked there. A refused PUBLISH is dropped: MQTT 5 QoS 1/2 get PUBACK/PUBREC
with the hook's reason code (0x87 not authorized, 0x97 quota exceeded); MQTT 3.1.1 has no way to
say no, so QoS 1/2 are acknowledged and dropped, as Mosquitto does [MQTT-3.3.5-2]; QoS 0 vanish.
A refused filter gets 0x87 in the SUBACK (0x80 in 3.1.1); an allowed one is granted at most the
hook's QoS. A will the client may not publish refuses the CONNECT (0x87 / return code 5).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from appliance.errors import StorageError
from appliance.mqtt.codec import (
    MQTT_5,
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    MqttError,
    Packet,
    PingReq,
    PingResp,
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
    TopicAliasInvalid,
    UnsubAck,
    Unsubscribe,
    UnsupportedProtocolVersion,
    Will,
    encode,
)
from appliance.mqtt.codec.errors import TopicFilterInvalid, TopicNameInvalid
from appliance.mqtt.codec.packets import encode_publish
from appliance.mqtt.codec.properties import PropertyId as P
from appliance.mqtt.topics import parse_shared, validate_topic_filter, validate_topic_name

if TYPE_CHECKING:
    from appliance.mqtt.broker import Broker

NEVER_EXPIRES = 0xFFFFFFFF
_ACK_HEAD = {1: b"\x40\x02", 2: b"\x50\x02"}  # PUBACK / PUBREC fixed header with remaining length 2


class AccessHook(Protocol):
    def check_publish(self, topic: str, qos: int, size: int, now: float) -> int:
        """0 when allowed, else the reason code (NOT_AUTHORIZED, QUOTA_EXCEEDED, QOS_NOT_SUPPORTED)."""

    def check_subscribe(self, topic_filter: str, qos: int, now: float) -> int:
        """The highest QoS granted (0-2), or a reason code >= 0x80 when refused."""


@dataclass(frozen=True)
class Limits:
    """What the server accepts and offers; built from MqttSettings by `Limits.from_settings`."""

    max_packet_size: int = 1 << 20  # largest packet a client may send us
    max_inflight: int = 256  # our receive maximum, and the cap on the outbound window
    max_queued_messages: int = 1000  # per session, messages waiting to be sent
    keep_alive_max: int = 3600  # seconds; 5.0 clients asking for more (or 0) get this as server keep alive
    connect_timeout: float = 10.0  # seconds to wait for CONNECT on a new connection
    session_expiry_max: int = 7 * 86400  # seconds; also the lifetime of a 3.1.1 persistent session
    retain_available: bool = True
    max_qos: int = 2
    topic_alias_max: int = 64  # aliases a client may define towards us
    topic_alias_out_max: int = 64  # aliases we define towards a client (capped by its own maximum)
    max_connections: int = 4096  # open connections per listener (enforced by the transport)

    @classmethod
    def from_settings(cls, s: Any) -> Limits:
        return cls(max_packet_size=s.max_packet_size, max_inflight=s.max_inflight,
                   max_queued_messages=s.max_queued_messages, keep_alive_max=s.keep_alive_max,
                   connect_timeout=s.connect_timeout, session_expiry_max=s.session_expiry_max,
                   retain_available=s.retain_available, max_qos=s.max_qos, topic_alias_max=s.topic_alias_max,
                   topic_alias_out_max=s.topic_alias_max, max_connections=s.max_connections)


@dataclass(slots=True)
class Message:
    """An application message as the broker routes it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: dict[int, Any] = field(default_factory=dict)  # without topic alias / subscription ids
    expires_at: float | None = None  # monotonic seconds, from the message expiry interval
    origin: str | None = None  # publishing client id, for no-local

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(slots=True)
class Subscription:
    topic_filter: str  # as subscribed, "$share/g/..." included
    options: SubscriptionOptions
    identifier: int | None = None


@dataclass(slots=True)
class Outgoing:
    message: Message
    qos: int
    retain: bool
    sub_ids: tuple[int, ...] = ()
    packet_id: int = 0
    released: bool = False  # QoS 2: PUBREC received and PUBREL sent; waiting for PUBCOMP


@dataclass(slots=True)
class DeferredAck:
    waiter: Awaitable[None]
    ok: bytes
    packet_id: int
    qos: int  # 1 = PUBACK, 2 = PUBREC, 0 = a repeated PUBREC that holds no receive-maximum slot


class SessionState:
    """Everything about a client that survives its connection (for a persistent session)."""

    def __init__(self, client_id: str, expiry_interval: int = 0) -> None:
        self.client_id = client_id
        self.expiry_interval = expiry_interval
        self.subscriptions: dict[str, Subscription] = {}
        self.queue: deque[Outgoing] = deque()
        self.queued_qos0 = 0
        self.inflight: dict[int, Outgoing] = {}
        self.inbound_qos2: set[int] = set()
        self.connection: Connection | None = None
        self.disconnected_at: float | None = None
        self.next_packet_id = 1
        self.dropped_qos0 = 0
        self.dropped_overflow = 0

    @property
    def connected(self) -> bool:
        return self.connection is not None

    def expires_at(self) -> float | None:
        if self.connection is not None or self.disconnected_at is None or self.expiry_interval == NEVER_EXPIRES:
            return None
        return self.disconnected_at + self.expiry_interval

    def allocate_packet_id(self) -> int:
        pid = self.next_packet_id
        for _ in range(65535):
            if pid not in self.inflight:
                break
            pid = pid % 65535 + 1
        else:  # pragma: no cover - the window is far below 65535
            raise ProtocolViolation("no free packet identifier")
        self.next_packet_id = pid % 65535 + 1
        return pid

    def enqueue(self, out: Outgoing, max_queued: int) -> tuple[int, int]:
        """Queue a message; beyond `max_queued` drop the oldest QoS 0 first, then the oldest.
        Returns (QoS 0 dropped, QoS 1/2 dropped)."""
        self.queue.append(out)
        if out.qos == 0:
            self.queued_qos0 += 1
        before = (self.dropped_qos0, self.dropped_overflow)
        while len(self.queue) > max_queued:
            if self.queued_qos0:
                for i, item in enumerate(self.queue):
                    if item.qos == 0:
                        del self.queue[i]
                        break
                self.queued_qos0 -= 1
                self.dropped_qos0 += 1
            else:
                self.queue.popleft()
                self.dropped_overflow += 1
        return self.dropped_qos0 - before[0], self.dropped_overflow - before[1]

    def pop_queued(self) -> Outgoing:
        out = self.queue.popleft()
        if out.qos == 0:
            self.queued_qos0 -= 1
        return out


_NEW, _CONNECTED, _CLOSED = "new", "connected", "closed"


class Connection:
    """One client connection's protocol state. See the module docstring for the contract."""

    def __init__(self, broker: Broker, peer: str, now: float, notify: Callable[[], None] | None = None) -> None:
        self.broker = broker
        self.limits = broker.limits
        self.peer = peer
        self.notify = notify or (lambda: None)
        self.state = _NEW
        self.version = MQTT_5
        self.client_id = ""
        self.username: str | None = None
        self.session: SessionState | None = None
        self.connected_at = now
        self.last_received = now
        self.keep_alive = 0  # effective, seconds; 0 = no timeout
        self.window = 65535  # outbound QoS 1/2 in flight allowed by the client's receive maximum
        self.client_max_packet = 268_435_460
        self.alias_out_max = 0
        self._aliases_in: dict[int, str] = {}
        self._aliases_out: dict[str, int] = {}
        self.will: Will | None = None
        self.will_delay = 0
        self.request_problem_info = True
        self.inbound_pending = 0  # QoS 1/2 received whose acknowledgement is not yet written
        self.outbox: deque[bytes | DeferredAck] = deque()
        self.closing = False  # the adapter closes the socket once the outbox is written
        self.close_reason = ""
        self._send_will = True  # cleared by a normal DISCONNECT
        self.access: AccessHook | None = None  # set by the adapter: who may publish/subscribe what

    # --- helpers -------------------------------------------------------------------------------

    @property
    def v5(self) -> bool:
        return self.version >= MQTT_5

    @property
    def connected(self) -> bool:
        return self.state == _CONNECTED

    def _send(self, packet: Packet) -> None:
        self.outbox.append(encode(packet, self.version))

    def take_output(self) -> list[bytes | DeferredAck]:
        out = list(self.outbox)
        self.outbox.clear()
        return out

    def keepalive_deadline(self) -> float | None:
        """Monotonic time after which the client is considered gone (1.5x keep alive)."""
        if self.state == _NEW:
            return self.connected_at + self.limits.connect_timeout
        if not self.keep_alive or self.state == _CLOSED:
            return None
        return self.last_received + 1.5 * self.keep_alive

    def keepalive_expired(self, now: float) -> bool:
        deadline = self.keepalive_deadline()
        return deadline is not None and now >= deadline

    # --- inbound -------------------------------------------------------------------------------

    def receive(self, packet: Packet, now: float) -> None:
        """Handle one packet from the client. Raises MqttError on a violation (then call fail())."""
        if self.state == _CLOSED:
            return
        self.last_received = now
        if self.state == _NEW:
            if not isinstance(packet, Connect):
                raise ProtocolViolation("the first packet must be CONNECT")
            self._on_connect(packet, now)
            return
        if isinstance(packet, Publish):
            self._on_publish(packet, now)
        elif isinstance(packet, PubAck):
            self._on_puback(packet, now)
        elif isinstance(packet, PubRec):
            self._on_pubrec(packet, now)
        elif isinstance(packet, PubRel):
            self._on_pubrel(packet)
        elif isinstance(packet, PubComp):
            self._on_pubcomp(packet, now)
        elif isinstance(packet, Subscribe):
            self._on_subscribe(packet, now)
        elif isinstance(packet, Unsubscribe):
            self._on_unsubscribe(packet)
        elif isinstance(packet, PingReq):
            self._send(PingResp())
        elif isinstance(packet, Disconnect):
            self._on_disconnect(packet, now)
        elif isinstance(packet, Connect):
            raise ProtocolViolation("second CONNECT on one connection")
        elif isinstance(packet, Auth):
            raise ProtocolViolation("AUTH without an authentication method in CONNECT")
        else:
            raise ProtocolViolation(f"a client may not send {type(packet).__name__.upper()}")

    def _on_connect(self, c: Connect, now: float) -> None:
        lim = self.limits
        self.version = c.protocol_version
        props = c.properties
        if self.v5 and P.AUTHENTICATION_METHOD in props:
            return self._refuse(ReasonCode.BAD_AUTHENTICATION_METHOD, "enhanced authentication not supported")
        client_id = c.client_id
        assigned = False
        if not client_id:
            if not self.v5 and not c.clean_start:
                return self._refuse(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, "empty client id needs clean session")
            client_id = self.broker.new_client_id()
            assigned = True
        if c.will is not None:
            try:
                validate_topic_name(c.will.topic)
            except TopicNameInvalid as e:
                return self._refuse(ReasonCode.TOPIC_NAME_INVALID, str(e))
            if c.will.qos > lim.max_qos:
                return self._refuse(ReasonCode.QOS_NOT_SUPPORTED, "will QoS above the maximum")
            if c.will.retain and not lim.retain_available:
                return self._refuse(ReasonCode.RETAIN_NOT_SUPPORTED, "retained will but retain unavailable")
            if self.access is not None and self.access.check_publish(c.will.topic, c.will.qos, len(c.will.payload),
                                                                     now):
                return self._refuse(ReasonCode.NOT_AUTHORIZED, f"will topic {c.will.topic!r} not allowed")
        ack_props: dict[int, Any] = {}
        # session expiry: 3.1.1 clean session = 0, persistent = as long as we allow
        if self.v5:
            expiry = props.get(P.SESSION_EXPIRY_INTERVAL, 0)
        else:
            expiry = 0 if c.clean_start else lim.session_expiry_max
        if expiry > lim.session_expiry_max:
            expiry = lim.session_expiry_max
            ack_props[P.SESSION_EXPIRY_INTERVAL] = expiry
        self.keep_alive = c.keep_alive
        if self.v5 and lim.keep_alive_max and (c.keep_alive == 0 or c.keep_alive > lim.keep_alive_max):
            self.keep_alive = lim.keep_alive_max
            ack_props[P.SERVER_KEEP_ALIVE] = self.keep_alive
        if self.v5:
            self.window = min(props.get(P.RECEIVE_MAXIMUM, 65535), lim.max_inflight)
            self.client_max_packet = props.get(P.MAXIMUM_PACKET_SIZE, self.client_max_packet)
            self.alias_out_max = min(props.get(P.TOPIC_ALIAS_MAXIMUM, 0), lim.topic_alias_out_max)
            self.request_problem_info = bool(props.get(P.REQUEST_PROBLEM_INFORMATION, 1))
            if assigned:
                ack_props[P.ASSIGNED_CLIENT_IDENTIFIER] = client_id
            if lim.max_inflight < 65535:
                ack_props[P.RECEIVE_MAXIMUM] = lim.max_inflight
            ack_props[P.MAXIMUM_PACKET_SIZE] = lim.max_packet_size
            ack_props[P.TOPIC_ALIAS_MAXIMUM] = lim.topic_alias_max
            if not lim.retain_available:
                ack_props[P.RETAIN_AVAILABLE] = 0
            if lim.max_qos < 2:
                ack_props[P.MAXIMUM_QOS] = lim.max_qos
        else:
            self.window = lim.max_inflight
        self.client_id = client_id
        self.username = c.username
        self.will = c.will
        self.will_delay = c.will.properties.get(P.WILL_DELAY_INTERVAL, 0) if (c.will and self.v5) else 0
        session, present = self.broker.attach(self, client_id, c.clean_start, expiry, now)
        self.session = session
        self.state = _CONNECTED
        self._send(ConnAck(present, ReasonCode.SUCCESS, ack_props))
        if present:
            self._resend_inflight(now)
        self._pump(now)

    def _refuse(self, code: ReasonCode, why: str) -> None:
        self._send(ConnAck(False, code))
        self._close(why)
        self._send_will = False

    def _on_publish(self, p: Publish, now: float) -> None:
        lim = self.limits
        session = self.session
        assert session is not None
        if p.qos > lim.max_qos:
            raise MqttError(f"QoS {p.qos} above the maximum {lim.max_qos}", ReasonCode.QOS_NOT_SUPPORTED)
        if p.retain and not lim.retain_available:
            raise MqttError("retain is not available", ReasonCode.RETAIN_NOT_SUPPORTED)
        topic = p.topic
        props = p.properties
        if props:
            alias = props.get(P.TOPIC_ALIAS)
            if alias is not None:
                if alias > lim.topic_alias_max:
                    raise TopicAliasInvalid(f"topic alias {alias} above the maximum {lim.topic_alias_max}")
                if topic:
                    self._aliases_in[alias] = topic
                else:
                    topic = self._aliases_in.get(alias, "")
                    if not topic:
                        raise ProtocolViolation(f"topic alias {alias} is not defined")
            if P.SUBSCRIPTION_IDENTIFIER in props:
                raise ProtocolViolation("a client may not send a subscription identifier in PUBLISH")
            props = {k: v for k, v in props.items() if k != P.TOPIC_ALIAS}
        validate_topic_name(topic)
        if p.qos and self.v5:
            if self.inbound_pending + len(session.inbound_qos2) >= lim.max_inflight:
                raise MqttError("client exceeded the receive maximum", ReasonCode.RECEIVE_MAXIMUM_EXCEEDED)
        if p.qos == 2 and p.packet_id in session.inbound_qos2:
            # retransmission of a message we already took: acknowledge again, do not route twice
            # (deferred, never failing, so it cannot overtake the first PUBREC still awaiting durability)
            self.outbox.append(DeferredAck(_DONE, _ACK_HEAD[2] + p.packet_id.to_bytes(2, "big"), p.packet_id, 0))
            return
        if self.access is not None:
            code = self.access.check_publish(topic, p.qos, len(p.payload), now)
            if code == ReasonCode.QOS_NOT_SUPPORTED:
                raise MqttError(f"QoS {p.qos} above what the conduit allows on {topic!r}", ReasonCode.QOS_NOT_SUPPORTED)
            if code:
                return self._refuse_publish(p, code)
        expiry = props.get(P.MESSAGE_EXPIRY_INTERVAL) if props else None
        msg = Message(topic, p.payload, p.qos, p.retain, props, None if expiry is None else now + expiry,
                      self.client_id)
        try:
            waiter = self.broker.publish(msg, now, self)
        except StorageError as e:
            waiter = _failed(e)
        if p.qos == 0:
            return
        if p.qos == 2:
            session.inbound_qos2.add(p.packet_id)
        self.inbound_pending += 1
        ok = _ACK_HEAD[p.qos] + p.packet_id.to_bytes(2, "big")  # PUBACK/PUBREC, success: same in 3.1.1 and 5.0
        self.outbox.append(DeferredAck(waiter if waiter is not None else _DONE, ok, p.packet_id, p.qos))

    def _refuse_publish(self, p: Publish, code: int) -> None:
        """Drop a PUBLISH the access hook refused and answer as the version allows (module docstring)."""
        if p.qos == 0:
            return
        if self.v5:
            data = encode((PubRec if p.qos == 2 else PubAck)(p.packet_id, code), self.version)
        else:
            data = _ACK_HEAD[p.qos] + p.packet_id.to_bytes(2, "big")
            if p.qos == 2:
                self.session.inbound_qos2.add(p.packet_id)  # type: ignore[union-attr]  # its PUBREL gets a PUBCOMP
        # deferred like the others (already complete) so it cannot overtake earlier acks
        self.outbox.append(DeferredAck(_DONE, data, p.packet_id, 0))

    def failed_ack(self, item: DeferredAck) -> bytes | None:
        """The acknowledgement to send when the sink could not make a message durable or refused
        it: the error's `mqtt_reason` (a waiter exposing `.error`), else 0x97, in 5.0; None in
        3.1.1, which cannot refuse a PUBLISH (the adapter closes the connection)."""
        if not self.v5:
            return None
        ack_cls = PubRec if item.qos == 2 else PubAck
        reason = getattr(getattr(item.waiter, "error", None), "mqtt_reason", ReasonCode.QUOTA_EXCEEDED)
        return encode(ack_cls(item.packet_id, reason), self.version)

    def ack_written(self, item: DeferredAck, durable: bool) -> None:
        """The adapter wrote a deferred acknowledgement (`durable` False: it wrote the failure)."""
        if item.qos:
            self.inbound_pending -= 1
        if not durable and item.qos == 2 and self.session is not None:
            self.session.inbound_qos2.discard(item.packet_id)

    def _on_pubrel(self, p: PubRel) -> None:
        session = self.session
        assert session is not None
        if p.packet_id in session.inbound_qos2:
            session.inbound_qos2.discard(p.packet_id)
            self._send(PubComp(p.packet_id))
        else:
            self._send(PubComp(p.packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND if self.v5 else 0))

    def _on_puback(self, p: PubAck, now: float) -> None:
        session = self.session
        assert session is not None
        out = session.inflight.get(p.packet_id)
        if out is not None and out.qos == 1:
            del session.inflight[p.packet_id]
            self._pump(now)

    def _on_pubrec(self, p: PubRec, now: float) -> None:
        session = self.session
        assert session is not None
        out = session.inflight.get(p.packet_id)
        if out is None or out.qos != 2:
            self._send(PubRel(p.packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND if self.v5 else 0))
            return
        if p.reason_code >= 0x80:  # the client refused it: the flow ends here
            del session.inflight[p.packet_id]
            self._pump(now)
            return
        out.released = True
        self._send(PubRel(p.packet_id))

    def _on_pubcomp(self, p: PubComp, now: float) -> None:
        session = self.session
        assert session is not None
        out = session.inflight.get(p.packet_id)
        if out is not None and out.released:
            del session.inflight[p.packet_id]
            self._pump(now)

    def _on_subscribe(self, s: Subscribe, now: float) -> None:
        session = self.session
        assert session is not None
        sub_id = s.properties.get(P.SUBSCRIPTION_IDENTIFIER)
        codes: list[int] = []
        retained: list[tuple[Subscription, list[Message]]] = []
        for topic_filter, opts in s.subscriptions:
            try:
                shared = parse_shared(topic_filter)
                if shared is None:
                    validate_topic_filter(topic_filter)
            except TopicFilterInvalid:
                codes.append(ReasonCode.TOPIC_FILTER_INVALID if self.v5 else 0x80)
                continue
            if shared is not None and opts.no_local:
                raise ProtocolViolation("no local on a shared subscription")
            granted = min(opts.qos, self.limits.max_qos)
            if self.access is not None:
                allowed = self.access.check_subscribe(shared[1] if shared else topic_filter, opts.qos, now)
                if allowed >= 0x80:
                    codes.append(allowed if self.v5 else 0x80)
                    continue
                granted = min(granted, allowed)
            if granted != opts.qos:
                opts = SubscriptionOptions(granted, opts.no_local, opts.retain_as_published, opts.retain_handling)
            sub = Subscription(topic_filter, opts, sub_id)
            is_new = self.broker.subscribe(session, sub)
            codes.append(granted)
            if shared is None and (opts.retain_handling == 0 or (opts.retain_handling == 1 and is_new)):
                retained.append((sub, self.broker.retained_for(topic_filter, now)))
        self._send(SubAck(s.packet_id, codes))
        for sub, messages in retained:
            for msg in messages:
                out = Outgoing(msg, min(msg.qos, sub.options.qos), True,
                               (sub.identifier,) if sub.identifier else ())
                self.deliver(out, now)

    def _on_unsubscribe(self, u: Unsubscribe) -> None:
        session = self.session
        assert session is not None
        codes = [ReasonCode.SUCCESS if self.broker.unsubscribe(session, f) else ReasonCode.NO_SUBSCRIPTION_EXISTED
                 for f in u.filters]
        self._send(UnsubAck(u.packet_id, codes if self.v5 else []))

    def _on_disconnect(self, d: Disconnect, now: float) -> None:
        session = self.session
        assert session is not None
        new_expiry = d.properties.get(P.SESSION_EXPIRY_INTERVAL)
        if new_expiry is not None:
            if session.expiry_interval == 0 and new_expiry != 0:
                raise ProtocolViolation("session expiry set on DISCONNECT after CONNECT said 0")
            session.expiry_interval = min(new_expiry, self.limits.session_expiry_max)
        self._send_will = d.reason_code == ReasonCode.DISCONNECT_WITH_WILL
        self._close(f"client disconnect 0x{d.reason_code:02x}")

    # --- outbound ------------------------------------------------------------------------------

    def deliver(self, out: Outgoing, now: float) -> None:
        """A message for this client (routed by the broker, or retained on subscribe)."""
        session = self.session
        if session is None or self.state != _CONNECTED:
            return
        stats = self.broker.stats
        if out.qos == 0:
            if len(self.outbox) >= self.limits.max_queued_messages:
                stats.dropped_qos0 += 1
                return
            self._write_publish(out, now)
            return
        if len(session.inflight) < self.window and not session.queue:
            self._start_flight(out, now)
            return
        dropped_qos0, dropped = session.enqueue(out, self.limits.max_queued_messages)
        if dropped_qos0 or dropped:
            stats.dropped_qos0 += dropped_qos0
            stats.dropped_overflow += dropped
            stats.slow_consumer_disconnects += 1
            self.server_disconnect(ReasonCode.QUOTA_EXCEEDED, "slow consumer: QoS 1/2 backlog over its bound")

    def _start_flight(self, out: Outgoing, now: float) -> None:
        session = self.session
        assert session is not None
        out.packet_id = session.allocate_packet_id()
        session.inflight[out.packet_id] = out
        if not self._write_publish(out, now):
            del session.inflight[out.packet_id]

    def _write_publish(self, out: Outgoing, now: float, dup: bool = False) -> bool:
        """Encode and queue one PUBLISH; False if it was dropped (expired or too large)."""
        msg = out.message
        stats = self.broker.stats
        if msg.expires_at is not None:
            remaining = msg.expires_at - now
            if remaining <= 0:
                stats.dropped_expired += 1
                return False
        props = msg.properties
        topic = msg.topic
        if self.v5 and (msg.expires_at is not None or out.sub_ids or self.alias_out_max):
            props = dict(props)
            if msg.expires_at is not None:
                props[P.MESSAGE_EXPIRY_INTERVAL] = max(1, math.ceil(msg.expires_at - now))
            if out.sub_ids:
                props[P.SUBSCRIPTION_IDENTIFIER] = list(out.sub_ids)
            if self.alias_out_max:
                alias = self._aliases_out.get(topic)
                if alias is not None:
                    props[P.TOPIC_ALIAS] = alias
                    topic = ""
                elif len(self._aliases_out) < self.alias_out_max:
                    alias = self._aliases_out[topic] = len(self._aliases_out) + 1
                    props[P.TOPIC_ALIAS] = alias
        data = encode_publish(Publish(topic, msg.payload, out.qos, out.retain, dup, out.packet_id, props),
                              self.version)
        if len(data) > self.client_max_packet:
            stats.dropped_too_large += 1  # spec 3.1.2-25: discard as if it had been delivered
            return False
        self.outbox.append(data)
        stats.messages_out += 1
        return True

    def _pump(self, now: float) -> None:
        """Move queued messages into flight while the client's window has room."""
        session = self.session
        if session is None or self.state != _CONNECTED:
            return
        while session.queue and len(session.inflight) < self.window:
            out = session.pop_queued()
            if out.qos == 0:
                self._write_publish(out, now)
            else:
                self._start_flight(out, now)

    def _resend_inflight(self, now: float) -> None:
        session = self.session
        assert session is not None
        for pid, out in list(session.inflight.items()):
            if out.released:
                self._send(PubRel(pid))
            elif not self._write_publish(out, now, dup=True):
                del session.inflight[pid]

    # --- closing -------------------------------------------------------------------------------

    def _close(self, why: str) -> None:
        if not self.closing:
            self.closing = True
            self.close_reason = why
            self.notify()

    def server_disconnect(self, code: ReasonCode, why: str) -> None:
        """The server ends this connection (takeover, slow consumer, shutdown...)."""
        if self.closing or self.state == _CLOSED:
            return
        if self.v5 and self.state == _CONNECTED:
            self._send(Disconnect(code))
        self._close(why)

    def fail(self, err: MqttError) -> None:
        """Answer a protocol violation as the spec asks (CONNACK before CONNECT completes,
        DISCONNECT with the reason in 5.0, nothing in 3.1.1) and close."""
        if self.closing:
            return
        if isinstance(err, UnsupportedProtocolVersion):
            self.version = 4 if err.level < 5 else 5
            self._send(ConnAck(False, ReasonCode.UNSUPPORTED_PROTOCOL_VERSION))
        elif self.state == _CONNECTED and self.v5:
            props = {P.REASON_STRING: str(err)[:200]} if self.request_problem_info else {}
            self._send(Disconnect(err.reason_code, props))
        self._close(f"{type(err).__name__}: {err}")

    def connection_lost(self, now: float) -> None:
        """The socket is gone (after any close). Publishes or schedules the will, detaches the session."""
        if self.state == _CLOSED:
            return
        was_connected = self.state == _CONNECTED
        self.state = _CLOSED
        if was_connected:
            will = self.will if self._send_will else None
            self.broker.detach(self, now, will, self.will_delay)


class _Done:
    """An awaitable that is already complete (no coroutine to leak when it is never awaited)."""

    __slots__ = ()

    def __await__(self):  # type: ignore[no-untyped-def]
        return iter(())


_DONE = _Done()


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __await__(self):  # type: ignore[no-untyped-def]
        raise self.error
        yield  # pragma: no cover


def _failed(error: BaseException) -> Awaitable[None]:
    return _Failed(error)
