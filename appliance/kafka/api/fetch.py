"""Fetch (key 1), versions 4-17.

Reads durable batches (everything below the high watermark) and returns them as stored: an
offset inside a batch gets the whole batch, and the first partition with data always gets at
least one batch even when it is larger than the size limits, so consumers always progress.
Long polling: when less than min_bytes is available, wait up to max_wait_ms (capped by
`kafka.fetch_max_wait_cap`) for new data on any requested partition; a draining broker answers at once.
Incremental fetch sessions (KIP-227) are not created: session id 0 tells clients to keep sending
full fetch requests, which every client supports.
"""

from __future__ import annotations

import trio

from appliance.errors import OffsetOutOfRangeError, StorageError, StreamNotFoundError
from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.protocol import messages as m

API_KEY = 1
VERSIONS = (4, 17)

R = m.FetchResponse
TopicR = R.FetchableTopicResponse
PartR = TopicR.PartitionData
READ_COMMITTED = 1
# Kafka's default broker `fetch.max.bytes` (55 MiB): whatever max_bytes a request asks for, and
# however many times it names a partition, one response never holds more than this (plus the
# first batch, which always goes out so a consumer progresses). Without it one small request could
# make the broker build a response of partition size x repetitions.
FETCH_MAX_BYTES = 55 << 20


class _Read:
    """One pass over the request: the response, its size, the streams to wait on, bytes per topic."""

    __slots__ = ("response", "total", "interests", "by_topic")

    def __init__(self, response: m.FetchResponse, total: int, interests: dict[int, int],
                 by_topic: dict[str, int]) -> None:
        self.response, self.total, self.interests, self.by_topic = response, total, interests, by_topic


async def _read_once(ctx: RequestContext, req: m.FetchRequest) -> _Read:
    broker = ctx.broker
    by_topic: dict[str, int] = {}
    by_id = ctx.api_version >= 13
    budget = min(req.max_bytes, FETCH_MAX_BYTES) if req.max_bytes > 0 else FETCH_MAX_BYTES
    total = 0
    interests: dict[int, int] = {}
    aborted = [] if req.isolation_level == READ_COMMITTED else None
    responses = []
    for t in req.topics:
        topic = broker.topics.by_id(t.topic_id) if by_id else broker.topics.get(t.topic)
        denied = authz.topic_error(ctx, "consume", topic.name if by_id and topic else None if by_id else t.topic)
        parts = []
        for p in t.partitions:
            if denied:
                parts.append(PartR(partition_index=p.partition, error_code=denied, high_watermark=-1, records=b""))
                continue
            stream = topic.streams[p.partition] if topic is not None and 0 <= p.partition < topic.partitions else None
            if stream is None:
                code = ErrorCode.UNKNOWN_TOPIC_ID if by_id and topic is None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                parts.append(PartR(partition_index=p.partition, error_code=code, high_watermark=-1, records=b""))
                continue
            try:
                offs = broker.logs.offsets(stream)
                batches: list[bytes] = []
                if budget > 0 or total == 0:
                    limit = max(1, min(p.partition_max_bytes, budget))
                    rr = await broker.logs.read(stream, p.fetch_offset, limit)
                    batches, offs_hw, offs_start = rr.batches, rr.high_watermark, rr.log_start
                else:
                    offs_hw, offs_start = offs.high_watermark, offs.log_start
            except OffsetOutOfRangeError as e:
                parts.append(PartR(partition_index=p.partition, error_code=ErrorCode.OFFSET_OUT_OF_RANGE,
                                   high_watermark=e.high_watermark, last_stable_offset=e.high_watermark,
                                   log_start_offset=e.log_start, records=b""))
                continue
            except StreamNotFoundError:
                parts.append(PartR(partition_index=p.partition, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                   high_watermark=-1, records=b""))
                continue
            except StorageError:
                parts.append(PartR(partition_index=p.partition, error_code=ErrorCode.KAFKA_STORAGE_ERROR,
                                   high_watermark=-1, records=b""))
                continue
            size = sum(len(b) for b in batches)
            if size:
                by_topic[topic.name] = by_topic.get(topic.name, 0) + size
            total += size
            budget -= size
            if not batches:
                interests[stream] = p.fetch_offset
            parts.append(PartR(partition_index=p.partition, error_code=0, high_watermark=offs_hw,
                               last_stable_offset=offs_hw, log_start_offset=offs_start,
                               aborted_transactions=aborted, preferred_read_replica=-1,
                               records=batches if batches else b""))
        responses.append(TopicR(topic=t.topic, topic_id=t.topic_id, partitions=parts))
    return _Read(R(throttle_time_ms=0, error_code=0, session_id=0, responses=responses), total, interests, by_topic)


def _sent(ctx: RequestContext, read: _Read) -> m.FetchResponse:
    """The response going out: its bytes count as egress in the live per-topic rates."""
    if read.by_topic:
        meter, now = ctx.broker.meter, ctx.broker.monotonic()
        for name, size in read.by_topic.items():
            meter.add_out(name, size, now)
    return read.response


async def _wait_any(ctx: RequestContext, interests: dict[int, int]) -> None:
    async with trio.open_nursery() as n:
        async def data() -> None:
            await ctx.broker.logs.wait_for_data(interests)
            n.cancel_scope.cancel()

        async def draining() -> None:
            await ctx.broker.draining.wait()
            n.cancel_scope.cancel()

        n.start_soon(data)
        n.start_soon(draining)


async def handle(ctx: RequestContext, req: m.FetchRequest) -> m.FetchResponse:
    max_wait = min(max(req.max_wait_ms, 0) / 1000, ctx.broker.kafka.fetch_max_wait_cap)
    deadline = trio.current_time() + max_wait
    while True:
        read = await _read_once(ctx, req)
        if (read.total >= max(req.min_bytes, 1) or not read.interests or trio.current_time() >= deadline
                or ctx.broker.draining.is_set()):
            return _sent(ctx, read)
        with trio.move_on_at(deadline):
            await _wait_any(ctx, read.interests)
        if trio.current_time() >= deadline:
            return _sent(ctx, await _read_once(ctx, req))
