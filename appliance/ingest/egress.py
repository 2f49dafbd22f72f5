"""Kafka -> MQTT: records of configured Kafka topics published to local MQTT subscribers.

Adapter (trio). One task follows every partition of each `[[mqtt_out]]` topic through the
LogStore port (`wait_for_data`, then `read`) and publishes each record through the MQTT broker
core, so local subscribers (HMIs, historians) see what Kafka clients produce.

- MQTT topic: the rule's template over {topic}, {partition} and {key} (the record key as UTF-8;
  wildcard characters `+` `#` become `_`); payload: the record value; Kafka headers become MQTT 5
  user properties (`content-type` becomes the content type).
- Several rules may follow the same Kafka topic (say, one retained "latest value" topic per key
  and one QoS 1 event stream): each record is published once per rule, in file order; they
  share the topic's position.
- Loops are cut: these messages carry the `$millstream/` origin, which the ingest sink skips.
- gzip batches are decompressed with the stdlib; other codecs are skipped with a counter.

Positions (MetaStore namespace `mqtt.egress`, one key per followed Kafka topic:
`{"v": 1, "streams": {"<stream id>": next offset}}`). The very first time a topic is followed
its existing partitions start at their end (a live mirror, no replay of history) and that start
is written before anything is published; partitions that appear later start at their log start.
After a restart every partition resumes at its committed position, so records produced while
the appliance was down are published then. Commits are batched: every
`[ingest] mqtt_out_commit_interval`, or sooner after `mqtt_out_commit_records` publishes.

Delivery guarantee, for QoS 1/2 subscribers with a persistent session (a clean session loses
its messages on any disconnect anyway): at least once, no gaps. Before a position is committed,
every connected persistent session that still holds messages not acknowledged (in flight or
queued) is written through the MQTT state store (state.py), so what was handed to the broker
below the committed position is either acknowledged by the subscriber or in its durable session.
- After kill -9, a subscriber may see again at most the records published since the last commit
  (one interval, or about `mqtt_out_commit_records` plus one read) plus the messages unacknowledged in
  its session at that commit (at most `[mqtt] max_inflight` + its queue), flagged DUP.
- After a graceful stop (`stop()`, called by the runtime before the MQTT listeners close)
  publishing stops, the egress waits (bounded by the grace period) until connected subscribers
  have acknowledged every message it published, then commits: nothing is repeated.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import trio

from appliance.config import MqttOutRule
from appliance.errors import MillstreamError, StorageError
from appliance.ingest.pipeline import LOCAL_ORIGIN
from appliance.ingest.templates import Template
from appliance.kafka.records import decode_records, read_header
from appliance.logs import get_logger
from appliance.mqtt.codec.properties import PropertyId as P
from appliance.mqtt.session import Message
from appliance.storage.ports import MetaStore

log = get_logger("ingest")

POSITIONS_NS = "mqtt.egress"
FORMAT_VERSION = 1
ORIGIN = LOCAL_ORIGIN + "kafka"
_READ_BYTES = 1 << 20
_RESCAN_SECONDS = 1.0  # how often new topics / partitions are looked for
_QUIESCE_POLL = 0.02


@dataclass
class EgressStats:
    published: int = 0
    skipped_compressed: int = 0
    errors: int = 0
    commits: int = 0
    commit_errors: int = 0


@dataclass
class _Follow:
    routes: list[tuple[MqttOutRule, Template]]  # every rule for this Kafka topic, in file order
    topic: str
    partition: int
    offset: int


def _decompress(codec: int, data: bytes) -> bytes:
    if codec == 1:
        return gzip.decompress(data)
    raise ValueError(f"compression codec {codec} is not supported here")


def _discard(waiter: Any) -> None:
    close = getattr(waiter, "close", None)  # a coroutine nobody will await
    if close is not None:
        close()


class KafkaToMqtt:
    def __init__(self, rules: Sequence[MqttOutRule], kafka: Any, mqtt: Any, *, meta: MetaStore | None = None,
                 commit_interval: float = 1.0, commit_records: int = 10_000) -> None:
        """`kafka`: the Kafka broker (.topics, .logs); `mqtt`: the MQTT broker core; `meta`: where
        positions are committed (None: in memory only, every start follows from the end)."""
        self.rules = list(rules)
        self.kafka = kafka
        self.mqtt = mqtt
        self.meta = meta
        self.commit_interval = commit_interval
        self.commit_records = commit_records
        self.stats = EgressStats()
        self._follows: dict[int, _Follow] = {}  # stream id -> position
        self._routes: dict[str, list[tuple[MqttOutRule, Template]]] = {}  # Kafka topic -> its rules
        for r in self.rules:
            self._routes.setdefault(r.kafka_topic, []).append((r, Template(r.mqtt_topic)))
        self._stored: dict[str, dict[int, int]] = {}  # Kafka topic -> stream id -> committed offset
        self._committed: dict[int, int] = {}  # what the last commit wrote, to skip idle commits
        self._uncommitted = 0  # records published since the last commit
        self._dirty_sessions: set[str] = set()  # sessions last written with unacknowledged messages
        self._loop_scope: trio.CancelScope | None = None
        self._loop_done = trio.Event()

    # --- positions -----------------------------------------------------------------------------

    def _load(self) -> None:
        if self.meta is None:
            return
        for topic, rec in self.meta.items(POSITIONS_NS).items():
            if isinstance(rec, dict) and rec.get("v") == FORMAT_VERSION:
                self._stored[topic] = {int(sid): int(off) for sid, off in rec.get("streams", {}).items()}

    def _start_offset(self, topic: str, sid: int, offs: Any, initial: bool) -> int:
        stored = self._stored.get(topic)
        if stored is not None and sid in stored:
            return min(max(stored[sid], offs.log_start), offs.high_watermark)
        if initial and stored is None:
            return offs.high_watermark  # never followed before: a live mirror from now on
        return offs.log_start  # appeared since we started following this topic: nothing skipped

    def _scan(self, initial: bool) -> None:
        logs = self.kafka.logs
        for name, routes in self._routes.items():
            topic = self.kafka.topics.get(name)
            if topic is None:
                continue
            for p, sid in enumerate(topic.streams):
                if sid in self._follows:
                    continue
                try:
                    offs = logs.offsets(sid)
                except MillstreamError:
                    continue
                start = self._start_offset(name, sid, offs, initial)
                self._follows[sid] = _Follow(routes, name, p, start)
                log.info("mqtt_out_following", topic=name, partition=p, offset=start, rules=len(routes))

    def positions(self) -> dict[str, dict[int, int]]:
        """Kafka topic -> stream id -> next offset to publish (what a commit writes)."""
        out: dict[str, dict[int, int]] = {name: {} for name in self._routes}
        for sid, f in self._follows.items():
            out.setdefault(f.topic, {})[sid] = f.offset
        return out

    async def commit(self, *, force: bool = False) -> None:
        """Make the positions durable (after the subscribers' sessions holding unacknowledged
        messages, see the module docstring). A failure is logged; the next commit retries."""
        if self.meta is None:
            return
        positions = self.positions()
        flat = {sid: off for streams in positions.values() for sid, off in streams.items()}
        if not force and flat == self._committed:
            return
        try:
            await self._protect_sessions()
            await self.meta.put_many(POSITIONS_NS, {
                topic: {"v": FORMAT_VERSION, "streams": {str(sid): off for sid, off in streams.items()}}
                for topic, streams in positions.items()})
        except StorageError as e:
            self.stats.commit_errors += 1
            log.warning("mqtt_out_commit_failed", error=str(e))
            return
        self._committed = flat
        self._uncommitted = 0
        self.stats.commits += 1

    async def _protect_sessions(self) -> None:
        store = getattr(self.mqtt, "state_store", None)
        if store is None:
            return
        holding = set()
        for cid, session in self.mqtt.sessions.items():
            if session.connection is not None and session.expiry_interval > 0 and (session.inflight or session.queue):
                holding.add(cid)
        # sessions written with unacknowledged messages last time are written again, so that a
        # restart does not resend messages acknowledged long ago
        for cid in holding | self._dirty_sessions:
            session = self.mqtt.sessions.get(cid)
            if session is not None:
                store.session_changed(session)
        self._dirty_sessions = holding
        await store.flush(trio.current_time())

    # --- run and stop --------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._load()
        self._scan(initial=True)
        if self.meta is not None:
            gone = {t: None for t in self._stored if t not in {r.kafka_topic for r in self.rules}}
            if gone:  # rules removed from the config: forget their positions
                await self.meta.put_many(POSITIONS_NS, gone)
            await self.commit(force=True)  # the starting points, before anything is published
        task_status.started()
        try:
            with trio.CancelScope() as self._loop_scope:
                await self._follow()
        finally:
            self._loop_done.set()

    async def stop(self, deadline: float) -> None:
        """Graceful stop: no more publishing; wait (until `deadline`, trio time) for connected
        subscribers to acknowledge what was published; commit the final positions."""
        if self._loop_scope is None:
            return
        self._loop_scope.cancel()
        await self._loop_done.wait()
        with trio.move_on_at(deadline):
            while self._unacknowledged():
                await trio.sleep(_QUIESCE_POLL)
        with trio.move_on_at(deadline + 2.0):
            await self.commit(force=True)
        log.info("mqtt_out_stopped", published=self.stats.published, unacknowledged=self._unacknowledged())

    def _unacknowledged(self) -> int:
        n = 0
        for session in self.mqtt.sessions.values():
            if session.connection is None or session.expiry_interval == 0:
                continue
            n += sum(1 for o in session.inflight.values() if o.message.origin == ORIGIN)
            n += sum(1 for o in session.queue if o.message.origin == ORIGIN)
        return n

    async def _follow(self) -> None:
        logs = self.kafka.logs
        next_scan = trio.current_time() + _RESCAN_SECONDS
        next_commit = trio.current_time() + self.commit_interval
        while True:
            interests = {sid: f.offset for sid, f in self._follows.items()}
            with trio.move_on_at(min(next_scan, next_commit) if self.meta is not None else next_scan):
                if interests:
                    await logs.wait_for_data(interests)
                else:
                    await trio.sleep_forever()
            now = trio.current_time()
            if now >= next_scan:
                self._scan(initial=False)
                next_scan = now + _RESCAN_SECONDS
            for sid, f in list(self._follows.items()):
                try:
                    offs = logs.offsets(sid)
                    if offs.high_watermark <= f.offset:
                        continue
                    if f.offset < offs.log_start:
                        f.offset = offs.log_start
                    res = await logs.read(sid, f.offset, _READ_BYTES)
                except MillstreamError as e:  # deleted topic, truncated log
                    self.stats.errors += 1
                    log.warning("mqtt_out_read_failed", topic=f.topic, partition=f.partition, error=str(e))
                    self._follows.pop(sid, None)
                    continue
                for batch in res.batches:
                    self._publish_batch(f, batch)
                meter = getattr(self.kafka, "meter", None)  # the live per-topic rates count it as egress
                if meter is not None and res.batches:
                    meter.add_out(f.topic, sum(len(b) for b in res.batches), self.kafka.monotonic())
                if self._uncommitted >= self.commit_records:
                    break
            if self.meta is not None and (trio.current_time() >= next_commit
                                          or self._uncommitted >= self.commit_records):
                await self.commit()
                next_commit = trio.current_time() + self.commit_interval

    def _publish_batch(self, f: _Follow, batch: bytes) -> None:
        h = read_header(batch)
        if h.is_control:
            f.offset = max(f.offset, h.last_offset + 1)
            return
        try:
            records = decode_records(batch, _decompress)
        except (ValueError, OSError, MillstreamError):
            self.stats.skipped_compressed += h.records_count
            f.offset = max(f.offset, h.last_offset + 1)
            return
        now = trio.current_time()
        for rec in records:
            if rec.offset < f.offset:
                continue
            key = (rec.key or b"").decode("utf-8", "replace")
            extra = {"topic": f.topic, "partition": str(f.partition), "key": key}
            props: dict[int, Any] = {}
            users = []
            for hk, hv in rec.headers:
                value = (hv or b"").decode("utf-8", "replace")
                if hk == "content-type":
                    props[P.CONTENT_TYPE] = value
                else:
                    users.append((hk, value))
            if users:
                props[P.USER_PROPERTY] = users
            for rule, template in f.routes:
                mqtt_topic = template.render((), None, extra).replace("+", "_").replace("#", "_") or f.topic
                msg = Message(mqtt_topic, rec.value or b"", rule.qos, rule.retain, props, None, ORIGIN)
                try:
                    _discard(self.mqtt.publish(msg, now, None))  # durability comes with the next commit
                    self.stats.published += 1
                    self._uncommitted += 1
                except MillstreamError as e:
                    self.stats.errors += 1
                    log.warning("mqtt_out_publish_failed", topic=mqtt_topic, error=str(e))
            f.offset = rec.offset + 1
        f.offset = max(f.offset, h.last_offset + 1)

    def snapshot(self) -> dict[str, int]:
        return asdict(self.stats)
