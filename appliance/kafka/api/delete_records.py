"""DeleteRecords (key 21), versions 0-2: move a partition's log start offset forward.

Offset -1 means "up to the high watermark". The move is durable before the response.
"""

from __future__ import annotations

from appliance.errors import OffsetOutOfRangeError, StorageError, StreamNotFoundError
from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.protocol import messages as m

API_KEY = 21
VERSIONS = (0, 2)


async def handle(ctx: RequestContext, req: m.DeleteRecordsRequest) -> m.DeleteRecordsResponse:
    R = m.DeleteRecordsResponse
    TopicR = R.DeleteRecordsTopicResult
    PartR = TopicR.DeleteRecordsPartitionResult
    logs = ctx.broker.logs
    topics = []
    for t in req.topics:
        parts = []
        denied = authz.topic_error(ctx, "delete_topic", t.name)
        for p in t.partitions:
            if denied:
                parts.append(PartR(partition_index=p.partition_index, low_watermark=-1, error_code=denied))
                continue
            stream = ctx.broker.topics.stream(t.name, p.partition_index)
            if stream is None:
                parts.append(PartR(partition_index=p.partition_index, low_watermark=-1,
                                   error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
                continue
            try:
                offs = logs.offsets(stream)
                target = offs.high_watermark if p.offset == -1 else p.offset
                if not 0 <= target <= offs.high_watermark:
                    raise OffsetOutOfRangeError(target, offs.log_start, offs.high_watermark)
                low = await logs.delete_records(stream, max(target, offs.log_start))
            except OffsetOutOfRangeError:
                parts.append(PartR(partition_index=p.partition_index, low_watermark=-1,
                                   error_code=ErrorCode.OFFSET_OUT_OF_RANGE))
                continue
            except StreamNotFoundError:
                parts.append(PartR(partition_index=p.partition_index, low_watermark=-1,
                                   error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
                continue
            except StorageError:
                parts.append(PartR(partition_index=p.partition_index, low_watermark=-1,
                                   error_code=ErrorCode.KAFKA_STORAGE_ERROR))
                continue
            parts.append(PartR(partition_index=p.partition_index, low_watermark=low, error_code=0))
        topics.append(TopicR(name=t.name, partitions=parts))
    return R(throttle_time_ms=0, topics=topics)
