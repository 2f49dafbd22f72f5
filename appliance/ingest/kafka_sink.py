"""The MQTT -> Kafka ingest sink: PUBACK/PUBREC only once the records are in the fsynced WAL.

Adapter (trio). The broker calls `submit(msg)` synchronously for every accepted PUBLISH; the pure
`Ingestor` maps it right there (a refusal raises, so the publisher gets the reason code) and the
records join the current *round*. The whole round is appended at once, so messages that arrived
together from any number of connections become one record batch per partition and one
`LogStore.append` each; the WAL's group commit then makes them durable with one fsync shared with
everything else written at that moment (Kafka produces included). While round N waits for its
fsync, round N+1 fills: appends are pipelined, never one fsync per message.

Who appends a round: when its first message arrives and the WAL is idle, the pump task, at once.
While a WAL write is in flight, the WAL itself, through its `when_write_done` hook, right when
that write returns and before the next one starts: everything that arrived during one fsync
becomes one round for the very next write (no later than before), at one wake-up per fsync
cycle instead of one per arrival. One settler task completes the rounds' tickets, in order.

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
from collections import deque
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
_PARTITION_CACHE_LIMIT = 50_000  # (key, partition count) pairs whose partition is remembered


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
        # A plain generator rather than a coroutine: the MQTT writer awaits one ticket per QoS 1
        # message, most of them already settled.
        r = self._round
        if not r.done.is_set():
            yield from r.done.wait().__await__()
        if r.failed:
            e = r.failed.get(self._index)
            if e is not None:
                raise type(e)(str(e))

    @property
    def error(self) -> StorageError | None:
        """Why the message was not stored (once awaited), for the reason code of the refusal."""
        return self._round.failed.get(self._index)


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
        self._pump_busy = False  # the pump is appending a round (it may await a topic's creation)
        self._deferred = False  # the current round waits for the WAL's write in flight (_kick)
        self._settling: deque[tuple[_Round, list[tuple[Any, list[int]]]]] = deque()
        self._settle_wake = trio.Event()
        self._encoder = BatchEncoder()
        self._partitions: dict[tuple[bytes, int], int] = {}

    # --- IngestSink ---------------------------------------------------------------------------

    def submit(self, msg: InboundMessage) -> Ticket | None:
        if msg.client_id.startswith(LOCAL_ORIGIN):
            return None
        if self._pending >= self.max_pending:
            self.stats.refused_backpressure += 1
            raise StorageFullError(f"{self._pending} ingested messages are waiting for the WAL")
        ingestor = self.ingestor
        now = self._monotonic() if ingestor.needs_time(msg) else 0.0
        routed = ingestor.process(msg, now)  # IngestRejectedError goes to the publisher
        if routed.commands:
            self._commands.extend(routed.commands)
            self._wake.set()
        if not routed.records:
            return None
        r = self._round
        items = r.items
        items.append(routed.records)
        self._pending += 1
        if len(items) == 1:  # once per round, not once per message
            self._kick()
        return Ticket(r, len(items) - 1) if msg.qos else None

    def snapshot(self) -> dict[str, int]:
        out = self.ingestor.stats()
        out.update(asdict(self.stats))
        out["pending"] = self._pending
        return out

    # --- the pump -----------------------------------------------------------------------------

    async def run(self, mqtt: Any = None, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.mqtt = mqtt
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._settler)
            task_status.started()
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                if self._commands:
                    self._publish_commands()
                r = self._round
                if not r.items or self._deferred:  # (deferred: the WAL hook takes the round)
                    continue
                self._round = _Round()
                self._pump_busy = True
                try:
                    pendings = await self._append(r)
                finally:
                    self._pump_busy = False
                self._to_settle(r, pendings)
                if self._round.items:  # it filled meanwhile
                    self._kick()

    def _kick(self) -> None:
        """The current round has its first message: append it now (wake the pump) or, while the
        WAL is writing, right when that write returns (`when_write_done`), so that everything that
        arrives during one fsync becomes one append per partition for the next, not one per
        arrival: same fsync, far fewer wake-ups, batches and WAL records."""
        if self._pump_busy or self._deferred:
            return  # the pump kicks again when it is done / the hook is already registered
        when_write_done = getattr(self.kafka.logs, "when_write_done", None)
        if when_write_done is not None and when_write_done(self._after_write):
            self._deferred = True
        else:
            self._wake.set()

    def _after_write(self) -> None:
        """WAL hook (trio thread, synchronous): append the round gathered during the last write."""
        self._deferred = False
        r = self._round
        if not r.items or self._pump_busy:
            return  # a busy pump takes the round when it is done
        groups = self._by_topic(r)
        resolved = {name: self.kafka.topics.get(name) for name in groups}
        if None in resolved.values():
            self._wake.set()  # a topic must be created first (async): the pump does it
            return
        self._round = _Round()
        try:
            pendings = self._append_groups(r, groups, resolved)
        except Exception as e:  # a bug: fail the round rather than leave its publishers waiting
            log.error("ingest_append_crashed", error=repr(e))
            self._fail(r, list(range(len(r.items))), StorageError(f"ingest append failed: {e!r}"))
            pendings = []
        self._to_settle(r, pendings)

    @staticmethod
    def _by_topic(r: _Round) -> dict[str, tuple[list[int], list[OutRecord]]]:
        """topic -> (message indexes, records), in arrival order."""
        by_topic: dict[str, tuple[list[int], list[OutRecord]]] = {}
        for i, recs in enumerate(r.items):
            for rec in recs:
                entry = by_topic.get(rec.topic)
                if entry is None:
                    entry = by_topic[rec.topic] = ([], [])
                entry[0].append(i)
                entry[1].append(rec)
        return by_topic

    async def _append(self, r: _Round) -> list[tuple[Any, list[int]]]:
        groups = self._by_topic(r)
        resolved: dict[str, Any] = {}
        for name, (idxs, _recs) in groups.items():
            topic = self.kafka.topics.get(name)
            if topic is None:
                try:
                    topic = await self.kafka.topic_for_write(name)
                except MillstreamError as e:
                    self._fail(r, idxs, IngestRejectedError(f"Kafka topic {name!r} cannot be created: {e}"))
                    continue
                if topic is None:
                    self._fail(r, idxs, IngestRejectedError(f"Kafka topic {name!r} does not exist (auto-create is off)"))
                    continue
            resolved[name] = topic
        return self._append_groups(r, groups, resolved)

    def _append_groups(self, r: _Round, groups: dict[str, tuple[list[int], list[OutRecord]]],
                       resolved: dict[str, Any]) -> list[tuple[Any, list[int]]]:
        """Synchronous: one record batch per partition (or chunk) of each resolved topic."""
        self.stats.rounds += 1
        pendings: list[tuple[Any, list[int]]] = []
        now_ms = self._wall_ms()
        meter = getattr(self.kafka, "meter", None)  # live per-topic rates (inventory/meter.py)
        for name, (idxs, recs) in groups.items():
            topic = resolved.get(name)
            if topic is None:
                continue  # failed above
            appended = 0
            nparts = len(topic.streams)
            if nparts == 1:
                parts = {0: (idxs, recs)}
            else:
                parts = {}
                for i, rec in zip(idxs, recs, strict=True):
                    p = self._partition(rec.key, nparts)
                    entry = parts.get(p)
                    if entry is None:
                        entry = parts[p] = ([], [])
                    entry[0].append(i)
                    entry[1].append(rec)
            for p, (pidxs, precs) in parts.items():
                stream = topic.streams[p]
                for lo, hi in _chunks(precs):
                    chunk_idxs = pidxs[lo:hi]
                    batch = self._encoder.build_records(precs[lo:hi])
                    try:
                        pending = self.kafka.logs.append(stream, batch, now_ms=now_ms)
                    except StorageError as e:
                        self._fail(r, chunk_idxs, e)
                        continue
                    except MillstreamError as e:  # stream deleted under us
                        self._fail(r, chunk_idxs, StorageError(f"cannot append to {name}-{p}: {e}"))
                        continue
                    self.stats.batches += 1
                    self.stats.records_appended += hi - lo
                    pendings.append((pending, chunk_idxs))
                    appended += len(batch)
            if appended and meter is not None:
                meter.add_in(name, appended, self.kafka.monotonic())
        return pendings

    def _partition(self, key: bytes | None, nparts: int) -> int:
        """Kafka's partition of a key; records without a key go to partition 0 (their order holds).
        Devices repeat their keys, so the murmur2 of each is remembered."""
        if key is None:
            return 0
        cache = self._partitions
        p = cache.get((key, nparts))
        if p is None:
            if len(cache) >= _PARTITION_CACHE_LIMIT:
                cache.clear()
            p = cache[(key, nparts)] = partition_for(key, nparts)
        return p

    def _fail(self, r: _Round, idxs: list[int], error: StorageError) -> None:
        log.warning("ingest_append_failed", records=len(idxs), error=str(error))
        for i in idxs:
            r.failed.setdefault(i, error)

    def _to_settle(self, r: _Round, pendings: list[tuple[Any, list[int]]]) -> None:
        self._settling.append((r, pendings))
        self._settle_wake.set()

    async def _settler(self) -> None:
        """Settles the appended rounds in order (the WAL makes them durable in that order): one
        task for all rounds, woken about once per fsync, rather than a task per round."""
        queue = self._settling
        while True:
            while queue:
                r, pendings = queue[0]
                await self._settle(r, pendings)
                queue.popleft()
            self._settle_wake = trio.Event()
            await self._settle_wake.wait()

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


def _chunks(recs: list[OutRecord]):
    """(start, end) index pairs cutting `recs` into batches of about _BATCH_BYTES / _BATCH_RECORDS."""
    lo = 0
    size = 0
    for i, rec in enumerate(recs):
        n = 256 + len(rec.value or b"") + len(rec.key or b"")  # headers: a rough allowance
        if i > lo and (size + n > _BATCH_BYTES or i - lo >= _BATCH_RECORDS):
            yield lo, i
            lo, size = i, 0
        size += n
    if lo < len(recs):
        yield lo, len(recs)
