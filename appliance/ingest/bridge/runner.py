"""The bridge's trio adapter: connect upstream, feed what arrives into the local broker, reconnect.

Each message received upstream is published into the local MQTT broker core (so local
subscribers see it, under `[bridge] local_prefix`) and therefore through the ingest sink with the
same `[[mqtt_map]]` mapping as a device publishing directly. Its PUBACK/PUBREC goes upstream only
once the sink reports it durable, in arrival order: a crash loses nothing the upstream considers
delivered, and the upstream resends the rest on reconnect (persistent session).

A refusal by the sink (storage full, unmapped and refused) is not acknowledged: the bridge drops
the connection and reconnects after the back-off, so the upstream keeps the message queued.
Back-off: `backoff_min` doubling to `backoff_max`, with +-25% jitter, reset after a CONNACK.
"""

from __future__ import annotations

import random
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
    Subscribed,
)
from appliance.logs import get_logger
from appliance.mqtt.codec import MqttError
from appliance.mqtt.codec.properties import PropertyId as P
from appliance.mqtt.session import Message

log = get_logger("bridge")

_READ_SIZE = 65536


class BridgeStats:
    def __init__(self) -> None:
        self.connects = 0
        self.messages = 0
        self.refused = 0
        self.connected = False


async def run_bridge(settings: BridgeSettings, mqtt: Any, stopping: trio.Event, *,
                     rng: random.Random | None = None, stats: BridgeStats | None = None) -> None:
    """Keep a bridge connection up until `stopping` is set (then DISCONNECT normally)."""
    assert settings.upstream is not None
    rng = rng or random.Random()
    stats = stats or BridgeStats()
    options = BridgeOptions(settings.client_id, settings.filters, settings.qos, settings.session_expiry,
                            settings.keep_alive, settings.username, settings.password)
    delay = settings.backoff_min
    while not stopping.is_set():
        up = settings.upstream
        try:
            with trio.fail_after(10):
                stream = await trio.open_tcp_stream(up.host, up.port)
        except (OSError, trio.TooSlowError) as e:
            log.warning("bridge_connect_failed", upstream=str(up), error=e.strerror or str(e), retry_s=round(delay, 2))
        else:
            client = BridgeClient(options)
            try:
                async with stream:
                    await _session(client, stream, settings, mqtt, stopping, stats)
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
    log.info("bridge_stopped")


async def _session(client: BridgeClient, stream: trio.SocketStream, settings: BridgeSettings, mqtt: Any,
                   stopping: trio.Event, stats: BridgeStats) -> None:
    send_lock = trio.Lock()

    async def send(data: bytes) -> None:
        if data:
            async with send_lock:
                await stream.send_all(data)

    acks_in, acks_out = trio.open_memory_channel[tuple[Inbound, Any]](1024)
    failure: list[BaseException] = []
    await send(client.start(trio.current_time()))

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
            async for msg, waiter in acks_out:
                if waiter is not None:
                    await waiter  # StorageError: leave unacknowledged, drop the link (the upstream resends)
                await send(client.acknowledge(msg, trio.current_time()))

        async def pinger() -> None:
            while True:
                await trio.sleep(1.0)
                await send(client.tick(trio.current_time()))

        async def stopper() -> None:
            await stopping.wait()
            with trio.move_on_after(1.0):
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
                        stats.messages += 1
                        waiter = _publish_locally(ev, settings, mqtt, now, stats)
                        if ev.qos:
                            await acks_in.send((ev, waiter))
                    elif isinstance(ev, Connected):
                        stats.connects += 1
                        stats.connected = True
                        log.info("bridge_connected", upstream=str(settings.upstream),
                                 session_present=ev.session_present)
                    elif isinstance(ev, Subscribed):
                        log.info("bridge_subscribed", filters=",".join(settings.filters),
                                 granted=",".join(f"0x{c:02x}" for c in ev.granted))
                    elif isinstance(ev, Closed):
                        raise BridgeError(f"upstream sent DISCONNECT 0x{ev.reason_code:02x}")

        for fn in (acker, pinger, stopper, reader):
            nursery.start_soon(guarded(fn))
    if failure:
        raise failure[0]


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
