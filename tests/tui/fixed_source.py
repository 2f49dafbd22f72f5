"""A fixed, deterministic admin source for snapshot tests: the same figures on every call."""

from __future__ import annotations

import base64
import json
import time

from appliance.admin.client import AdminAPIError
from appliance.admin.models import (
    Alert,
    Certificate,
    Certificates,
    Clients,
    ConduitLink,
    CostReport,
    DenialRecord,
    DenialStats,
    GroupInfo,
    GroupMember,
    HandshakeRefusal,
    InventoryFinding,
    InventoryReport,
    InventoryStream,
    IssuedCertificate,
    KafkaConnection,
    KafkaCounters,
    Listener,
    LogLine,
    LogLines,
    MqttSession,
    MqttSubscription,
    PartitionInfo,
    PartitionLag,
    RecordHeader,
    Revocation,
    RevokedCertificate,
    RulesReload,
    SecurityListener,
    SecurityStatus,
    Status,
    StorageInfo,
    TailRecord,
    TailResult,
    TopicInfo,
    UplinkStatus,
    UplinkTopic,
    ZoneInfo,
    decode,
)
from appliance.cost.model import compare_projected
from appliance.cost.prices import load_price_sheet
from appliance.cost.render import to_json
from appliance.inventory.measurements import TopicMeasurement
from tui.panes import Rates

DEFAULTS = {"cleanup.policy": "delete", "max.message.bytes": "1048588", "message.timestamp.type": "CreateTime",
            "retention.bytes": "-1", "retention.ms": "604800000"}

UPTIME = 3 * 86400 + 3723.0
RECORDS = 1_284_000
STORED = 96_000_000


def status() -> Status:
    return Status(
        role="plant", version="0.1.0", node_id=1, cluster_id="snapshot-cluster", uptime_s=UPTIME,
        listeners=[Listener("kafka", "0.0.0.0:9092"), Listener("admin", "127.0.0.1:9644")],
        health="error", warnings=[a.message for a in ALERTS],
        topics=3, partitions=7, records_total=RECORDS, stored_bytes=STORED,
        kafka=KafkaCounters(connections=4, requests_total=52_310, errors_total=1), alerts=list(ALERTS),
    )


ALERTS = (
    Alert("object_store", "critical", "object store unreachable for 95s, uploads failing: upload data/0042.obj: "
                                      "connection refused; 6.6 GiB wait in the WAL", "s3://plant1-bucket"),
    Alert("disk_budget", "warning", "WAL uses 83% of its disk budget (6.6 GiB of 8.0 GiB); producers are pushed back at 100%"),
    Alert("certificate_expiring", "warning", "certificate cell-line3/press-7 expires in 3 days, 2026-11-21T07:06:40Z "
                                             "(serial 5e1f0a9c33d2)", "cell-line3/press-7"),
    # Five in all: the Overview shows three (critical first) and counts the rest on the frame.
    Alert("uplink", "critical", "uplink to cloud.example:9093 disconnected for 12m: 41,200 records wait in the "
                                "backlog", "cloud.example:9093"),
    Alert("inventory", "warning", "plant1.line3.telemetry: at the measured 1.2 MiB/s a 2d outage needs 202.5 GiB, "
                                  "but retention_bytes is 50.0 GiB", "plant1.line3.telemetry"),
)


def storage() -> StorageInfo:
    return StorageInfo(wal_bytes=7_130_000_000, wal_segments=107, unuploaded_bytes=7_130_000_000,
                       durable_appends=40_211, fsyncs=9_877, last_error="upload data/0042.obj: connection refused", wal_budget_bytes=8 << 30,
                       streams=8, stored_bytes=STORED)


def topics() -> list[TopicInfo]:
    def parts(*hws: int) -> list[PartitionInfo]:
        return [PartitionInfo(i, 10 + i, 0, hw, hw, hw * 75) for i, hw in enumerate(hws)]

    return [
        TopicInfo("plant1.line3.alarms", "00000000-0000-0000-0000-000000000001", parts(120),
                  {**DEFAULTS, "retention.ms": "2592000000"}, ["retention.ms"]),
        TopicInfo("plant1.line3.telemetry", "00000000-0000-0000-0000-000000000002", parts(400_000, 398_211, 401_120, 84_549),
                  {**DEFAULTS, "retention.ms": "86400000"}, ["retention.ms"]),
        TopicInfo("plant1.mes.orders", "00000000-0000-0000-0000-000000000003", parts(0, 0),
                  {**DEFAULTS, "cleanup.policy": "compact"}, ["cleanup.policy"]),
    ]


