"""OffsetDelete (key 47), version 0: delete a group's committed offsets for some partitions.

GROUP_ID_NOT_FOUND for an unknown group; a group with members refuses partitions of topics
its consumers subscribe to (GROUP_SUBSCRIBED_TO_TOPIC) and, if it is not a "consumer" group,
refuses everything (NON_EMPTY_GROUP). Deletions are durable before the answer.
"""

from __future__ import annotations

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.protocol import messages as m

API_KEY = 47
VERSIONS = (0, 0)

R = m.OffsetDeleteResponse
TopicR = R.OffsetDeleteResponseTopic


async def handle(ctx: RequestContext, req: m.OffsetDeleteRequest) -> m.OffsetDeleteResponse:
    if authz.group_error(ctx, "group_commit", req.group_id):
        return R(error_code=authz.GROUP_DENIED, throttle_time_ms=0)
    wanted = [(t.name, p.partition_index) for t in req.topics for p in t.partitions]
    error, results = await ctx.broker.groups.delete_offsets(req.group_id, wanted)
    if error:
        return R(error_code=error, throttle_time_ms=0)
    return R(
        error_code=error,
        throttle_time_ms=0,
        topics=[
            TopicR(
                name=t.name,
                partitions=[
                    TopicR.OffsetDeleteResponsePartition(
                        partition_index=p.partition_index, error_code=results[(t.name, p.partition_index)]
                    )
                    for p in t.partitions
                ],
            )
            for t in req.topics
        ],
    )
