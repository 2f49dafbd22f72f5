"""DeleteGroups (key 42), versions 0-2: remove Empty groups and their committed offsets.

Per group: GROUP_ID_NOT_FOUND if unknown, NON_EMPTY_GROUP while it has members, otherwise the
group and its offsets are deleted durably before the answer. v2 is flexible.
"""

from __future__ import annotations

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.protocol import messages as m

API_KEY = 42
VERSIONS = (0, 2)

R = m.DeleteGroupsResponse


async def handle(ctx: RequestContext, req: m.DeleteGroupsRequest) -> m.DeleteGroupsResponse:
    if authz.cluster_error(ctx):
        return R(throttle_time_ms=0, results=[R.DeletableGroupResult(group_id=g, error_code=authz.GROUP_DENIED)
                                              for g in dict.fromkeys(req.groups_names)])
    results = await ctx.broker.groups.delete_groups(req.groups_names)
    return R(
        throttle_time_ms=0,
        results=[R.DeletableGroupResult(group_id=g, error_code=results[g]) for g in dict.fromkeys(req.groups_names)],
    )
