"""DescribeCluster (key 60), versions 0-1: this node is the whole cluster and its controller."""

from __future__ import annotations

from appliance.kafka.api import authz
from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.protocol import messages as m

API_KEY = 60
VERSIONS = (0, 1)
BROKERS_ENDPOINT = 1


async def handle(ctx: RequestContext, req: m.DescribeClusterRequest) -> m.DescribeClusterResponse:
    R = m.DescribeClusterResponse
    b = ctx.broker
    if ctx.api_version >= 1 and req.endpoint_type != BROKERS_ENDPOINT:
        return R(error_code=ErrorCode.UNSUPPORTED_ENDPOINT_TYPE, error_message="only broker endpoints",
                 endpoint_type=req.endpoint_type, cluster_id=b.cluster_id)
    denied = authz.cluster_error(ctx)
    if denied:
        return R(error_code=denied, error_message="admin not allowed", endpoint_type=BROKERS_ENDPOINT,
                 cluster_id=b.cluster_id)
    host, port = ctx.endpoint()
    return R(throttle_time_ms=0, error_code=0, error_message=None, endpoint_type=BROKERS_ENDPOINT,
             cluster_id=b.cluster_id, controller_id=b.node_id,
             brokers=[R.DescribeClusterBroker(broker_id=b.node_id, host=host, port=port, rack=None)])
