"""The MQTT listener: trio sockets around the pure broker core (appliance/mqtt/).

    stop = trio.Event()
    bound = await nursery.start(partial(serve_mqtt, broker, settings.mqtt.listen, stop=stop))
    ...
    stop.set()   # graceful: stop accepting, DISCONNECT 0x8B to 5.0 clients, flush, return

Cancelling the task instead closes everything at once (the second-signal path).

Per connection: one reader (bytes -> PacketReader -> Connection.receive) and one writer that
drains the connection's outbox, coalescing packets into one send and awaiting the ingest sink's
durability before each deferred PUBACK/PUBREC, in order. The reader stops reading while the
outbox is above its bound, so a client that publishes without reading its acks is pushed back by
TCP. A malformed packet or protocol violation closes only that connection, with the MQTT 5
reason code and one key=value log line.

Security: with a `guard` (transport/guard.py) a TLS listener completes the handshake (refusals
logged and counted there) before any MQTT byte is read, and, when authorization is on, each
connection gets an `MqttAccess` hook (appliance/security/access.py) built from its certificate
identity, the listener's zone and name. Several listeners may serve one broker: only one of
them (`tick=True`) drives the broker's clock.

Limits: at `mqtt.max_connections` open connections on a listener, a new connection is refused.
On a plaintext listener it gets `_REFUSAL_WAIT` seconds to send its CONNECT and is answered with
CONNACK 0x97 "quota exceeded" (MQTT 5; 3.1.1 has no such code: return code 3 "server
unavailable"), so the device logs why; at most `_REFUSAL_SLOTS` such refusals run at once per
listener, and beyond them (and always on TLS listeners, where answering would cost a handshake)
the socket is closed at once, before any byte is read. Refusals are counted
(`connections_refused`) and logged as `mqtt_connection_refused`, at most once a second with a
count. A packet larger than 16 KiB reserves its size from the process-wide `FrameBudget`
(transport/frame_budget.py) as soon as its fixed header has arrived; the socket is not read while
it waits, and a packet that holds budget longer than `frame_timeout` closes its connection.
"""

from __future__ import annotations

import math
import ssl
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from appliance.config import HostPort
from appliance.errors import StartupError, StorageError
from appliance.logs import get_logger
from appliance.mqtt.broker import Broker
from appliance.mqtt.codec import ConnAck, MqttError, PacketReader, PacketTooLarge, ReasonCode, encode
from appliance.mqtt.session import Connection, DeferredAck
from appliance.security.access import MqttAccess
from appliance.transport.direct_io import receive_some, send_all, socket_fd
from appliance.transport.frame_budget import SMALL_FRAME, FrameBudget, reserve
from appliance.transport.guard import HandshakeRefused, ListenerGuard

log = get_logger("mqtt")

_READ_SIZE = 16 << 10  # per receive; a packet holding frame budget is read up to its end instead
_MAX_READ = 1 << 20
# why _receive_packets() handed control back to _read_packets()
_EOF, _NEEDS_BUDGET, _OUTBOX_FULL, _RESCOPE = range(4)
_OUTBOX_HIGH_WATER = 1024  # packets queued for the socket before the reader pauses
_CLOSE_FLUSH_SECONDS = 2.0  # time allowed to write a final CONNACK/DISCONNECT
_LINGER_SECONDS = 0.5  # after a server-side close, drain the peer's input this long...
_LINGER_BYTES = 1 << 20  # ...or this much, whichever comes first
TICK_SECONDS = 0.5
_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError)
_REFUSAL_SLOTS = 64  # connections beyond the limit held open at once to answer their CONNECT
_REFUSAL_WAIT = 2.0  # seconds such a connection has to send its CONNECT
_REFUSAL_MAX_CONNECT = 16 << 10  # a larger CONNECT from a refused connection is not worth reading
REFUSAL_LOG_INTERVAL = 1.0  # seconds between mqtt_connection_refused lines during a flood


@dataclass(eq=False)
class _Listener:
    """What the connections of one listener share."""

    guard: ListenerGuard
    frame_budget: FrameBudget | None = None
    frame_timeout: float = math.inf
    handlers: set[_ConnectionHandler] = field(default_factory=set)
    refusing: int = 0  # refused connections currently waiting for their CONNECT
    refused_unlogged: int = 0
    refusal_logged_at: float = -math.inf


