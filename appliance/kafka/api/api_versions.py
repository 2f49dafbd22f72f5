"""ApiVersions (key 18), versions 0-4.

Built from the handler registry, so only implemented versions are offered. An unsupported
request version gets error 35 (UNSUPPORTED_VERSION) with the full list, encoded as v0, which
every client can read.
"""

from __future__ import annotations

from appliance.kafka.api.context import RequestContext
from appliance.kafka.error_codes import ErrorCode
from appliance.kafka.protocol import messages as m

API_KEY = 18
VERSIONS = (0, 4)


def _api_keys() -> list:
    from appliance.kafka.api import supported_versions

    return [m.ApiVersionsResponse.ApiVersion(api_key=k, min_version=lo, max_version=hi)
            for k, (lo, hi) in supported_versions().items()]


def unsupported_version_response() -> m.ApiVersionsResponse:
    return m.ApiVersionsResponse(error_code=ErrorCode.UNSUPPORTED_VERSION, api_keys=_api_keys())


async def handle(ctx: RequestContext, req: m.ApiVersionsRequest) -> m.ApiVersionsResponse:
    return m.ApiVersionsResponse(error_code=ErrorCode.NONE, api_keys=_api_keys(), throttle_time_ms=0)
