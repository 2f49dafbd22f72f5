"""Metadata (key 3), versions 0-12.

A single-node cluster: this node leads every partition. Topics are auto-created here (not on
Produce) when both the broker setting and the request allow it, as Kafka does. v0 "no topics"
means all topics; from v1 a null list means all and an empty list none. Topics by id (null
name) from v12; before that a null name gets INVALID_REQUEST, as in Kafka.
Authorization (authz.py): "all topics" leaves out what the client may not describe; a named
topic it may not describe answers TOPIC_AUTHORIZATION_FAILED; auto-creation needs create_topic.
The broker entry is the listener the client came in on.
"""

from __future__ import annotations

import uuid

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.protocol import messages as m
from appliance.kafka.topics import Topic, TopicError, validate_name

API_KEY = 3
VERSIONS = (0, 12)

R = m.MetadataResponse
NULL_UUID = uuid.UUID(int=0)


def _topic_entry(ctx: RequestContext, topic: Topic) -> R.MetadataResponseTopic:
    node = ctx.broker.node_id
    parts = [
        R.MetadataResponseTopic.MetadataResponsePartition(
            error_code=0, partition_index=i, leader_id=node, leader_epoch=0,
            replica_nodes=[node], isr_nodes=[node], offline_replicas=[],
        )
        for i in range(topic.partitions)
    ]
    return R.MetadataResponseTopic(error_code=0, name=topic.name, topic_id=topic.topic_id,
                                   is_internal=False, partitions=parts)


def _error_entry(name: str | None, code: int, topic_id: uuid.UUID = NULL_UUID) -> R.MetadataResponseTopic:
    return R.MetadataResponseTopic(error_code=code, name=name, topic_id=topic_id, partitions=[])


async def handle(ctx: RequestContext, req: m.MetadataRequest) -> m.MetadataResponse:
    broker = ctx.broker
    version = ctx.api_version
    all_topics = req.topics is None or (version == 0 and not req.topics)
    entries: list[R.MetadataResponseTopic] = []
    if all_topics:
        entries = [_topic_entry(ctx, t) for t in broker.topics.all() if authz.visible(ctx, "describe", t.name)]
    else:
        allow_create = broker.kafka.auto_create_topics and (version < 4 or req.allow_auto_topic_creation)
        for want in req.topics:
            if want.name is None and version < 12:
                # Topic ids in Metadata requests arrive with v12; a null name before it is invalid
                # (and could not be encoded back: the response name is nullable only from v12).
                entries.append(_error_entry("", ErrorCode.INVALID_REQUEST, want.topic_id))
                continue
            if want.name is None:  # by id (v12+)
                topic = broker.topics.by_id(want.topic_id)
                if topic is not None and authz.topic_error(ctx, "describe", topic.name):
                    entries.append(_error_entry(None, authz.TOPIC_DENIED, want.topic_id))
                    continue
                entries.append(_topic_entry(ctx, topic) if topic else
                               _error_entry(None, ErrorCode.UNKNOWN_TOPIC_ID, want.topic_id))
                continue
            denied = authz.topic_error(ctx, "describe", want.name)
            if denied:
                entries.append(_error_entry(want.name, denied))
                continue
            topic = broker.topics.get(want.name)
            if topic is None and allow_create and authz.visible(ctx, "create_topic", want.name):
                try:
                    validate_name(want.name)
                    topic = await broker.topic_for_write(want.name)
                except TopicError as e:
                    entries.append(_error_entry(want.name, e.kafka_code))
                    continue
            if topic is None:
                entries.append(_error_entry(want.name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
            else:
                entries.append(_topic_entry(ctx, topic))
    host, port = ctx.endpoint()
    brokers = [R.MetadataResponseBroker(node_id=broker.node_id, host=host, port=port, rack=None)]
    return R(throttle_time_ms=0, brokers=brokers, cluster_id=broker.cluster_id,
             controller_id=broker.node_id, topics=entries)
