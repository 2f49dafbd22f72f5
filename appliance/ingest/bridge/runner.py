"""The bridge's trio adapter: connect upstream, feed what arrives into the local broker, reconnect.

Each message received upstream is published into the local MQTT broker core (so local
subscribers see it, under `[bridge] local_prefix`) and therefore through the ingest sink with the
same `[[mqtt_map]]` mapping as a device publishing directly. Its PUBACK/PUBREC goes upstream only
once the sink reports it durable, in arrival order: a crash loses nothing the upstream considers
delivered, and the upstream resends the rest on reconnect (persistent session).

QoS 2 is exactly-once across reconnects and restarts (qos2_store.py): the ids acknowledged with
PUBREC are kept by the runner (not the connection) and written durably before the PUBREC; a
message still waiting for its WAL fsync when the link drops is settled by a task that outlives
the connection, and its resend waits for that instead of being ingested again.

A refusal by the sink (storage full, unmapped and refused) is not acknowledged: the bridge drops
the connection and reconnects after the back-off, so the upstream keeps the message queued.
Back-off: `backoff_min` doubling to `backoff_max`, with +-25% jitter, reset after a CONNACK.

With a Sparkplug host id, each connection carries the host's death certificate as its will and
publishes the birth after subscribing (sparkplug/host_state.py); a graceful stop publishes the
death and waits (up to a second) for its PUBACK before DISCONNECT.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import trio

from appliance.config import BridgeSettings
from appliance.errors import MillstreamError, StorageError
from appliance.ingest.bridge.client import (
    BridgeClient,
    BridgeError,
    BridgeOptions,
    Closed,
    Connected,
    Inbound,
    PublishAcked,
    Released,
    Repeated,
    Subscribed,
)
from appliance.ingest.bridge.qos2_store import InboundQos2Store
from appliance.ingest.sparkplug.host_state import STATE_QOS, parse_state, state_payload, state_topic
from appliance.logs import get_logger
from appliance.mqtt.codec import MqttError, Will
from appliance.mqtt.codec.properties import PropertyId as P
from appliance.mqtt.session import Message
from appliance.storage.ports import MetaStore

log = get_logger("bridge")

_READ_SIZE = 65536


class BridgeStats:
    def __init__(self) -> None:
        self.connects = 0
        self.messages = 0
        self.refused = 0
        self.qos2_repeats = 0  # resent QoS 2 messages answered without ingesting them again
        self.connected = False


class _Settling:
    """A QoS 2 message on its way to the WAL, outliving the connection it arrived on."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: StorageError | None = None

    async def wait(self) -> None:
        await self.done.wait()
        if self.error is not None:
            raise StorageError(str(self.error))

    def __await__(self):  # re-awaitable, and nothing is left unawaited when a connection drops
        return self.wait().__await__()


class _Bridge:
    """What outlives one connection: options, the QoS 2 state, messages still settling."""

    def __init__(self, settings: BridgeSettings, mqtt: Any, stopping: trio.Event, stats: BridgeStats,
                 qos2: InboundQos2Store, host_id: str, wall_ms: Callable[[], int], keeper: trio.Nursery) -> None:
        self.settings = settings
        self.mqtt = mqtt
        self.stopping = stopping
        self.stats = stats
        self.qos2 = qos2
        self.host_id = host_id
        self.state_topic = state_topic(host_id) if host_id else ""
        self.wall_ms = wall_ms
        self.keeper = keeper
        self.settling: dict[int, _Settling] = {}
        filters = settings.filters + ((self.state_topic,) if host_id else ())
        self.options = BridgeOptions(settings.client_id, filters, settings.qos, settings.session_expiry,
                                     settings.keep_alive, settings.username, settings.password)

    def begin_qos2(self, packet_id: int, waiter: Any) -> _Settling:
        entry = _Settling()
        self.settling[packet_id] = entry
        self.keeper.start_soon(self._settle, packet_id, waiter, entry)
        return entry

    async def _settle(self, packet_id: int, waiter: Any, entry: _Settling) -> None:
        try:
            if waiter is not None:
                await waiter
            self.qos2.awaiting.add(packet_id)  # durable in the WAL: a resend from now on is a repeat
        except StorageError as e:
            entry.error = e
        finally:
            entry.done.set()
            if self.settling.get(packet_id) is entry:
                del self.settling[packet_id]