def groups() -> list[GroupInfo]:
    return [
        GroupInfo("historian", "Stable", "consumer", "range", 4,
                  [GroupMember("historian-1-4f0c", "historian-1", "/10.1.3.20")],
                  [PartitionLag("plant1.line3.telemetry", p, hw - lag, hw, lag)
                   for p, (hw, lag) in enumerate([(400_000, 0), (398_211, 12), (401_120, 3_400), (84_549, 0)])]),
        GroupInfo("mes-orders", "Empty", "consumer", "", 9, [],
                  [PartitionLag("plant1.mes.orders", 0, 0, 0, 0)]),
    ]


def history() -> Rates:
    """A minute of samples ending just before `status()`: a steady flow with one burst."""
    rates = Rates()
    per_s = [800 + (300 if 20 <= i < 26 else 0) + (i % 5) * 20 for i in range(60)]
    records, stored = RECORDS - sum(per_s), STORED - 75 * sum(per_s)
    for i, n in enumerate(per_s):
        rates.add(Status(**{**status().__dict__, "uptime_s": UPTIME - 60 + i, "records_total": records,
                            "stored_bytes": stored}))
        records += n
        stored += 75 * n
    return rates


class FixedSource:
    url = "http://127.0.0.1:9644"

    async def status(self) -> Status:
        return status()

    async def storage(self) -> StorageInfo:
        return storage()

    async def topics(self) -> list[TopicInfo]:
        return topics()

    async def groups(self) -> list[GroupInfo]:
        return groups()

    async def create_topic(self, name, partitions=None, configs=None) -> TopicInfo:
        raise AdminAPIError(409, f"topic {name!r} already exists")

    async def delete_topic(self, name) -> None:
        return None

    async def alter_topic(self, name, configs=None, partitions=None) -> TopicInfo:
        return topics()[0]

    async def clients(self) -> Clients:
        return clients()

    async def records(self, topic, partition, *, offset=None, timestamp=None, limit=None) -> TailResult:
        return tail(topic, partition, offset, limit)

    async def logs(self, after=0, limit=None) -> LogLines:
        all_lines = log_lines()
        return LogLines([line for line in all_lines.lines if line.seq > after], all_lines.last_seq)

    async def uplink(self) -> UplinkStatus:
        return uplink()

    async def pause_uplink(self) -> UplinkStatus:
        return uplink()

    async def resume_uplink(self) -> UplinkStatus:
        return uplink()

    async def security(self) -> SecurityStatus:
        return security()

    async def certificates(self) -> Certificates:
        return certificates()

    async def issue_certificate(self, zone, id, *, days=365, kind="client") -> IssuedCertificate:
        return IssuedCertificate("77aa00112233", zone, id, kind, "2027-11-18T07:06:40Z",
                                 f"/var/lib/millstream/pki/out/{zone}.{id}/{id}.crt",
                                 f"/var/lib/millstream/pki/out/{zone}.{id}/{id}.key")

    async def revoke_certificate(self, serial, reason="unspecified") -> Revocation:
        return Revocation([RevokedCertificate(serial, "cell-line3/press-7", reason)])

    async def reload_rules(self) -> RulesReload:
        raise AdminAPIError(400, "rules rejected, the previous rules stay in force: rules.toml:31: conduit "
                                 "'broken': missing required key 'to'")

    async def cost(self, *, scale=None, retention=None) -> CostReport:
        return cost(scale, retention)

    async def inventory(self) -> InventoryReport:
        return inventory()

    async def close(self) -> None:
        return None


def clients() -> Clients:
    return Clients(
        kafka=[KafkaConnection(3, "kafka", "10.1.3.20:51544", "historian-1", 7380.0, 14_022),
               KafkaConnection(9, "kafka", "10.1.3.31:40012", "mes-orders", 120.5, 380,
                               principal="CN=mes.plant1", zone="it")],
        mqtt=[MqttSession("line3-plc-01", True, "10.2.0.11:50122", 4, None, [], 0, 0, 0, 86_400.0),
              MqttSession("scada-hmi", True, "10.2.0.40:41876", 5, "hmi",
                          [MqttSubscription("plant1/line3/#", 1), MqttSubscription("alarms/+", 2)], 2, 1, 3600, 5400.0),
              MqttSession("historian-bridge", False, None, None, None, [MqttSubscription("plant1/#", 1)],
                          1_204, 0, 86_400)])


