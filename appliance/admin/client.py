"""A small client for the admin API: blocking (CLI, scripts) and asyncio (the TUI).

Standard library only (http.client), plus `appliance.admin.models`: the TUI imports this module
and nothing else from `appliance`. URLs are `http://HOST:PORT` or `unix:///path/to/admin.sock`.

The asyncio client runs the blocking one in a worker thread (`asyncio.to_thread`): requests are
small and rare (about one per screen per second), so a thread costs nothing and we avoid a new
dependency. One keep-alive connection is shared, with a lock, so the TUI never opens more than one.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import urllib.parse
from typing import Any

from appliance.admin.models import (
    API_PREFIX,
    Alert,
    Certificates,
    Clients,
    CostReport,
    GroupInfo,
    InventoryReport,
    IssuedCertificate,
    LiveMeasurements,
    LogLines,
    MetricFamily,
    Revocation,
    RulesReload,
    SecurityStatus,
    Status,
    StorageInfo,
    TailResult,
    TopicInfo,
    UplinkStatus,
    decode,
)

DEFAULT_URL = "http://127.0.0.1:9644"


class AdminAPIError(Exception):
    """The admin API answered with an error; `status` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AdminUnavailable(AdminAPIError):
    """The appliance could not be reached (not running, wrong address, timed out)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


class AdminClient:
    """Blocking client. Methods return models from `appliance.admin.models`."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme == "unix":
            self._unix_path: str | None = parts.path
            self._host, self._port = "localhost", 0
        elif parts.scheme == "http" and parts.hostname:
            self._unix_path = None
            self._host, self._port = parts.hostname, parts.port or 80
        else:
            raise ValueError(f"admin URL must be http://HOST:PORT or unix:///PATH, got {url!r}")
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._unix_path is not None:
                self._conn = _UnixHTTPConnection(self._unix_path, self.timeout)
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        return self._conn

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes, str]:
        """(status, body, content type). Raises AdminUnavailable when there is no answer."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"accept": "application/json"}
        if data is not None:
            headers["content-type"] = "application/json"
        for attempt in (1, 2):
            reused = self._conn is not None
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.close()
                return resp.status, payload, resp.getheader("content-type", "")
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self.close()
                # The server closes idle keep-alive connections; a request on such a connection
                # was never processed, so one retry on a fresh connection is safe.
                if reused and attempt == 1:
                    continue
                raise AdminUnavailable(f"admin API at {self.url} closed the connection: {e}") from None
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise AdminUnavailable(f"cannot reach the admin API at {self.url}: {e}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        status, payload, ctype = self.request(method, API_PREFIX + path, body)
        if status >= 400:
            try:
                message = json.loads(payload)["error"]
            except (ValueError, KeyError, TypeError):
                message = payload.decode(errors="replace").strip() or f"HTTP {status}"
            raise AdminAPIError(status, message)
        if status == 204 or not payload:
            return None
        try:
            return json.loads(payload)
        except ValueError as e:
            raise AdminAPIError(status, f"the admin API sent invalid JSON: {e}") from None

    def _model(self, tp: Any, data: Any) -> Any:
        try:
            return decode(tp, data, "response")
        except ValueError as e:
            raise AdminAPIError(200, f"unexpected reply from the admin API: {e}") from None

    # --- reads -----------------------------------------------------------------------------------

    def status(self) -> Status:
        return self._model(Status, self._json("GET", "/status"))

    def topics(self) -> list[TopicInfo]:
        return self._model(list[TopicInfo], self._json("GET", "/topics")["topics"])

    def topic(self, name: str) -> TopicInfo:
        return self._model(TopicInfo, self._json("GET", f"/topics/{_quote(name)}"))

    def groups(self) -> list[GroupInfo]:
        return self._model(list[GroupInfo], self._json("GET", "/groups")["groups"])

    def group(self, group_id: str) -> GroupInfo:
        return self._model(GroupInfo, self._json("GET", f"/groups/{_quote(group_id)}"))

    def storage(self) -> StorageInfo:
        return self._model(StorageInfo, self._json("GET", "/storage"))

    def metrics(self) -> list[MetricFamily]:
        return self._model(list[MetricFamily], self._json("GET", "/metrics")["families"])

    def clients(self, limit: int | None = None) -> Clients:
        return self._model(Clients, self._json("GET", "/clients" + (f"?limit={int(limit)}" if limit is not None else "")))

    def records(self, topic: str, partition: int, *, offset: int | None = None, timestamp: int | None = None,
                limit: int | None = None) -> TailResult:
        """Records from `offset`, or from `timestamp` (ms since the epoch), or else the latest."""
        params = {k: v for k, v in (("offset", offset), ("timestamp", timestamp), ("limit", limit)) if v is not None}
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        return self._model(TailResult, self._json("GET", f"/topics/{_quote(topic)}/partitions/{int(partition)}/records{query}"))

    def logs(self, after: int = 0, limit: int | None = None) -> LogLines:
        params = {"after": after, **({"limit": limit} if limit is not None else {})}
        return self._model(LogLines, self._json("GET", "/logs?" + urllib.parse.urlencode(params)))

    def uplink(self) -> UplinkStatus:
        return self._model(UplinkStatus, self._json("GET", "/uplink"))

    def mqtt(self) -> dict[str, Any]:
        return self._json("GET", "/mqtt")

    def warnings(self) -> list[Alert]:
        return self._model(list[Alert], self._json("GET", "/warnings")["warnings"])

    def security(self) -> SecurityStatus:
        return self._model(SecurityStatus, self._json("GET", "/security"))

    def certificates(self) -> Certificates:
        return self._model(Certificates, self._json("GET", "/certificates"))

    def measurements(self) -> LiveMeasurements:
        return self._model(LiveMeasurements, self._json("GET", "/measurements"))

    def cost(self, *, scale: float | None = None, retention: str | float | None = None) -> CostReport:
        """The live workload priced on both designs; `scale` and `retention` ("7d", or seconds) project it."""
        params = {k: v for k, v in (("scale", scale), ("retention", retention)) if v is not None}
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        return self._model(CostReport, self._json("GET", "/cost" + query))

    def inventory(self) -> InventoryReport:
        return self._model(InventoryReport, self._json("GET", "/inventory"))

    def metrics_text(self) -> str:
        status, payload, _ = self.request("GET", "/metrics")
        if status != 200:
            raise AdminAPIError(status, payload.decode(errors="replace"))
        return payload.decode()

    # --- writes ----------------------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int | None = None,
                     configs: dict[str, str] | None = None) -> TopicInfo:
        body: dict[str, Any] = {"name": name, "configs": dict(configs or {})}
        if partitions is not None:
            body["partitions"] = partitions
        return self._model(TopicInfo, self._json("POST", "/topics", body))

    def delete_topic(self, name: str) -> None:
        self._json("DELETE", f"/topics/{_quote(name)}")

    def alter_topic(self, name: str, configs: dict[str, str | None] | None = None,
                    partitions: int | None = None) -> TopicInfo:
        body: dict[str, Any] = {"configs": dict(configs or {})}
        if partitions is not None:
            body["partitions"] = partitions
        return self._model(TopicInfo, self._json("PATCH", f"/topics/{_quote(name)}", body))

    def pause_uplink(self) -> UplinkStatus:
        return self._model(UplinkStatus, self._json("POST", "/uplink/pause"))

    def issue_certificate(self, zone: str, id: str, *, days: int = 365, kind: str = "client") -> IssuedCertificate:
        """A new certificate for (zone, id), written on the appliance's host (`cert_path`, `key_path`)."""
        body = {"zone": zone, "id": id, "days": days, "kind": kind}
        return self._model(IssuedCertificate, self._json("POST", "/certificates", body))

    def revoke_certificate(self, serial: str, reason: str = "unspecified") -> Revocation:
        return self._model(Revocation, self._json("POST", "/certificates/revoke", {"serial": serial, "reason": reason}))

    def reload_rules(self) -> RulesReload:
        return self._model(RulesReload, self._json("POST", "/rules/reload", {}))

    def resume_uplink(self) -> UplinkStatus:
        return self._model(UplinkStatus, self._json("POST", "/uplink/resume"))