async def run_bridge(settings: BridgeSettings, mqtt: Any, stopping: trio.Event, *,
                     meta: MetaStore | None = None, host_id: str = "", wall_ms: Callable[[], int] | None = None,
                     rng: random.Random | None = None, stats: BridgeStats | None = None,
                     task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Keep a bridge connection up until `stopping` is set (then DISCONNECT normally). Started
    (`task_status`) once its QoS 2 state is loaded; the first connection follows.

    `meta`: where the inbound QoS 2 state is persisted (None: memory only, kept across
    reconnects but not restarts); `host_id`: the Sparkplug host application id ("" = none)."""
    assert settings.upstream is not None
    rng = rng or random.Random()
    stats = stats or BridgeStats()
    qos2 = InboundQos2Store(meta, f"{settings.upstream}/{settings.client_id}")
    qos2.load()
    task_status.started()
    delay = settings.backoff_min
    async with trio.open_nursery() as keeper:
        bridge = _Bridge(settings, mqtt, stopping, stats, qos2, host_id,
                         wall_ms or (lambda: time.time_ns() // 1_000_000), keeper)
        while not stopping.is_set():
            up = settings.upstream
            try:
                with trio.fail_after(10):
                    stream = await trio.open_tcp_stream(up.host, up.port)
            except (OSError, trio.TooSlowError) as e:
                log.warning("bridge_connect_failed", upstream=str(up), error=e.strerror or str(e),
                            retry_s=round(delay, 2))
            else:
                client = BridgeClient(bridge.options, awaiting_rel=qos2.awaiting)
                try:
                    async with stream:
                        await _session(bridge, client, stream)
                except _EXPECTED as e:
                    log.warning("bridge_disconnected", upstream=str(up), error=str(e) or type(e).__name__,
                                retry_s=round(delay, 2))
                finally:
                    stats.connected = False
                if client.connected:
                    delay = settings.backoff_min
            if stopping.is_set():
                break
            with trio.move_on_after(delay * rng.uniform(0.75, 1.25)):
                await stopping.wait()
            delay = min(delay * 2, settings.backoff_max)
        keeper.cancel_scope.cancel()
    with trio.move_on_after(2.0) as scope:
        scope.shield = True
        try:
            await qos2.save()  # releases seen since the last write
        except StorageError:
            pass
    log.info("bridge_stopped")


async def _session(bridge: _Bridge, client: BridgeClient, stream: trio.SocketStream) -> None:
    settings, mqtt, stopping, stats = bridge.settings, bridge.mqtt, bridge.stopping, bridge.stats
    send_lock = trio.Lock()

    async def send(data: bytes) -> None:
        if data:
            async with send_lock:
                await stream.send_all(data)

    # (inbound or a repeated QoS 2 id, what to wait for before acknowledging it)
    acks_in, acks_out = trio.open_memory_channel[tuple[Any, Any]](1024)
    failure: list[BaseException] = []
    born_at = bridge.wall_ms()  # this connection's STATE timestamp: the will's and the birth's
    will = None
    if bridge.host_id:
        will = Will(bridge.state_topic, state_payload(False, born_at), STATE_QOS, True)
    death_pid: list[int] = []
    death_acked = trio.Event()
    await send(client.start(trio.current_time(), will))

    async def publish_birth() -> None:
        _, data = client.publish(bridge.state_topic, state_payload(True, born_at), qos=STATE_QOS, retain=True,
                                 now=trio.current_time())
        await send(data)

    async with trio.open_nursery() as nursery:

        def guarded(fn):
            async def run() -> None:
                try:
                    await fn()
                except _EXPECTED as e:  # first failure ends the session; the caller reconnects
                    failure.append(e)
                    nursery.cancel_scope.cancel()
            return run

        async def acker() -> None:
            while True:
                items = [await acks_out.receive()]
                while len(items) < 256:
                    try:
                        items.append(acks_out.receive_nowait())
                    except trio.WouldBlock:
                        break
                out = bytearray()
                qos2 = False
                for item, waiter in items:
                    if waiter is not None:
                        await waiter  # StorageError: leave unacknowledged, drop the link (the upstream resends)
                    now = trio.current_time()
                    if isinstance(item, Repeated):
                        out += client.acknowledge_repeat(item.packet_id, now)
                        qos2 = True
                    else:
                        out += client.acknowledge(item, now)
                        qos2 = qos2 or item.qos == 2
                if qos2:
                    await bridge.qos2.save()  # the ids are durable before any PUBREC leaves
                await send(bytes(out))

        async def pinger() -> None:
            while True:
                await trio.sleep(1.0)
                await send(client.tick(trio.current_time()))

        async def stopper() -> None:
            await stopping.wait()
            with trio.move_on_after(1.0):
                if bridge.host_id and client.connected:
                    pid, data = client.publish(bridge.state_topic, state_payload(False, born_at), qos=STATE_QOS,
                                               retain=True, now=trio.current_time())
                    death_pid.append(pid)
                    await send(data)
                    await death_acked.wait()
                    log.info("sparkplug_host_state", host_id=bridge.host_id, online=False, timestamp=born_at)
            with trio.move_on_after(1.0):  # even after an unacknowledged death: no will on top of it
                await send(client.disconnect())
            nursery.cancel_scope.cancel()

        async def reader() -> None:
            while True:
                data = await stream.receive_some(_READ_SIZE)
                if not data:
                    raise BridgeError("upstream closed the connection")
                now = trio.current_time()
                events, reply = client.receive(data, now)
                await send(reply)
                for ev in events:
                    if isinstance(ev, Inbound):
                        if ev.topic == bridge.state_topic and bridge.state_topic:
                            await _own_state(ev, bridge, born_at, publish_birth)
                            if ev.qos:
                                await acks_in.send((ev, None))
                            continue
                        if ev.qos == 2 and ev.packet_id in bridge.settling:
                            stats.qos2_repeats += 1  # resent while the first copy is still settling
                            await acks_in.send((ev, bridge.settling[ev.packet_id]))
                            continue
                        stats.messages += 1
                        waiter = _publish_locally(ev, settings, mqtt, now, stats)
                        if ev.qos == 2:
                            await acks_in.send((ev, bridge.begin_qos2(ev.packet_id, waiter)))
                        elif ev.qos:
                            await acks_in.send((ev, waiter))
                    elif isinstance(ev, Repeated):
                        stats.qos2_repeats += 1
                        await acks_in.send((ev, None))
                    elif isinstance(ev, Released):
                        pass  # saved with the next write (qos2_store.py)
                    elif isinstance(ev, PublishAcked):
                        if death_pid and ev.packet_id == death_pid[0]:
                            death_acked.set()
                    elif isinstance(ev, Connected):
                        stats.connects += 1
                        stats.connected = True
                        if not ev.session_present and bridge.qos2.awaiting:
                            bridge.qos2.awaiting.clear()  # a new session upstream: old ids mean nothing
                        log.info("bridge_connected", upstream=str(settings.upstream),
                                 session_present=ev.session_present)
                        if bridge.host_id:  # after the SUBSCRIBE that went out with the CONNACK
                            await publish_birth()
                            log.info("sparkplug_host_state", host_id=bridge.host_id, online=True, timestamp=born_at,
                                     upstream=str(settings.upstream))
                    elif isinstance(ev, Subscribed):
                        log.info("bridge_subscribed", filters=",".join(bridge.options.filters),
                                 granted=",".join(f"0x{c:02x}" for c in ev.granted))
                    elif isinstance(ev, Closed):
                        raise BridgeError(f"upstream sent DISCONNECT 0x{ev.reason_code:02x}")

        for fn in (acker, pinger, stopper, reader):
            nursery.start_soon(guarded(fn))
    if failure:
        raise failure[0]


async def _own_state(ev: Inbound, bridge: _Bridge, born_at: int, publish_birth: Callable[[], Any]) -> None:
    """Our own STATE topic: a death newer than our birth (another process with our host id, or a
    will published after our birth) replaced the retained birth, so publish the birth again. Older
    deaths (the will of our previous connection, queued for this session) are already superseded."""
    state = parse_state(ev.payload)
    if state is None or bridge.stopping.is_set():
        return
    online, timestamp = state
    if not online and timestamp > born_at:
        log.info("sparkplug_host_state_restored", host_id=bridge.host_id, stale_timestamp=timestamp)
        await publish_birth()


_EXPECTED = (BridgeError, MqttError, StorageError, OSError, trio.BrokenResourceError, trio.ClosedResourceError,
             trio.TooSlowError)


def _publish_locally(ev: Inbound, settings: BridgeSettings, mqtt: Any, now: float, stats: BridgeStats) -> Any:
    expiry = ev.properties.get(P.MESSAGE_EXPIRY_INTERVAL)
    msg = Message(settings.local_prefix + ev.topic, ev.payload, ev.qos, ev.retain, ev.properties,
                  None if expiry is None else now + expiry, f"bridge:{settings.client_id}")
    try:
        return mqtt.publish(msg, now, None)
    except StorageError:
        stats.refused += 1
        raise
    except MillstreamError as e:
        raise BridgeError(f"local broker refused {ev.topic!r}: {e}") from None
