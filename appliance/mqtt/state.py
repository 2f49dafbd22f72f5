"""Persistence of broker state across restarts: the `MqttStateStore` port.

The broker core is synchronous, so it only *marks* what changed; an adapter task calls
`flush()` (async) shortly after, batching many changes into one durable write. What is kept:
retained messages, and persistent sessions (subscriptions, queued and in-flight QoS 1/2
messages). Inbound QoS 2 state is not kept: a publisher retransmitting after a broker restart
may see its QoS 2 message delivered twice locally (the ingest side deduplicates by WAL).

Status: the protocol and the in-memory default are here; the MetaStore-backed implementation
is a follow-up (see the report).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from appliance.mqtt.session import Message, SessionState


class MqttStateStore(Protocol):
    def retained_changed(self, topic: str, msg: Message | None) -> None:
        """A retained message was set (msg) or cleared (None)."""
        ...

    def session_changed(self, session: SessionState) -> None:
        """A persistent session's subscriptions or queue changed."""
        ...

    def session_ended(self, client_id: str) -> None: ...

    async def flush(self) -> None:
        """Write what changed since the last flush durably (one write for many changes)."""
        ...
