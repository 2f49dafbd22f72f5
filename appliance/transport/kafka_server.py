"""The Kafka listener: accepts connections, frames requests, runs handlers, writes responses.

Per connection, requests are read and handled in order. A handler may split its work: a module
with `stage(ctx, req)` does its synchronous part (e.g. Produce assigns offsets) while the request
is read, and returns an awaitable that the writer resolves in order. So pipelined produce requests
on one connection share a WAL fsync, yet responses still leave in request order, as Kafka requires.

Bad bytes close only their own connection, with a logged reason; the broker carries on.
Security (transport/guard.py): a TLS listener completes the handshake before any byte reaches the
framing; the peer's certificate identity, the listener's name, zone and advertised address go
into every RequestContext, and handlers authorize through `appliance/kafka/api/authz.py`.
At `kafka.max_connections` open connections a listener closes each new one as soon as it is
accepted (logged as `connection_refused`, at most once a second with a count), so a connection
flood cannot exhaust file descriptors or memory; the connections already open carry on.
Request frames larger than 16 KiB reserve their size from the process-wide `FrameBudget`
(transport/frame_budget.py, `[limits] inflight_frame_bytes`) before their body is read, and give
it back once the request has been dispatched; a frame larger than the whole budget, or one that
does not arrive within `[limits] frame_timeout` while holding budget, closes its connection.
"""

from __future__ import annotations

import itertools
import ssl
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from appliance.config import HostPort
from appliance.errors import ProtocolError, StartupError
from appliance.kafka.api import HANDLERS
from appliance.kafka.api.context import RequestContext
from appliance.kafka.broker import Broker
from appliance.kafka.protocol import codec
from appliance.logs import get_logger
from appliance.security.access import RateLimits
from appliance.transport.direct_io import send_all, socket_fd
from appliance.transport.frame_budget import FrameBudget
from appliance.transport.framing import FrameReader
from appliance.transport.guard import HandshakeRefused, ListenerGuard

log = get_logger("kafka")

MAX_PIPELINED = 16  # responses queued per connection before we stop reading more requests
REFUSAL_LOG_INTERVAL = 1.0  # seconds between connection_refused lines during a flood
API_VERSIONS_KEY = 18


def _leaf_exceptions(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaf_exceptions(e)]
    return [exc]


def _close_reason(exc: BaseException) -> str | None:
    """A short reason when the error is an ordinary way for a connection to end, else None."""
    reasons = []
    for e in _leaf_exceptions(exc):
        if isinstance(e, trio.TooSlowError):
            reasons.append("TLS handshake timed out")
        elif isinstance(e, ssl.SSLError):
            reasons.append(f"TLS handshake failed: {e.reason or e}")
        elif isinstance(e, (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError)):
            reasons.append(f"connection lost: {e.__cause__ or e}")
        else:
            return None
    return "; ".join(reasons) or None


@dataclass
class LiveConnection:
    """One open connection, for the admin API's client list (read-only outside this module)."""

    conn_id: int
    listener: str
    peer: str
    connected_at: float  # wall clock, seconds
    client_id: str | None = None  # from the latest request header
    zone: str | None = None  # the listener's zone
    principal: Any = None  # the certificate's Identity on an mTLS listener
    requests: int = 0


