"""Admin API over HTTP/1.1 (h11 on trio): status and Prometheus metrics.

Minimal first slice; the admin API issue grows it (topics, groups, storage, rules, writes).
"""

from __future__ import annotations

import json
import time
from typing import Any

import h11
import trio

from appliance import __version__
from appliance.config import HostPort
from appliance.errors import StartupError
from appliance.logs import get_logger

log = get_logger("admin")


class AdminServer:
    def __init__(self, app: Any, listen: HostPort) -> None:
        self.app = app
        self.listen = listen
        self.port: int | None = None

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            listeners = await trio.open_tcp_listeners(self.listen.port, host=self.listen.host or None)
        except OSError as e:
            raise StartupError(f"admin API cannot listen on {self.listen}: {e.strerror or e}") from None
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self)
        await trio.serve_listeners(self._serve, listeners)

    def status(self) -> dict[str, Any]:
        app = self.app
        return {
            "role": app.settings.node.role,
            "version": __version__,
            "node_id": app.settings.node.id,
            "uptime_s": round(time.time() - app.started_at, 3),
            "listeners": {"kafka": f"{app.settings.kafka.listen.host}:{app.kafka.port}",
                          "admin": f"{self.listen.host}:{self.port}"},
            "topics": len(app.broker.topics.all()),
        }

    def metrics(self) -> str:
        app = self.app
        lines = [
            "# HELP millstream_up 1 while the appliance runs.",
            "# TYPE millstream_up gauge",
            "millstream_up 1",
            "# HELP millstream_kafka_connections Open Kafka client connections.",
            "# TYPE millstream_kafka_connections gauge",
            f"millstream_kafka_connections {app.kafka.connections}",
            "# HELP millstream_kafka_requests_total Kafka requests handled.",
            "# TYPE millstream_kafka_requests_total counter",
            f"millstream_kafka_requests_total {app.kafka.requests}",
        ]
        return "\n".join(lines) + "\n"

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            with trio.move_on_after(30):
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(65536)
                        conn.receive_data(data)
                        continue
                    if isinstance(event, h11.Request):
                        status, ctype, body = self._route(event.method.decode(), event.target.decode())
                        await self._send(stream, conn, status, ctype, body)
                    if isinstance(event, (h11.ConnectionClosed,)) or conn.our_state is h11.MUST_CLOSE:
                        break
                    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                        conn.start_next_cycle()
        except (h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    def _route(self, method: str, target: str) -> tuple[int, str, bytes]:
        path = target.split("?", 1)[0]
        if method == "GET" and path == "/metrics":
            return 200, "text/plain; version=0.0.4", self.metrics().encode()
        if method == "GET" and path in ("/api/v1/status", "/status"):
            return 200, "application/json", json.dumps(self.status()).encode()
        if method == "GET" and path == "/healthz":
            return 200, "text/plain", b"ok\n"
        return 404, "application/json", json.dumps({"error": f"no route for {method} {path}"}).encode()

    async def _send(self, stream: trio.SocketStream, conn: h11.Connection, status: int, ctype: str, body: bytes) -> None:
        headers = [("content-type", ctype), ("content-length", str(len(body)))]
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
        await stream.send_all(conn.send(h11.Data(data=body)))
        await stream.send_all(conn.send(h11.EndOfMessage()))
