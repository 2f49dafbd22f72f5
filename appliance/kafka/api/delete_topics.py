"""DeleteTopics (key 20), versions 0-6 (by name, and by topic id from v6)."""

from __future__ import annotations

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.protocol import messages as m
from appliance.kafka.topics import TopicError

API_KEY = 20
VERSIONS = (0, 6)

R = m.DeleteTopicsResponse
Result = R.DeletableTopicResult


async def handle(ctx: RequestContext, req: m.DeleteTopicsRequest) -> m.DeleteTopicsResponse:
    topics = ctx.broker.topics
    wanted: list[tuple[str | None, object]] = (
        [(t.name, t.topic_id) for t in req.topics] if ctx.api_version >= 6 else [(n, None) for n in req.topic_names]
    )
    results = []
    for name, topic_id in wanted:
        if name is None and topic_id is not None:
            topic = topics.by_id(topic_id)
            if topic is None:
                results.append(Result(name=None, topic_id=topic_id, error_code=ErrorCode.UNKNOWN_TOPIC_ID))
                continue
            name = topic.name
        if authz.topic_error(ctx, "delete_topic", name):
            results.append(Result(name=name, topic_id=topic_id, error_code=authz.TOPIC_DENIED))
            continue
        try:
            topic = await topics.delete(name)
        except TopicError as e:
            results.append(Result(name=name, error_code=e.kafka_code, error_message=str(e)))
            continue
        results.append(Result(name=name, topic_id=topic.topic_id, error_code=0))
    return R(throttle_time_ms=0, responses=results)
