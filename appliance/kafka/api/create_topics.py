"""CreateTopics (key 19), versions 0-7.

One node holds every partition, so the replication factor must be 1 (or -1 for the default);
asking for more is refused rather than silently under-replicated.
"""

from __future__ import annotations

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.api.describe_configs import effective_configs
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.protocol import messages as m
from appliance.kafka.topics import TopicError

API_KEY = 19
VERSIONS = (0, 7)

R = m.CreateTopicsResponse
Result = R.CreatableTopicResult


async def handle(ctx: RequestContext, req: m.CreateTopicsRequest) -> m.CreateTopicsResponse:
    broker = ctx.broker
    results = []
    seen: set[str] = set()
    for t in req.topics:
        if t.name in seen:
            results.append(Result(name=t.name, error_code=ErrorCode.INVALID_REQUEST,
                                  error_message="topic named twice in one request"))
            continue
        seen.add(t.name)
        if authz.topic_error(ctx, "create_topic", t.name):
            results.append(Result(name=t.name, error_code=authz.TOPIC_DENIED, error_message="create_topic not allowed"))
            continue
        partitions = broker.kafka.num_partitions if t.num_partitions == -1 else t.num_partitions
        if t.replication_factor not in (-1, 1):
            results.append(Result(name=t.name, error_code=ErrorCode.INVALID_REPLICATION_FACTOR,
                                  error_message=f"replication factor {t.replication_factor} is larger than the 1 available broker"))
            continue
        if t.assignments:
            if t.num_partitions != -1 or any(set(a.broker_ids) != {broker.node_id} for a in t.assignments):
                results.append(Result(name=t.name, error_code=ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                                      error_message=f"replicas must be exactly [{broker.node_id}]"))
                continue
            partitions = len(t.assignments)
        try:
            topic = await broker.topics.create(t.name, partitions, {c.name: c.value for c in t.configs},
                                               validate_only=req.validate_only)
        except TopicError as e:
            results.append(Result(name=t.name, error_code=e.kafka_code, error_message=str(e)))
            continue
        configs = [Result.CreatableTopicConfigs(name=c.name, value=c.value, read_only=c.read_only,
                                                config_source=c.config_source, is_sensitive=False)
                   for c in effective_configs(topic, broker)]
        results.append(Result(name=t.name, topic_id=topic.topic_id, error_code=0, error_message=None,
                              num_partitions=topic.partitions, replication_factor=1, configs=configs))
    return R(throttle_time_ms=0, topics=results)
