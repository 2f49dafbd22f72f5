"""ListGroups (key 16), versions 0-5: every live group with its protocol type.

v3 is flexible, v4 filters by state (case-insensitive) and returns it, v5 filters by group
type: every group here is "classic" (the KIP-848 consumer protocol is not offered).
"""

from __future__ import annotations

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.protocol import messages as m

API_KEY = 16
VERSIONS = (0, 5)

R = m.ListGroupsResponse
GROUP_TYPE = "classic"


async def handle(ctx: RequestContext, req: m.ListGroupsRequest) -> m.ListGroupsResponse:
    v = ctx.api_version
    types = {t.lower() for t in req.types_filter} if v >= 5 else set()
    groups = [] if types and GROUP_TYPE not in types else ctx.broker.groups.list_groups(req.states_filter if v >= 4 else ())
    return R(
        throttle_time_ms=0,
        error_code=ErrorCode.NONE,
        groups=[
            R.ListedGroup(group_id=g.group_id, protocol_type=g.protocol_type, group_state=g.state, group_type=GROUP_TYPE)
            for g in groups
            if authz.visible(ctx, "group_join", g.group_id)
        ],
    )
