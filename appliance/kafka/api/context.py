"""What every Kafka API handler receives.

Handler convention (one module per API key in this package):

    \"\"\"Heartbeat (key 12), versions 0-4: ...\"\"\"
    API_KEY = 12
    VERSIONS = (0, 4)            # inclusive; only what this module truly implements
    async def handle(ctx: RequestContext, req: m.HeartbeatRequest) -> m.HeartbeatResponse

The registry in `appliance/kafka/api/__init__.py` collects the modules; ApiVersions is built
from it, so a version is advertised only when a handler implements it. A handler raises
nothing for per-partition problems: it puts the error code in the response, as Kafka does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.kafka.broker import Broker


@dataclass
class RequestContext:
    broker: Broker
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    peer: str = "?"
    listener: str = "kafka"
    connection_id: int = 0
    principal: Any = None  # the client certificate's Identity (mTLS listeners), else None
    zone: str | None = None  # the listener's zone for the rules (None on mTLS: the certificate's)
    authorizer: Any = None  # appliance.security.service.Security; None: authorization off
    advertised: tuple[str, int] | None = None  # host/port of the listener the client came in on
    rates: Any = None  # appliance.security.access.RateLimits of this connection (conduit msgs_per_s)
    extra: dict[str, Any] = field(default_factory=dict)

    def endpoint(self) -> tuple[str, int]:
        """The address to advertise (Metadata, FindCoordinator, DescribeCluster)."""
        if self.advertised is not None:
            return self.advertised
        return self.broker.advertised_host, self.broker.advertised_port