def uplink() -> UplinkStatus:
    return UplinkStatus(
        enabled=True, connected=True, paused=False, bootstrap=["cloud.example:9093"],
        throughput_bytes_per_s=61_440.0, throughput_records_per_s=820.0, sent_records=1_201_334,
        sent_bytes=90_100_000, backlog_records=4_310, backlog_bytes=323_250, bandwidth_cap=262_144,
        topics={"plant1.line3.alarms": UplinkTopic("plant1.line3.alarms", 0, 1, 0, 0, 0.0),
                "plant1.line3.telemetry": UplinkTopic("plant1.line3.telemetry", 10, 4, 4_310, 323_250, 5.2)})


LOG_T0 = 1_795_000_000.0  # 2026-11-18 07:06:40 UTC


def log_lines() -> LogLines:
    raw = [
        ("info", "main", "ready role=plant version=0.1.0 kafka=0.0.0.0:9092 mqtt=0.0.0.0:1883"),
        ("info", "admin", "admin_listening address=127.0.0.1:9644 unix_socket=-"),
        ("info", "uplink", "uplink_connected bootstrap=cloud.example:9093"),
        ("warning", "kafka", "connection_rejected listener=kafka conn=12 peer=10.1.3.99:5123 reason=\"bad frame\""),
        ("info", "topics", "topic_created topic=plant1.line4.telemetry partitions=6 configs=-"),
        ("error", "storage", "upload_failed object=00000042.wal error=\"connection refused\""),
    ]
    lines = []
    for i, (level, area, rest) in enumerate(raw, start=1):
        ts = LOG_T0 + i * 7.25
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"
        lines.append(LogLine(i, ts, level, f"ts={stamp} level={level} area={area} event={rest}"))
    return LogLines(lines, len(lines))


RECORD_T0 = 1_795_000_000_000


def tail(topic: str, partition: int, offset: int | None, limit: int | None) -> TailResult:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    records = [
        TailRecord(84_540 + i, RECORD_T0 + i * 250, b64(b"press-%d" % (i % 3)),
                   b64(json.dumps({"temp_c": 71.5 + i / 4, "rpm": 1480 + i}).encode()),
                   [RecordHeader("unit", b64(b"degC"))])
        for i in range(8)
    ]
    records.append(TailRecord(84_548, RECORD_T0 + 2_000, None, b64(bytes(range(0x80, 0x98)))))
    records.append(TailRecord(84_549, RECORD_T0 + 2_250,
                              note="compressed (snappy) batch of 40 records, offsets 84549-84588: "
                                   "snappy is not available here"))
    start = 84_540 if offset is None else offset
    shown = [r for r in records if r.offset >= start][: limit or 50]
    return TailResult(topic, partition, 0, 84_589, start, 84_589, shown)


def security() -> SecurityStatus:
    def link(zone, listener, conduit, ops, resources, ids=()):
        return ConduitLink(zone, listener, conduit, list(ops), list(resources), list(ids))

    links = [
        link("plant-apps", "kafka-plant", "apps", ["produce", "consume", "create_topic"], ["apps.*", "group {id}-*"]),
        link("cell-line3", "mqtt-cell", "line3-telemetry", ["publish"], ["uns/acme/plant1/line3/{id}/#"]),
        link("cell-line3", "mqtt-cell", "line3-commands", ["subscribe"], ["uns/acme/plant1/line3/{id}/cmd/#"]),
        link("ops", "admin", "ops-admin", ["admin"], []),
        link("local", "kafka-local", "local-tools", ["produce", "consume"], ["*", "group *"]),
        link("it", "kafka-cloud", "it-reads", ["consume"], ["plant1.*"]),
    ]
    recent = [
        DenialRecord(LOG_T0 + 10, "plant-apps/mes-1", "3b9c", "plant-apps", "kafka-plant", "produce", "secret.recipes",
                     None, "no conduit allows it"),
        DenialRecord(LOG_T0 + 42, "cell-line3/press-7", "5e1f", "cell-line3", "mqtt-cell", "publish",
                     "uns/acme/plant1/line3/press-9/temp", None, "no conduit allows it"),
        DenialRecord(LOG_T0 + 70, "(anonymous)", None, "local", "kafka-local", "delete_topic", "apps.orders",
                     "no-deletes", "denied by no-deletes"),
    ]
    return SecurityStatus(
        authorization="on", rules_file="/etc/millstream/rules.toml", rules_loaded_at=LOG_T0, reloads=1, allowed=90_211,
        zones=[ZoneInfo("plant-apps", 2), ZoneInfo("cell-line3", 2), ZoneInfo("ops", 3), ZoneInfo("local")],
        listeners=[SecurityListener("kafka-plant", "kafka", "mtls"), SecurityListener("kafka-local", "kafka", "plaintext", "local"),
                   SecurityListener("mqtt-cell", "mqtt", "mtls", "cell-line3"), SecurityListener("admin", "admin", "plaintext", "ops")],
        links=links, deny_rules=["no-deletes"],
        denials=DenialStats(total=14, dropped=11, capacity=1000,
                            by_op={"produce": 9, "publish": 4, "delete_topic": 1},
                            by_listener={"kafka-plant": 9, "mqtt-cell": 4, "kafka-local": 1},
                            by_zone={"plant-apps": 9, "cell-line3": 4, "local": 1},
                            by_rule={"default-deny": 13, "no-deletes": 1}, recent=recent),
        handshake_refusals=[HandshakeRefusal("kafka-plant", "certificate revoked", 2)],
    )


