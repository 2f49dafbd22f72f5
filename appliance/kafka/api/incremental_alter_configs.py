"""IncrementalAlterConfigs (key 44), versions 0-1: SET, DELETE, APPEND, SUBTRACT on topic configs."""

from __future__ import annotations

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.protocol import messages as m
from appliance.kafka.topics import TopicError

API_KEY = 44
VERSIONS = (0, 1)
TOPIC = 2


async def handle(ctx: RequestContext, req: m.IncrementalAlterConfigsRequest) -> m.IncrementalAlterConfigsResponse:
    R = m.IncrementalAlterConfigsResponse
    Result = R.AlterConfigsResourceResponse
    out = []
    for res in req.resources:
        if res.resource_type == TOPIC and authz.topic_error(ctx, "alter_topic", res.resource_name):
            out.append(Result(error_code=authz.TOPIC_DENIED, error_message="alter_topic not allowed",
                              resource_type=TOPIC, resource_name=res.resource_name))
            continue
        if res.resource_type != TOPIC:
            out.append(Result(error_code=ErrorCode.INVALID_REQUEST, error_message="only topic configs can be altered",
                              resource_type=res.resource_type, resource_name=res.resource_name))
            continue
        try:
            await ctx.broker.topics.alter_configs(
                res.resource_name, [(c.name, c.config_operation, c.value) for c in res.configs],
                validate_only=req.validate_only)
        except TopicError as e:
            out.append(Result(error_code=e.kafka_code, error_message=str(e), resource_type=TOPIC,
                              resource_name=res.resource_name))
            continue
        out.append(Result(error_code=0, error_message=None, resource_type=TOPIC, resource_name=res.resource_name))
    return R(throttle_time_ms=0, responses=out)
