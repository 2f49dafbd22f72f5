"""DescribeConfigs (key 32), versions 0-4: topic configs (and the broker's own, read-only)."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.protocol import messages as m
from appliance.kafka.topics import TOPIC_CONFIGS, Topic

API_KEY = 32
VERSIONS = (0, 4)

TOPIC, BROKER = 2, 4
SOURCE_TOPIC, SOURCE_STATIC_BROKER, SOURCE_DEFAULT = 1, 4, 5
TYPE_BOOLEAN, TYPE_STRING, TYPE_INT, TYPE_LONG, TYPE_DOUBLE, TYPE_LIST = 1, 2, 3, 5, 6, 7
_TOPIC_TYPES = {"cleanup.policy": TYPE_LIST, "retention.ms": TYPE_LONG, "retention.bytes": TYPE_LONG,
                "max.message.bytes": TYPE_INT, "message.timestamp.type": TYPE_STRING,
                "delete.retention.ms": TYPE_LONG, "min.compaction.lag.ms": TYPE_LONG,
                "min.cleanable.dirty.ratio": TYPE_DOUBLE}

R = m.DescribeConfigsResponse
Result = R.DescribeConfigsResult
Entry = Result.DescribeConfigsResourceResult


@dataclass(frozen=True)
class ConfigEntry:
    name: str
    value: str
    read_only: bool
    config_source: int
    config_type: int
    doc: str

    @property
    def is_default(self) -> bool:
        return self.config_source == SOURCE_DEFAULT


def effective_configs(topic: Topic, broker) -> list[ConfigEntry]:
    out = []
    for name, d in TOPIC_CONFIGS.items():
        if name in topic.configs:
            value, source = topic.configs[name], SOURCE_TOPIC
        elif name == "max.message.bytes":
            value, source = str(broker.kafka.message_max_bytes), SOURCE_STATIC_BROKER
        else:
            value, source = d.default, SOURCE_DEFAULT
        out.append(ConfigEntry(name, value, False, source, _TOPIC_TYPES[name], d.doc))
    return out


def broker_configs(broker) -> list[ConfigEntry]:
    k = broker.kafka
    values = [
        ("auto.create.topics.enable", str(k.auto_create_topics).lower(), TYPE_BOOLEAN),
        ("num.partitions", str(k.num_partitions), TYPE_INT),
        ("message.max.bytes", str(k.message_max_bytes), TYPE_INT),
        ("default.replication.factor", "1", TYPE_INT),
        ("broker.id", str(broker.node_id), TYPE_INT),
    ]
    return [ConfigEntry(n, v, True, SOURCE_STATIC_BROKER, t, "") for n, v, t in values]


async def handle(ctx: RequestContext, req: m.DescribeConfigsRequest) -> m.DescribeConfigsResponse:
    broker = ctx.broker
    results = []
    for res in req.resources:
        denied = (authz.topic_error(ctx, "describe", res.resource_name) if res.resource_type == TOPIC
                  else authz.cluster_error(ctx) if res.resource_type == BROKER else 0)
        if denied:
            results.append(Result(error_code=denied, resource_type=res.resource_type, resource_name=res.resource_name,
                                  error_message="not authorized", configs=[]))
            continue
        if res.resource_type == TOPIC:
            topic = broker.topics.get(res.resource_name)
            if topic is None:
                results.append(Result(error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, resource_type=TOPIC,
                                      resource_name=res.resource_name, error_message=f"topic {res.resource_name!r} does not exist"))
                continue
            entries = effective_configs(topic, broker)
        elif res.resource_type == BROKER:
            if res.resource_name not in ("", str(broker.node_id)):
                results.append(Result(error_code=ErrorCode.INVALID_REQUEST, resource_type=BROKER,
                                      resource_name=res.resource_name, error_message="unknown broker id"))
                continue
            entries = broker_configs(broker)
        else:
            results.append(Result(error_code=ErrorCode.INVALID_REQUEST, resource_type=res.resource_type,
                                  resource_name=res.resource_name, error_message="unsupported resource type"))
            continue
        if res.configuration_keys is not None:
            keys = set(res.configuration_keys)
            entries = [e for e in entries if e.name in keys]
        configs = [Entry(name=e.name, value=e.value, read_only=e.read_only, is_default=e.is_default,
                         config_source=e.config_source, is_sensitive=False,
                         synonyms=[Entry.DescribeConfigsSynonym(name=e.name, value=e.value, source=e.config_source)]
                         if req.include_synonyms else [],
                         config_type=e.config_type, documentation=e.doc if req.include_documentation else None)
                   for e in entries]
        results.append(Result(error_code=0, error_message=None, resource_type=res.resource_type,
                              resource_name=res.resource_name, configs=configs))
    return R(throttle_time_ms=0, results=results)