class AsyncAdminClient:
    """The same calls for asyncio code (Textual): each runs the blocking client in a thread."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = 5.0) -> None:
        self._client = AdminClient(url, timeout=timeout)
        self._lock = threading.Lock()  # one connection, one request at a time
        self.url = self._client.url

    def _locked(self, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return getattr(self._client, name)(*args, **kwargs)

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self._locked, name, *args, **kwargs)

    async def close(self) -> None:
        await asyncio.to_thread(self._locked, "close")

    async def status(self) -> Status:
        return await self._call("status")

    async def topics(self) -> list[TopicInfo]:
        return await self._call("topics")

    async def topic(self, name: str) -> TopicInfo:
        return await self._call("topic", name)

    async def groups(self) -> list[GroupInfo]:
        return await self._call("groups")

    async def group(self, group_id: str) -> GroupInfo:
        return await self._call("group", group_id)

    async def storage(self) -> StorageInfo:
        return await self._call("storage")

    async def metrics(self) -> list[MetricFamily]:
        return await self._call("metrics")

    async def create_topic(self, name: str, partitions: int | None = None,
                           configs: dict[str, str] | None = None) -> TopicInfo:
        return await self._call("create_topic", name, partitions, configs)

    async def delete_topic(self, name: str) -> None:
        await self._call("delete_topic", name)

    async def alter_topic(self, name: str, configs: dict[str, str | None] | None = None,
                          partitions: int | None = None) -> TopicInfo:
        return await self._call("alter_topic", name, configs, partitions)

    async def clients(self, limit: int | None = None) -> Clients:
        return await self._call("clients", limit)

    async def records(self, topic: str, partition: int, *, offset: int | None = None,
                      timestamp: int | None = None, limit: int | None = None) -> TailResult:
        return await self._call("records", topic, partition, offset=offset, timestamp=timestamp, limit=limit)

    async def logs(self, after: int = 0, limit: int | None = None) -> LogLines:
        return await self._call("logs", after, limit)

    async def uplink(self) -> UplinkStatus:
        return await self._call("uplink")

    async def measurements(self) -> LiveMeasurements:
        return await self._call("measurements")

    async def cost(self, *, scale: float | None = None, retention: str | float | None = None) -> CostReport:
        return await self._call("cost", scale=scale, retention=retention)

    async def inventory(self) -> InventoryReport:
        return await self._call("inventory")

    async def pause_uplink(self) -> UplinkStatus:
        return await self._call("pause_uplink")

    async def resume_uplink(self) -> UplinkStatus:
        return await self._call("resume_uplink")

    async def warnings(self) -> list[Alert]:
        return await self._call("warnings")

    async def security(self) -> SecurityStatus:
        return await self._call("security")

    async def certificates(self) -> Certificates:
        return await self._call("certificates")

    async def issue_certificate(self, zone: str, id: str, *, days: int = 365, kind: str = "client") -> IssuedCertificate:
        return await self._call("issue_certificate", zone, id, days=days, kind=kind)

    async def revoke_certificate(self, serial: str, reason: str = "unspecified") -> Revocation:
        return await self._call("revoke_certificate", serial, reason)

    async def reload_rules(self) -> RulesReload:
        return await self._call("reload_rules")
