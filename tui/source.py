"""What the console needs from an appliance: the admin API, asynchronously.

`appliance.admin.client.AsyncAdminClient` is the real implementation; snapshot tests pass a
fixed, deterministic one. Every call raises `AdminAPIError` (from the client) on failure.
"""

from __future__ import annotations

from typing import Protocol

from appliance.admin.models import (
    Certificates,
    Clients,
    CostReport,
    GroupInfo,
    InventoryReport,
    IssuedCertificate,
    LogLines,
    Revocation,
    RulesReload,
    SecurityStatus,
    Status,
    StorageInfo,
    TailResult,
    TopicInfo,
    UplinkStatus,
)


class AdminSource(Protocol):
    url: str

    async def status(self) -> Status: ...

    async def storage(self) -> StorageInfo: ...

    async def topics(self) -> list[TopicInfo]: ...

    async def groups(self) -> list[GroupInfo]: ...

    async def create_topic(self, name: str, partitions: int | None = None,
                           configs: dict[str, str] | None = None) -> TopicInfo: ...

    async def delete_topic(self, name: str) -> None: ...

    async def alter_topic(self, name: str, configs: dict[str, str | None] | None = None,
                          partitions: int | None = None) -> TopicInfo: ...

    async def clients(self) -> Clients: ...

    async def records(self, topic: str, partition: int, *, offset: int | None = None,
                      timestamp: int | None = None, limit: int | None = None) -> TailResult: ...

    async def logs(self, after: int = 0, limit: int | None = None) -> LogLines: ...

    async def uplink(self) -> UplinkStatus: ...

    async def pause_uplink(self) -> UplinkStatus: ...

    async def resume_uplink(self) -> UplinkStatus: ...

    async def security(self) -> SecurityStatus: ...

    async def certificates(self) -> Certificates: ...

    async def issue_certificate(self, zone: str, id: str, *, days: int = 365,
                                kind: str = "client") -> IssuedCertificate: ...

    async def revoke_certificate(self, serial: str, reason: str = "unspecified") -> Revocation: ...

    async def reload_rules(self) -> RulesReload: ...

    async def cost(self, *, scale: float | None = None, retention: str | float | None = None) -> CostReport: ...

    async def inventory(self) -> InventoryReport: ...

    async def close(self) -> None: ...
