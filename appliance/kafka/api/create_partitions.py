"""CreatePartitions (key 37), versions 0-3: grow a topic's partition count."""

from __future__ import annotations

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.protocol import messages as m
from appliance.kafka.topics import TopicError

API_KEY = 37
VERSIONS = (0, 3)

R = m.CreatePartitionsResponse
Result = R.CreatePartitionsTopicResult


async def handle(ctx: RequestContext, req: m.CreatePartitionsRequest) -> m.CreatePartitionsResponse:
    broker = ctx.broker
    results = []
    for t in req.topics:
        if authz.topic_error(ctx, "alter_topic", t.name):
            results.append(Result(name=t.name, error_code=authz.TOPIC_DENIED, error_message="alter_topic not allowed"))
            continue
        if t.assignments and any(set(a.broker_ids) != {broker.node_id} for a in t.assignments):
            results.append(Result(name=t.name, error_code=ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                  error_message=f"replicas must be exactly [{broker.node_id}]"))
            continue
        try:
            await broker.topics.add_partitions(t.name, t.count, validate_only=req.validate_only)
        except TopicError as e:
            results.append(Result(name=t.name, error_code=e.kafka_code, error_message=str(e)))
            continue
        results.append(Result(name=t.name, error_code=0, error_message=None))
    return R(throttle_time_ms=0, results=results)
