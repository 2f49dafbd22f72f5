"""Composition root: builds storage, the broker and the listeners, and runs them in one nursery.

Start-up order: storage (recovers the WAL) -> broker state (topics, groups) -> listeners. Each
service is started with `nursery.start()` and reports ready once it listens; then a ready file
`<data-dir>/run/ready.json` names the bound ports (handy with port 0 in tests and scripts).

Shutdown on SIGTERM/SIGINT: listeners stop accepting, in-flight requests get
`node.shutdown_grace` seconds, everything is cancelled, storage flushes and closes, exit 0.
A second signal exits at once (status 130); acknowledged data is already durable by then.
MQTT drains beside Kafka, in this order: the Kafka -> MQTT egress stops and commits its
positions once subscribers acknowledged what it published, the Sparkplug host death certificate
is published (`[sparkplug] host_id`), then the MQTT listeners disconnect clients and flush the
session state; the bridge publishes its death and disconnects on its own.

Listeners: every `[[listeners]]` entry (or, per protocol, the single `listen` address) gets its
own server, all sharing one broker. Segmentation (appliance/security/service.py) is set up
before any of them listens: listener certificate, TLS contexts, rules. SIGHUP reloads the rules
file without touching connections (an invalid file is logged with file:line and ignored).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time
from functools import partial
from typing import Any

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from appliance import __version__
from appliance.config import Settings
from appliance.errors import StartupError
from appliance.logs import LogRing, attach_ring, detach_ring, get_logger

log = get_logger("main")
GIL_SWITCH_INTERVAL = 0.001  # seconds; Python's default is 0.005


class KafkaListeners:
    """The Kafka servers of every Kafka listener, seen as one by the admin views and the drain:
    numeric counters are summed, anything else comes from the first listener."""

    def __init__(self, servers: list[Any]) -> None:
        self.servers = servers

    def __getattr__(self, name: str) -> Any:
        values = [getattr(s, name) for s in self.servers]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return sum(values)
        return values[0]

    @property
    def port(self) -> int | None:
        return self.servers[0].port

    async def drain(self) -> None:
        for s in self.servers:
            await s.drain()


class Appliance:
    """Everything one running node holds; tests start it in-process with `start`."""

    def __init__(self, settings: Settings, *, tune_process: bool = False) -> None:
        self.settings = settings
        # The process's own node (not an in-process test one): tune the interpreter once ready.
        self.tune_process = tune_process
        self.started_at = time.time()
        self.storage: Any = None
        self.broker: Any = None
        self.kafka: Any = None
        self.admin: Any = None
        self.mqtt: Any = None
        self.mqtt_port: int | None = None
        self.ingest: Any = None  # KafkaIngestSink: .snapshot() gives the ingestion counters
        self.egress: Any = None  # appliance.ingest.egress.KafkaToMqtt when [[mqtt_out]] rules exist
        self.host_born_at: int | None = None  # Sparkplug host STATE timestamp (broker mode), when host_id is set
        self._mqtt_stop = trio.Event()  # set by the drain once the egress and the host STATE are done
        self._mqtt_done: list[trio.Event] = []  # one per MQTT listener, set when it has drained
        self._bridge_done: trio.Event | None = None  # set once the bridge said goodbye upstream
        self.uplink: Any = None  # appliance.uplink.forwarder.Forwarder when [uplink] enabled (plant role)
        self.security: Any = None  # appliance.security.service.Security
        self.admin_servers: list[Any] = []
        self.listener_ports: dict[str, int | None] = {}  # listener name -> bound port
        self.stopping = trio.Event()
        self.log_ring: LogRing | None = None  # recent log lines for the admin API, while running
        self.frame_budget: Any = None  # transport.frame_budget.FrameBudget, shared by every listener

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        from appliance.admin.server import AdminServer
        from appliance.inventory.checks import check_settings
        from appliance.inventory.report import log_findings
        from appliance.kafka.broker import Broker
        from appliance.security.service import Security
        from appliance.storage.tiered import open_storage
        from appliance.transport import fd_limit
        from appliance.transport.frame_budget import FrameBudget
        from appliance.transport.kafka_server import KafkaServer

        s = self.settings
        self.log_ring = attach_ring()
        if s.streams:
            log_findings(check_settings(s))  # placement problems are warnings, never a refusal to start
        limits = [s.kafka.max_connections] * len(s.listeners_of("kafka"))
        if s.mqtt_enabled:
            limits += [s.mqtt.max_connections] * len(s.listeners_of("mqtt"))
        fd_limit.ensure(fd_limit.wanted(limits))
        self.frame_budget = FrameBudget(s.limits.inflight_frame_bytes)
        data_dir = s.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.security = Security(s)
        self.security.setup()  # listener certificate, TLS contexts, rules: before anything listens
        uplink_tls = None
        if s.uplink.enabled and s.node.role == "plant" and s.uplink.security != "plaintext":
            from appliance.uplink.client.tls import UplinkTls

            uplink_tls = UplinkTls(s.uplink, source=s.source)  # a missing/bad file: ConfigError now
        # Reads the manifest, claims the writer epoch, replays the WAL, before anything listens.
        self.storage = await open_storage(data_dir, s.storage)
        try:
            async with trio.open_nursery() as services:
                await services.start(self.storage.run)
                self.broker = Broker(s, self.storage)
                self.storage.set_retention_source(lambda: _retention_policies(self.broker, self.uplink))
                await self.broker.load()
                await services.start(self.broker.groups.run)
                servers = []
                for x in s.listeners_of("kafka"):
                    server = KafkaServer(self.broker, x.bind, name=x.name, guard=self._guard(x),
                                         advertised_host=x.advertised_host, frame_budget=self.frame_budget)
                    await services.start(server.run)
                    self.listener_ports[x.name] = server.port
                    servers.append(server)
                self.kafka = KafkaListeners(servers)
                self.broker.advertised_port = self.kafka.port
                if s.mqtt_enabled:
                    await self._start_mqtt(services)
                for i, x in enumerate(s.listeners_of("admin")):
                    admin = self._admin_server(AdminServer, x, first=i == 0)
                    await services.start(admin.run)
                    self.listener_ports[x.name] = admin.port
                    self.admin_servers.append(admin)
                self.admin = self.admin_servers[0]
                await services.start(self.security.run)
                if s.uplink.enabled and s.node.role == "plant":
                    from appliance.uplink.forwarder import Forwarder

                    self.uplink = Forwarder(s.uplink, self.storage.logs, self.storage.meta, self.broker.topics,
                                            tls=uplink_tls)
                    await services.start(self.uplink.run)
                if self.tune_process:
                    _tune_interpreter()
                self._write_ready_file()
                log.info("ready", role=s.node.role, version=__version__, kafka=f"{s.kafka.listen.host}:{self.kafka.port}",
                         mqtt=f"{s.mqtt.listen.host}:{self.mqtt_port}" if self.mqtt else "off",
                         advertised=f"{self.broker.advertised_host}:{self.kafka.port}",
                         admin=f"{s.admin.listen.host}:{self.admin.port}", data_dir=str(data_dir),
                         listeners=",".join(f"{n}={p}" for n, p in self.listener_ports.items()),
                         authorization="on" if self.security.enabled else "off")
                task_status.started(self)
                await self.stopping.wait()
                await self._drain()
                services.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self.storage.close()
            self._remove_ready_file()
            log.info("stopped")
            detach_ring(self.log_ring)

    async def _start_mqtt(self, services: trio.Nursery) -> None:
        from appliance.ingest.egress import KafkaToMqtt
        from appliance.ingest.kafka_sink import KafkaIngestSink
        from appliance.ingest.pipeline import Ingestor
        from appliance.mqtt.broker import Broker as MqttBroker
        from appliance.mqtt.session import Limits
        from appliance.mqtt.state import MetaStoreMqttState
        from appliance.transport.mqtt_server import serve_mqtt

        s = self.settings
        state = MetaStoreMqttState(self.storage.meta, lock=trio.Lock(), clock=trio.current_time)
        # Accepted PUBLISHes become Kafka records; PUBACK/PUBREC wait for their WAL fsync.
        self.ingest = KafkaIngestSink(Ingestor(s), self.broker, max_pending=s.ingest.max_pending)
        self.mqtt = MqttBroker(Limits.from_settings(s.mqtt), sink=self.ingest, state_store=state)
        state.restore(self.mqtt, trio.current_time())
        await services.start(self.ingest.run, self.mqtt)
        if s.mqtt_out:
            self.egress = KafkaToMqtt(s.mqtt_out, self.broker, self.mqtt, meta=self.storage.meta,
                                      commit_interval=s.ingest.mqtt_out_commit_interval,
                                      commit_records=s.ingest.mqtt_out_commit_records)
            await services.start(self.egress.run)
        if s.sparkplug.host_id:
            await self._publish_host_state(online=True)
        for i, x in enumerate(s.listeners_of("mqtt")):
            done = trio.Event()
            self._mqtt_done.append(done)
            bound = await services.start(partial(_serve_then_set, done, serve_mqtt, self.mqtt, x.bind,
                                                 stop=self._mqtt_stop, grace=s.node.shutdown_grace,
                                                 guard=self._guard(x), tick=i == 0,
                                                 frame_budget=self.frame_budget,
                                                 frame_timeout=s.limits.frame_timeout))
            self.listener_ports[x.name] = bound.port
            if i == 0:
                self.mqtt_port = bound.port
        if s.bridge.upstream is not None:
            from appliance.ingest.bridge.runner import run_bridge

            self._bridge_done = trio.Event()
            services.start_soon(partial(_serve_then_set, self._bridge_done, run_bridge, s.bridge, self.mqtt,
                                        self.stopping, meta=self.storage.meta, host_id=s.sparkplug.host_id))

    async def _publish_host_state(self, *, online: bool) -> None:
        """Sparkplug host STATE, retained in our own broker (broker mode; see sparkplug/host_state.py)."""
        from appliance.ingest.sparkplug.host_state import publish_local_state

        host_id = self.settings.sparkplug.host_id
        if online:
            self.host_born_at = time.time_ns() // 1_000_000
        assert self.host_born_at is not None
        waiter = publish_local_state(self.mqtt, host_id, online, self.host_born_at, trio.current_time())
        if waiter is not None:
            await waiter  # the retained message is in the persisted broker state
        log.info("sparkplug_host_state", host_id=host_id, online=online, timestamp=self.host_born_at)

    def _guard(self, x: Any) -> Any:
        """The security side of one listener: name, zone, TLS context source, authorizer."""
        from appliance.transport.guard import ListenerGuard

        sec = self.security
        if sec.enabled and x.security != "mtls" and x.zone is None:
            log.warning("listener_without_zone", listener=x.name,
                        note="rules are on but this listener names no zone: its clients are denied everything")
        return ListenerGuard(x.name, zone=x.zone, tls=sec.context_source(x), mutual=x.security == "mtls",
                             security=sec)

    def _admin_server(self, cls: Any, x: Any, *, first: bool) -> Any:
        """An admin listener off loopback must be mTLS; its clients need the `admin` operation."""
        declared = any(d.name == x.name for d in self.settings.listeners)  # off loopback: mTLS (config.py)
        guard = self._guard(x)
        authorize = None
        if guard.uses_tls or (declared and self.security.enabled):
            authorize = partial(_authorize_admin, guard)
        return cls(self, x.bind, name=x.name, guard=guard if guard.uses_tls else None, authorize=authorize,
                   unix_socket=None if first else "")

    def reload_rules(self) -> None:
        """SIGHUP: re-read the rules file; an invalid one is logged and the old rules stay."""
        from appliance.security.rules import RulesError

        if self.security is None or not self.security.enabled:
            log.warning("rules_reload_skipped", reason="no [security] rules file is configured")
            return
        try:
            self.security.reload_rules()
        except RulesError:
            pass  # logged by Security with file:line and reason

    def stop(self) -> None:
        self.stopping.set()

    async def _drain(self) -> None:
        grace = self.settings.node.shutdown_grace
        log.info("draining", grace_s=grace)
        self.broker.start_draining()
        async with trio.open_nursery() as drains:  # Kafka and MQTT drain side by side
            if self.mqtt is not None:
                drains.start_soon(self._drain_mqtt, grace)
            with trio.move_on_after(grace) as scope:
                await self.kafka.drain()
                while self.kafka.connections:
                    await trio.sleep(0.02)
            if scope.cancelled_caught:
                log.warning("drain_deadline_passed", open_connections=self.kafka.connections)

    async def _drain_mqtt(self, grace: float) -> None:
        """Egress first (stop publishing, wait for subscribers' acks, commit positions), then the
        host's death certificate, then the MQTT listeners (DISCONNECT, sessions flushed)."""
        deadline = trio.current_time() + grace
        if self.egress is not None:
            await self.egress.stop(deadline)
        if self.host_born_at is not None:
            with trio.move_on_at(deadline + 1.0):
                await self._publish_host_state(online=False)
        self._mqtt_stop.set()
        with trio.move_on_at(deadline + grace + 2.0):
            for done in self._mqtt_done:
                await done.wait()
            if self._bridge_done is not None:
                # cancelled before its DISCONNECT, the upstream would publish the host's will: a
                # second death certificate after the explicit one
                await self._bridge_done.wait()

    @property
    def _ready_path(self):
        return self.settings.data_dir / "run" / "ready.json"

    def _write_ready_file(self) -> None:
        path = self._ready_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "role": self.settings.node.role,
                                   "kafka_port": self.kafka.port, "admin_port": self.admin.port,
                                   "mqtt_port": self.mqtt_port, "listeners": self.listener_ports}))
        tmp.replace(path)

    def _remove_ready_file(self) -> None:
        try:
            self._ready_path.unlink()
        except OSError:
            pass


