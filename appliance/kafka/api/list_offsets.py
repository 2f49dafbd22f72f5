"""ListOffsets (key 2), versions 0-6: earliest (-2), latest (-1) or the first offset at a time.

A timestamp lookup finds the first batch whose max timestamp reaches the target; inside an
uncompressed batch it then picks the exact record, inside a compressed one it answers the
batch's first offset (consumers skip the earlier records themselves).
"""

from __future__ import annotations

from appliance.errors import CorruptRecordError, OffsetOutOfRangeError, StreamNotFoundError
from appliance.kafka import records
from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.protocol import messages as m

API_KEY = 2
VERSIONS = (0, 6)

R = m.ListOffsetsResponse
TopicR = R.ListOffsetsTopicResponse
PartR = TopicR.ListOffsetsPartitionResponse
LATEST, EARLIEST = -1, -2


async def _by_timestamp(ctx: RequestContext, stream: int, ts: int) -> tuple[int, int]:
    found = await ctx.broker.logs.offset_for_timestamp(stream, ts)
    if found is None:
        return -1, -1
    offset, batch_ts = found
    try:
        rr = await ctx.broker.logs.read(stream, offset, 1)
    except OffsetOutOfRangeError:
        return offset, batch_ts
    if rr.batches and not records.read_header(rr.batches[0]).compression:
        try:
            for rec in records.decode_records(rr.batches[0]):
                if rec.offset >= offset and rec.timestamp >= ts:
                    return rec.offset, rec.timestamp
        except CorruptRecordError:
            pass
    return offset, batch_ts


async def handle(ctx: RequestContext, req: m.ListOffsetsRequest) -> m.ListOffsetsResponse:
    broker = ctx.broker
    topics = []
    for t in req.topics:
        topic = broker.topics.get(t.name)
        denied = authz.topic_error(ctx, "consume", t.name)
        parts = []
        for p in t.partitions:
            if denied:
                parts.append(PartR(partition_index=p.partition_index, error_code=denied))
                continue
            stream = broker.topics.stream(t.name, p.partition_index) if topic else None
            if stream is None:
                parts.append(PartR(partition_index=p.partition_index, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
                continue
            try:
                offs = broker.logs.offsets(stream)
                if p.timestamp == LATEST:
                    offset, ts = offs.high_watermark, -1
                elif p.timestamp == EARLIEST:
                    offset, ts = offs.log_start, -1
                elif p.timestamp < 0:
                    parts.append(PartR(partition_index=p.partition_index, error_code=ErrorCode.UNSUPPORTED_VERSION))
                    continue
                else:
                    offset, ts = await _by_timestamp(ctx, stream, p.timestamp)
            except StreamNotFoundError:
                parts.append(PartR(partition_index=p.partition_index, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
                continue
            parts.append(PartR(partition_index=p.partition_index, error_code=0, timestamp=ts, offset=offset,
                               old_style_offsets=[offset] if offset >= 0 else [], leader_epoch=0))
        topics.append(TopicR(name=t.name, partitions=parts))
    return R(throttle_time_ms=0, topics=topics)
