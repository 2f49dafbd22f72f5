"""Admin API response models, shared by the server, the client, the CLI and the TUI.

Plain frozen dataclasses, standard library only: the TUI imports this module (and the client)
and nothing else from `appliance`. `to_plain` turns a model into JSON-ready data; `decode` builds
a model back from JSON, ignoring keys it does not know so an older client keeps working against
a newer appliance.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

API_PREFIX = "/api/v1"
MAX_TAIL_FIELD = 8 << 10  # bytes of a key or value the tail returns

T = TypeVar("T")


@dataclass(frozen=True)
class Listener:
    name: str  # "kafka", "admin", "admin-unix", ...
    address: str  # "127.0.0.1:9092" or a unix socket path


@dataclass(frozen=True)
class KafkaCounters:
    connections: int = 0
    requests_total: int = 0
    errors_total: int = 0


# What a warning is about; `millstream_warnings{kind=...}` has one sample per kind (0 when clear).
WARNING_KINDS = ("certificate_expiring", "certificate_expired", "pki", "object_store", "storage", "disk_budget",
                 "uplink", "rules", "inventory", "draining")


@dataclass(frozen=True)
class Alert:
    """One current warning, computed from live state each time status is asked for."""

    kind: str  # one of WARNING_KINDS
    severity: str  # "warning" or "critical"
    message: str  # one line for people
    subject: str = ""  # what it is about: an identity "zone/id", a topic, the object store URL


@dataclass(frozen=True)
class Status:
    role: str
    version: str
    node_id: int
    cluster_id: str
    uptime_s: float
    listeners: list[Listener]
    health: str  # "ok", "warning" or "error"
    warnings: list[str]
    topics: int
    partitions: int
    records_total: int  # sum of topic partitions' high watermarks: every record made visible so far
    stored_bytes: int  # bytes of retained batches, all partitions
    kafka: KafkaCounters
    draining: bool = False
    alerts: list[Alert] = field(default_factory=list)  # `warnings` with kind and severity


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    stream_id: int
    log_start: int
    high_watermark: int
    log_end: int
    size_bytes: int

    @property
    def records(self) -> int:
        return self.high_watermark - self.log_start


@dataclass(frozen=True)
class TopicInfo:
    name: str
    topic_id: str
    partitions: list[PartitionInfo]
    configs: dict[str, str]  # effective values, defaults included
    overrides: list[str] = field(default_factory=list)  # config keys set explicitly on the topic

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    @property
    def size_bytes(self) -> int:
        return sum(p.size_bytes for p in self.partitions)


@dataclass(frozen=True)
class GroupMember:
    member_id: str
    client_id: str = ""
    client_host: str = ""
    group_instance_id: str | None = None


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int
    high_watermark: int | None  # None: the topic or partition no longer exists
    lag: int | None


@dataclass(frozen=True)
class GroupInfo:
    group_id: str
    state: str
    protocol_type: str
    protocol: str
    generation: int
    members: list[GroupMember]
    partitions: list[PartitionLag]

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions if p.lag is not None)


@dataclass(frozen=True)
class StorageInfo:
    wal_bytes: int
    wal_segments: int
    unuploaded_bytes: int
    durable_appends: int
    fsyncs: int
    last_error: str | None
    wal_budget_bytes: int
    streams: int
    stored_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)  # figures newer storage tiers report


@dataclass(frozen=True)
class MetricSample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class MetricFamily:
    """One Prometheus metric family; the JSON and text endpoints render the same list."""

    name: str
    type: str  # "counter" or "gauge"
    help: str
    samples: list[MetricSample]


# --- clients -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KafkaConnection:
    conn_id: int
    listener: str  # the listener's name, e.g. "kafka"
    peer: str  # "host:port"
    client_id: str | None  # from the latest request header
    connected_s: float  # seconds since the connection was accepted
    requests: int
    principal: str | None = None  # certificate identity on an mTLS listener
    zone: str | None = None  # the security zone of the listener, once segmentation names one


@dataclass(frozen=True)
class MqttSubscription:
    topic_filter: str
    qos: int


@dataclass(frozen=True)
class MqttSession:
    client_id: str
    connected: bool
    peer: str | None  # None while a persistent session waits for its client
    protocol_version: int | None  # 3 (3.1), 4 (3.1.1) or 5
    username: str | None
    subscriptions: list[MqttSubscription]
    queued: int  # messages waiting to be sent
    inflight: int  # QoS 1/2 messages sent and not yet acknowledged
    expiry_interval: int  # seconds the session outlives its connection
    connected_s: float | None = None  # seconds since CONNECT, while connected
    principal: str | None = None
    zone: str | None = None


@dataclass(frozen=True)
class Clients:
    kafka: list[KafkaConnection]
    mqtt: list[MqttSession]  # connected sessions first, then by client id; at most `limit`
    mqtt_enabled: bool = True
    mqtt_total: int = 0  # sessions on the node (a plant may hold thousands; the list is cut)
    kafka_total: int = 0


# --- records (live tail) -------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordHeader:
    key: str
    value: str | None  # base64

    @property
    def value_bytes(self) -> bytes | None:
        return None if self.value is None else base64.b64decode(self.value)


@dataclass(frozen=True)
class TailRecord:
    """One record, or (with `note` set) one batch that could not be decoded here."""

    offset: int
    timestamp: int  # ms since the epoch
    key: str | None = None  # base64; None is a null key
    value: str | None = None  # base64
    headers: list[RecordHeader] = field(default_factory=list)
    truncated: bool = False  # key or value cut to the first MAX_TAIL_FIELD bytes
    note: str | None = None  # e.g. "compressed (snappy) batch of 12 records: codec not available"

    @property
    def key_bytes(self) -> bytes | None:
        return None if self.key is None else base64.b64decode(self.key)

    @property
    def value_bytes(self) -> bytes | None:
        return None if self.value is None else base64.b64decode(self.value)


@dataclass(frozen=True)
class TailResult:
    topic: str
    partition: int
    log_start: int
    high_watermark: int
    start_offset: int  # where this read began (after resolving a timestamp)
    next_offset: int  # ask from here next time to follow the partition
    records: list[TailRecord]


# --- logs and uplink -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    seq: int  # increasing; ask for lines after the last one seen
    ts: float  # seconds since the epoch
    level: str
    line: str  # the key=value line as the log file has it


@dataclass(frozen=True)
class LogLines:
    lines: list[LogLine]
    last_seq: int


@dataclass(frozen=True)
class UplinkTopic:
    cloud_topic: str
    priority: int = 0
    partitions: int = 0
    backlog_records: int = 0
    backlog_bytes: int = 0
    backlog_seconds: float = 0.0
    lost_records: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # partition -> why it is stuck


@dataclass(frozen=True)
class UplinkStatus:
    enabled: bool
    connected: bool = False
    paused: bool = False
    bootstrap: list[str] = field(default_factory=list)
    last_error: str | None = None
    throughput_bytes_per_s: float = 0.0
    throughput_records_per_s: float = 0.0
    sent_records: int = 0
    sent_bytes: int = 0
    backlog_records: int = 0
    backlog_bytes: int = 0
    lost_records: int = 0
    bandwidth_cap: int = 0  # bytes/s, 0: no cap
    topics: dict[str, UplinkTopic] = field(default_factory=dict)
    security: str = "plaintext"  # plaintext, tls or mtls
    tls_error: str | None = None  # short reason of the last TLS refusal, e.g. peer_refused:certificate_revoked
    connect_failures: int = 0  # consecutive failed connection attempts


# --- measurements, cost and inventory (GET /api/v1/measurements, /cost, /inventory) --------------


@dataclass(frozen=True)
class TopicMeasurementInfo:
    """One topic's live figures; the same keys `millstream cost --measurements FILE` reads."""

    topic: str
    bytes_in_per_s: float  # average over the window (Produce and MQTT ingest)
    bytes_out_per_s: float | None = None  # average bytes returned by Fetch, all consumers
    consumer_groups: int = 0  # groups with committed offsets on the topic
    peak_to_average: float = 1.0  # busiest bucket's ingress over the average
    partitions: int = 1
    retained_bytes: int = 0  # held now, one copy
    retention_s: float | None = None  # retention.ms / 1000; None: unlimited
    fan_out: float = 0.0  # egress / ingress over the window
    bytes_in_total: int | None = None  # since the appliance started
    bytes_out_total: int | None = None