async def _serve_then_set(done: trio.Event, serve: Any, *args: Any, task_status: Any = trio.TASK_STATUS_IGNORED,
                          **kwargs: Any) -> None:
    try:
        await serve(*args, task_status=task_status, **kwargs)
    finally:
        done.set()


def _retention_policies(broker: Any, uplink: Any = None) -> dict[int, Any]:
    """Per-stream retention from the topics' configs (storage never imports the broker), held back
    below what the uplink has not forwarded yet unless `[uplink] hold_unforwarded = false`."""
    from appliance.storage.key_compaction import CompactionPolicy
    from appliance.storage.tier import RetentionPolicy

    floors = uplink.retention_floors() if uplink is not None else {}
    out = {}
    for topic in broker.topics.all():
        # cleanup.policy=compact alone: retention.ms/bytes do not delete (as in Kafka)
        ms = int(topic.config("retention.ms")) if topic.deletes else -1
        size = int(topic.config("retention.bytes")) if topic.deletes else -1
        compaction = CompactionPolicy(int(topic.config("delete.retention.ms")),
                                      int(topic.config("min.compaction.lag.ms")),
                                      float(topic.config("min.cleanable.dirty.ratio"))) if topic.compacted else None
        for sid in topic.streams:
            out[sid] = RetentionPolicy(ms, size, floors.get(sid), compaction)
    return out


