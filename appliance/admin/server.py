"""Admin API over HTTP/1.1: h11 (sans-IO) on trio, TCP on loopback and optionally a unix socket.

The HTTP layer stays thin: it parses requests, bounds them, routes them and writes JSON. What a
response holds comes from `views` (reads, pure) and `actions` (writes); the models are shared with
the client and the TUI (`appliance.admin.models`).

Routes (JSON unless noted; errors are `{"error": "..."}` with 400/404/405/409/413/500/503):

    GET    /api/v1/status             role, version, node id, uptime, listeners, health, warnings, alerts
    GET    /api/v1/warnings           {"warnings": [Alert]}: current warnings with kind and severity
    GET    /api/v1/topics             {"topics": [TopicInfo]}
    POST   /api/v1/topics             CreateTopic -> 201 TopicInfo
    GET    /api/v1/topics/{name}      TopicInfo
    PATCH  /api/v1/topics/{name}      AlterTopic -> TopicInfo
    DELETE /api/v1/topics/{name}      204
    GET    /api/v1/topics/{name}/partitions/{p}/records?offset=N|timestamp=MS&limit=N
                                      TailResult: records decoded for reading (live tail, replay)
    GET    /api/v1/groups             {"groups": [GroupInfo]} with lag per partition
    GET    /api/v1/groups/{id}        GroupInfo
    GET    /api/v1/clients?limit=N    Clients: MQTT sessions and Kafka connections (N each, 1000)
    GET    /api/v1/logs?after=SEQ&limit=N
                                      LogLines: recent log lines kept in memory
    GET    /api/v1/uplink             uplink state, backlog per topic (UplinkStatus)
    POST   /api/v1/uplink/pause       stop forwarding (the backlog grows) -> UplinkStatus
    POST   /api/v1/uplink/resume      forward again -> UplinkStatus
    GET    /api/v1/mqtt               MQTT broker counters
    GET    /api/v1/storage            StorageInfo
    POST   /api/v1/storage/compact    run log compaction of every cleanup.policy=compact partition now
                                      (whether due or not) -> {"compacted_streams": N, "storage": StorageInfo}
    GET    /api/v1/metrics            {"families": [MetricFamily]} (the figures /metrics shows)
    GET    /api/v1/measurements       live per-topic rates (cost_routes.py; `millstream cost --admin`)
    GET    /api/v1/cost?scale=&retention=  cost comparison of the live workload, line items, assumptions
    GET    /api/v1/inventory          `[[streams]]`, placement findings, unowned topics
    GET    /metrics                   Prometheus text format
    GET    /healthz                   "ok" (text)

Limits: request heads up to 16 KiB and bodies up to 64 KiB (413 beyond), keep-alive with an
idle timeout, a deadline for reading a request once it started, and a cap on open connections.

Security: the listener is loopback (or a 0600 unix socket) by default. A declared admin listener
off loopback must be mTLS (the runtime refuses to start otherwise): it gets a `guard`
(transport/guard.py: handshake, refusal reasons and counts) and an `authorize(stream) -> bool` that
checks the peer certificate for the `admin` operation (403 otherwise). `ssl_context` alone also
works. The legacy `[admin] listen` off loopback without TLS is served with a warning.

Segmentation routes (security_routes.py):

    GET    /api/v1/security           SecurityStatus: zones, listeners, conduit links (the zones x
                                      listeners matrix), recent denials, counters, handshake refusals
    GET    /api/v1/certificates       Certificates: serial, identity, expiry, days left, revoked, status
    POST   /api/v1/certificates       {"zone", "id", "days"?, "kind"?, "dns"?, "ips"?} -> 201, PEM cert + key
    POST   /api/v1/certificates/revoke  {"serial"} or {"id", "zone"?}, "reason"?
    POST   /api/v1/rules/reload       re-read the rules file (400 with file:line: reason if invalid)
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import h11
import trio

from appliance.admin import actions, prometheus, tail, views
from appliance.admin.actions import AdminError
from appliance.admin.models import API_PREFIX, Listener, to_plain
from appliance.config import HostPort
from appliance.errors import StartupError
from appliance.logs import get_logger

log = get_logger("admin")

MAX_HEAD_BYTES = 16 << 10
MAX_BODY_BYTES = 64 << 10
IDLE_TIMEOUT = 30.0  # seconds a keep-alive connection may wait for its next request
REQUEST_TIMEOUT = 10.0  # seconds to receive a whole request once its first bytes arrived
MAX_CONNECTIONS = 64  # a few operators, scripts and a Prometheus scraper; more is a leak

JSON = "application/json"


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


def json_response(status: int, payload: Any) -> Response:
    return Response(status, json.dumps(to_plain(payload), separators=(",", ":")).encode())


def error_response(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, json.dumps({"error": message}).encode(), JSON, headers)


Handler = Callable[..., Awaitable[Response]]  # (server, match, body[, query]) -> Response
_ROUTES: list[tuple[str, re.Pattern, Handler, bool]] = []


def route(method: str, pattern: str, *, query: bool = False) -> Callable[[Handler], Handler]:
    """Register a handler; with `query` it also receives the query string as {name: last value}."""
    def register(fn: Handler) -> Handler:
        _ROUTES.append((method, re.compile(pattern + r"\Z"), fn, query))
        return fn

    return register


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AdminServer:
    def __init__(self, app: Any, listen: HostPort | None, *, unix_socket: str | Path | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 authorize: Callable[[trio.abc.Stream], bool] | None = None,
                 clock: Callable[[], float] = time.time, name: str = "admin", guard: Any = None) -> None:
        self.app = app
        self.listen = listen
        self.name = name
        self.guard = guard
        if unix_socket is None:
            unix_socket = getattr(getattr(app.settings, "admin", None), "unix_socket", None)
        self.unix_socket = Path(unix_socket) if unix_socket else None
        self.ssl_context = ssl_context
        self.authorize = authorize
        self.clock = clock
        self.port: int | None = None
        self.connections = 0
        self.requests = 0

    # --- listening -------------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        listeners: list[trio.SocketListener] = []
        if self.listen is not None:
            if not _is_loopback(self.listen.host) and self.ssl_context is None and self.guard is None:
                log.warning("admin_not_loopback", address=str(self.listen),
                            hint="serve the admin API on loopback or a unix socket until mTLS is configured")
            try:
                tcp = await trio.open_tcp_listeners(self.listen.port, host=self.listen.host or None)
            except OSError as e:
                raise StartupError(f"admin API cannot listen on {self.listen}: {e.strerror or e}") from None
            self.port = tcp[0].socket.getsockname()[1]
            listeners += tcp
        if self.unix_socket is not None:
            try:
                listeners.append(await self._open_unix_listener(self.unix_socket))
            except OSError as e:
                raise StartupError(f"admin API cannot listen on {self.unix_socket}: {e.strerror or e}") from None
        try:
            log.info("admin_listening", address=f"{self.listen.host}:{self.port}" if self.listen else "-",
                     unix_socket=str(self.unix_socket or "-"))
            task_status.started(self)
            async with trio.open_nursery() as nursery:
                limiter = trio.CapacityLimiter(MAX_CONNECTIONS)
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener, limiter, nursery)
        finally:
            if self.unix_socket is not None:
                self._unlink_socket(self.unix_socket)

    @staticmethod
    def _unlink_socket(path: Path) -> None:
        try:
            if path.is_socket():
                path.unlink()
        except OSError:
            pass

    async def _open_unix_listener(self, path: Path) -> trio.SocketListener:
        path.parent.mkdir(parents=True, exist_ok=True)  # OSError here is reported like a bind failure
        self._unlink_socket(path)  # a stale socket from a crashed run
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created 0600: only the appliance's user may administer it
        try:
            await sock.bind(str(path))
            sock.listen(16)
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        return trio.SocketListener(sock)

    def listeners(self) -> list[Listener]:
        out = []
        if self.listen is not None:
            out.append(Listener(self.name, str(HostPort(self.listen.host, self.port or self.listen.port))))
        if self.unix_socket is not None:
            out.append(Listener("admin-unix", str(self.unix_socket)))
        return out

    async def _accept_loop(self, listener: trio.SocketListener, limiter: trio.CapacityLimiter,
                           nursery: trio.Nursery) -> None:
        while True:
            stream = await listener.accept()
            try:
                limiter.acquire_on_behalf_of_nowait(stream)
            except trio.WouldBlock:
                log.warning("admin_connection_refused", reason="too many connections", limit=MAX_CONNECTIONS)
                await stream.aclose()
                continue
            nursery.start_soon(self._serve_connection, stream, limiter)

    async def _serve_connection(self, raw: trio.SocketStream, limiter: trio.CapacityLimiter) -> None:
        self.connections += 1
        stream: trio.abc.Stream = raw
        try:
            if self.guard is not None:
                try:
                    stream, _ = await self.guard.handshake(raw, _peer(raw), REQUEST_TIMEOUT)
                except Exception:  # noqa: BLE001 - HandshakeRefused: logged and counted by the guard
                    return
            elif self.ssl_context is not None:
                stream = trio.SSLStream(raw, self.ssl_context, server_side=True)
                with trio.move_on_after(REQUEST_TIMEOUT):
                    await stream.do_handshake()
            if self.authorize is not None and not self.authorize(stream):
                await self._write(stream, h11.Connection(h11.SERVER),
                                  error_response(403, "not authorised for the admin operation"))
                return
            await self._serve(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
            pass
        finally:
            self.connections -= 1
            limiter.release_on_behalf_of(raw)
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.aclose()

    # --- HTTP ------------------------------------------------------------------------------------

    async def _serve(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        while True:
            try:
                request, body = await self._read_request(stream, conn)
            except _TooLarge as e:
                await self._write(stream, conn, error_response(e.status, str(e), (("connection", "close"),)))
                return
            except h11.RemoteProtocolError as e:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._write(stream, conn, error_response(e.error_status_hint, f"bad request: {e}",
                                                                   (("connection", "close"),)))
                return
            if request is None:
                return  # closed by the peer, or idle too long
            self.requests += 1
            response = await self.handle(request.method.decode("ascii", "replace"),
                                         request.target.decode("ascii", "replace"), body)
            await self._write(stream, conn, response)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _read_request(self, stream: trio.abc.Stream, conn: h11.Connection) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = bytearray()
        deadline_set = False
        scope = trio.CancelScope(deadline=trio.current_time() + IDLE_TIMEOUT)
        with scope:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not deadline_set and data:
                        scope.deadline = trio.current_time() + REQUEST_TIMEOUT
                        deadline_set = True
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    request = event
                    # h11 bounds only heads still incomplete in its buffer; one that arrived whole
                    # in a single read is checked here.
                    head = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
                    if head > MAX_HEAD_BYTES:
                        raise _TooLarge(f"request head over {MAX_HEAD_BYTES} bytes", 431)
                    length = dict(event.headers).get(b"content-length")
                    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
                        raise _TooLarge(f"request body over {MAX_BODY_BYTES} bytes")
                    if conn.they_are_waiting_for_100_continue:  # curl does this for bodies over 1 KiB
                        await stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > MAX_BODY_BYTES:
                        raise _TooLarge(f"request body over {MAX_BODY_BYTES} bytes")
                elif isinstance(event, h11.EndOfMessage):
                    return request, bytes(body)
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return None, b""
        return None, b""  # timed out: close quietly (a half-sent request gets no answer)

    async def _write(self, stream: trio.abc.Stream, conn: h11.Connection, r: Response) -> None:
        headers = [("cache-control", "no-store"), *r.headers]
        if r.status != 204:  # a 204 carries no body and no framing headers
            headers += [("content-type", r.content_type), ("content-length", str(len(r.body)))]
        with trio.move_on_after(REQUEST_TIMEOUT):
            try:
                reason = HTTPStatus(r.status).phrase.encode()
            except ValueError:
                reason = b""
            data = conn.send(h11.Response(status_code=r.status, headers=headers, reason=reason))
            if r.body:
                data += conn.send(h11.Data(data=r.body))
            data += conn.send(h11.EndOfMessage())
            await stream.send_all(data)

    # --- routing ---------------------------------------------------------------------------------

    async def handle(self, method: str, target: str, body: bytes) -> Response:
        """One request to one response; never raises."""
        parts = urllib.parse.urlsplit(target)
        path = parts.path
        allowed = []
        for m, pattern, fn, wants_query in _ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            if m != method:
                allowed.append(m)
                continue
            try:
                payload = None
                if body:
                    try:
                        payload = json.loads(body)
                    except ValueError as e:
                        return error_response(400, f"body is not valid JSON: {e}")
                if wants_query:
                    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
                    return await fn(self, match, payload, query)
                return await fn(self, match, payload)
            except AdminError as e:
                return error_response(e.status, str(e))
            except Exception as e:  # noqa: BLE001 - one bad request must not take the server down
                log.exception("admin_request_failed", method=method, path=path)
                return error_response(500, f"internal error: {type(e).__name__}: {e}")
        if allowed:
            return error_response(405, f"{method} not allowed on {path}", (("allow", ", ".join(sorted(set(allowed)))),))
        return error_response(404, f"no route for {method} {path}")

    def now(self) -> float:
        return self.clock()


def _peer(stream: Any) -> str:
    try:
        addr = stream.socket.getpeername()
        return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr or "unix")
    except (AttributeError, OSError):
        return "?"


class _TooLarge(Exception):
    def __init__(self, message: str, status: int = 413) -> None:
        super().__init__(message)
        self.status = status


def _name(match: re.Match) -> str:
    return urllib.parse.unquote(match.group(1))


P = re.escape(API_PREFIX)


@route("GET", r"/healthz")
async def _healthz(server: AdminServer, match: re.Match, body: Any) -> Response:
    return Response(200, b"ok\n", "text/plain; charset=utf-8")


@route("GET", r"/metrics")
async def _metrics_text(server: AdminServer, match: re.Match, body: Any) -> Response:
    text = prometheus.render(views.metric_families(server.app, now=server.now(),
                                                   certificates=await _cert_records(server),
                                                   monotonic=server.app.broker.monotonic()))
    return Response(200, text.encode(), prometheus.CONTENT_TYPE)


@route("GET", P + r"/metrics")
async def _metrics_json(server: AdminServer, match: re.Match, body: Any) -> Response:
    return json_response(200, {"families": views.metric_families(server.app, now=server.now(),
                                                                 certificates=await _cert_records(server),
                                                                 monotonic=server.app.broker.monotonic())})


async def _cert_records(server: AdminServer) -> list[Any]:
    """The certificate inventory for the expiry warnings (a file read: in a thread, cached by stat)."""
    sec = getattr(server.app, "security", None)
    if sec is None or not hasattr(sec, "cert_records"):
        return []
    try:
        return await trio.to_thread.run_sync(sec.cert_records)
    except Exception as e:  # noqa: BLE001 - a broken inventory must not take the status down
        log.warning("certificate_inventory_unreadable", error=str(e))
        return []


@route("GET", P + r"/status")
async def _status(server: AdminServer, match: re.Match, body: Any) -> Response:
    return json_response(200, views.status_view(server.app, now=server.now(), listeners=server.listeners(),
                                                certificates=await _cert_records(server),
                                                monotonic=server.app.broker.monotonic()))


@route("GET", P + r"/warnings")
async def _warnings(server: AdminServer, match: re.Match, body: Any) -> Response:
    found = views.alerts(server.app, views.storage_view(server.app), now=server.now(),
                         certificates=await _cert_records(server), monotonic=server.app.broker.monotonic())
    return json_response(200, {"warnings": found})


@route("GET", P + r"/storage")
async def _storage(server: AdminServer, match: re.Match, body: Any) -> Response:
    return json_response(200, views.storage_view(server.app))


@route("GET", P + r"/topics")
async def _topics(server: AdminServer, match: re.Match, body: Any) -> Response:
    return json_response(200, {"topics": views.topics_view(server.app)})


@route("POST", P + r"/topics")
async def _create_topic(server: AdminServer, match: re.Match, body: Any) -> Response:
    if body is None:
        raise AdminError(400, 'expected a JSON body such as {"name": "orders", "partitions": 3}')
    return json_response(201, await actions.create_topic(server.app, body))


@route("GET", P + r"/topics/([^/]+)")
async def _topic(server: AdminServer, match: re.Match, body: Any) -> Response:
    info = views.topic_view(server.app, _name(match))
    if info is None:
        raise AdminError(404, f"topic {_name(match)!r} does not exist")
    return json_response(200, info)


@route("PATCH", P + r"/topics/([^/]+)")
async def _alter_topic(server: AdminServer, match: re.Match, body: Any) -> Response:
    if body is None:
        raise AdminError(400, 'expected a JSON body such as {"configs": {"retention.ms": "3600000"}}')
    return json_response(200, await actions.alter_topic(server.app, _name(match), body))


@route("DELETE", P + r"/topics/([^/]+)")
async def _delete_topic(server: AdminServer, match: re.Match, body: Any) -> Response:
    await actions.delete_topic(server.app, _name(match))
    return Response(204)


@route("GET", P + r"/groups")
async def _groups(server: AdminServer, match: re.Match, body: Any) -> Response:
    return json_response(200, {"groups": views.groups_view(server.app)})


@route("GET", P + r"/groups/([^/]+)")
async def _group(server: AdminServer, match: re.Match, body: Any) -> Response:
    info = views.group_view(server.app, _name(match))
    if info is None:
        raise AdminError(404, f"group {_name(match)!r} does not exist")
    return json_response(200, info)


@route("GET", P + r"/uplink")
async def _uplink(server: AdminServer, match: re.Match, body: Any) -> Response:
    return json_response(200, views.uplink_view(server.app))


@route("POST", P + r"/uplink/(pause|resume)")
async def _uplink_control(server: AdminServer, match: re.Match, body: Any) -> Response:
    uplink = getattr(server.app, "uplink", None)
    if uplink is None:
        raise AdminError(409, "the uplink is not enabled on this node ([uplink] enabled = true)")
    uplink.pause() if match.group(1) == "pause" else uplink.resume()
    return json_response(200, views.uplink_view(server.app))


@route("POST", P + r"/storage/compact")
async def _storage_compact(server: AdminServer, match: re.Match, body: Any) -> Response:
    tier = getattr(server.app.storage, "tier", None)
    if tier is None:
        raise AdminError(409, "this node has no object-storage tier")
    n = await tier.key_compactor.run_once(force=True)
    return json_response(200, {"compacted_streams": n, "storage": views.storage_view(server.app)})


@route("GET", P + r"/mqtt")
async def _mqtt(server: AdminServer, match: re.Match, body: Any) -> Response:
    return json_response(200, views.mqtt_view(server.app))


def _int_param(query: dict[str, str], name: str) -> int | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise AdminError(400, f"{name} must be a whole number, got {text!r}") from None


@route("GET", P + r"/topics/([^/]+)/partitions/(\d+)/records", query=True)
async def _records(server: AdminServer, match: re.Match, body: Any, query: dict[str, str]) -> Response:
    offset, timestamp = _int_param(query, "offset"), _int_param(query, "timestamp")
    if offset is not None and timestamp is not None:
        raise AdminError(400, "give offset or timestamp, not both")
    limit = _int_param(query, "limit")
    try:
        result = await tail.tail(server.app, _name(match), int(match.group(2)), offset=offset,
                                 timestamp=timestamp, limit=tail.DEFAULT_LIMIT if limit is None else limit)
    except LookupError as e:
        raise AdminError(404, str(e.args[0])) from None
    return json_response(200, result)


@route("GET", P + r"/clients", query=True)
async def _clients(server: AdminServer, match: re.Match, body: Any, query: dict[str, str]) -> Response:
    limit = _int_param(query, "limit")
    return json_response(200, views.clients_view(server.app, now=server.now(), monotonic=trio.current_time(),
                                                 limit=max(0, 1000 if limit is None else limit)))


@route("GET", P + r"/logs", query=True)
async def _logs(server: AdminServer, match: re.Match, body: Any, query: dict[str, str]) -> Response:
    after = _int_param(query, "after") or 0
    limit = _int_param(query, "limit")
    return json_response(200, views.logs_view(server.app, after=after, limit=500 if limit is None else limit))


from appliance.admin import cost_routes, security_routes  # noqa: E402,F401  (register their routes on the table above)
