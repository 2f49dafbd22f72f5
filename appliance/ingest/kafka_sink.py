"""The MQTT -> Kafka ingest sink: PUBACK/PUBREC only once the records are in the fsynced WAL.

Adapter (trio). The broker calls `submit(msg)` synchronously for every accepted PUBLISH; the pure
`Ingestor` maps it right there (a refusal raises, so the publisher gets the reason code) and the
records join the current *round*. A pump task takes the whole round at once, so messages that
arrived together from any number of connections become one record batch per partition and one
`LogStore.append` each; the WAL's group commit then makes them durable with one fsync shared with
everything else written at that moment (Kafka produces included). While round N waits for its
fsync, round N+1 fills: appends are pipelined, never one fsync per message.

`submit` returns, for QoS 1/2, a ticket the MQTT writer awaits before sending PUBACK/PUBREC: it
completes when every record of that message is durable and raises StorageError (0x97 / 3.1.1
disconnect) when one could not be. Too many messages not yet durable (`[ingest] max_pending`)
is refused at once with StorageFullError: back-pressure, nothing accepted is dropped.

Per-key order: records of one MQTT topic go to one Kafka topic and key, hence one partition
(Kafka's murmur2 partitioner), appended in arrival order. Records without a key go to partition 0
of multi-partition topics, so that their order holds too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import trio

from appliance.errors import MillstreamError, StorageError, StorageFullError
from appliance.ingest.batch import BatchEncoder
from appliance.ingest.mapping import IngestRejectedError, OutRecord
from appliance.ingest.partition import partition_for
from appliance.ingest.pipeline import LOCAL_ORIGIN, Ingestor
from appliance.logs import get_logger
from appliance.mqtt.sink import InboundMessage

log = get_logger("ingest")

_BATCH_BYTES = 512 * 1024  # split a partition's share of a round into batches of about this size
_BATCH_RECORDS = 4096


class _Round:
    __slots__ = ("items", "done", "failed")

    def __init__(self) -> None:
        self.items: list[list[OutRecord]] = []
        self.done = trio.Event()
        self.failed: dict[int, StorageError] = {}


class Ticket:
    """Awaitable: the message's records are durable (or StorageError)."""

    __slots__ = ("_round", "_index")

    def __init__(self, rnd: _Round, index: int) -> None:
        self._round = rnd
        self._index = index

    def __await__(self):
        return self._wait().__await__()

    @property
    def error(self) -> StorageError | None:
        """Why the message was not stored (once awaited), for the reason code of the refusal."""
        return self._round.failed.get(self._index)

    async def _wait(self) -> None:
        r = self._round
        if not r.done.is_set():
            await r.done.wait()
        e = r.failed.get(self._index)
        if e is not None:
            raise type(e)(str(e))


@dataclass
class SinkStats:
    rounds: int = 0
    batches: int = 0
    records_appended: int = 0
    records_durable: int = 0
    failed: int = 0  # messages whose records could not be stored
    refused_backpressure: int = 0
    rebirth_published: int = 0


