"""InitProducerId (key 22), versions 0-5: producer ids for idempotent producers.

Ids come from a durable counter, so they are never reused across restarts. A producer that
asks with its current id and epoch (v3+, after a sequence error) gets the same id with the
epoch bumped, which restarts its sequences at 0. Transactions are not supported.
"""

from __future__ import annotations

from appliance.errors import StorageError
from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.protocol import messages as m
from appliance.logs import get_logger

API_KEY = 22
VERSIONS = (0, 5)

log = get_logger("kafka")
MAX_EPOCH = 32767


async def handle(ctx: RequestContext, req: m.InitProducerIdRequest) -> m.InitProducerIdResponse:
    R = m.InitProducerIdResponse
    if req.transactional_id:
        return R(error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, producer_id=-1, producer_epoch=-1)
    try:
        if req.producer_id >= 0 and 0 <= req.producer_epoch < MAX_EPOCH - 1:
            return R(error_code=0, producer_id=req.producer_id, producer_epoch=req.producer_epoch + 1)
        pid = await ctx.broker.meta.allocate("producer_id")
    except StorageError as e:
        log.warning("producer_id_unavailable", error=str(e))
        return R(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE, producer_id=-1, producer_epoch=-1)
    return R(error_code=0, producer_id=pid, producer_epoch=0)
