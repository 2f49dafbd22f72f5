"""SyncGroup (key 14), versions 0-5: the leader hands out the assignment; followers wait for it.

v3 adds group.instance.id, v4 is flexible, v5 checks protocol type and name (INCONSISTENT_GROUP_PROTOCOL
when they differ from the group's) and echoes them. A draining broker answers
COORDINATOR_NOT_AVAILABLE at once.
"""

from __future__ import annotations

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.protocol import messages as m

API_KEY = 14
VERSIONS = (0, 5)


async def handle(ctx: RequestContext, req: m.SyncGroupRequest) -> m.SyncGroupResponse:
    v = ctx.api_version
    if authz.group_error(ctx, "group_join", req.group_id):
        return m.SyncGroupResponse(throttle_time_ms=0, error_code=authz.GROUP_DENIED, assignment=b"")
    res = await ctx.broker.groups.sync_group(
        req.group_id,
        req.generation_id,
        req.member_id,
        req.group_instance_id if v >= 3 else None,
        {a.member_id: bytes(a.assignment) for a in req.assignments},
        protocol_type=req.protocol_type if v >= 5 else None,
        protocol_name=req.protocol_name if v >= 5 else None,
        abandon=ctx.broker.draining,
    )
    return m.SyncGroupResponse(
        throttle_time_ms=0,
        error_code=res.error,
        protocol_type=res.protocol_type,
        protocol_name=res.protocol_name,
        assignment=res.assignment,
    )