@dataclass(frozen=True)
class LiveMeasurements:
    window_s: float | None  # the configured window
    topics: list[TopicMeasurementInfo]
    covered_s: float | None = None  # how much of the window has elapsed (less just after a start)
    bucket_s: float | None = None  # peak resolution


@dataclass(frozen=True)
class CostLine:
    category: str  # "compute", "storage", "requests", "network"
    item: str  # "brokers", "block storage", "PUT: WAL uploads", ...
    quantity: float
    unit: str
    unit_price: float
    monthly: float
    note: str = ""


@dataclass(frozen=True)
class DesignCostInfo:
    design: str  # "broker_attached" | "object_storage"
    title: str
    brokers: int
    total: float  # per month, in the sheet's currency
    by_category: dict[str, float]
    lines: list[CostLine]


@dataclass(frozen=True)
class CostWorkload:
    ingress_bytes_per_s: float
    egress_bytes_per_s: float
    peak_ingress_bytes_per_s: float
    peak_egress_bytes_per_s: float
    partitions: int
    retained_bytes: float
    topics: int = 0
    retention: str = ""


@dataclass(frozen=True)
class CostReport:
    price_sheet: str
    currency: str
    workload: CostWorkload
    designs: dict[str, DesignCostInfo]  # "broker_attached" then "object_storage"
    assumptions: list[str]
    projection: dict[str, float] = field(default_factory=dict)  # "scale", "retention_s" when asked
    baseline_totals: dict[str, float] = field(default_factory=dict)  # per design, without the projection
    measured_s: float | None = None  # seconds of live measurement behind the workload

    @property
    def broker_attached(self) -> DesignCostInfo:
        return self.designs["broker_attached"]

    @property
    def object_storage(self) -> DesignCostInfo:
        return self.designs["object_storage"]


