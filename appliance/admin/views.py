"""Admin API views: pure functions from the running Appliance to response models.

No IO and no clock of their own (`now` is passed in): the server calls them per request, the
Prometheus renderer and the JSON metrics endpoint share `metric_families`, so both always show
the same figures.

What a view reads: `app.settings`, `app.started_at`, `app.kafka` counters, `app.broker.topics`
(the catalogue), `app.broker.logs` (offsets and sizes per stream), `app.broker.groups.snapshot()`
and `app.storage.status()`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from appliance import __version__
from appliance.admin import health
from appliance.admin.cost_views import STATUS_FINDINGS, status_findings
from appliance.admin.models import (
    Alert,
    Clients,
    GroupInfo,
    GroupMember,
    KafkaConnection,
    KafkaCounters,
    Listener,
    LogLine,
    LogLines,
    MetricFamily,
    MetricSample,
    MqttSession,
    MqttSubscription,
    PartitionInfo,
    PartitionLag,
    Status,
    StorageInfo,
    TopicInfo,
)
from appliance.kafka.topics import TOPIC_CONFIGS, Topic
from appliance.storage.ports import StreamInfo

STORAGE_KINDS = ("object_store", "storage")  # a critical one of these makes the health "error"
_STORAGE_FIELDS = ("wal_bytes", "wal_segments", "unuploaded_bytes", "durable_appends", "fsyncs", "last_error")


# --- topics --------------------------------------------------------------------------------------


def partition_infos(app: Any, topic: Topic, streams: Mapping[int, StreamInfo] | None = None) -> list[PartitionInfo]:
    """`streams`: one `logs.streams()` snapshot shared by a whole view (building it is O(streams))."""
    logs = app.broker.logs
    infos = logs.streams() if streams is None else streams
    out = []
    for p, stream_id in enumerate(topic.streams):
        info = infos.get(stream_id)
        if info is not None:
            o, size = info.offsets, info.size_bytes
        else:  # a stream the store no longer lists (deleted concurrently): show its offsets if any
            try:
                o, size = logs.offsets(stream_id), 0
            except Exception:  # noqa: BLE001 - the view must not fail on one vanished stream
                out.append(PartitionInfo(p, stream_id, 0, 0, 0, 0))
                continue
        out.append(PartitionInfo(p, stream_id, o.log_start, o.high_watermark, o.log_end, size))
    return out


def topic_info(app: Any, topic: Topic, streams: Mapping[int, StreamInfo] | None = None) -> TopicInfo:
    configs = {key: topic.config(key) for key in TOPIC_CONFIGS}
    return TopicInfo(
        name=topic.name,
        topic_id=str(topic.topic_id),
        partitions=partition_infos(app, topic, streams),
        configs=configs,
        overrides=sorted(topic.configs),
    )


def topics_view(app: Any) -> list[TopicInfo]:
    streams = app.broker.logs.streams()
    return [topic_info(app, t, streams) for t in app.broker.topics.all()]


def topic_view(app: Any, name: str) -> TopicInfo | None:
    topic = app.broker.topics.get(name)
    return None if topic is None else topic_info(app, topic)


# --- groups --------------------------------------------------------------------------------------


def _high_watermark(app: Any, topic: str, partition: int) -> int | None:
    stream = app.broker.topics.stream(topic, partition)
    if stream is None:
        return None
    try:
        return app.broker.logs.offsets(stream).high_watermark
    except Exception:  # noqa: BLE001 - deleted between the lookups
        return None


def group_info(app: Any, g: Mapping[str, Any]) -> GroupInfo:
    lags = []
    for o in g.get("offsets", []):
        hw = _high_watermark(app, o["topic"], o["partition"])
        committed = int(o["offset"])
        lag = None if hw is None or committed < 0 else max(0, hw - committed)
        lags.append(PartitionLag(o["topic"], int(o["partition"]), committed, hw, lag))
    members = [
        GroupMember(str(m.get("member_id", "")), str(m.get("client_id") or ""), str(m.get("client_host") or ""),
                    m.get("group_instance_id"))
        for m in g.get("members", [])
    ]
    return GroupInfo(
        group_id=str(g["group_id"]),
        state=str(g.get("state", "")),
        protocol_type=str(g.get("protocol_type") or ""),
        protocol=str(g.get("protocol") or ""),
        generation=int(g.get("generation", 0)),
        members=members,
        partitions=lags,
    )


def groups_view(app: Any) -> list[GroupInfo]:
    snapshot = getattr(app.broker.groups, "snapshot", None)
    if snapshot is None:
        return []
    return [group_info(app, g) for g in snapshot()]


def group_view(app: Any, group_id: str) -> GroupInfo | None:
    return next((g for g in groups_view(app) if g.group_id == group_id), None)


# --- storage and status --------------------------------------------------------------------------


def storage_view(app: Any) -> StorageInfo:
    st = app.storage.status()
    raw = dataclasses.asdict(st) if dataclasses.is_dataclass(st) else dict(vars(st))
    streams = app.broker.logs.streams()
    extra = {k: v for k, v in raw.items() if k not in _STORAGE_FIELDS}
    return StorageInfo(
        wal_bytes=int(raw.get("wal_bytes", 0)),
        wal_segments=int(raw.get("wal_segments", 0)),
        unuploaded_bytes=int(raw.get("unuploaded_bytes", 0)),
        durable_appends=int(raw.get("durable_appends", 0)),
        fsyncs=int(raw.get("fsyncs", 0)),
        last_error=raw.get("last_error"),
        wal_budget_bytes=app.settings.storage.wal_budget,
        streams=len(streams),
        stored_bytes=sum(i.size_bytes for i in streams.values()),
        extra=extra,
    )


def cert_facts(records: Iterable[Any]) -> list[health.CertFacts]:
    """Inventory entries (pki CertRecord or the admin API's certificate dicts) as warning inputs."""
    out = []
    for r in records:
        get = r.get if isinstance(r, Mapping) else (lambda k, r=r: getattr(r, k))
        out.append(health.CertFacts(str(get("serial")), str(get("zone")), str(get("id")), str(get("kind")),
                                    str(get("not_after")), bool(get("revoked"))))
    return out


def inventory_alerts(app: Any, *, monotonic: float) -> list[Alert]:
    """The `[[streams]]` inventory's errors and warnings against the live rates, the first
    STATUS_FINDINGS of them and a count of the rest."""
    findings = status_findings(app, monotonic=monotonic)
    out = [Alert("inventory", "critical" if f.severity == "error" else "warning",
                 f"inventory: {f.severity}: {f.stream}: {f.message}", f.stream) for f in findings[:STATUS_FINDINGS]]
    if len(findings) > STATUS_FINDINGS:
        out.append(Alert("inventory", "warning",
                         f"inventory: {len(findings) - STATUS_FINDINGS} more finding(s): GET /api/v1/inventory"))
    return out


def alerts(app: Any, storage: StorageInfo, *, now: float, certificates: Iterable[Any] = (),
           monotonic: float | None = None) -> list[Alert]:
    """What needs an operator now. `certificates`: the inventory, read by the caller (file IO);
    `monotonic`: the broker's clock, for the stream inventory against the live rates (None: skip it)."""
    security = getattr(app, "security", None)
    pki = [] if security is None else [
        health.PkiFacts(w.what, w.subject, w.not_after, w.expired)
        for w in getattr(security, "expiry", ()) if w.what in ("ca", "crl")]
    found = health.alerts(health.Facts(
        now=now, storage=storage, certificates=cert_facts(certificates),
        expiry_window_s=float(app.settings.security.expiry_warning), pki=pki,
        uplink=uplink_view(app) if getattr(app, "uplink", None) is not None else None,
        draining=app.broker.draining.is_set(),
        rules_reload_error=None if security is None else security.last_reload_error))
    if monotonic is not None:
        found += inventory_alerts(app, monotonic=monotonic)
    return found


def warnings(app: Any, storage: StorageInfo, *, now: float, certificates: Iterable[Any] = ()) -> list[str]:
    return [a.message for a in alerts(app, storage, now=now, certificates=certificates)]


def status_view(app: Any, *, now: float, listeners: Iterable[Listener], certificates: Iterable[Any] = (),
                monotonic: float | None = None) -> Status:
    s = app.settings
    storage = storage_view(app)
    found = alerts(app, storage, now=now, certificates=certificates, monotonic=monotonic)
    broken = any(a.kind in STORAGE_KINDS and a.severity == "critical" for a in found)
    streams = app.broker.logs.streams()
    topics = app.broker.topics.all()
    topic_streams = [streams[sid] for t in topics for sid in t.streams if sid in streams]
    kafka = app.kafka
    return Status(
        role=s.node.role,
        version=__version__,
        node_id=s.node.id,
        cluster_id=app.broker.cluster_id,
        uptime_s=round(max(0.0, now - app.started_at), 3),
        listeners=[*_protocol_listeners(app), *listeners],
        health="error" if broken else ("warning" if found else "ok"),
        warnings=[a.message for a in found],
        topics=len(topics),
        partitions=sum(t.partitions for t in topics),
        records_total=sum(i.offsets.high_watermark for i in topic_streams),
        stored_bytes=storage.stored_bytes,
        kafka=KafkaCounters(kafka.connections, kafka.requests, kafka.errors),
        draining=app.broker.draining.is_set(),
        alerts=found,
    )


def _protocol_listeners(app: Any) -> list[Listener]:
    """Kafka and MQTT listeners with their bound ports (admin ones come from the admin server)."""
    s = app.settings
    ports = getattr(app, "listener_ports", None) or {}
    listeners_of = getattr(s, "listeners_of", None)
    if listeners_of is None or not ports:
        return [Listener("kafka", f"{s.kafka.listen.host}:{app.kafka.port}")]
    return [Listener(x.name, f"{x.bind.host}:{ports.get(x.name, x.bind.port)}")
            for proto in ("kafka", "mqtt") for x in listeners_of(proto) if x.name in ports]


def uplink_view(app: Any) -> dict[str, Any]:
    uplink = getattr(app, "uplink", None)
    return uplink.status() if uplink is not None else {"enabled": False}


def mqtt_view(app: Any) -> dict[str, Any]:
    mqtt = getattr(app, "mqtt", None)
    if mqtt is None:
        return {"enabled": False}
    ingest = getattr(app, "ingest", None)
    egress = getattr(app, "egress", None)
    return {"enabled": True, "port": getattr(app, "mqtt_port", None), "sessions": len(mqtt.sessions),
            "retained": len(mqtt.retained), "stats": mqtt.stats.snapshot(),
            "ingest": ingest.snapshot() if ingest is not None else None,
            "egress": egress.snapshot() if egress is not None else None}


# --- clients and logs ----------------------------------------------------------------------------


def _zone(obj: Any) -> str | None:
    zone = getattr(obj, "zone", None)  # a listener's zone, or a certificate identity's
    return None if zone is None or zone == "" else str(zone)


def kafka_connections(app: Any, *, now: float) -> list[KafkaConnection]:
    out = []
    kafka = app.kafka
    for server in getattr(kafka, "servers", [kafka]):  # one server per Kafka listener
        for c in list(getattr(server, "live", {}).values()):
            out.append(KafkaConnection(
                conn_id=c.conn_id, listener=c.listener, peer=c.peer, client_id=c.client_id,
                connected_s=round(max(0.0, now - c.connected_at), 3), requests=c.requests,
                principal=None if c.principal is None else str(c.principal),
                zone=_zone(c.principal) or _zone(c)))  # mTLS: the certificate's zone decides
    return sorted(out, key=lambda c: (c.listener, c.conn_id))


def mqtt_sessions(app: Any, *, monotonic: float) -> list[MqttSession]:
    mqtt = getattr(app, "mqtt", None)
    if mqtt is None:
        return []
    out = []
    for s in list(mqtt.sessions.values()):
        conn = s.connection
        access = None if conn is None else getattr(conn, "access", None)  # set by segmentation
        identity = None if access is None else getattr(access, "identity", None)
        subs = [MqttSubscription(f, int(getattr(sub.options, "qos", 0)))
                for f, sub in sorted(s.subscriptions.items())]
        out.append(MqttSession(
            client_id=s.client_id, connected=conn is not None,
            peer=None if conn is None else conn.peer,
            protocol_version=None if conn is None else int(conn.version),
            username=None if conn is None else getattr(conn, "username", None),
            subscriptions=subs, queued=len(s.queue), inflight=len(s.inflight),
            expiry_interval=int(s.expiry_interval),
            connected_s=None if conn is None else round(max(0.0, monotonic - conn.connected_at), 3),
            principal=None if identity is None else str(identity),
            zone=_zone(identity) or (None if access is None else _zone(access))))
    return sorted(out, key=lambda m: (not m.connected, m.client_id))


def clients_view(app: Any, *, now: float, monotonic: float, limit: int = 1000) -> Clients:
    """`now`: wall clock (Kafka connections); `monotonic`: trio's clock (MQTT connections).
    Each list is cut to `limit` entries so a plant with thousands of devices stays cheap to poll."""
    kafka, mqtt = kafka_connections(app, now=now), mqtt_sessions(app, monotonic=monotonic)
    return Clients(kafka=kafka[:limit], mqtt=mqtt[:limit], mqtt_enabled=getattr(app, "mqtt", None) is not None,
                   mqtt_total=len(mqtt), kafka_total=len(kafka))


def logs_view(app: Any, *, after: int = 0, limit: int = 500) -> LogLines:
    ring = getattr(app, "log_ring", None)
    if ring is None:
        return LogLines([], 0)
    lines, last = ring.lines(after, max(0, min(limit, 2000)))
    return LogLines([LogLine(seq, round(ts, 3), level, line) for seq, ts, level, line in lines], last)


# --- metrics -------------------------------------------------------------------------------------


def _one(name: str, type_: str, help_: str, value: float, **labels: str) -> MetricFamily:
    return MetricFamily(name, type_, help_, [MetricSample(dict(labels), float(value))])


def metric_families(app: Any, *, now: float, certificates: Iterable[Any] = (),
                    monotonic: float | None = None) -> list[MetricFamily]:
    """Every figure the appliance exports, named after Prometheus conventions."""
    kafka = app.kafka
    storage = storage_view(app)
    per_kind = health.counts(alerts(app, storage, now=now, certificates=certificates, monotonic=monotonic))
    fams = [
        _one("millstream_up", "gauge", "1 while the appliance runs.", 1),
        _one("millstream_build_info", "gauge", "Version and role of this node.", 1,
             version=__version__, role=app.settings.node.role),
        _one("millstream_uptime_seconds", "gauge", "Seconds since the appliance started.", max(0.0, now - app.started_at)),
        _one("millstream_kafka_connections", "gauge", "Open Kafka client connections.", kafka.connections),
        _one("millstream_kafka_requests_total", "counter", "Kafka requests handled.", kafka.requests),
        _one("millstream_kafka_errors_total", "counter", "Kafka connections closed on a protocol or IO error.", kafka.errors),
        _one("millstream_storage_wal_bytes", "gauge", "Bytes in WAL segment files.", storage.wal_bytes),
        _one("millstream_storage_wal_segments", "gauge", "WAL segment files.", storage.wal_segments),
        _one("millstream_storage_wal_budget_bytes", "gauge", "Disk the WAL may use before back-pressure.",
             storage.wal_budget_bytes),
        _one("millstream_storage_unuploaded_bytes", "gauge", "WAL bytes not yet in object storage.",
             storage.unuploaded_bytes),
        _one("millstream_storage_durable_appends_total", "counter", "Appends made durable.", storage.durable_appends),
        _one("millstream_storage_fsyncs_total", "counter", "WAL fsyncs.", storage.fsyncs),
        _one("millstream_storage_healthy", "gauge", "0 while storage reports an error.", 0 if storage.last_error else 1),
        _one("millstream_storage_streams", "gauge", "Streams (partitions and internal logs).", storage.streams),
    ]
    for key, value in sorted(storage.extra.items()):  # figures a newer storage tier adds
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            fams.append(_one(f"millstream_storage_{key}", "gauge", f"Storage status field {key}.", value))

    fams.append(MetricFamily("millstream_warnings", "gauge",
                             "Current warnings per kind (what `millstream status` lists); 0 when clear.",
                             [MetricSample({"kind": k}, v) for k, v in sorted(per_kind.items())]))
    topics = app.broker.topics.all()
    streams = app.broker.logs.streams()
    hw, ls, size = [], [], []
    for t in topics:
        for p in partition_infos(app, t, streams):
            labels = {"topic": t.name, "partition": str(p.partition)}
            hw.append(MetricSample(labels, p.high_watermark))
            ls.append(MetricSample(labels, p.log_start))
            size.append(MetricSample(labels, p.size_bytes))
    fams += [
        _one("millstream_topics", "gauge", "Topics in the catalogue.", len(topics)),
        MetricFamily("millstream_topic_partition_high_watermark", "gauge",
                     "One past the last offset consumers may read.", hw),
        MetricFamily("millstream_topic_partition_log_start_offset", "gauge", "First readable offset.", ls),
        MetricFamily("millstream_topic_partition_size_bytes", "gauge", "Bytes of retained record batches.", size),
    ]
    meter = getattr(app.broker, "meter", None)
    if meter is not None:
        totals = meter.totals()
        fams += [
            MetricFamily("millstream_topic_bytes_in_total", "counter",
                         "Bytes appended to the topic (Kafka produce and MQTT ingest).",
                         [MetricSample({"topic": t}, v[0]) for t, v in totals.items()]),
            MetricFamily("millstream_topic_bytes_out_total", "counter", "Bytes of the topic sent to consumers (Fetch).",
                         [MetricSample({"topic": t}, v[1]) for t, v in totals.items()]),
        ]
    lag, committed = [], []
    groups = groups_view(app)
    for g in groups:
        for p in g.partitions:
            labels = {"group": g.group_id, "topic": p.topic, "partition": str(p.partition)}
            committed.append(MetricSample(labels, p.committed))
            if p.lag is not None:
                lag.append(MetricSample(labels, p.lag))
    fams += [
        _one("millstream_consumer_groups", "gauge", "Consumer groups known to the coordinator.", len(groups)),
        MetricFamily("millstream_consumer_group_members", "gauge", "Members per consumer group.",
                     [MetricSample({"group": g.group_id}, len(g.members)) for g in groups]),
        MetricFamily("millstream_consumer_group_committed_offset", "gauge", "Committed offset per partition.", committed),
        MetricFamily("millstream_consumer_group_lag", "gauge", "High watermark minus committed offset.", lag),
    ]
    budget = getattr(app, "frame_budget", None)
    if budget is not None:
        fams += [
            _one("millstream_frame_budget_bytes", "gauge", "Bytes all connections may hold in request frames being received.",
                 budget.capacity),
            _one("millstream_frame_budget_in_use_bytes", "gauge", "Bytes reserved by large frames being received.",
                 budget.in_use),
            _one("millstream_frame_budget_peak_bytes", "gauge", "Most bytes ever reserved at once.", budget.peak),
            _one("millstream_frame_budget_waiting", "gauge", "Connections waiting for room in the frame budget.",
                 budget.waiting),
            _one("millstream_frame_budget_waits_total", "counter", "Large frames that had to wait for room.", budget.waits),
            _one("millstream_frame_budget_refused_total", "counter", "Frames larger than the whole budget.", budget.refused),
        ]
    mqtt = mqtt_view(app)
    if mqtt["enabled"]:
        for key, value in sorted(mqtt["stats"].items()):
            kind = "gauge" if key in ("connections_current", "sessions", "retained") else "counter"
            name = f"millstream_mqtt_{key}" + ("_total" if kind == "counter" and not key.endswith("_total") else "")
            fams.append(_one(name, kind, f"MQTT broker figure {key}.", value))
        for key, value in sorted((mqtt["ingest"] or {}).items()):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                kind = "gauge" if key == "pending" else "counter"
                fams.append(_one(f"millstream_ingest_{key}" + ("_total" if kind == "counter" else ""), kind,
                                 f"MQTT-to-Kafka ingestion figure {key}.", value))
    security = getattr(app, "security", None)
    if security is not None:
        audit = security.audit
        fams += [
            _one("millstream_security_authorization_enabled", "gauge", "1 while a rules file is enforced.",
                 int(security.enabled)),
            _one("millstream_security_denials_total", "counter", "Operations denied by the rules.", audit.total),
            MetricFamily("millstream_security_listener_denials_total", "counter", "Denials per listener.",
                         [MetricSample({"listener": k}, v) for k, v in sorted(audit.by_listener.items())]),
            MetricFamily("millstream_security_op_denials_total", "counter", "Denials per operation.",
                         [MetricSample({"op": k}, v) for k, v in sorted(audit.by_op.items())]),
            MetricFamily("millstream_security_handshake_refusals_total", "counter",
                         "TLS handshakes refused, per listener and reason.",
                         [MetricSample({"listener": lst, "reason": r}, v)
                          for (lst, r), v in sorted(security.refusals.items())]),
            _one("millstream_security_rules_reload_failures_total", "counter", "Rules reloads rejected.",
                 security.reload_failures),
            _one("millstream_security_certificate_warnings", "gauge", "Certificates, CA or CRL expiring soon.",
                 len(security.warnings)),
        ]
    uplink = uplink_view(app)
    if uplink["enabled"]:
        fams += [
            _one("millstream_uplink_connected", "gauge", "1 while the uplink reaches the cloud.", int(bool(uplink["connected"]))),
            _one("millstream_uplink_paused", "gauge", "1 while an operator has paused the uplink.", int(bool(uplink["paused"]))),
            _one("millstream_uplink_sent_records_total", "counter", "Records forwarded to the cloud.", uplink["sent_records"]),
            _one("millstream_uplink_sent_bytes_total", "counter", "Bytes forwarded to the cloud.", uplink["sent_bytes"]),
            _one("millstream_uplink_connect_failures", "gauge",
                 "Consecutive failed connection attempts to the cloud (TLS refusals included).", uplink["connect_failures"]),
            _one("millstream_uplink_tls_refused", "gauge", "1 while the last connection attempt failed its TLS handshake.",
                 int(uplink["tls_error"] is not None)),
            _one("millstream_uplink_merged_batches_total", "counter",
                 "Batches sent that merged several small stored batches.", uplink["merged_batches"]),
            MetricFamily("millstream_uplink_backlog_records", "gauge", "Records not yet forwarded, per topic.",
                         [MetricSample({"topic": t}, v["backlog_records"]) for t, v in sorted(uplink["topics"].items())]),
            MetricFamily("millstream_uplink_backlog_bytes", "gauge", "Bytes not yet forwarded, per topic.",
                         [MetricSample({"topic": t}, v["backlog_bytes"]) for t, v in sorted(uplink["topics"].items())]),
        ]
    return fams
