"""DescribeGroups (key 15), versions 0-5: state, protocol and members of each group asked.

A Stable group shows its protocol and each member's metadata and assignment; other states show
members without them (as Kafka does). An unknown group is described as "Dead" with no error
(v0-5 behaviour). v3 may ask for authorized operations: with no ACLs yet, every group
operation (READ, DELETE, DESCRIBE) is allowed. v4 adds group.instance.id, v5 is flexible.
"""

from __future__ import annotations

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.protocol import messages as m

API_KEY = 15
VERSIONS = (0, 5)

R = m.DescribeGroupsResponse
G = R.DescribedGroup
ALL_GROUP_OPERATIONS = (1 << 3) | (1 << 6) | (1 << 8)  # READ, DELETE, DESCRIBE (Kafka AclOperation codes)
NOT_REQUESTED = -(2**31)


async def handle(ctx: RequestContext, req: m.DescribeGroupsRequest) -> m.DescribeGroupsResponse:
    ops = ALL_GROUP_OPERATIONS if (ctx.api_version >= 3 and req.include_authorized_operations) else NOT_REQUESTED
    out = []
    for gid in req.groups:
        if authz.group_error(ctx, "group_join", gid):
            out.append(G(error_code=authz.GROUP_DENIED, group_id=gid, group_state="", protocol_type="",
                         protocol_data="", members=[], authorized_operations=ops))
            continue
        d = ctx.broker.groups.describe_group(gid)
        out.append(
            G(
                error_code=d.error,
                group_id=d.group_id,
                group_state=d.state,
                protocol_type=d.protocol_type,
                protocol_data=d.protocol_data,
                members=[
                    G.DescribedGroupMember(
                        member_id=x.member_id,
                        group_instance_id=x.group_instance_id,
                        client_id=x.client_id,
                        client_host=x.client_host,
                        member_metadata=x.metadata,
                        member_assignment=x.assignment,
                    )
                    for x in d.members
                ],
                authorized_operations=ops,
            )
        )
    return R(throttle_time_ms=0, groups=out)