@dataclass(frozen=True)
class InventoryFinding:
    severity: str  # "error" | "warning" | "info"
    stream: str  # declared topic or pattern, an undeclared topic, or "*" (the whole site)
    rule: str  # e.g. "no-owner", "outage-retention", "unowned"
    message: str


@dataclass(frozen=True)
class InventoryStream:
    """One `[[streams]]` entry and the live topics it covers."""

    topic: str  # name or glob pattern
    placement: str
    forwarded: bool
    local_action: bool
    owner: str | None = None
    source: str = ""
    retention_s: float | None = None
    consumers: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)  # catalogue topics it matches
    bytes_in_per_s: float = 0.0  # their measured ingress


@dataclass(frozen=True)
class InventoryReport:
    streams: list[InventoryStream]
    findings: list[InventoryFinding]  # errors first
    unowned: list[str]  # topics with traffic that no stream declares
    counts: dict[str, int]  # {"error": n, "warning": n, "info": n}
    worst_wan_outage_s: float = 0.0


# --- security ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZoneInfo:
    name: str
    sl_target: int | None = None
    description: str = ""


@dataclass(frozen=True)
class SecurityListener:
    name: str
    protocol: str  # kafka, mqtt or admin
    security: str  # plaintext, tls or mtls
    zone: str | None = None  # plaintext/tls: the zone of every client arriving here


@dataclass(frozen=True)
class ConduitLink:
    """One cell of the zones x listeners matrix: a conduit letting `zone` reach `listener`."""

    zone: str
    listener: str
    conduit: str
    ops: list[str]  # as written in the rules (publish, consume, ...)
    resources: list[str]  # topic filters, topic/group patterns ("apps.*" for a prefix)
    ids: list[str] = field(default_factory=list)  # empty: any id in the zone
    limits: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DenialRecord:
    time: float  # epoch seconds
    identity: str  # "zone/id" or "(anonymous)"
    serial: str | None
    zone: str | None
    listener: str
    op: str
    resource: str
    rule: str | None  # None: default deny
    reason: str


@dataclass(frozen=True)
class DenialStats:
    total: int = 0
    dropped: int = 0  # counted, no longer in the recent list
    capacity: int = 0
    by_op: dict[str, int] = field(default_factory=dict)
    by_listener: dict[str, int] = field(default_factory=dict)
    by_zone: dict[str, int] = field(default_factory=dict)
    by_rule: dict[str, int] = field(default_factory=dict)
    recent: list[DenialRecord] = field(default_factory=list)  # newest last


@dataclass(frozen=True)
class HandshakeRefusal:
    listener: str
    reason: str
    count: int


