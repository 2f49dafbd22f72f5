"""FindCoordinator (key 10), versions 0-4: this single node coordinates every group.

Key type 0 (group) and 1 (transaction) answer with this node; any other key type is refused
with INVALID_REQUEST. v4 batches keys (`coordinator_keys`) and answers one entry per key.
"""

from __future__ import annotations

from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.protocol import messages as m

API_KEY = 10
VERSIONS = (0, 4)

R = m.FindCoordinatorResponse
KNOWN_KEY_TYPES = (0, 1)  # group, transaction


async def handle(ctx: RequestContext, req: m.FindCoordinatorRequest) -> m.FindCoordinatorResponse:
    b = ctx.broker
    ok = req.key_type in KNOWN_KEY_TYPES
    error = ErrorCode.NONE if ok else ErrorCode.INVALID_REQUEST
    message = None if ok else f"key type {req.key_type} not supported"
    node_id, host, port = (b.node_id, *ctx.endpoint()) if ok else (-1, "", -1)
    if ctx.api_version >= 4:
        return R(
            throttle_time_ms=0,
            coordinators=[
                R.Coordinator(key=key, node_id=node_id, host=host, port=port, error_code=error, error_message=message)
                for key in req.coordinator_keys
            ],
        )
    return R(throttle_time_ms=0, error_code=error, error_message=message, node_id=node_id, host=host, port=port)