async def serve_mqtt(broker: Broker, listen: HostPort, *, ssl_context: ssl.SSLContext | None = None,
                     stop: trio.Event | None = None, grace: float = 5.0, guard: ListenerGuard | None = None,
                     tick: bool = True, frame_budget: FrameBudget | None = None, frame_timeout: float = math.inf,
                     task_status: trio.TaskStatus[HostPort] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve MQTT on `listen` until cancelled, or until `stop` is set (then drain within `grace`).

    `task_status.started()` receives the bound address (useful with port 0). `frame_budget` is the
    process-wide budget for large packets being received (None: only `max_packet_size` applies)."""
    try:
        listeners = await trio.open_tcp_listeners(listen.port, host=listen.host or None)
    except OSError as e:
        raise StartupError(f"mqtt listener cannot listen on {listen}: {e.strerror or e}") from None
    sockname = listeners[0].socket.getsockname()
    bound = HostPort(sockname[0], sockname[1])
    if guard is None:
        guard = ListenerGuard("mqtt", tls=ssl_context)
    listener = _Listener(guard, frame_budget, frame_timeout)
    handlers = listener.handlers
    log.info("mqtt_listening", listener=guard.name, address=str(bound),
             tls=("mtls" if guard.mutual else True) if guard.uses_tls else False, zone=guard.zone or "-")
    async with trio.open_nursery() as conn_nursery:
        async with trio.open_nursery() as service:
            if tick:
                service.start_soon(_tick, broker)
            await service.start(partial(trio.serve_listeners, partial(_serve_one, broker, listener),
                                        listeners, handler_nursery=conn_nursery))
            task_status.started(bound)
            if stop is None:
                await trio.sleep_forever()
            await stop.wait()
            service.cancel_scope.cancel()  # stop accepting (closes the listeners) and ticking
        log.info("mqtt_draining", connections=len(handlers))
        broker.shutdown()
        with trio.move_on_after(grace):
            while handlers:
                await trio.sleep(0.05)
        conn_nursery.cancel_scope.cancel()
    if broker.state_store is not None and tick:
        await broker.state_store.flush(trio.current_time())
    log.info("mqtt_stopped", listener=guard.name)


async def _tick(broker: Broker) -> None:
    while True:
        await trio.sleep(TICK_SECONDS)
        broker.tick(trio.current_time())
        if broker.state_store is not None:
            await broker.state_store.flush(trio.current_time())


async def _serve_one(broker: Broker, listener: _Listener, stream: trio.abc.Stream) -> None:
    handlers = listener.handlers
    limit = broker.limits.max_connections
    if len(handlers) >= limit:
        await _refuse(broker, listener, stream, limit)
        return
    handler = _ConnectionHandler(broker, stream, listener)
    handlers.add(handler)
    stats = broker.stats
    stats.connections_total += 1
    stats.connections_current += 1
    try:
        await handler.run()
    finally:
        handlers.discard(handler)
        stats.connections_current -= 1


async def _refuse(broker: Broker, listener: _Listener, stream: trio.abc.Stream, limit: int) -> None:
    """A connection beyond the listener's limit: CONNACK 0x97 (3.1.1: 3) if cheap, else just close."""
    broker.stats.connections_refused += 1
    listener.refused_unlogged += 1
    now = trio.current_time()
    if now - listener.refusal_logged_at >= REFUSAL_LOG_INTERVAL:
        log.warning("mqtt_connection_refused", listener=listener.guard.name, peer=_peer_of(stream),
                    refused=listener.refused_unlogged, reason=f"listener at its limit of {limit} connections")
        listener.refusal_logged_at = now
        listener.refused_unlogged = 0
    if listener.guard.uses_tls or listener.refusing >= _REFUSAL_SLOTS:
        await trio.aclose_forcefully(stream)
        return
    listener.refusing += 1
    try:
        reader = PacketReader(max_packet_size=_REFUSAL_MAX_CONNECT)
        with trio.move_on_after(_REFUSAL_WAIT):
            while (data := await stream.receive_some(4096)):
                reader.feed(data)
                connect = reader.next_packet()
                if connect is not None:
                    await stream.send_all(encode(ConnAck(False, ReasonCode.QUOTA_EXCEEDED), reader.version or 4))
                    await stream.send_eof()  # type: ignore[attr-defined]
                    break
    except (MqttError, *_TRANSPORT_ERRORS):
        pass  # a malformed or vanished client: closing is all it gets
    finally:
        listener.refusing -= 1
        await trio.aclose_forcefully(stream)


def _peer_of(stream: trio.abc.Stream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]  # type: ignore[attr-defined]
        return f"{host}:{port}"
    except (AttributeError, OSError):
        return "?"


class _ConnectionHandler:
    def __init__(self, broker: Broker, stream: trio.abc.Stream, listener: _Listener) -> None:
        self.broker = broker
        self.peer = _peer_of(stream)
        self.stream: trio.abc.Stream = stream
        self.guard = listener.guard
        self.listener = listener
        self._held = 0  # bytes of the frame budget held for the packet at the head of the buffer
        self._wake = trio.Event()
        self._drained = trio.Event()
        self._peer_eof = False
        self._fd: int | None = None  # a plain TCP socket, read directly (see _receive_packets)
        self.conn = Connection(broker, self.peer, trio.current_time(), notify=self._notify)

    def _notify(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        conn = self.conn
        try:
            guard = self.guard
            self.stream, identity = await guard.handshake(self.stream, self.peer, self.broker.limits.connect_timeout)
            self._fd = socket_fd(self.stream)
            if guard.security is not None and guard.security.enabled:
                conn.access = MqttAccess(guard.security, identity, guard.rule_zone, guard.name)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, nursery.cancel_scope)
                await self._reader()
                # Reader finished (EOF, error, or closing): let the writer flush the last packets.
                if not conn.closing:
                    conn.closing = True
                    conn.close_reason = conn.close_reason or "peer closed"
                self._notify()
                nursery.cancel_scope.deadline = trio.current_time() + _CLOSE_FLUSH_SECONDS
            if not self._peer_eof:
                await self._linger()
        except HandshakeRefused as e:
            conn.close_reason = f"TLS handshake refused: {e.reason}"
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, ssl.SSLError, OSError) as e:
            conn.close_reason = conn.close_reason or f"transport: {type(e).__name__}"
        finally:
            conn.connection_lost(trio.current_time())
            await trio.aclose_forcefully(self.stream)
            if conn.client_id:
                log.info("mqtt_disconnected", peer=self.peer, client_id=conn.client_id,
                         reason=conn.close_reason or "closed")

    async def _linger(self) -> None:
        """Half-close and drain briefly: closing with unread input would send a RST that can
        overtake our last DISCONNECT/CONNACK on the client's side."""
        send_eof = getattr(self.stream, "send_eof", None)
        if send_eof is None:
            return
        with trio.move_on_after(_LINGER_SECONDS):
            await send_eof()
            drained = 0
            while drained < _LINGER_BYTES:
                data = await self.stream.receive_some(_READ_SIZE)
                if not data:
                    break
                drained += len(data)

    async def _reader(self) -> None:
        budget = self.listener.frame_budget
        try:
            await self._read_packets(budget)
        finally:
            if self._held:
                assert budget is not None
                budget.release(self._held)
                self._held = 0

    async def _read_packets(self, budget: FrameBudget | None) -> None:
        """Read, decode and hand over packets until the connection closes.

        The keep-alive (and held-packet) deadline is one cancel scope around many receives, not
        one per receive: the deadline only moves later as packets arrive, so when the scope
        expires early the loop checks the real deadline and opens a new scope. Only the socket
        wait is inside the scope; waiting for frame budget or for the outbox to drain is not."""
        conn = self.conn
        reader = PacketReader(max_packet_size=self.broker.limits.max_packet_size)
        held_deadline = math.inf  # the held packet must have arrived by then
        while not conn.closing:
            deadline = conn.keepalive_deadline()
            until = min(deadline if deadline is not None else math.inf, held_deadline)
            with trio.move_on_at(until) as scope:
                try:
                    wants = await self._receive_packets(reader, until)
                except MqttError as e:
                    self._protocol_error(reader, e)
                    return
            if scope.cancelled_caught:
                now = trio.current_time()
                if self._held and now >= held_deadline:
                    log.warning("mqtt_packet_timeout", peer=self.peer, client_id=conn.client_id or "-",
                                packet_bytes=self._held, received=reader.buffered,
                                reason=f"packet not completed within {self.listener.frame_timeout:g}s")
                    conn.server_disconnect(ReasonCode.QUOTA_EXCEEDED, "packet too slow")
                    return
                if not conn.keepalive_expired(now):
                    continue  # packets arrived since the scope opened: its deadline was stale
                if conn.connected:
                    self.broker.stats.keepalive_timeouts += 1
                conn.server_disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT, "keep-alive timeout")
                return
            if wants == _EOF:
                return
            if not self._held:
                held_deadline = math.inf
            if wants == _NEEDS_BUDGET:
                assert budget is not None
                size = reader.pending_size()
                assert size is not None
                if not budget.fits(size):
                    self._protocol_error(reader, PacketTooLarge(
                        f"packet of {size} bytes exceeds the in-flight frame budget of "
                        f"{budget.capacity} bytes ([limits] inflight_frame_bytes)"))
                    return
                await reserve(budget, size)  # back-pressure: the socket is not read meanwhile
                self._held = size
                held_deadline = trio.current_time() + self.listener.frame_timeout
            while len(conn.outbox) > _OUTBOX_HIGH_WATER and not conn.closing:
                self._drained = trio.Event()
                await self._drained.wait()

    async def _receive_packets(self, reader: PacketReader, until: float) -> int:
        """Receive and hand over packets until something needs the caller: the end of the
        stream (_EOF, also when the connection is closing), a large packet to reserve frame
        budget for (_NEEDS_BUDGET), a full outbox (_OUTBOX_FULL) or a keep-alive deadline earlier
        than `until`, the caller's (after CONNECT: the connect timeout becomes the keep-alive). Synchronous but for the socket wait, so only that wait can be cancelled.

        On a plain TCP connection the socket is read directly (wait for readable, then one
        read): about half the Python work of a stream receive per wake-up, and no speculative
        read that finds nothing."""
        conn = self.conn
        stats = self.broker.stats
        budget = self.listener.frame_budget
        fd = self._fd
        while True:
            size = min(self._held - reader.buffered, _MAX_READ) if self._held else _READ_SIZE
            try:
                data = await receive_some(self.stream, fd, max(1, size))
            except _TRANSPORT_ERRORS:
                data = b""
            if not data:
                self._peer_eof = True
                conn.close_reason = conn.close_reason or "peer closed"
                return _EOF
            stats.bytes_in += len(data)
            now = trio.current_time()
            reader.feed(data)
            for packet in reader:
                conn.receive(packet, now)
                if self._held:  # that was the held packet (the head of the buffer): handed off
                    assert budget is not None
                    budget.release(self._held)
                    self._held = 0  # (the caller's deadline for it is now stale: harmless)
                if conn.closing:
                    break
            self._notify()  # acknowledgements go out before we wait for anything else
            if conn.closing:
                return _EOF
            if budget is not None and not self._held:
                pending = reader.pending_size()
                if pending is not None and pending > SMALL_FRAME:
                    return _NEEDS_BUDGET
            if len(conn.outbox) > _OUTBOX_HIGH_WATER:
                return _OUTBOX_FULL
            deadline = conn.keepalive_deadline()
            if deadline is not None and deadline < until:
                return _RESCOPE

    def _protocol_error(self, reader: PacketReader, e: MqttError) -> None:
        conn = self.conn
        self.broker.stats.protocol_errors += 1
        log.warning("mqtt_protocol_error", peer=self.peer, client_id=conn.client_id or "-",
                    reason_code=f"0x{e.reason_code:02x}", error=str(e))
        if reader.version is not None and conn.state == "new":
            conn.version = reader.version
        conn.fail(e)

    async def _writer(self, cancel_scope: trio.CancelScope) -> None:
        conn = self.conn
        items: deque = deque()
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while conn.outbox:
                    items = deque(conn.take_output())
                    batch = bytearray()
                    urgent = False  # batch holds more than acks (deliveries): do not hold it behind an fsync
                    while items:
                        item = items.popleft()
                        if isinstance(item, DeferredAck):
                            if urgent:
                                await self._send(batch)
                                batch = bytearray()
                                urgent = False
                            try:
                                await item.waiter
                                batch += item.ok
                                conn.ack_written(item, True)
                            except StorageError as e:
                                conn.ack_written(item, False)
                                log.warning("mqtt_ingest_refused", peer=self.peer, client_id=conn.client_id,
                                            error=str(e))
                                fail = conn.failed_ack(item)
                                if fail is None:  # 3.1.1 cannot say "not accepted": drop the link
                                    conn.server_disconnect(ReasonCode.QUOTA_EXCEEDED, "ingest refused")
                                    _close_waiters(items)
                                    items.clear()
                                    break
                                batch += fail
                        else:
                            batch += item
                            urgent = True
                    if batch:
                        await self._send(batch)
                    self._drained.set()
                if conn.closing:
                    return
        except _TRANSPORT_ERRORS as e:
            # The peer went away mid-send: an ordinary end of a connection. Raised from here it
            # would reach the listener's nursery wrapped in an exception group (which the except
            # clause in run() does not match) and stop the whole appliance.
            conn.closing = True
            conn.close_reason = conn.close_reason or f"transport: {type(e).__name__}"
        finally:
            _close_waiters(items)
            _close_waiters(conn.outbox)
            self._drained.set()
            cancel_scope.cancel()

    async def _send(self, data: bytearray) -> None:
        await send_all(self.stream, self._fd, data)
        self.broker.stats.bytes_out += len(data)


def _close_waiters(items: Iterable[Any]) -> None:
    """Acks that will never be written: close their durability waiters (coroutines) unawaited."""
    for item in items:
        if isinstance(item, DeferredAck):
            close = getattr(item.waiter, "close", None)
            if close is not None:
                close()