class KafkaServer:
    def __init__(self, broker: Broker, listen: HostPort, *, name: str = "kafka",
                 ssl_context: ssl.SSLContext | None = None, guard: ListenerGuard | None = None,
                 advertised_host: str | None = None, frame_budget: FrameBudget | None = None) -> None:
        self.broker = broker
        self.frame_budget = frame_budget  # shared by all listeners; None: only the per-frame limit
        self.listen = listen
        self.name = name
        self.ssl_context = ssl_context
        self.guard = guard or ListenerGuard(name, tls=ssl_context)
        self.advertised_host = advertised_host  # None: the broker's (kafka.advertised_host)
        self._principals: dict[int, Any] = {}
        self._rates: dict[int, RateLimits] = {}
        self.port: int | None = None
        self._listeners: list[trio.SocketListener] = []
        self._ids = itertools.count(1)
        self._read_scopes: dict[int, trio.CancelScope] = {}
        self.live: dict[int, LiveConnection] = {}  # open connections by id (admin API)
        self._draining = False
        self.connections = 0
        self.refused = 0
        self._refused_unlogged = 0
        self._refusal_logged_at = -REFUSAL_LOG_INTERVAL
        self.requests = 0
        self.errors = 0

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        host = None if self.listen.host in ("", "0.0.0.0", "::") else self.listen.host
        try:
            self._listeners = await trio.open_tcp_listeners(self.listen.port, host=host)
        except OSError as e:
            raise StartupError(f"{self.name} listener cannot listen on {self.listen}: {e.strerror or e}") from None
        self.port = self._listeners[0].socket.getsockname()[1]
        log.info("listening", listener=self.name, address=f"{self.listen.host}:{self.port}",
                 tls=("mtls" if self.guard.mutual else "yes") if self.guard.uses_tls else "no",
                 zone=self.guard.zone or "-")
        task_status.started(self)
        async with trio.open_nursery() as conns:
            async with trio.open_nursery() as accepting:
                for listener in self._listeners:
                    accepting.start_soon(self._accept_loop, listener, conns)
        log.info("listener_stopped", listener=self.name)

    async def drain(self) -> None:
        """Stop accepting; idle connections close, busy ones finish their in-flight requests."""
        self._draining = True
        for listener in self._listeners:
            await listener.aclose()
        for scope in list(self._read_scopes.values()):
            scope.cancel()

    async def _accept_loop(self, listener: trio.SocketListener, conns: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            except OSError as e:  # EMFILE and friends: keep serving the connections we have
                log.warning("accept_failed", listener=self.name, error=str(e))
                await trio.sleep(0.1)
                continue
            limit = self.broker.kafka.max_connections
            if self.connections >= limit:
                await self._refuse(stream, limit)
                continue
            self.connections += 1  # counted here, not in the task, so a burst of accepts sees it
            conns.start_soon(self._serve_connection, stream)

    async def _refuse(self, stream: trio.SocketStream, limit: int) -> None:
        self.refused += 1
        self._refused_unlogged += 1
        now = trio.current_time()
        if now - self._refusal_logged_at >= REFUSAL_LOG_INTERVAL:
            try:
                peer = "{}:{}".format(*stream.socket.getpeername()[:2])
            except OSError:
                peer = "?"
            log.warning("connection_refused", listener=self.name, peer=peer, refused=self._refused_unlogged,
                        reason=f"listener at its limit of {limit} connections")
            self._refusal_logged_at = now
            self._refused_unlogged = 0
        with trio.CancelScope(shield=True):
            try:
                await stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    async def _serve_connection(self, stream: trio.abc.Stream) -> None:
        conn_id = next(self._ids)
        try:
            peer = "{}:{}".format(*stream.socket.getpeername()[:2])  # type: ignore[attr-defined]
        except OSError:
            peer = "?"
        self.live[conn_id] = LiveConnection(conn_id, self.name, peer, time.time(), zone=self.guard.zone)
        reason = "client closed"
        try:
            if self.guard.uses_tls:
                stream, self._principals[conn_id] = await self.guard.handshake(stream, peer, timeout=10)
            reason = await self._connection_loop(stream, conn_id, peer)
        except HandshakeRefused as e:
            reason = f"TLS handshake refused: {e.reason}"
        except Exception as e:  # one connection's failure never reaches the listener's nursery
            reason = _close_reason(e)
            if reason is None:
                reason = f"internal error: {e!r}"
                log.exception("connection_failed", listener=self.name, conn=conn_id, peer=peer)
        finally:
            self.connections -= 1
            self._read_scopes.pop(conn_id, None)
            self._principals.pop(conn_id, None)
            self._rates.pop(conn_id, None)
            self.live.pop(conn_id, None)
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                try:
                    await stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
        log.debug("connection_closed", listener=self.name, conn=conn_id, peer=peer, reason=reason)

    async def _connection_loop(self, stream: trio.abc.Stream, conn_id: int, peer: str) -> str:
        reader = FrameReader(stream, self.broker.kafka.max_request_size, budget=self.frame_budget,
                             frame_timeout=self.broker.settings.limits.frame_timeout)
        send, recv = trio.open_memory_channel[tuple[int, int, int, Any]](MAX_PIPELINED)
        try:
            return await self._serve_frames(stream, conn_id, peer, reader, send, recv)
        finally:
            reader.close()

    async def _serve_frames(self, stream: trio.abc.Stream, conn_id: int, peer: str, reader: FrameReader,
                            send: trio.MemorySendChannel, recv: trio.MemoryReceiveChannel) -> str:
        reason = "client closed"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer, stream, recv, nursery.cancel_scope)
            async with send:
                while not self._draining:
                    with trio.CancelScope() as read_scope:
                        self._read_scopes[conn_id] = read_scope
                        read_scope.deadline = trio.current_time() + self.broker.kafka.connections_max_idle
                        try:
                            frame = await reader.read_frame()
                        except ProtocolError as e:
                            reason = f"bad frame: {e}"
                            self._reject(peer, conn_id, reason)
                            break
                    if read_scope.cancelled_caught:
                        reason = "draining" if self._draining else "idle timeout"
                        break
                    if frame is None:
                        break
                    item = await self._dispatch(frame, conn_id, peer)
                    del frame
                    reader.done()  # decoded and dispatched: its bytes leave the frame budget
                    if isinstance(item, str):  # a reason to close
                        reason = item
                        self._reject(peer, conn_id, reason)
                        break
                    if item is not None:
                        try:  # no scheduling round when the writer has room (it usually waits)
                            send.send_nowait(item)
                        except trio.WouldBlock:
                            await send.send(item)
        return reason

    def _reject(self, peer: str, conn_id: int, reason: str) -> None:
        self.errors += 1
        log.warning("connection_rejected", listener=self.name, conn=conn_id, peer=peer, reason=reason)

    async def _dispatch(self, frame: bytes, conn_id: int, peer: str) -> tuple | str | None:
        """Decode and run one request. Returns a writer item, None (no response), or a close reason."""
        try:
            header, req = codec.decode_request(frame)
        except codec.UnsupportedVersionError as e:
            if e.api_key == API_VERSIONS_KEY:
                # Answer in v0 with error 35 and the full list, so the client can pick a version.
                api_versions = HANDLERS[API_VERSIONS_KEY]
                return (API_VERSIONS_KEY, 0, e.correlation_id, api_versions.unsupported_version_response())
            return f"unsupported API key {e.api_key} version {e.api_version}"
        except ProtocolError as e:
            return f"malformed request: {e}"
        key = header.request_api_key
        handler = HANDLERS.get(key)
        lo, hi = handler.VERSIONS if handler else (0, -1)
        version = header.request_api_version
        if handler is None or not lo <= version <= hi:
            if key == API_VERSIONS_KEY:
                return (key, 0, header.correlation_id, HANDLERS[key].unsupported_version_response())
            return f"unsupported API key {key} version {version}"
        self.requests += 1
        live = self.live.get(conn_id)
        if live is not None:
            live.requests += 1
            live.client_id = header.client_id
            live.principal = self._principals.get(conn_id)
        ctx = RequestContext(self.broker, key, version, header.correlation_id, header.client_id,
                             peer=peer, listener=self.name, connection_id=conn_id,
                             principal=self._principals.get(conn_id), zone=self.guard.rule_zone,
                             authorizer=self.guard.security,
                             advertised=(self.advertised_host or self.broker.advertised_host,
                                         self.port if self.port is not None else self.listen.port),
                             rates=self._rates.setdefault(conn_id, RateLimits()))
        stage = getattr(handler, "stage", None)
        try:
            if stage is not None:
                result: Any = stage(ctx, req)
            else:
                result = await handler.handle(ctx, req)
        except Exception as e:  # a handler bug must not take the broker down
            log.exception("handler_failed", api_key=key, version=version, peer=peer, error=repr(e))
            return f"internal error handling API key {key}"
        if result is None:  # e.g. Produce with acks=0
            return None
        return (key, version, header.correlation_id, result)

    async def _writer(self, stream: trio.abc.Stream, recv: trio.MemoryReceiveChannel,
                      conn_scope: trio.CancelScope) -> None:
        fd = socket_fd(stream)
        async with recv:
            async for key, version, correlation_id, result in recv:
                if isinstance(result, Awaitable):
                    try:
                        result = await result
                    except Exception as e:
                        log.exception("handler_failed", api_key=key, version=version, error=repr(e))
                        conn_scope.cancel()
                        return
                    if result is None:
                        continue
                data = codec.encode_response(key, version, correlation_id, result)
                try:
                    await send_all(stream, fd, data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    conn_scope.cancel()
                    return
