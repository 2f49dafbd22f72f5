"""Heartbeat (key 12), versions 0-4: keeps a member's session alive; REBALANCE_IN_PROGRESS tells
it to rejoin. v3 adds group.instance.id (static members), v4 is flexible."""

from __future__ import annotations

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.protocol import messages as m

API_KEY = 12
VERSIONS = (0, 4)


async def handle(ctx: RequestContext, req: m.HeartbeatRequest) -> m.HeartbeatResponse:
    if authz.group_error(ctx, "group_join", req.group_id):
        return m.HeartbeatResponse(throttle_time_ms=0, error_code=authz.GROUP_DENIED)
    code = await ctx.broker.groups.heartbeat(req.group_id, req.generation_id, req.member_id, req.group_instance_id)
    return m.HeartbeatResponse(throttle_time_ms=0, error_code=code)
