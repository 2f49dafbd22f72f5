"""The MQTT broker core: sessions, routing, retained messages, wills. Pure: no sockets, time passed in.

One `Broker` per process. Connections (session.py) call into it; the trio adapter
(appliance/transport/mqtt_server.py) drives `tick(now)` about once a second for delayed wills,
session expiry and retained-message expiry.

Every accepted PUBLISH (and every will) is first handed to the ingest sink (sink.py), then
stored as retained if flagged, then routed to local subscribers right away: local delivery does
not wait for durability, only the publisher's PUBACK/PUBREC does. If the sink refuses at once
(StorageError), the message is neither retained nor routed.

Persistence across restarts (retained messages, persistent sessions and their queues) goes
through the `MqttStateStore` protocol in state.py (MetaStoreMqttState over the storage
MetaStore port); without one, state lives in memory only.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from appliance.logs import get_logger
from appliance.mqtt.codec import ReasonCode, Will
from appliance.mqtt.codec.properties import PropertyId as P
from appliance.mqtt.session import Connection, Limits, Message, Outgoing, SessionState, Subscription
from appliance.mqtt.sink import DurableSink, InboundMessage, IngestSink
from appliance.mqtt.topics import SubscriptionTrie, topic_matches

if TYPE_CHECKING:
    from appliance.mqtt.state import MqttStateStore

log = get_logger("mqtt")


@dataclass
class MqttStats:
    """Counters for the admin API. Monotonic except `connections_current` and `sessions`."""

    connections_total: int = 0
    connections_current: int = 0
    connections_refused: int = 0  # beyond a listener's max_connections
    sessions: int = 0
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped_qos0: int = 0  # QoS 0 dropped: outbound buffer full, or first victims of a full session queue
    dropped_overflow: int = 0  # QoS 1/2 dropped from a full session queue (oldest first)
    dropped_expired: int = 0  # message expiry interval passed before delivery
    dropped_too_large: int = 0  # larger than the subscriber's maximum packet size
    protocol_errors: int = 0  # connections closed for malformed packets / violations
    keepalive_timeouts: int = 0
    slow_consumer_disconnects: int = 0
    sessions_taken_over: int = 0
    sessions_expired: int = 0
    wills_published: int = 0
    retained: int = 0

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


async def _with_state(waiter: Awaitable[None] | None, store: MqttStateStore, generation: int) -> None:
    if waiter is not None:
        await waiter
    await store.written_through(generation)  # created here, so dropping the waiter leaves nothing unawaited


def _discard(waiter: Any) -> None:
    close = getattr(waiter, "close", None)
    if close is not None:
        close()


class Broker:
    def __init__(self, limits: Limits | None = None, sink: IngestSink | None = None, *,
                 id_factory: Callable[[], str] | None = None, wall_ms: Callable[[], int] | None = None,
                 state_store: MqttStateStore | None = None) -> None:
        self.limits = limits or Limits()
        self.sink: IngestSink = sink if sink is not None else DurableSink()
        self._id_factory = id_factory or (lambda: "millstream-" + secrets.token_hex(8))
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._wall_now = math.nan  # the monotonic `now` of the last publish, and the wall clock then
        self._wall_then = 0
        self.sessions: dict[str, SessionState] = {}
        self.trie = SubscriptionTrie()
        self.retained: dict[str, Message] = {}
        self.wills: dict[str, tuple[float, Message]] = {}  # client id -> (due, will), delayed wills
        self.stats = MqttStats()
        self.state_store = state_store
        # what tick() must look at, so it stays cheap with many sessions / retained messages
        self._offline: set[str] = set()  # persistent sessions whose client is away
        self._expiring: set[str] = set()  # retained topics whose message has an expiry

    # --- sessions ------------------------------------------------------------------------------

    def new_client_id(self) -> str:
        while True:
            cid = self._id_factory()
            if cid not in self.sessions:
                return cid

    def connections(self) -> Iterator[Connection]:
        for s in self.sessions.values():
            if s.connection is not None:
                yield s.connection

    def attach(self, conn: Connection, client_id: str, clean_start: bool, expiry: int,
               now: float) -> tuple[SessionState, bool]:
        """Bind a newly CONNECTed connection to its session; returns (session, session present)."""
        existing = self.sessions.get(client_id)
        if existing is not None and existing.connection is not None and existing.connection is not conn:
            old = existing.connection
            self.stats.sessions_taken_over += 1
            old.server_disconnect(ReasonCode.SESSION_TAKEN_OVER, "session taken over")
            old.connection_lost(now)  # publishes/schedules its will, detaches from the session
            existing = self.sessions.get(client_id)  # gone if its expiry was 0
        pending = self.wills.pop(client_id, None)
        if pending is not None and (clean_start or existing is None):
            self._publish_will(pending[1], client_id, now)  # the old session ends now
        if existing is not None and clean_start:
            self._end_session(existing)
            existing = None
        if existing is None:
            session = SessionState(client_id, expiry)
            self.sessions[client_id] = session
            self.stats.sessions = len(self.sessions)
            present = False
        else:
            session = existing
            session.expiry_interval = expiry
            present = True
        session.connection = conn
        session.disconnected_at = None
        self._offline.discard(client_id)
        self._changed(session)
        return session, present

    def detach(self, conn: Connection, now: float, will: Will | None, will_delay: int) -> None:
        session = conn.session
        if session is None or session.connection is not conn:
            return
        session.connection = None
        session.disconnected_at = now
        if will is not None:
            msg = self._will_message(will, conn.client_id, now)
            delay = min(will_delay, session.expiry_interval)
            if delay <= 0:
                self._publish_will(msg, conn.client_id, now)
            else:
                self.wills[conn.client_id] = (now + delay, msg)
        if session.expiry_interval == 0:
            self._end_session(session)
        else:
            self._offline.add(session.client_id)
            self._changed(session)

    def _changed(self, session: SessionState) -> None:
        if self.state_store is not None and session.expiry_interval > 0:
            self.state_store.session_changed(session)

    def _end_session(self, session: SessionState) -> None:
        for topic_filter in session.subscriptions:
            self.trie.remove(topic_filter, session.client_id)
        session.subscriptions.clear()
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
            self._offline.discard(session.client_id)
            if self.state_store is not None:
                self.state_store.session_ended(session.client_id)
        self.stats.sessions = len(self.sessions)

    def _will_message(self, will: Will, client_id: str, now: float) -> Message:
        props = {k: v for k, v in will.properties.items() if k != P.WILL_DELAY_INTERVAL}
        expiry = props.get(P.MESSAGE_EXPIRY_INTERVAL)
        return Message(will.topic, will.payload, will.qos, will.retain, props,
                       None if expiry is None else now + expiry, client_id)

    def _publish_will(self, msg: Message, client_id: str, now: float) -> None:
        self.stats.wills_published += 1
        log.info("will_published", client_id=client_id, topic=msg.topic)
        try:
            waiter = self.publish(msg, now, None, is_will=True)
        except Exception as e:  # a refused will is logged, never raised into an unrelated connection
            log.warning("will_refused", client_id=client_id, topic=msg.topic, error=str(e))
            return
        if waiter is not None:
            _discard(waiter)

    # --- publish and route ---------------------------------------------------------------------

    def publish(self, msg: Message, now: float, publisher: Connection | None, *,
                is_will: bool = False) -> Awaitable[None] | None:
        """Accept a message: ingest sink, retained store, local subscribers. Returns the sink's
        durability waiter (None for QoS 0). Raises StorageError when the sink refuses it."""
        if publisher is not None:
            username, version = publisher.username, publisher.version
        else:
            username, version = None, 5
        if now != self._wall_now:  # the messages of one read share it: one clock read per read
            self._wall_now = now
            self._wall_then = self._wall_ms()
        waiter = self.sink.submit(InboundMessage(msg.origin or "", msg.topic, msg.payload, msg.qos, msg.retain,
                                                 self._wall_then, username, msg.properties, version, is_will))
        if msg.qos == 0 and waiter is not None:
            _discard(waiter)
            waiter = None
        self.stats.messages_in += 1
        store = self.state_store
        marks = store.generation if store is not None else 0
        if msg.retain:
            self._set_retained(msg)
        self.route(msg, now)
        if msg.qos and store is not None and store.generation != marks:
            # Queued for an offline persistent session (or a retained change): the publisher's
            # acknowledgement also waits until that state is durable.
            waiter = _with_state(waiter, store, store.generation)
        return waiter

    def restore_session(self, session: SessionState) -> None:
        """Adopt an offline persistent session loaded from the state store (before serving)."""
        self.sessions[session.client_id] = session
        self._offline.add(session.client_id)
        for sub in session.subscriptions.values():
            self.trie.add(sub.topic_filter, session.client_id, sub)
        self.stats.sessions = len(self.sessions)

    def restore_retained(self, msg: Message) -> None:
        self.retained[msg.topic] = msg
        if msg.expires_at is not None:
            self._expiring.add(msg.topic)
        self.stats.retained = len(self.retained)

    def _set_retained(self, msg: Message) -> None:
        if msg.payload:
            self.retained[msg.topic] = msg
            if msg.expires_at is not None:
                self._expiring.add(msg.topic)
            else:
                self._expiring.discard(msg.topic)
        else:
            self.retained.pop(msg.topic, None)
            self._expiring.discard(msg.topic)
        self.stats.retained = len(self.retained)
        if self.state_store is not None:
            self.state_store.retained_changed(msg.topic, msg if msg.payload else None)

    def route(self, msg: Message, now: float) -> int:
        """Deliver to every matching session; returns how many sessions got it."""
        plain, groups = self.trie.match(msg.topic)
        if not plain and not groups:
            return 0
        targets: dict[str, list[Any]] = {}  # client id -> [qos, retain_as_published, sub ids]
        for cid, sub in plain:
            opts = sub.options
            if opts.no_local and cid == msg.origin:
                continue
            qos = min(msg.qos, opts.qos)
            t = targets.get(cid)
            if t is None:
                targets[cid] = [qos, opts.retain_as_published, [sub.identifier] if sub.identifier else []]
            else:  # overlapping subscriptions: one copy, highest QoS, every identifier
                t[0] = max(t[0], qos)
                t[1] = t[1] or opts.retain_as_published
                if sub.identifier:
                    t[2].append(sub.identifier)
        count = 0
        for cid, (qos, rap, ids) in targets.items():
            count += self._deliver(cid, Outgoing(msg, qos, msg.retain and rap, tuple(ids)), now)
        for group in groups:
            picked = group.pick(self._is_connected)
            if picked is not None:
                cid, sub = picked
                ids = (sub.identifier,) if sub.identifier else ()
                count += self._deliver(cid, Outgoing(msg, min(msg.qos, sub.options.qos), False, ids), now)
        return count

    def _is_connected(self, client_id: str) -> bool:
        s = self.sessions.get(client_id)
        return s is not None and s.connection is not None

    def _deliver(self, client_id: str, out: Outgoing, now: float) -> int:
        session = self.sessions.get(client_id)
        if session is None:
            return 0
        conn = session.connection
        if conn is not None:
            conn.deliver(out, now)
            conn.notify()
        else:
            q0, q12 = session.enqueue(out, self.limits.max_queued_messages)
            self.stats.dropped_qos0 += q0
            self.stats.dropped_overflow += q12
            self._changed(session)
        return 1

    # --- subscriptions and retained --------------------------------------------------------------

    def subscribe(self, session: SessionState, sub: Subscription) -> bool:
        """Add or replace a subscription; True if it is new (for retain handling 1)."""
        is_new = sub.topic_filter not in session.subscriptions
        session.subscriptions[sub.topic_filter] = sub
        self.trie.add(sub.topic_filter, session.client_id, sub)
        self._changed(session)
        return is_new

    def unsubscribe(self, session: SessionState, topic_filter: str) -> bool:
        if session.subscriptions.pop(topic_filter, None) is None:
            return False
        self.trie.remove(topic_filter, session.client_id)
        self._changed(session)
        return True

    def retained_for(self, topic_filter: str, now: float) -> list[Message]:
        out = []
        for topic, msg in list(self.retained.items()):
            if msg.expired(now):
                continue  # tick() removes it
            if topic_matches(topic_filter, topic):
                out.append(msg)
        self.stats.retained = len(self.retained)
        return out

    # --- time and shutdown ---------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Publish delayed wills that are due, end expired sessions, drop expired retained messages."""
        for cid, (due, msg) in list(self.wills.items()):
            if now >= due:
                del self.wills[cid]
                self._publish_will(msg, cid, now)
        for cid in list(self._offline):
            session = self.sessions[cid]
            at = session.expires_at()
            if at is not None and now >= at:
                self.stats.sessions_expired += 1
                self._end_session(session)
        for topic in list(self._expiring):
            if self.retained[topic].expired(now):
                del self.retained[topic]
                self._expiring.discard(topic)
                if self.state_store is not None:
                    self.state_store.retained_changed(topic, None)
        self.stats.retained = len(self.retained)

    def shutdown(self) -> None:
        """Ask every connection to close with 0x8B (server shutting down)."""
        for conn in list(self.connections()):
            conn._send_will = False  # the server going away is not the client's failure
            conn.server_disconnect(ReasonCode.SERVER_SHUTTING_DOWN, "server shutting down")
