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
"""

from __future__ import annotations

import math
import ssl
from functools import partial

import trio

from appliance.config import HostPort
from appliance.errors import StartupError, StorageError
from appliance.logs import get_logger
from appliance.mqtt.broker import Broker
from appliance.mqtt.codec import MqttError, PacketReader, ReasonCode
from appliance.mqtt.session import Connection, DeferredAck
from appliance.security.access import MqttAccess
from appliance.transport.guard import HandshakeRefused, ListenerGuard

log = get_logger("mqtt")

_READ_SIZE = 65536
_DEADLINE_SLACK = 1.0  # seconds a reader's keep-alive scope may lag behind the real deadline
_OUTBOX_HIGH_WATER = 1024  # packets queued for the socket before the reader pauses
_CLOSE_FLUSH_SECONDS = 2.0  # time allowed to write a final CONNACK/DISCONNECT
_LINGER_SECONDS = 0.5  # after a server-side close, drain the peer's input this long...
_LINGER_BYTES = 1 << 20  # ...or this much, whichever comes first
TICK_SECONDS = 0.5
_TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError)


async def serve_mqtt(broker: Broker, listen: HostPort, *, ssl_context: ssl.SSLContext | None = None,
                     stop: trio.Event | None = None, grace: float = 5.0, guard: ListenerGuard | None = None,
                     tick: bool = True,
                     task_status: trio.TaskStatus[HostPort] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve MQTT on `listen` until cancelled, or until `stop` is set (then drain within `grace`).

    `task_status.started()` receives the bound address (useful with port 0)."""
    try:
        listeners = await trio.open_tcp_listeners(listen.port, host=listen.host or None)
    except OSError as e:
        raise StartupError(f"mqtt listener cannot listen on {listen}: {e.strerror or e}") from None
    sockname = listeners[0].socket.getsockname()
    bound = HostPort(sockname[0], sockname[1])
    handlers: set[_ConnectionHandler] = set()
    if guard is None:
        guard = ListenerGuard("mqtt", tls=ssl_context)
    log.info("mqtt_listening", listener=guard.name, address=str(bound),
             tls=("mtls" if guard.mutual else True) if guard.uses_tls else False, zone=guard.zone or "-")
    async with trio.open_nursery() as conn_nursery:
        async with trio.open_nursery() as service:
            if tick:
                service.start_soon(_tick, broker)
            await service.start(partial(trio.serve_listeners, partial(_serve_one, broker, guard, handlers),
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


async def _serve_one(broker: Broker, guard: ListenerGuard, handlers: set[_ConnectionHandler],
                     stream: trio.abc.Stream) -> None:
    handler = _ConnectionHandler(broker, stream, guard)
    handlers.add(handler)
    stats = broker.stats
    stats.connections_total += 1
    stats.connections_current += 1
    try:
        await handler.run()
    finally:
        handlers.discard(handler)
        stats.connections_current -= 1


def _peer_of(stream: trio.abc.Stream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]  # type: ignore[attr-defined]
        return f"{host}:{port}"
    except (AttributeError, OSError):
        return "?"


class _ConnectionHandler:
    def __init__(self, broker: Broker, stream: trio.abc.Stream, guard: ListenerGuard) -> None:
        self.broker = broker
        self.peer = _peer_of(stream)
        self.stream: trio.abc.Stream = stream
        self.guard = guard
        self._wake = trio.Event()
        self._drained = trio.Event()
        self._peer_eof = False
        self.conn = Connection(broker, self.peer, trio.current_time(), notify=self._notify)

    def _notify(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        conn = self.conn
        try:
            guard = self.guard
            self.stream, identity = await guard.handshake(self.stream, self.peer, self.broker.limits.connect_timeout)
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

    def _keepalive_deadline(self) -> float:
        deadline = self.conn.keepalive_deadline()
        return deadline if deadline is not None else math.inf

    async def _reader(self) -> None:
        conn = self.conn
        broker = self.broker
        stats = broker.stats
        reader = PacketReader(max_packet_size=broker.limits.max_packet_size)
        while not conn.closing:
            # One cancel scope serves many receives (a scope per receive costs more than the
            # receive on a busy loop). Its deadline is never later than the keep-alive deadline:
            # moved earlier at once, later only when that gains more than _DEADLINE_SLACK; when
            # it fires early, the real deadline is checked and a new scope armed.
            with trio.CancelScope(deadline=self._keepalive_deadline()) as scope:
                while not conn.closing:
                    try:
                        data = await self.stream.receive_some(_READ_SIZE)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
                        data = b""
                    if not data:
                        self._peer_eof = True
                        conn.close_reason = conn.close_reason or "peer closed"
                        return
                    stats.bytes_in += len(data)
                    now = trio.current_time()
                    try:
                        reader.feed(data)
                        for packet in reader:
                            conn.receive(packet, now)
                            if conn.closing:
                                break
                    except MqttError as e:
                        stats.protocol_errors += 1
                        log.warning("mqtt_protocol_error", peer=self.peer, client_id=conn.client_id or "-",
                                    reason_code=f"0x{e.reason_code:02x}", error=str(e))
                        if reader.version is not None and conn.state == "new":
                            conn.version = reader.version
                        conn.fail(e)
                        return
                    self._notify()
                    if len(conn.outbox) > _OUTBOX_HIGH_WATER:
                        break  # wait for the writer outside the scope: not reading is not idling
                    target = self._keepalive_deadline()
                    if target < scope.deadline or target - scope.deadline > _DEADLINE_SLACK:
                        scope.deadline = target
            if scope.cancelled_caught:
                if trio.current_time() < self._keepalive_deadline():
                    continue  # the scope's deadline was an early one
                if conn.connected:
                    stats.keepalive_timeouts += 1
                conn.server_disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT, "keep-alive timeout")
                return
            while len(conn.outbox) > _OUTBOX_HIGH_WATER and not conn.closing:
                self._drained = trio.Event()
                await self._drained.wait()

    async def _writer(self, cancel_scope: trio.CancelScope) -> None:
        conn = self.conn
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while conn.outbox:
                    items = conn.take_output()
                    batch = bytearray()
                    urgent = False  # batch holds more than acks (deliveries): do not hold it behind an fsync
                    for item in items:
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
            self._drained.set()
            cancel_scope.cancel()

    async def _send(self, data: bytearray) -> None:
        await self.stream.send_all(data)
        self.broker.stats.bytes_out += len(data)
