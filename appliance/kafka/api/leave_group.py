"""LeaveGroup (key 13), versions 0-5: members leave at once instead of timing out.

v0-2 carry one member id and answer with its error; v3+ carry a batch of members (by member
id and/or group.instance.id, so an admin can remove a static member by instance id alone) and
answer per member, the top-level error being a group-level one only. v4 is flexible, v5 adds
a reason.
"""

from __future__ import annotations

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.protocol import messages as m

API_KEY = 13
VERSIONS = (0, 5)

R = m.LeaveGroupResponse


async def handle(ctx: RequestContext, req: m.LeaveGroupRequest) -> m.LeaveGroupResponse:
    if authz.group_error(ctx, "group_join", req.group_id):
        return R(throttle_time_ms=0, error_code=authz.GROUP_DENIED, members=[])
    if ctx.api_version <= 2:
        res = await ctx.broker.groups.leave_group(req.group_id, [(req.member_id, None)])
        code = res.error or next((o.error for o in res.members if o.error), ErrorCode.NONE)
        return R(throttle_time_ms=0, error_code=code)
    res = await ctx.broker.groups.leave_group(req.group_id, [(x.member_id, x.group_instance_id) for x in req.members])
    return R(
        throttle_time_ms=0,
        error_code=res.error,
        members=[
            R.MemberResponse(member_id=o.member_id, group_instance_id=o.group_instance_id, error_code=o.error)
            for o in res.members
        ],
    )