def _authorize_admin(guard: Any, stream: Any) -> bool:
    """The admin API's gate: the client (certificate identity on mTLS) needs the `admin` operation."""
    identity = guard_identity(stream)
    return guard.security.check(identity, guard.rule_zone, guard.name, "admin", "").allowed


def guard_identity(stream: Any) -> Any:
    from appliance.security.pki import PkiError
    from appliance.security.tls import peer_identity

    if not isinstance(stream, trio.SSLStream):
        return None
    try:
        return peer_identity(stream)
    except (PkiError, ValueError):
        return None


def _tune_interpreter() -> None:
    """Once start-up is done. Everything built so far (modules, generated protocol classes,
    settings, recovered indexes) lives until exit: freezing it keeps it out of the cyclic GC's
    older generations, whose full scans otherwise cost about a quarter of the CPU of an ingested
    MQTT message and pauses of tens of ms. And the WAL's fsync worker thread hands its result
    back sooner when the event loop holding the GIL must yield it after 1 ms rather than 5 ms."""
    gc.freeze()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)


async def _serve(settings: Settings) -> None:
    app = Appliance(settings, tune_process=True)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async def watch_signals() -> None:
                seen = 0
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        log.info("signal", signal="SIGHUP", action="reload rules")
                        app.reload_rules()
                        continue
                    seen += 1
                    if seen == 1:
                        log.info("signal", signal=signal.Signals(signum).name, action="drain")
                        app.stop()
                    else:
                        log.warning("signal", signal=signal.Signals(signum).name, action="exit now")
                        os._exit(130)

            nursery.start_soon(watch_signals)
            await app.run()
            nursery.cancel_scope.cancel()


def _startup_error(exc: BaseException) -> StartupError | OSError | None:
    """A StartupError, or an OSError such as a full or read-only data dir, inside trio's groups."""
    if isinstance(exc, (StartupError, OSError)):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for e in exc.exceptions:
            found = _startup_error(e)
            if found is not None:
                return found
    return None


def run_appliance(settings: Settings) -> int:
    if settings.storage.object_store:  # a bad URL or missing credentials is a config error, said at once
        from appliance.storage.objects import check_object_store_url

        st = settings.storage
        check_object_store_url(st.object_store, access_key=st.s3_access_key, secret_key=st.s3_secret_key)
    if settings.uplink.enabled and settings.node.role == "plant" and settings.uplink.security != "plaintext":
        from appliance.uplink.client.tls import UplinkTls

        UplinkTls(settings.uplink, source=settings.source)  # a missing or bad file is a config error, said at once
    try:
        trio.run(_serve, settings)
    except BaseException as e:  # noqa: BLE001 - turn start-up failures into one clear line
        found = _startup_error(e)
        if found is None:
            raise
        log.error("startup_failed", error=str(found))
        print(f"millstream: cannot start: {found}", file=sys.stderr)
        return 1
    return 0
