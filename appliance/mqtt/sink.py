"""Where accepted PUBLISH messages go besides local subscribers: the ingest sink.

The broker calls `IngestSink.submit(msg)` synchronously for every accepted PUBLISH (any QoS,
wills included), in arrival order per connection, before routing it to local subscribers. The
call must not block. It returns either None (the message is already as durable as it will get)
or an awaitable that completes once the message is durable, and raises
`appliance.errors.StorageError` (e.g. StorageFullError) if it never will be. It may also raise
StorageError at once (back-pressure). The MQTT adapter awaits the awaitable before it sends
PUBACK (QoS 1) or PUBREC (QoS 2), in order per connection, so the acknowledgement means
"durable". For QoS 0 the awaitable is dropped unawaited (closed if it is a coroutine), so a sink
should start the durable write in `submit` itself, as `LogStore.append` does, and return a
waiter such as `PendingAppend.durable()`.

The Kafka mapping implements this over the WAL (group commit: concurrent submits share one
fsync). `DurableSink` below is the trivial always-durable sink used until then.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(slots=True)
class InboundMessage:
    """One accepted PUBLISH as the sink sees it. Read-only by contract (not `frozen`: a frozen
    dataclass costs several times more to build, and one is built per message)."""

    client_id: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at_ms: int  # wall clock, milliseconds since the epoch
    username: str | None = None
    # MQTT 5 publish properties by PropertyId (user properties as a list of (name, value) pairs,
    # content type, response topic, correlation data, payload format, message expiry). Empty in 3.1.1.
    properties: dict[int, Any] = field(default_factory=dict)
    protocol_version: int = 5
    is_will: bool = False


@runtime_checkable
class IngestSink(Protocol):
    def submit(self, msg: InboundMessage) -> Awaitable[None] | None: ...


class DurableSink:
    """Accepts everything and reports it durable at once; keeps counts for tests and stats."""

    def __init__(self) -> None:
        self.accepted = 0

    def submit(self, msg: InboundMessage) -> None:
        self.accepted += 1
        return None


class RecordingSink(DurableSink):
    """Keeps every message (bounded), for tests."""

    def __init__(self, limit: int = 100_000) -> None:
        super().__init__()
        self.limit = limit
        self.messages: list[InboundMessage] = []

    def submit(self, msg: InboundMessage) -> None:
        super().submit(msg)
        if len(self.messages) < self.limit:
            self.messages.append(msg)
        return None
