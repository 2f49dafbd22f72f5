"""The plant-to-cloud uplink: forwards local topics to a cloud Kafka cluster, exactly once.

It reads committed batches straight from the LogStore (not through a network consumer) and
produces them to the cloud as an idempotent producer of its own, one lane per local partition
(`lanes.py`): local partition p of topic T goes to partition p of the cloud topic named by the
`[[uplink.forward]]` template, e.g. "{site}.{topic}". Batches are forwarded as stored, with only
the producer fields of their header rewritten (`client/batches.py`), except that runs of small
plain batches (say one-record batches from a trickle of MQTT messages) are merged into one batch
of up to `merge_bytes` (Apache Kafka takes exactly one batch per partition and Produce request,
v3+, so merging is the only way to send more than one small batch per partition per request).

Exactly once, per-partition order: the argument
-------------------------------------------------
The cloud broker accepts a lane's batch only if its sequence number follows the previous one
(same producer id and epoch), and answers a batch equal to one of the last 5 it appended for that
producer and partition as a duplicate, with no second copy. So the uplink must make sure that
every batch it ever (re)sends for a given sequence is the same batch, and that a resend is always
within the broker's 5-batch memory.

1. Durable per lane (MetaStore namespace "uplink", key "lane.<stream id>"): the producer id and
   epoch, `cursor` (local offset below which the cloud has everything) and `seq` (the sequence
   number of the batch starting at `cursor`). Everything the lane sends beyond the cursor is
   derived from this record and the local log alone: the batches are the immutable stored
   batches from `cursor` on, in order, and each one's sequence is `seq` plus the record counts
   of the batches before it. After a crash or restart the lane re-reads from `cursor` and
   rebuilds exactly the same batches with exactly the same (id, epoch, sequence). Nothing needs
   persisting *before* a send, because nothing about a send is chosen freely.
2. At most 5 batches (MAX_UNCONFIRMED) lie between the durable cursor and the send frontier,
   acknowledged or not. The cursor moves only after the cloud acknowledged, and the checkpoint
   that moves it is what frees room for more sends. Hence after any crash, the batches the cloud
   may already hold beyond the durable cursor are among the last 5 it saw from this producer on
   that partition: each resend is answered as a duplicate (no copy) or, for the first one the
   cloud never got, appended - in order, since the cloud rejects gaps.
3. A producer (id, epoch) change is persisted before any batch is sent under it, and every lane
   (re)start takes an (id, epoch) that has never sent anything (InitProducerId: Millstream bumps
   the epoch, Apache Kafka hands out a fresh id), so sequence 0 is accepted on any partition.
   A restart happens for a new lane, a changed cloud destination, or when the cloud says our
   sequence state is gone (OUT_OF_ORDER_SEQUENCE_NUMBER / UNKNOWN_PRODUCER_ID on the first
   unacknowledged batch) or fenced (INVALID_PRODUCER_EPOCH): the lane waits until nothing of it is
   in flight, then restarts at the last acknowledged offset.
4. Within one run, a transport error or a retriable partition error stops the lane, waits for all
   its outstanding answers, and resends from the last acknowledged batch: duplicates again.
   DUPLICATE_SEQUENCE_NUMBER counts as success. Responses on one connection come in send order,
   so "acknowledged" is always a prefix of "sent".
5. Merged batches. The broker recognises a resend by its sequence range, so a merged batch must be
   resent with exactly the same stored batches in it - but which batches get merged depends on
   what happened to be read at the time, which point 1 cannot rebuild. So the grouping is made
   durable before it matters (lanes.py): the lane record also holds `plan` (the merged groups past
   the cursor, as local offset ranges) and `plan_end` (the grouping of [cursor, plan_end) is fixed:
   those groups, single stored batches elsewhere). A merged group is sent only once a checkpoint
   holding it has landed; a single batch needs nothing (point 1), and a single batch sent past
   the fixed grouping extends it in memory, so a rewind within the run (point 4) regroups nothing.
   After a restart, the lane follows the durable plan up to `plan_end`; past it the previous run can
   only have sent single batches, at most MAX_UNCONFIRMED (point 2), so the first MAX_UNCONFIRMED
   stored batches past `plan_end` go out single again before merging resumes. A new producer (id,
   epoch) (point 3) starts with an empty plan. One checkpoint plans up to 2 x MAX_UNCONFIRMED merged
   groups, so under a backlog the extra write is shared by many records; with a healthy link a lane
   usually has one batch waiting, which goes out at once, unmerged.

The remaining gap is the Kafka protocol's own: if the cloud lost a producer's state (e.g. Kafka's
`producer.id.expiration.ms` passed during a very long outage) while a batch's fate was unknown
(sent, answer lost), the resend cannot be told apart from new data and may be stored twice.
That case is logged (`uplink_sequence_lost`); Millstream as the cloud keeps producer state
durably, so it does not arise there.

Retention hook
--------------
`retention_floor(stream_id)` returns the lowest offset local retention must keep for a stream
(the lane's durable cursor) or None when the uplink does not hold it back (the stream is not
forwarded, or `[uplink] hold_unforwarded = false`). Retention calls it before deleting; with
holding off, data deleted before it was forwarded is skipped and counted as `lost_records`.

TLS and refusals: with `[uplink] security = "tls"` or `"mtls"` every connection goes through
`client/tls.py` (server verification against `ca_file`, our certificate with mtls). A failed
handshake or a refusal by the cloud (revoked, unknown CA, expired) ends the session like any
connection failure - the lanes keep their positions, nothing is dropped, the next attempt comes
after the back-off - and shows in the status as `tls_error` (a short reason) and `last_error` (a
sentence), with `connect_failures` counting attempts since the last success. A cloud topic the
cloud's rules hide or refuse blocks only its lanes (`topics.<t>.errors`); Metadata for blocked
lanes is asked again after 1, 2, 4 ... s up to `metadata_refresh`, not in a loop.

Priorities and the bandwidth cap: requests are filled in priority order (lower number first,
one batch per partition and request, as Kafka requires). With a cap (`bandwidth`, bytes/s) only
the most urgent priority level that has a backlog may send, so e.g. alarms drain before bulk
telemetry; without a cap every lane sends and priority only orders the request.

Request size and read-ahead (catch-up speed): stored batches are often ~1 MiB (a client's
batch.size), so a 1 MiB request carries one partition's batch and a backlog moves one batch per
request, answer and checkpoint. A request may hold up to `max_request_bytes` (4 MiB: several
partitions' batches), but only once the link has carried that much within a quarter of
`request_timeout` this session (`_request_limit`): a slow link keeps 1 MiB requests, which it
finishes well before the answer's deadline. Lanes read several stored batches per read when
there are few lanes (READ_AHEAD_TOTAL shared, 1-4 MiB per lane).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

import trio

from appliance.config import ForwardRule, UplinkSettings
from appliance.errors import MillstreamError, OffsetOutOfRangeError, StorageError, StreamNotFoundError
from appliance.kafka.records import read_header
from appliance.kafka.topics import TopicCatalog, TopicError, validate_name
from appliance.logs import get_logger
from appliance.storage.ports import LogStore, MetaStore
from appliance.uplink.bandwidth import RateMeter, TokenBucket
from appliance.uplink.client.backoff import Backoff
from appliance.uplink.client.batches import merge_batches, rewrite_producer_parts
from appliance.uplink.client.errors import (
    Handling,
    KafkaClientError,
    NoBrokerAvailableError,
    TlsError,
    classify,
    error_name,
)
from appliance.uplink.client.kafka_client import (
    Connector,
    KafkaClient,
    PendingProduce,
    open_kafka_client,
    tcp_connect,
)
from appliance.uplink.client.tls import UplinkTls
from appliance.uplink.lanes import READ, SEND, WAIT, Lane, SentBatch

log = get_logger("uplink")

NAMESPACE = "uplink"
PRODUCER_KEY = "producer"
MAX_IN_FLIGHT = 5  # Produce requests per connection; Kafka keeps idempotent ordering up to 5
READ_AHEAD_BYTES = 1 << 20  # per lane and read, at least
READ_AHEAD_TOTAL = 16 << 20  # ... and up to this much shared by the lanes, 4 MiB per lane at most
READ_AHEAD_MAX = 4 << 20
REQUEST_FLOOR = 1 << 20  # requests grow past this only on a link that has shown it carries them
TOPIC_EXISTS = 36
DUPLICATE_SEQUENCE = 46

Part = tuple[Lane, SentBatch]


class Forwarder:
    def __init__(self, settings: UplinkSettings, logs: LogStore, meta: MetaStore, topics: TopicCatalog, *,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random, connect: Connector | None = None,
                 tls: UplinkTls | None = None) -> None:
        self.settings = settings
        self.logs = logs
        self.meta = meta
        self.topics = topics
        self.clock = clock
        self.wall_clock = wall_clock
        self.rand = rand
        self.tls = tls
        self.connect = connect or (tls.connect if tls is not None else tcp_connect)
        self.tls_error: str | None = None  # short reason of the last TLS refusal; None once connected
        self.connect_failures = 0  # consecutive failed sessions (connection or TLS) since the last success
        self.lanes: dict[int, Lane] = {}
        rec = meta.get(NAMESPACE, PRODUCER_KEY) or {}
        self.producer: tuple[int, int] = (rec.get("pid", -1), rec.get("epoch", -1))
        self._producer_dirty = False
        self._deleted: set[str] = set()
        self.paused = False
        self._resumed = trio.Event()
        self._resumed.set()
        self._wake = trio.Event()
        self._ckpt_wake = trio.Event()
        self.connected = False
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.bucket = TokenBucket(settings.bandwidth)
        self.meter = RateMeter()
        self.backoff = Backoff(settings.reconnect_backoff, settings.reconnect_backoff_max, rand=rand)
        self.sent_batches = self.sent_records = self.sent_bytes = 0
        self.duplicates = 0
        self.merged_batches = 0  # batches sent that merged several stored ones
        self.merged_parts = 0  # stored batches that went out inside merged ones
        self.producer_starts = 0
        self.sessions = 0
        self.produce_requests = 0
        self.checkpoints = 0  # MetaStore writes of lane records
        # wall-clock marks of the current session, for catch-up figures: connected, first Produce
        # sent, last batch acknowledged (None: not yet)
        self.session_started_at: float | None = None
        self.first_send_at: float | None = None
        self.last_ack_at: float | None = None
        self._session_sent_at: float | None = None  # clock() of the session's first Produce
        self._session_sent_bytes = 0  # sent_bytes when it went
        self._session_error: BaseException | None = None
        self._inflight: dict[int | None, int] = {}
        self._answer_queues: dict[int | None, trio.MemorySendChannel] = {}
        self._metadata_due = 0.0
        self._metadata_failures = 0
        self._throttle_until = 0.0

    # --- public: lifecycle, control, state ----------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled. Ready at once: the plant never waits for the WAN."""
        self.sync_lanes()
        log.info("uplink_starting", bootstrap=",".join(self.settings.bootstrap), lanes=len(self.lanes),
                 bandwidth=self.settings.bandwidth or "unlimited")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._checkpointer)
            nursery.start_soon(self._data_watcher)
            nursery.start_soon(self._housekeeping)
            self._kick_checkpoint()
            task_status.started(self)
            await self._connection_loop()

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self._resumed = trio.Event()
            log.info("uplink_paused")

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._resumed.set()
            self._wakeup()
            log.info("uplink_resumed")

    def retention_floor(self, stream_id: int) -> int | None:
        """Lowest offset of `stream_id` local retention must keep, or None if the uplink does not
        hold this stream back (not forwarded, or hold_unforwarded = false)."""
        if not self.settings.hold_unforwarded:
            return None
        lane = self.lanes.get(stream_id)
        return None if lane is None else lane.cursor

    def retention_floors(self) -> dict[int, int]:
        """retention_floor for every stream the uplink holds back."""
        if not self.settings.hold_unforwarded:
            return {}
        return {sid: lane.cursor for sid, lane in self.lanes.items()}

    def status(self) -> dict[str, Any]:
        """For the admin API and metrics: link state, totals and per-topic backlog."""
        now_ms = int(self.wall_clock() * 1000)
        topics: dict[str, dict[str, Any]] = {}
        streams = self.logs.streams()
        for lane in sorted(self.lanes.values(), key=lambda x: (x.topic, x.partition)):
            info = streams.get(lane.stream_id)
            hw = info.offsets.high_watermark if info else lane.acked
            backlog = max(hw - lane.acked, 0)
            size = 0
            if info and backlog:
                retained = max(info.offsets.high_watermark - info.offsets.log_start, 1)
                size = int(info.size_bytes * min(backlog / retained, 1.0))
            age = max(now_ms - lane.oldest_ts, 0) / 1000 if backlog and lane.oldest_ts is not None else 0.0
            t = topics.setdefault(lane.topic, {"cloud_topic": lane.cloud_topic, "priority": lane.priority,
                                               "partitions": 0, "backlog_records": 0, "backlog_bytes": 0,
                                               "backlog_seconds": 0.0, "forwarded_offsets": {}, "lost_records": 0,
                                               "errors": {}})
            t["partitions"] += 1
            t["backlog_records"] += backlog
            t["backlog_bytes"] += size
            t["backlog_seconds"] = max(t["backlog_seconds"], round(age, 3))
            t["forwarded_offsets"][lane.partition] = lane.acked
            t["lost_records"] += lane.lost
            if lane.blocked or lane.error:
                t["errors"][lane.partition] = lane.blocked or lane.error
        return {
            "enabled": True,
            "connected": self.connected,
            "paused": self.paused,
            "bootstrap": list(self.settings.bootstrap),
            "security": self.settings.security,
            "tls_error": self.tls_error,
            "client_certificate": self.tls.cert_info.as_dict() if self.tls and self.tls.cert_info else None,
            "connect_failures": self.connect_failures,
            "producer_id": self.producer[0],
            "producer_epoch": self.producer[1],
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "throughput_bytes_per_s": round(self.meter.bytes_per_s, 1),
            "throughput_records_per_s": round(self.meter.records_per_s, 1),
            "sent_batches": self.sent_batches,
            "sent_records": self.sent_records,
            "sent_bytes": self.sent_bytes,
            "duplicates": self.duplicates,
            "merged_batches": self.merged_batches,
            "merged_stored_batches": self.merged_parts,
            "producer_starts": self.producer_starts,
            "sessions": self.sessions,
            "produce_requests": self.produce_requests,
            "checkpoints": self.checkpoints,
            "session_started_at": self.session_started_at,
            "first_send_at": self.first_send_at,
            "last_ack_at": self.last_ack_at,
            "bandwidth_cap": self.settings.bandwidth,
            "backlog_records": sum(t["backlog_records"] for t in topics.values()),
            "backlog_bytes": sum(t["backlog_bytes"] for t in topics.values()),
            "lost_records": sum(t["lost_records"] for t in topics.values()),
            "topics": topics,
        }

    # --- lanes -------------------------------------------------------------------------------

    def _rule(self, topic: str) -> ForwardRule | None:
        for rule in self.settings.forward:  # first match wins
            if rule.matches(topic):
                return rule
        return None

    def sync_lanes(self) -> None:
        """Create lanes for new local partitions that match a rule; drop those of deleted topics."""
        live = self.logs.streams()
        seen: set[int] = set()
        for topic in self.topics.all():
            if topic.name.startswith("__"):
                continue
            rule = self._rule(topic.name)
            if rule is None:
                continue
            cloud = rule.cloud.format(site=self.settings.site, topic=topic.name)
            for partition, sid in enumerate(topic.streams):
                if sid not in live:
                    continue
                seen.add(sid)
                if sid not in self.lanes:
                    self.lanes[sid] = self._open_lane(sid, topic.name, partition, cloud, rule.priority)
                    self._metadata_due = 0.0
        for sid in [s for s in self.lanes if s not in seen]:
            lane = self.lanes.pop(sid)
            self._deleted.add(lane.key)
            self._kick_checkpoint()
            log.info("uplink_lane_removed", topic=lane.topic, partition=lane.partition)

    def _open_lane(self, sid: int, topic: str, partition: int, cloud: str, priority: int) -> Lane:
        rec = self.meta.get(NAMESPACE, f"lane.{sid}")
        if rec is not None:
            lane = Lane.from_record(sid, rec, cloud, priority)
            if rec["cloud"] != cloud:
                log.warning("uplink_destination_changed", topic=topic, partition=partition, was=rec["cloud"], now=cloud)
        else:
            offs = self.logs.offsets(sid)
            start = offs.log_start if self.settings.start_from == "earliest" else offs.high_watermark
            lane = Lane(sid, topic, partition, cloud, priority, cursor=start)
            lane.dirty = True  # persist the start position before anything else happens
            self._kick_checkpoint()
        try:
            validate_name(cloud)
        except TopicError as e:
            lane.blocked = f"cloud topic name: {e}"
        return lane

    async def _fill(self, lane: Lane) -> None:
        try:
            res = await self.logs.read(lane.stream_id, lane.read_from, self._read_ahead())
        except OffsetOutOfRangeError as e:
            if (e.offset < e.log_start and lane.frontier == lane.acked and lane.outstanding == 0
                    and lane.unacked == 0):
                lost = lane.skip_lost(e.log_start)
                log.warning("uplink_data_lost", topic=lane.topic, partition=lane.partition, records=lost,
                            reason="local retention removed unforwarded data")
                self._kick_checkpoint()
            return
        except StreamNotFoundError:
            lane.blocked = "local partition deleted"
            return
        lane.add_read(res.batches)

    def _read_ahead(self) -> int:
        """Bytes per read: with few lanes several stored batches at once (fewer reads per MB)."""
        return max(READ_AHEAD_BYTES, min(READ_AHEAD_MAX, READ_AHEAD_TOTAL // max(len(self.lanes), 1)))

    def _request_limit(self, now: float) -> int:
        """Largest Produce request now: max_request_bytes, but no more than the link has shown it
        carries in a quarter of request_timeout this session (at least REQUEST_FLOOR), so a slow
        link never gets a request it cannot finish before the answer's deadline."""
        cap = self.settings.max_request_bytes
        floor = min(cap, REQUEST_FLOOR)
        if self._session_sent_at is None or cap <= floor:
            return floor
        elapsed = max(now - self._session_sent_at, 0.05)
        rate = (self.sent_bytes - self._session_sent_bytes) / elapsed
        return max(floor, min(cap, int(rate * self.settings.request_timeout / 4)))

    # --- checkpoints ---------------------------------------------------------------------------

    def _kick_checkpoint(self) -> None:
        self._ckpt_wake.set()

    def _wakeup(self) -> None:
        self._wake.set()

    async def _checkpointer(self) -> None:
        """The only writer of the "uplink" namespace, so records never overtake each other."""
        while True:
            await self._ckpt_wake.wait()
            self._ckpt_wake = trio.Event()
            await self.checkpoint()

    async def checkpoint(self) -> None:
        entries: dict[str, Any] = {}
        applied: list[tuple[Lane, dict[str, Any]]] = []
        for lane in list(self.lanes.values()):
            if lane.dirty:
                rec = lane.record()
                entries[lane.key] = rec
                applied.append((lane, rec))
                lane.dirty = False
        deleted = set(self._deleted)
        for key in deleted:
            entries[key] = None
        producer_dirty = self._producer_dirty
        if producer_dirty:
            entries[PRODUCER_KEY] = {"v": 1, "pid": self.producer[0], "epoch": self.producer[1]}
            self._producer_dirty = False
        if not entries:
            return
        try:
            await self.meta.put_many(NAMESPACE, entries)
        except BaseException as e:
            for lane, _ in applied:
                lane.dirty = True
            self._producer_dirty = self._producer_dirty or producer_dirty
            if isinstance(e, StorageError):
                self._note_error(f"checkpoint failed: {e}")
                await trio.sleep(1.0)
                self._kick_checkpoint()
                return
            raise
        self.checkpoints += 1
        self._deleted -= deleted
        for lane, rec in applied:
            lane.checkpointed(rec)
        self._wakeup()

    # --- background watchers ---------------------------------------------------------------------

    async def _data_watcher(self) -> None:
        """Wake the pump when any forwarded stream gets new committed data."""
        while True:
            interests = {}
            for sid in list(self.lanes):
                try:
                    interests[sid] = self.logs.offsets(sid).high_watermark
                except StreamNotFoundError:
                    pass
            with trio.move_on_after(1.0):
                if interests:
                    await self.logs.wait_for_data(interests)
                else:
                    await trio.sleep(1.0)
            self._wakeup()
            await trio.sleep(0.002)  # coalesce a burst of appends into one wake-up

    async def _housekeeping(self) -> None:
        while True:
            self.sync_lanes()
            self.meter.tick(self.clock())
            for lane in list(self.lanes.values()):
                await self._note_oldest(lane)
            await trio.sleep(1.0)

    async def _note_oldest(self, lane: Lane) -> None:
        try:
            offs = self.logs.offsets(lane.stream_id)
            if lane.acked >= offs.high_watermark or lane.acked < offs.log_start:
                lane.oldest_ts = None
                return
            res = await self.logs.read(lane.stream_id, lane.acked, 1)
        except (MillstreamError, OSError):
            return
        if res.batches:
            lane.oldest_ts = read_header(res.batches[0]).base_timestamp

    # --- the connection --------------------------------------------------------------------------

    def _note_error(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = self.wall_clock()

    async def _connection_loop(self) -> None:
        s = self.settings
        while True:
            if self.paused:
                await self._resumed.wait()
            try:
                async with open_kafka_client(s.bootstrap, client_id=s.client_id, connect_timeout=s.connect_timeout,
                                             request_timeout=s.request_timeout, connect=self.connect) as client:
                    await self._session(client)
            except Exception as e:  # incl. exception groups from the session's tasks
                msg = _describe(e)
                self._note_error(msg)
                self.connect_failures += 1
                tls = _tls_error(e)
                if tls is not None:
                    self.tls_error = tls.reason
                    log.warning("uplink_tls_refused", reason=tls.reason, error=str(tls), attempts=self.connect_failures)
                else:
                    log.warning("uplink_disconnected", error=msg)
            finally:
                self.connected = False
            self._settle(force=True)
            await trio.sleep(self.backoff.next_delay())

    async def _session(self, client: KafkaClient) -> None:
        self._session_error = None
        self._inflight = {}
        self._answer_queues = {}
        await client.bootstrap()
        self.connected = True
        self.tls_error = None
        self.connect_failures = 0
        self._metadata_failures = 0
        self.sessions += 1
        self.session_started_at, self.first_send_at = self.wall_clock(), None
        self._session_sent_at = None
        log.info("uplink_connected", session=self.sessions, lanes=len(self.lanes))
        await self._refresh_metadata(client)
        async with trio.open_nursery() as nursery:
            try:
                await self._pump(client, nursery)
            finally:
                client.close("session ended")

    async def _refresh_metadata(self, client: KafkaClient) -> None:
        lanes = [lane for lane in self.lanes.values() if not (lane.blocked or "").startswith("cloud topic name")]
        names = sorted({lane.cloud_topic for lane in lanes})
        self._metadata_due = self.clock() + self.settings.metadata_refresh
        if not names:
            return
        md = await client.metadata(names)
        missing = [n for n in names if n not in md.topics or md.topics[n].error == 3]
        if missing and self.settings.create_topics:
            counts = {}
            for lane in lanes:
                t = self.topics.get(lane.topic)
                counts[lane.cloud_topic] = max(counts.get(lane.cloud_topic, 1), t.partitions if t else lane.partition + 1)
            specs = [(n, counts[n], self.settings.replication_factor) for n in missing]
            result = await client.create_topics(specs, controller=md.controller)
            for name, (code, message) in result.items():
                if code in (0, TOPIC_EXISTS):
                    log.info("uplink_cloud_topic_created", topic=name, partitions=counts.get(name), code=code)
                else:
                    self._note_error(f"creating cloud topic {name}: {error_name(code)} {message or ''}".strip())
            md = await client.metadata(names)
        transient = False
        for lane in lanes:
            tm = md.topics.get(lane.cloud_topic)
            lane.node = None
            was = lane.blocked
            if tm is None or tm.error:
                code = tm.error if tm else 3
                lane.blocked = f"cloud topic {lane.cloud_topic}: {error_name(code)}"
            elif lane.partition not in tm.partitions:
                lane.blocked = (f"cloud topic {lane.cloud_topic} has {len(tm.partitions)} partitions, "
                                f"no partition {lane.partition}")
            else:
                lane.node = md.leader(lane.cloud_topic, lane.partition)
                lane.blocked = None if lane.node is not None else f"cloud partition {lane.cloud_topic}-{lane.partition} has no leader"
            transient = transient or lane.blocked is not None
            if lane.blocked != was and lane.blocked is not None:
                self._note_error(f"{lane.topic}-{lane.partition}: {lane.blocked}")
                log.warning("uplink_partition_blocked", topic=lane.topic, partition=lane.partition,
                            cloud=lane.cloud_topic, reason=lane.blocked)
        if transient:
            # Ask again soon, then less often: a denied or missing cloud topic must not turn into a
            # Metadata (and denial) storm on the cloud.
            self._metadata_failures += 1
            retry = min(self.settings.metadata_refresh, 2.0 ** min(self._metadata_failures - 1, 16))
            self._metadata_due = min(self._metadata_due, self.clock() + retry)
        else:
            self._metadata_failures = 0

    # --- the pump ------------------------------------------------------------------------------

    def _settle(self, force: bool = False) -> None:
        now = self.clock()
        for lane in self.lanes.values():
            if lane.failed is None:
                continue
            if force and lane.outstanding:
                continue  # answers still to come: settles when they do
            failed = lane.failed
            fatal = failed is Handling.FATAL
            cap = 30.0 if fatal else self.settings.reconnect_backoff_max
            delay = min(cap, self.settings.reconnect_backoff * 2 ** min(lane.failures, 16))
            delay = delay / 2 + self.rand() * delay / 2
            if lane.settle(now, delay) is not None:
                self._note_error(f"{lane.topic}-{lane.partition}: {lane.error}")
                event = "uplink_sequence_lost" if failed in (Handling.SEQUENCE_LOST, Handling.FENCED) else "uplink_partition_error"
                log.warning(event, topic=lane.topic, partition=lane.partition, cloud=lane.cloud_topic,
                            handling=failed.value, error=lane.error, resume_at=lane.acked, retry_in_s=round(delay, 3))

    async def _pump(self, client: KafkaClient, nursery: trio.Nursery) -> None:
        while True:
            self._wake = trio.Event()
            if self._session_error is not None:
                raise self._session_error
            if self.paused:
                await self._resumed.wait()
                continue
            now = self.clock()
            self._settle()
            if now >= self._metadata_due:
                await self._refresh_metadata(client)
            starting = [lane for lane in self.lanes.values() if lane.can_start() and lane.blocked is None]
            if starting:
                await self._start(client, starting)
            if now < self._throttle_until or not await self._send_round(client, nursery, now):
                await self._idle(now)

    async def _start(self, client: KafkaClient, lanes: list[Lane]) -> None:
        pid, epoch = await client.init_producer_id(*self.producer)
        self.producer = (pid, epoch)
        self._producer_dirty = True
        self.producer_starts += 1
        for lane in lanes:
            lane.start(pid, epoch)
        log.info("uplink_producer_started", producer_id=pid, epoch=epoch, lanes=len(lanes),
                 partitions=",".join(f"{lane.topic}-{lane.partition}@{lane.acked}" for lane in lanes[:8]))
        self._kick_checkpoint()

    def _has_backlog(self, lane: Lane, now: float) -> bool:
        if lane.blocked is not None or lane.needs_start or now < lane.retry_at:
            return False
        if lane.buffer or lane.unacked:
            return True
        try:
            return self.logs.offsets(lane.stream_id).high_watermark > lane.frontier
        except StreamNotFoundError:
            return False

    async def _send_round(self, client: KafkaClient, nursery: trio.Nursery, now: float) -> bool:
        lanes = sorted(self.lanes.values(), key=lambda x: (x.priority, x.stream_id))
        if self.bucket.capped:
            urgent = min((lane.priority for lane in lanes if self._has_backlog(lane, now)), default=None)
            lanes = [lane for lane in lanes if lane.priority == urgent]
        requests: dict[int | None, dict[tuple[str, int], tuple[Lane, SentBatch, bytearray | tuple[bytes, bytes]]]] = {}
        sizes: dict[int | None, int] = {}
        limit = self._request_limit(now)
        merge_bytes = min(self.settings.merge_bytes, self.settings.max_request_bytes)
        for lane in lanes:
            if not lane.ready(now) or self._inflight.get(lane.node, 0) >= MAX_IN_FLIGHT:
                continue
            if not lane.buffer:
                await self._fill(lane)
                if not lane.buffer or not lane.ready(now):
                    continue
            action, n = lane.next_group(merge_bytes)
            if action == READ:  # a planned merged group reaches past the read-ahead
                await self._fill(lane)
                if not lane.ready(now):
                    continue
                action, n = lane.next_group(merge_bytes)
            if action != SEND:
                if action == WAIT:
                    self._kick_checkpoint()  # the plan must be durable before its groups go out
                continue
            size = sizes.get(lane.node, 0)
            group_size = sum(len(lane.buffer[i]) for i in range(n))
            if size and size + group_size > limit:
                continue
            batches, sb = lane.take(n)
            if n == 1:  # (header, records): joined once, into the request's frame
                out: bytearray | tuple[bytes, bytes] = rewrite_producer_parts(batches[0], lane.pid, lane.epoch, sb.seq)
                out_size = len(out[0]) + len(out[1])
            else:
                out = merge_batches(batches, lane.pid, lane.epoch, sb.seq)
                out_size = len(out)
            requests.setdefault(lane.node, {})[(lane.cloud_topic, lane.partition)] = (lane, sb, out)
            sizes[lane.node] = size + out_size
        queue = list(requests.items())
        dispatched = 0
        try:
            for node, parts in queue:
                delay = self.bucket.reserve(sizes[node], self.clock())
                if delay > 0:
                    await trio.sleep(delay)
                pending = await client.send_produce(node, {k: v[2] for k, v in parts.items()},
                                                    timeout_ms=int(self.settings.request_timeout * 1000))
                dispatched += 1
                self.produce_requests += 1
                if self.first_send_at is None:
                    self.first_send_at = self.wall_clock()
                    self._session_sent_at, self._session_sent_bytes = self.clock(), self.sent_bytes
                self._inflight[node] = self._inflight.get(node, 0) + 1
                answers = self._answer_queues.get(node)
                if answers is None:  # one reader per node: answers are applied in send order
                    answers, receive = trio.open_memory_channel(math.inf)
                    self._answer_queues[node] = answers
                    nursery.start_soon(self._answers, receive)
                answers.send_nowait((pending, node, {k: (v[0], v[1]) for k, v in parts.items()}))
        except BaseException as e:
            for _, parts in queue[dispatched:]:  # taken but never (fully) sent: resend later
                for lane, sb, _ in parts.values():
                    lane.on_error(sb, Handling.RETRY, f"send failed: {type(e).__name__}: {e}")
            raise
        return bool(requests)

    async def _answers(self, receive: trio.MemoryReceiveChannel) -> None:
        try:
            async for pending, node, parts in receive:
                await self._await_answer(pending, node, parts)
        finally:
            while True:  # the session ended: requests still queued will never be answered
                try:
                    _, node, parts = receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                for lane, sb in parts.values():
                    lane.on_error(sb, Handling.RETRY, "request abandoned")
                self._inflight[node] -= 1

    async def _await_answer(self, pending: PendingProduce, node: int | None, parts: dict[tuple[str, int], Part]) -> None:
        done = False
        try:
            results, throttle_ms = await pending.result()
            done = True
            for key, (lane, sb) in parts.items():
                r = results[key]
                handling = classify(r.error)
                if handling is Handling.SUCCESS:
                    if lane.on_success(sb):
                        self.sent_batches += 1
                        if sb.parts > 1:
                            self.merged_batches += 1
                            self.merged_parts += sb.parts
                        self.sent_records += sb.count
                        self.sent_bytes += sb.size
                        self.meter.add(sb.size, sb.count)
                        self.last_ack_at = self.wall_clock()
                        if r.error == DUPLICATE_SEQUENCE:
                            self.duplicates += 1
                        self.backoff.reset()
                else:
                    lane.on_error(sb, handling, f"{error_name(r.error)}: {r.message or ''}".rstrip(": "))
                    if handling is Handling.REFRESH_METADATA:
                        self._metadata_due = 0.0
            if throttle_ms > 0:
                self._throttle_until = self.clock() + throttle_ms / 1000
        except KafkaClientError as e:
            done = True
            for lane, sb in parts.values():
                lane.on_error(sb, Handling.RETRY, str(e))
            if self._session_error is None:
                self._session_error = e
        finally:
            if not done:  # cancelled: the answer will never be read
                for lane, sb in parts.values():
                    lane.on_error(sb, Handling.RETRY, "request abandoned")
            self._inflight[node] -= 1
            self._kick_checkpoint()
            self._wakeup()

    async def _idle(self, now: float) -> None:
        timeout = 1.0
        for lane in self.lanes.values():
            if lane.retry_at > now:
                timeout = min(timeout, lane.retry_at - now)
        if self._throttle_until > now:
            timeout = min(timeout, self._throttle_until - now)
        timeout = min(timeout, max(self._metadata_due - now, 0.0))
        with trio.move_on_after(max(timeout, 0.001)):
            await self._wake.wait()


def _tls_error(e: BaseException) -> TlsError | None:
    """The TLS refusal behind a failed session, if that is what it was."""
    if isinstance(e, TlsError):
        return e
    if isinstance(e, NoBrokerAvailableError):
        return e.tls
    if isinstance(e, BaseExceptionGroup):
        for sub in e.exceptions:
            found = _tls_error(sub)
            if found is not None:
                return found
    return None


def _describe(e: BaseException) -> str:
    leaves: list[BaseException] = []

    def walk(x: BaseException) -> None:
        if isinstance(x, BaseExceptionGroup):
            for sub in x.exceptions:
                walk(sub)
        else:
            leaves.append(x)

    walk(e)
    return "; ".join(f"{type(x).__name__}: {x}" for x in leaves[:3]) or repr(e)


try:  # Python 3.10
    BaseExceptionGroup  # noqa: B018
except NameError:  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup


__all__ = ["Forwarder", "NAMESPACE"]