def certificates() -> Certificates:
    def cert(serial, zone, id_, not_after, days_left, status="valid", kind="client", revoked=False):
        return Certificate(serial, zone, id_, f"{zone}/{id_}", kind, "2026-01-01T00:00:00Z", not_after, revoked,
                           status, "2026-11-10T09:00:00Z" if revoked else None, days_left)

    return Certificates([
        cert("1a2b3c4d5e6f708192a3", "millstream-server", "millstream", "2029-02-20T07:06:40Z", 817.0, kind="server"),
        cert("3b9c11d2e3f4a5b6c7d8", "plant-apps", "mes-1", "2027-11-18T07:06:40Z", 365.0),
        cert("5e1f0a9c33d2e4f5a6b7", "cell-line3", "press-7", "2026-11-21T07:06:40Z", 3.0),
        cert("6c2d9e8f7a6b5c4d3e2f", "cell-line3", "press-9", "2026-11-10T07:06:40Z", -8.0, status="expired"),
        cert("7d3e0f1a2b3c4d5e6f70", "ops", "laptop-eng", "2027-05-01T00:00:00Z", 163.7, status="revoked", revoked=True),
    ], expiry_warning_days=30.0)


MEASURED = (  # a plant's figures, priced with the built-in sheet through the real model
    TopicMeasurement("plant1.line3.alarms", 1_200, 2_400, 2, 8.0, 1, 700_000_000, 2_592_000),
    TopicMeasurement("plant1.line3.telemetry", 4_200_000, 12_600_000, 3, 2.2, 4, 98_000_000_000, 86_400),
    TopicMeasurement("plant1.mes.orders", 3_000, 6_000, 2, 3.0, 2, 3_600_000_000, None),
)


def cost(scale: float | None = None, retention_s: float | None = None) -> CostReport:
    result, baseline, projection = compare_projected(MEASURED, load_price_sheet(), scale=scale,
                                                     retention_s=retention_s)
    doc = to_json(result, projection=projection or None, baseline=baseline)
    doc["measured_s"] = 3600.0
    return decode(CostReport, doc)


def inventory() -> InventoryReport:
    return InventoryReport(
        streams=[InventoryStream("plant1.line3.*", "plant_edge", True, False, "line3 controls", "PLCs on line 3",
                                 86_400.0, ["historian"], ["plant1.line3.alarms", "plant1.line3.telemetry"], 4_201_200.0),
                 InventoryStream("plant1.interlock", "cloud", True, True, None, "safety PLC", 86_400.0)],
        findings=[InventoryFinding("error", "plant1.interlock", "local-action-over-wan",
                                   "a local action depends on it, but placement = cloud puts it behind the uplink"),
                  InventoryFinding("warning", "plant1.interlock", "no-owner", "no data owner: set owner = \"team or person\""),
                  InventoryFinding("warning", "plant1.mes.orders", "unowned",
                                   "carries 2.9 KiB/s in, 5.9 KiB/s out but no [[streams]] entry declares it"),
                  InventoryFinding("info", "plant1.line3.*", "outage-rate",
                                   "at the measured 4.0 MiB/s a 1d outage needs 338.1 GiB of plant disk")],
        unowned=["plant1.mes.orders"], counts={"error": 1, "warning": 2, "info": 1}, worst_wan_outage_s=86_400.0)
