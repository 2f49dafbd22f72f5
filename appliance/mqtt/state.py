"""Persistence of broker state across restarts: the `MqttStateStore` port and its MetaStore version.

The broker core is synchronous, so it only *marks* what changed (`retained_changed`,
`session_changed`, `session_ended`); the adapter's ticker calls `flush(now)` about twice a second
and once more on graceful shutdown, batching all changes of a namespace into one `put_many`.
Each mark bumps `generation`; `written_through(gen)` waits until a flush has written every mark up
to `gen`. The broker makes a QoS 1/2 publisher's acknowledgement wait for it when the message was
queued for an offline persistent session (or changed a retained message), so an acknowledged
message is never lost from a subscriber's queue by a crash.
`restore(broker, now)` rebuilds retained messages and offline persistent sessions at start-up.

What is kept: retained messages; persistent sessions (expiry > 0) with their subscriptions,
queued messages and QoS 1/2 messages in flight. A session is written when it changes while its
client is offline (queued messages), when its subscriptions change, and when its client goes
away. While a client is connected its in-flight progress is not written per acknowledgement, so
after a crash (not a graceful stop) it may receive some messages again (QoS 1/2 duplicates
flagged DUP). Inbound QoS 2 state is not kept: the ingest side must tolerate a retransmission.

Times: monotonic deadlines are stored as wall-clock milliseconds and converted back on restore.
Records are msgpack-able maps with string keys and a format version "v".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

from appliance.mqtt.codec import SubscriptionOptions
from appliance.mqtt.codec.properties import PropertyId
from appliance.mqtt.session import Message, Outgoing, SessionState, Subscription
from appliance.storage.ports import MetaStore

if TYPE_CHECKING:
    from appliance.mqtt.broker import Broker

FORMAT_VERSION = 1
RETAINED_NS = "mqtt.retained"
SESSIONS_NS = "mqtt.sessions"


class MqttStateStore(Protocol):
    def retained_changed(self, topic: str, msg: Message | None) -> None:
        """A retained message was set (msg) or cleared (None)."""
        ...

    def session_changed(self, session: SessionState) -> None:
        """A persistent session's subscriptions, queue or connection changed."""
        ...

    def session_ended(self, client_id: str) -> None: ...

    async def flush(self, now: float) -> None:
        """Write what changed since the last flush durably (one write per namespace)."""
        ...

    generation: int

    async def written_through(self, generation: int) -> None:
        """Return once every mark up to `generation` is durable (flushing now if needed)."""
        ...

    def restore(self, broker: Broker, now: float) -> None:
        """Load retained messages and persistent sessions into a fresh broker."""
        ...