@dataclass(frozen=True)
class SecurityStatus:
    authorization: str  # "on" (a rules file is enforced) or "off"
    rules_file: str | None = None
    rules_loaded_at: float | None = None
    reloads: int = 0
    reload_failures: int = 0
    last_reload_error: str | None = None
    allowed: int = 0
    zones: list[ZoneInfo] = field(default_factory=list)
    listeners: list[SecurityListener] = field(default_factory=list)
    links: list[ConduitLink] = field(default_factory=list)
    deny_rules: list[str] = field(default_factory=list)  # names of the explicit deny rules
    denials: DenialStats = field(default_factory=DenialStats)
    handshake_refusals: list[HandshakeRefusal] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rules: Any = None  # the rules summary as written (zones, conduits, denies)


@dataclass(frozen=True)
class Certificate:
    serial: str
    zone: str
    id: str
    identity: str  # "zone/id"
    kind: str  # client or server
    not_before: str  # ISO 8601 UTC
    not_after: str
    revoked: bool
    status: str  # valid, expired, revoked, not_yet_valid
    revoked_at: str | None = None
    days_left: float | None = None  # until not_after (negative: expired)


@dataclass(frozen=True)
class Certificates:
    certificates: list[Certificate]
    warnings: list[str] = field(default_factory=list)
    expiry_warning_days: float = 30.0  # the window `security.expiry_warning` sets


@dataclass(frozen=True)
class IssuedCertificate:
    serial: str
    zone: str
    id: str
    kind: str
    not_after: str
    cert_path: str  # where the files went, on the appliance's host
    key_path: str
    certificate_pem: str = ""
    key_pem: str = ""
    ca_pem: str = ""


@dataclass(frozen=True)
class RevokedCertificate:
    serial: str
    identity: str
    reason: str | None = None


@dataclass(frozen=True)
class Revocation:
    revoked: list[RevokedCertificate]
    note: str = ""


@dataclass(frozen=True)
class RulesReload:
    reloaded: bool
    source: str
    zones: int
    conduits: int
    denies: int


# --- requests ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateTopic:
    name: str
    partitions: int | None = None  # None: the broker's default
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AlterTopic:
    configs: dict[str, str | None] = field(default_factory=dict)  # None resets a key to its default
    partitions: int | None = None  # new, larger partition count


# --- JSON conversion -----------------------------------------------------------------------------


def to_plain(obj: Any) -> Any:
    """A model (or list/dict of models) as JSON-ready data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj


class DecodeError(ValueError):
    """JSON that does not fit the model: bad input to the server, or a broken reply to the client."""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # slow (evaluates annotations): once per model class


def decode(tp: Any, data: Any, where: str = "body") -> Any:
    """Build `tp` (a model class or a typing form such as list[TopicInfo]) from JSON data."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return data
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return decode(arg, data, where)
            except DecodeError as e:
                errors.append(str(e))
        raise DecodeError("; ".join(errors) or f"{where}: unexpected null")
    if origin is list:
        if not isinstance(data, list):
            raise DecodeError(f"{where}: expected a list, got {type(data).__name__}")
        (item,) = typing.get_args(tp)
        return [decode(item, v, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is dict:
        if not isinstance(data, dict):
            raise DecodeError(f"{where}: expected an object, got {type(data).__name__}")
        _, value_tp = typing.get_args(tp)
        return {str(k): decode(value_tp, v, f"{where}.{k}") for k, v in data.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise DecodeError(f"{where}: expected an object, got {type(data).__name__}")
        hints = _hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                kwargs[f.name] = decode(hints[f.name], data[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise DecodeError(f"{where}: missing {f.name!r}")
        return tp(**kwargs)
    if tp is float:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return float(data)
        raise DecodeError(f"{where}: expected a number, got {data!r}")
    if tp is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        raise DecodeError(f"{where}: expected an integer, got {data!r}")
    if tp in (str, bool):
        if isinstance(data, tp):
            return data
        raise DecodeError(f"{where}: expected {'a string' if tp is str else 'true or false'}, got {data!r}")
    raise DecodeError(f"{where}: cannot decode {tp!r}")  # pragma: no cover - a model bug


def decode_as(tp: type[T], data: Any, where: str = "body") -> T:
    return decode(tp, data, where)


# --- how the CLI and the TUI show these figures (both may import this module) -------------------


def human_bytes(n: float) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def human_duration_ms(value: str | int) -> str:
    """A retention in ms as "7d", "12h", "forever"; anything unparsable is shown as given."""
    try:
        n = int(value)
    except ValueError:
        return str(value)
    if n < 0:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}ms"


def human_uptime(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"
