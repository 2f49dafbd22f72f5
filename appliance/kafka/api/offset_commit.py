"""OffsetCommit (key 8), versions 0-8: store consumer positions durably.

v0 commits without group management (no generation or member id: accepted only while the
group is Empty, as Kafka's "simple" consumers do); v1+ carry generation and member id, checked
against the group (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS,
FENCED_INSTANCE_ID with v7's group.instance.id). v1's commit timestamp and v2-4's retention
time are accepted and ignored (retention is the broker's). v6 adds the leader epoch, v8 is
flexible. Partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION. The response is sent
only once the offsets are durable in the MetaStore.
"""

from __future__ import annotations

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.groups import OffsetCommit
from appliance.kafka.protocol import messages as m

API_KEY = 8
VERSIONS = (0, 8)

R = m.OffsetCommitResponse
TopicR = R.OffsetCommitResponseTopic
PartR = TopicR.OffsetCommitResponsePartition


async def handle(ctx: RequestContext, req: m.OffsetCommitRequest) -> m.OffsetCommitResponse:
    v = ctx.api_version
    errors: dict[tuple[str, int], int] = {}
    commits: list[OffsetCommit] = []
    group_denied = authz.group_error(ctx, "group_commit", req.group_id)
    for t in req.topics:
        topic = ctx.broker.topics.get(t.name)
        denied = group_denied or authz.topic_error(ctx, "consume", t.name)
        for p in t.partitions:
            if denied:
                errors[(t.name, p.partition_index)] = denied
            elif topic is None or not 0 <= p.partition_index < topic.partitions:
                errors[(t.name, p.partition_index)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                commits.append(
                    OffsetCommit(
                        t.name,
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch if v >= 6 else -1,
                        p.committed_metadata,
                    )
                )
    if commits:
        errors.update(
            await ctx.broker.groups.commit_offsets(
                req.group_id,
                req.generation_id_or_member_epoch if v >= 1 else -1,
                req.member_id if v >= 1 else "",
                req.group_instance_id if v >= 7 else None,
                commits,
            )
        )
    return R(
        throttle_time_ms=0,
        topics=[
            TopicR(
                name=t.name,
                partitions=[
                    PartR(partition_index=p.partition_index, error_code=errors[(t.name, p.partition_index)])
                    for p in t.partitions
                ],
            )
            for t in req.topics
        ],
    )
