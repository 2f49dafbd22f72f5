"""JoinGroup (key 11), versions 0-9: a long poll that returns when the rebalance completes.

v1 adds the rebalance timeout (v0: the session timeout serves as both), v4 makes a member
without an id come back with the one it is given (MEMBER_ID_REQUIRED), v5 adds static
membership (group.instance.id), v6 is flexible, v7 returns the protocol type, v8 adds a reason,
v9 tells a static leader rejoining a stable group to skip the assignment. Semantics live in
`appliance.kafka.group_manager`. A draining broker answers COORDINATOR_NOT_AVAILABLE at once.
"""

from __future__ import annotations

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.group_state import JoinRequest
from appliance.kafka.protocol import messages as m

API_KEY = 11
VERSIONS = (0, 9)

R = m.JoinGroupResponse


def client_host(peer: str) -> str:
    """Kafka shows a member's host as "/address" (the port left out)."""
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    return "/" + host.strip("[]")


async def handle(ctx: RequestContext, req: m.JoinGroupRequest) -> m.JoinGroupResponse:
    v = ctx.api_version
    if authz.group_error(ctx, "group_join", req.group_id):
        return R(throttle_time_ms=0, error_code=authz.GROUP_DENIED, generation_id=-1,
                 protocol_name="" if v < 7 else None, leader="", member_id=req.member_id, members=[])
    request = JoinRequest(
        group_id=req.group_id,
        member_id=req.member_id,
        group_instance_id=req.group_instance_id if v >= 5 else None,
        client_id=ctx.client_id or "",
        client_host=client_host(ctx.peer),
        session_timeout_ms=req.session_timeout_ms,
        rebalance_timeout_ms=req.rebalance_timeout_ms if v >= 1 else -1,
        protocol_type=req.protocol_type,
        protocols=tuple((p.name, bytes(p.metadata)) for p in req.protocols),
        require_known_member_id=v >= 4,
        reason=req.reason if v >= 8 else None,
    )
    res = await ctx.broker.groups.join_group(request, abandon=ctx.broker.draining)
    return R(
        throttle_time_ms=0,
        error_code=res.error,
        generation_id=res.generation_id,
        protocol_type=res.protocol_type,
        # nullable from v7; older versions send an empty string when there is none
        protocol_name=res.protocol_name if (res.protocol_name is not None or v >= 7) else "",
        leader=res.leader,
        skip_assignment=res.skip_assignment,
        member_id=res.member_id,
        members=[
            R.JoinGroupResponseMember(member_id=x.member_id, group_instance_id=x.group_instance_id, metadata=x.metadata)
            for x in res.members
        ],
    )