class KafkaIngestSink:
    def __init__(self, ingestor: Ingestor, kafka: Any, *, max_pending: int = 100_000,
                 monotonic: Callable[[], float] | None = None, wall_ms: Callable[[], int] | None = None) -> None:
        self.ingestor = ingestor
        self.kafka = kafka  # appliance.kafka.broker.Broker: .topics, .logs, .topic_for_write
        self.max_pending = max_pending
        self._monotonic = monotonic or trio.current_time
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self.mqtt: Any = None  # the MQTT broker, for rebirth requests; set by run()
        self.stats = SinkStats()
        self._round = _Round()
        self._commands: list = []
        self._pending = 0  # messages submitted and not yet settled
        self._wake = trio.Event()
        self._encoder = BatchEncoder()

    # --- IngestSink ---------------------------------------------------------------------------

    def submit(self, msg: InboundMessage) -> Ticket | None:
        if msg.client_id.startswith(LOCAL_ORIGIN):
            return None
        if self._pending >= self.max_pending:
            self.stats.refused_backpressure += 1
            raise StorageFullError(f"{self._pending} ingested messages are waiting for the WAL")
        routed = self.ingestor.process(msg, self._monotonic())  # IngestRejectedError goes to the publisher
        if routed.commands:
            self._commands.extend(routed.commands)
            self._wake.set()
        if not routed.records:
            return None
        r = self._round
        r.items.append(routed.records)
        self._pending += 1
        self._wake.set()
        return Ticket(r, len(r.items) - 1) if msg.qos else None

    def snapshot(self) -> dict[str, int]:
        out = self.ingestor.stats()
        out.update(asdict(self.stats))
        out["pending"] = self._pending
        return out

    # --- the pump -----------------------------------------------------------------------------

    async def run(self, mqtt: Any = None, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.mqtt = mqtt
        async with trio.open_nursery() as settlers:
            task_status.started()
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                if self._commands:
                    self._publish_commands()
                r = self._round
                if not r.items:
                    continue
                self._round = _Round()
                pendings = await self._append(r)
                settlers.start_soon(self._settle, r, pendings)

    async def _append(self, r: _Round) -> list[tuple[Any, list[int]]]:
        self.stats.rounds += 1
        by_topic: dict[str, list[tuple[int, OutRecord]]] = {}
        for i, recs in enumerate(r.items):
            for rec in recs:
                by_topic.setdefault(rec.topic, []).append((i, rec))
        pendings: list[tuple[Any, list[int]]] = []
        now_ms = self._wall_ms()
        meter = getattr(self.kafka, "meter", None)  # live per-topic rates (inventory/meter.py)
        for name, entries in by_topic.items():
            appended = 0
            topic = self.kafka.topics.get(name)
            if topic is None:
                try:
                    topic = await self.kafka.topic_for_write(name)
                except MillstreamError as e:
                    self._fail(r, entries, IngestRejectedError(f"Kafka topic {name!r} cannot be created: {e}"))
                    continue
                if topic is None:
                    self._fail(r, entries, IngestRejectedError(f"Kafka topic {name!r} does not exist (auto-create is off)"))
                    continue
            nparts = len(topic.streams)
            parts: dict[int, list[tuple[int, OutRecord]]] = {}
            for entry in entries:
                key = entry[1].key
                p = partition_for(key, nparts) if key is not None and nparts > 1 else 0
                parts.setdefault(p, []).append(entry)
            for p, plist in parts.items():
                stream = topic.streams[p]
                for chunk in _chunks(plist):
                    batch = self._encoder.build([(rec.key, rec.value, rec.headers) for _, rec in chunk],
                                                [rec.timestamp_ms for _, rec in chunk])
                    idxs = [i for i, _ in chunk]
                    try:
                        pending = self.kafka.logs.append(stream, batch, now_ms=now_ms)
                    except StorageError as e:
                        self._fail(r, chunk, e)
                        continue
                    except MillstreamError as e:  # stream deleted under us
                        self._fail(r, chunk, StorageError(f"cannot append to {name}-{p}: {e}"))
                        continue
                    self.stats.batches += 1
                    self.stats.records_appended += len(chunk)
                    pendings.append((pending, idxs))
                    appended += len(batch)
            if appended and meter is not None:
                meter.add_in(name, appended, self.kafka.monotonic())
        return pendings

    def _fail(self, r: _Round, entries: list[tuple[int, OutRecord]], error: StorageError) -> None:
        log.warning("ingest_append_failed", records=len(entries), error=str(error))
        for i, _ in entries:
            r.failed.setdefault(i, error)

    async def _settle(self, r: _Round, pendings: list[tuple[Any, list[int]]]) -> None:
        for pending, idxs in pendings:
            try:
                await pending.durable()
                self.stats.records_durable += len(idxs)
            except StorageError as e:
                for i in idxs:
                    r.failed.setdefault(i, e)
        self.stats.failed += len(r.failed)
        self._pending -= len(r.items)
        r.done.set()

    def _publish_commands(self) -> None:
        from appliance.mqtt.session import Message

        commands, self._commands = self._commands, []
        if self.mqtt is None:
            return
        now = trio.current_time()
        for c in commands:
            log.info("sparkplug_rebirth_requested", topic=c.topic, reason=c.reason)
            self.stats.rebirth_published += 1
            self.mqtt.publish(Message(c.topic, c.payload, 0, False, {}, None, LOCAL_ORIGIN + "sparkplug"), now, None)


def _chunks(entries: list[tuple[int, OutRecord]]):
    chunk: list[tuple[int, OutRecord]] = []
    size = 0
    for entry in entries:
        rec = entry[1]
        n = 256 + len(rec.value or b"") + len(rec.key or b"")  # headers: a rough allowance
        if chunk and (size + n > _BATCH_BYTES or len(chunk) >= _BATCH_RECORDS):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += n
    if chunk:
        yield chunk
