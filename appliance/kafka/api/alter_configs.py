"""AlterConfigs (key 33), versions 0-2: replaces a topic's whole set of explicit configs."""

from __future__ import annotations

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.protocol import messages as m
from appliance.kafka.topics import TopicError

API_KEY = 33
VERSIONS = (0, 2)
TOPIC = 2
SET, DELETE = 0, 1


async def handle(ctx: RequestContext, req: m.AlterConfigsRequest) -> m.AlterConfigsResponse:
    R = m.AlterConfigsResponse
    Result = R.AlterConfigsResourceResponse
    out = []
    for res in req.resources:
        if res.resource_type == TOPIC and authz.topic_error(ctx, "alter_topic", res.resource_name):
            out.append(Result(error_code=authz.TOPIC_DENIED, error_message="alter_topic not allowed",
                              resource_type=TOPIC, resource_name=res.resource_name))
            continue
        topic = ctx.broker.topics.get(res.resource_name) if res.resource_type == TOPIC else None
        if topic is None:
            code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if res.resource_type == TOPIC else ErrorCode.INVALID_REQUEST
            out.append(Result(error_code=code, error_message="unknown topic" if res.resource_type == TOPIC
                              else "only topic configs can be altered",
                              resource_type=res.resource_type, resource_name=res.resource_name))
            continue
        given = {c.name: c.value for c in res.configs}
        changes = [(k, SET, v) for k, v in given.items()] + [(k, DELETE, None) for k in topic.configs if k not in given]
        try:
            await ctx.broker.topics.alter_configs(res.resource_name, changes, validate_only=req.validate_only)
        except TopicError as e:
            out.append(Result(error_code=e.kafka_code, error_message=str(e), resource_type=TOPIC,
                              resource_name=res.resource_name))
            continue
        out.append(Result(error_code=0, error_message=None, resource_type=TOPIC, resource_name=res.resource_name))
    return R(throttle_time_ms=0, responses=out)