class _Unlocked:
    """No lock: for callers that never flush concurrently (tests driving the core directly)."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


class MetaStoreMqttState:
    """MqttStateStore over the storage MetaStore port (namespaces mqtt.retained, mqtt.sessions)."""

    def __init__(self, meta: MetaStore, *, wall_ms: Callable[[], int] | None = None,
                 lock: AbstractAsyncContextManager[Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`lock` serialises flushes (the adapter passes a trio.Lock; the core stays IO-free);
        `clock` is the broker's monotonic clock, for `written_through`."""
        self.meta = meta
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self._retained: dict[str, Message | None] = {}
        self._sessions: dict[str, SessionState | None] = {}
        self.flushes = 0
        self.generation = 0  # bumped by every mark
        self._written = 0  # every mark up to this generation is durable
        self._lock = lock if lock is not None else _Unlocked()
        self._clock = clock

    # --- marks (sync, from the broker core) ----------------------------------------------------

    def retained_changed(self, topic: str, msg: Message | None) -> None:
        self._retained[topic] = msg
        self.generation += 1

    def session_changed(self, session: SessionState) -> None:
        if session.expiry_interval > 0:
            self._sessions[session.client_id] = session
            self.generation += 1

    def session_ended(self, client_id: str) -> None:
        self._sessions[client_id] = None
        self.generation += 1

    # --- writes --------------------------------------------------------------------------------

    async def flush(self, now: float) -> None:
        async with self._lock:  # one writer at a time, so `_written` only moves past what is on disk
            target = self.generation
            await self._write(now)
            self._written = max(self._written, target)

    async def written_through(self, generation: int) -> None:
        while self._written < generation:
            await self.flush(self._clock())

    async def _write(self, now: float) -> None:
        if not self._retained and not self._sessions:
            return
        wall = self._wall_ms()
        retained, self._retained = self._retained, {}
        sessions, self._sessions = self._sessions, {}
        try:
            if retained:
                await self.meta.put_many(RETAINED_NS, {
                    topic: None if msg is None else _msg_out(msg, now, wall) for topic, msg in retained.items()})
                retained = {}
            if sessions:
                await self.meta.put_many(SESSIONS_NS, {
                    cid: None if s is None else _session_out(s, now, wall) for cid, s in sessions.items()})
        except BaseException:  # not written (error or cancelled): keep the marks for the next flush
            for topic, msg in retained.items():
                self._retained.setdefault(topic, msg)
            for cid, sess in sessions.items():
                self._sessions.setdefault(cid, sess)
            raise
        self.flushes += 1

    # --- restore -------------------------------------------------------------------------------

    def restore(self, broker: Broker, now: float) -> None:
        wall = self._wall_ms()
        for rec in self.meta.items(RETAINED_NS).values():
            if rec is None or rec.get("v") != FORMAT_VERSION:
                continue
            msg = _msg_in(rec, now, wall)
            if not msg.expired(now):
                broker.restore_retained(msg)
        for cid, rec in self.meta.items(SESSIONS_NS).items():
            if rec is None or rec.get("v") != FORMAT_VERSION:
                continue
            session = SessionState(cid, rec["expiry"])
            session.disconnected_at = now - max(0, wall - rec["gone_ms"]) / 1000
            at = session.expires_at()
            if at is not None and now >= at:
                self.session_ended(cid)
                continue
            session.next_packet_id = rec.get("next_pid", 1)
            for f, qos, nl, rap, rh, ident in rec["subs"]:
                session.subscriptions[f] = Subscription(f, SubscriptionOptions(qos, nl, rap, rh), ident)
            for m, qos, retain, ids in rec["queue"]:
                session.queue.append(Outgoing(_msg_in(m, now, wall), qos, retain, tuple(ids)))
                session.queued_qos0 += qos == 0
            for pid, m, qos, retain, ids, released in rec["inflight"]:
                session.inflight[pid] = Outgoing(_msg_in(m, now, wall), qos, retain, tuple(ids), pid, released)
            broker.restore_session(session)


def _props_out(props: dict[int, Any]) -> dict[str, Any]:
    out = {}
    for k, v in props.items():
        out[str(int(k))] = [list(pair) for pair in v] if k == PropertyId.USER_PROPERTY else v
    return out


def _props_in(props: dict[str, Any]) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for k, v in props.items():
        key = int(k)
        out[key] = [tuple(pair) for pair in v] if key == PropertyId.USER_PROPERTY else v
    return out


def _msg_out(msg: Message, now: float, wall: int) -> dict[str, Any]:
    rec: dict[str, Any] = {"v": FORMAT_VERSION, "t": msg.topic, "p": msg.payload, "q": msg.qos, "r": msg.retain,
                           "o": msg.origin}
    if msg.properties:
        rec["props"] = _props_out(msg.properties)
    if msg.expires_at is not None:
        rec["exp"] = wall + int((msg.expires_at - now) * 1000)
    return rec


def _msg_in(rec: dict[str, Any], now: float, wall: int) -> Message:
    exp = rec.get("exp")
    return Message(rec["t"], bytes(rec["p"]), rec["q"], rec["r"], _props_in(rec.get("props", {})),
                   None if exp is None else now + (exp - wall) / 1000, rec.get("o"))


def _session_out(s: SessionState, now: float, wall: int) -> dict[str, Any]:
    gone = wall if s.disconnected_at is None else wall - int((now - s.disconnected_at) * 1000)
    return {
        "v": FORMAT_VERSION,
        "expiry": s.expiry_interval,
        "gone_ms": gone,
        "next_pid": s.next_packet_id,
        "subs": [[sub.topic_filter, sub.options.qos, sub.options.no_local, sub.options.retain_as_published,
                  sub.options.retain_handling, sub.identifier] for sub in s.subscriptions.values()],
        "queue": [[_msg_out(o.message, now, wall), o.qos, o.retain, list(o.sub_ids)] for o in s.queue],
        "inflight": [[pid, _msg_out(o.message, now, wall), o.qos, o.retain, list(o.sub_ids), o.released]
                     for pid, o in s.inflight.items()],
    }
