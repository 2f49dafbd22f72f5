"""Settings: a TOML site config, command-line overrides, validated at start-up.

Every section is a frozen dataclass; each field declares how its TOML value is parsed. Unknown
sections or keys and invalid values raise ConfigError naming the file, the key and the problem,
so a typo never silently falls back to a default.

Sizes accept integers (bytes) or strings such as "64MiB"; durations accept numbers (seconds)
or strings such as "250ms", "30s", "7d".
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from appliance.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


# --- value parsers: each takes the raw TOML value and returns the typed value or raises ValueError


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host_port(value: Any) -> HostPort:
    if not isinstance(value, str):
        raise ValueError(f"expected \"HOST:PORT\", got {value!r}")
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]*):(\d+)", value.strip())
    if not m:
        raise ValueError(f"expected \"HOST:PORT\", got {value!r}")
    host = m.group(1) or m.group(3) or "0.0.0.0"
    port = int(m.group(2) or m.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0-65535")
    return HostPort(host, port)


_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
               "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}


def parse_size(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
        if m and m.group(2).lower() in _SIZE_UNITS:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    raise ValueError(f"expected a size such as 1048576 or \"64MiB\", got {value!r}")


_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """Seconds, as a float."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*", value)
        if m:
            return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    raise ValueError(f"expected a duration such as 30 or \"250ms\", \"30s\", \"7d\", got {value!r}")


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {value!r}")


def parse_int(lo: int | None = None, hi: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        if lo is not None and value < lo:
            raise ValueError(f"must be >= {lo}, got {value}")
        if hi is not None and value > hi:
            raise ValueError(f"must be <= {hi}, got {value}")
        return value

    return parse


def parse_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def parse_optional_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return parse_str(value)


def parse_choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    return parse


def parse_optional_duration(value: Any) -> float | None:
    if value is None or value == "":
        return None
    return parse_duration(value)


def parse_optional_size(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return parse_size(value)


def parse_str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"expected a list of non-empty strings, got {value!r}")
    return tuple(value)


def parse_topic_pattern(value: Any) -> str:
    """A Kafka topic name, or a glob over names (`*`, `?`): `uns.acme.plant1.line3.*`."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9._\-*?]{1,249}", value):
        raise ValueError(f"expected a topic name or pattern (letters, digits, . _ - and * ?), got {value!r}")
    return value


def parse_path(value: Any) -> Path:
    return Path(parse_str(value)).expanduser()


def required(parse: Callable[[Any], Any], doc: str = "", *, key: str | None = None) -> Any:
    """A dataclass field with no default: a table that omits it is refused."""
    return field(metadata={"parse": parse, "doc": doc, "key": key})


def setting(default: Any, parse: Callable[[Any], Any], doc: str = "", *, key: str | None = None) -> Any:
    """A dataclass field that knows how to parse its TOML value."""
    meta = {"parse": parse, "doc": doc, "key": key}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _toml_key(f: dataclasses.Field) -> str:
    return f.metadata.get("key") or f.name


def build_section(cls: type, table: Mapping[str, Any], source: str, prefix: str) -> Any:
    """Build one section dataclass from a TOML table, rejecting unknown keys."""
    if not isinstance(table, Mapping):
        raise ConfigError(source, prefix, f"expected a table, got {type(table).__name__}")
    fields = {_toml_key(f): f for f in dataclasses.fields(cls) if "parse" in f.metadata}
    kwargs: dict[str, Any] = {}
    for key, raw in table.items():
        f = fields.get(key)
        if f is None:
            known = ", ".join(sorted(fields)) or "none"
            raise ConfigError(source, f"{prefix}.{key}", f"unknown setting (known in [{prefix}]: {known})")
        try:
            kwargs[f.name] = f.metadata["parse"](raw)
        except ConfigError:
            raise
        except (ValueError, TypeError) as e:
            raise ConfigError(source, f"{prefix}.{key}", str(e)) from None
    for key, f in fields.items():
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(source, f"{prefix}.{key}", "required setting is missing")
    try:
        return cls(**kwargs)
    except ValueError as e:  # cross-field checks in __post_init__
        raise ConfigError(source, prefix, str(e)) from None


# --- the sections ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSettings:
    """This appliance: its role, its broker id and where it keeps its data."""

    role: str = setting("plant", parse_choice("plant", "cloud"), "plant or cloud")
    id: int = setting(1, parse_int(0, 2**31 - 1), "broker id advertised to Kafka clients")
    data_dir: Path = setting(Path("./var"), parse_path, "WAL, metadata, certificates")
    shutdown_grace: float = setting(10.0, parse_duration, "deadline for in-flight requests on SIGTERM")


def _log_file_size(value: Any) -> int:
    # RotatingFileHandler never rotates at size 0, and a tiny size rotates on every line
    size = parse_size(value)
    if size < 1024:
        raise ValueError(f"must be at least 1KiB, got {size} bytes")
    return size


@dataclass(frozen=True)
class LogSettings:
    """Logs: key=value lines, one per event, to stderr (the journal under systemd) or a rotating file."""

    level: str = setting("info", parse_choice("debug", "info", "warning", "error"),
                       "lowest level written")
    file: str | None = setting(None, parse_optional_str, "rotating log file instead of stderr")
    file_max_size: int = setting(20 << 20, _log_file_size, "rotate the log file at this size (>= 1KiB)")
    file_backups: int = setting(5, parse_int(1, 1000), "rotated log files kept (file.1 ... file.N)")


@dataclass(frozen=True)
class KafkaSettings:
    """The Kafka-protocol listener that producers, consumers and admin tools connect to."""

    listen: HostPort = setting(HostPort("0.0.0.0", 9092), parse_host_port, "Kafka listener (port 0: any free port)")
    advertised_host: str | None = setting(None, parse_optional_str, "host name given to clients in Metadata")
    auto_create_topics: bool = setting(True, parse_bool, "create topics on first Metadata/Produce")
    num_partitions: int = setting(1, parse_int(1, 10_000), "partitions of auto-created topics")
    message_max_bytes: int = setting(1_048_588, parse_size, "largest record batch accepted")
    max_request_size: int = setting(100 << 20, parse_size, "largest request frame accepted")
    fetch_max_wait_cap: float = setting(30.0, parse_duration, "upper bound on a Fetch long poll")
    group_initial_rebalance_delay: float = setting(0.5, parse_duration, "wait for more members on a new group")
    group_min_session_timeout: float = setting(6.0, parse_duration, "shortest session.timeout.ms a group member may ask for")
    group_max_session_timeout: float = setting(1800.0, parse_duration, "longest session.timeout.ms a group member may ask for")
    connections_max_idle: float = setting(600.0, parse_duration, "close Kafka connections idle this long")
    max_connections: int = setting(4096, parse_int(1, 1_000_000),
                                   "open connections per Kafka listener; beyond it new ones are closed at once")

    @property
    def node_host(self) -> str:
        return self.advertised_host or ("127.0.0.1" if self.listen.host in ("0.0.0.0", "::", "") else self.listen.host)


@dataclass(frozen=True)
class StorageSettings:
    """Where and how records are kept: the write-ahead log (`<data_dir>/wal/`), metadata, their limits."""

    wal_segment_size: int = setting(64 << 20, parse_size, "WAL segment file size")
    wal_budget: int = setting(8 << 30, parse_size, "disk the WAL may use before producers are pushed back")
    fsync: bool = setting(True, parse_bool, "fsync before acknowledging (turn off only for throwaway tests)")
    log_cache_size: int = setting(256 << 20, parse_size, "memory for tail reads")
    group_commit_bytes: int = setting(4 << 20, parse_size, "most bytes one group commit (one write + one fsync) takes")
    inline_sync_rate: int = setting(
        10_000, int,
        "while fewer records a second than this arrive, small group commits are written and fsync'd "
        "on the event-loop thread (no thread hand-offs: lower latency, less CPU); 0 = always the writer thread")
    meta_compact_bytes: int = setting(4 << 20, parse_size, "metadata journal size that triggers a snapshot")
    # object-storage tier
    object_store: str | None = setting(None, parse_optional_str,
                                       "file:///dir or s3://bucket/prefix?endpoint=http://host:port (default <data-dir>/objects)")
    s3_access_key: str | None = setting(None, parse_optional_str, "S3 access key (MILLSTREAM_S3_ACCESS_KEY wins)")
    s3_secret_key: str | None = setting(None, parse_optional_str, "S3 secret key (MILLSTREAM_S3_SECRET_KEY wins)")
    upload_bytes: int = setting(32 << 20, parse_size, "un-uploaded WAL data that triggers an upload")
    upload_interval: float = setting(30.0, parse_duration, "upload whatever is pending at least this often")
    upload_concurrency: int = setting(4, parse_int(1, 64), "objects uploaded at once")
    stream_object_bytes: int = setting(16 << 20, parse_size, "a stream with this much pending data gets its own object")
    block_cache_size: int = setting(64 << 20, parse_size, "memory for blocks read back from object storage")
    compact_small_bytes: int = setting(8 << 20, parse_size, "objects smaller than this are merged by compaction")
    compact_min_objects: int = setting(16, parse_int(2, 1_000_000), "small objects that trigger a compaction")
    compact_target_bytes: int = setting(64 << 20, parse_size, "largest object compaction writes (also its memory)")
    maintenance_interval: float = setting(30.0, parse_duration, "retention, compaction and fencing checks this often")
    shutdown_upload_timeout: float = setting(30.0, parse_duration, "how long shutdown tries to upload the WAL tail")


@dataclass(frozen=True)
class AdminSettings:
    """The admin API (HTTP/JSON) used by `millstream status`, `topics`, `groups`, the TUI and /metrics."""

    listen: HostPort = setting(HostPort("127.0.0.1", 9644), parse_host_port,
                               "admin API (HTTP/JSON); keep it on loopback until mTLS is configured")
    unix_socket: str | None = setting(None, parse_optional_str,
                                      "also serve the admin API on this unix socket (created 0600)")


class ForwardRule(NamedTuple):
    """One `[[uplink.forward]]` entry: which local topics go to which cloud topic, how urgently."""

    topic: str | None  # an exact local topic name, or
    prefix: str | None  # every local topic starting with this
    cloud: str  # cloud topic name template: {site} and {topic} are replaced
    priority: int  # lower drains first when the link is the bottleneck (0 = most urgent)

    def matches(self, name: str) -> bool:
        return name == self.topic if self.topic is not None else name.startswith(self.prefix or "")


def parse_forward_rules(value: Any) -> tuple[ForwardRule, ...]:
    if not isinstance(value, list):
        raise ValueError("expected a list of tables ([[uplink.forward]])")
    rules = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise ValueError(f"entry {i}: expected a table, got {item!r}")
        unknown = set(item) - {"topic", "prefix", "cloud", "priority"}
        if unknown:
            raise ValueError(f"entry {i}: unknown keys {sorted(unknown)} (known: topic, prefix, cloud, priority)")
        topic, prefix = item.get("topic"), item.get("prefix")
        if (topic is None) == (prefix is None):
            raise ValueError(f"entry {i}: give exactly one of topic = \"NAME\" or prefix = \"PREFIX\"")
        cloud = parse_str(item.get("cloud", "{site}.{topic}"))
        if "{" in cloud.replace("{site}", "").replace("{topic}", ""):
            raise ValueError(f"entry {i}: cloud template {cloud!r} may only use {{site}} and {{topic}}")
        rules.append(ForwardRule(None if topic is None else parse_str(topic), None if prefix is None else parse_str(prefix),
                                 cloud, parse_int(0, 1000)(item.get("priority", 10))))
    return tuple(rules)


def parse_bootstrap(value: Any) -> tuple[str, ...]:
    """A list of "HOST:PORT" strings (or one comma-separated string), kept as normalised strings."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"expected a list of \"HOST:PORT\", got {value!r}")
    return tuple(str(parse_host_port(v.strip() if isinstance(v, str) else v)) for v in items if v != "")


@dataclass(frozen=True)
class UplinkSettings:
    """The plant-to-cloud uplink (plant role): see appliance/uplink/forwarder.py."""

    enabled: bool = setting(False, parse_bool, "forward local topics to the cloud (plant role only)")
    bootstrap: tuple[str, ...] = setting((), parse_bootstrap, "cloud Kafka bootstrap addresses, HOST:PORT")
    site: str = setting("", parse_str, "site id, used as {site} in cloud topic names")
    forward: tuple[ForwardRule, ...] = setting(
        (), parse_forward_rules, "[[uplink.forward]] tables: topic = NAME or prefix = PREFIX; cloud = template over "
        "{site} and {topic} (default \"{site}.{topic}\"); priority 0..1000, lower drains first (default 10)")
    create_topics: bool = setting(False, parse_bool, "create missing cloud topics with the local partition count")
    replication_factor: int = setting(-1, parse_int(-1, 32767), "replication factor of created cloud topics (-1: broker default)")
    start_from: str = setting("earliest", parse_choice("earliest", "latest"), "where a newly forwarded partition starts")
    bandwidth: int = setting(0, parse_size, "cap on bytes/s sent to the cloud (0: no cap)")
    max_request_bytes: int = setting(4 << 20, parse_size,
                                     "largest Produce request the uplink builds (Kafka takes one batch per "
                                     "partition and request: room for several partitions' batches); requests "
                                     "stay at 1 MiB until the link has shown it carries this much in a quarter "
                                     "of request_timeout")
    merge_bytes: int = setting(256 << 10, parse_size,
                               "merge consecutive small stored batches of a partition into one batch up to this "
                               "size (e.g. one-record MQTT batches); 0: send every stored batch as it is")
    request_timeout: float = setting(30.0, parse_duration, "a cloud request without an answer this long drops the connection")
    connect_timeout: float = setting(10.0, parse_duration, "TCP connect + ApiVersions deadline per address")
    reconnect_backoff: float = setting(0.1, parse_duration, "first reconnect delay (doubles, with jitter)")
    reconnect_backoff_max: float = setting(10.0, parse_duration, "longest reconnect delay")
    metadata_refresh: float = setting(60.0, parse_duration, "re-read cloud metadata this often")
    hold_unforwarded: bool = setting(True, parse_bool, "local retention keeps data the uplink has not forwarded")
    client_id: str = setting("millstream-uplink", parse_str, "Kafka client id sent to the cloud")
    security: str = setting("plaintext", parse_choice("plaintext", "tls", "mtls"),
                            "plaintext, tls (verify the cloud's certificate) or mtls (tls + our client certificate)")
    ca_file: str | None = setting(None, parse_optional_str,
                                  "PEM CA bundle the cloud's certificate is checked against (tls/mtls; unset: the "
                                  "system's CAs, for public Kafka services)")
    cert_file: str | None = setting(None, parse_optional_str,
                                    "client certificate, PEM (mtls), e.g. from `millstream pki issue --zone uplink --id SITE`")
    key_file: str | None = setting(None, parse_optional_str, "client certificate's private key, PEM, unencrypted (mtls)")
    crl_file: str | None = setting(None, parse_optional_str,
                                   "PEM CRL of the cloud's CA (its `<pki>/crl.pem`): a revoked cloud certificate is "
                                   "refused; re-read when the file changes (tls/mtls, needs ca_file)")
    server_name: str | None = setting(None, parse_optional_str,
                                      "name checked in the cloud's certificate (and sent as SNI) instead of each "
                                      "broker's host, e.g. when bootstrap is an IP address the certificate does not name")
    check_hostname: bool = setting(True, parse_bool,
                                   "check that the cloud's certificate names the host (or server_name); "
                                   "false trusts any certificate the CA signed")

    def __post_init__(self) -> None:
        if self.enabled:
            if not self.bootstrap:
                raise ValueError("enabled = true needs bootstrap = [\"HOST:PORT\", ...]")
            if not self.forward:
                raise ValueError("enabled = true needs at least one [[uplink.forward]] entry")
            if not self.site and any("{site}" in r.cloud for r in self.forward):
                raise ValueError("a cloud topic template uses {site} but site is not set")
        files = [k for k in ("ca_file", "cert_file", "key_file", "crl_file", "server_name") if getattr(self, k) is not None]
        if self.security == "plaintext" and files:
            raise ValueError(f"{', '.join(files)} set but security = \"plaintext\": "
                             "set security = \"tls\" or \"mtls\" (or remove them)")
        if self.crl_file is not None and self.ca_file is None:
            raise ValueError("crl_file needs ca_file: a CRL is checked against the CA that signed it")
        if self.security == "tls" and (self.cert_file or self.key_file):
            raise ValueError("cert_file/key_file set with security = \"tls\": a client certificate needs "
                             "security = \"mtls\"")
        if self.security == "mtls":
            if self.cert_file is None:
                raise ValueError("security = \"mtls\" needs cert_file (the uplink's client certificate)")
            if self.key_file is None:
                raise ValueError("security = \"mtls\" needs key_file (the client certificate's private key)")


@dataclass(frozen=True)
class MqttSettings:
    """The MQTT broker (3.1.1 and 5.0) that devices and gateways publish to."""

    enabled: bool | None = setting(None, lambda v: None if v == "auto" else parse_bool(v),
                                   'true, false or "auto"; unset means "auto": on for the plant role, off for the cloud role')
    listen: HostPort = setting(HostPort("0.0.0.0", 1883), parse_host_port, "MQTT listener (3.1.1 and 5.0)")
    max_packet_size: int = setting(1 << 20, parse_size, "largest MQTT packet a client may send")
    max_queued_messages: int = setting(1000, parse_int(1, 10_000_000),
                                       "messages queued per session; beyond it QoS 0 are dropped first, then the oldest")
    max_inflight: int = setting(256, parse_int(1, 65535),
                                "receive maximum offered to clients, and cap on QoS 1/2 in flight towards each")
    keep_alive_max: int = setting(3600, parse_int(0, 65535),
                                  "seconds; 5.0 clients asking for more (or 0) are told this (0 = no cap)")
    connect_timeout: float = setting(10.0, parse_duration, "time a new connection has to send CONNECT")
    session_expiry_max: int = setting(7 * 86400, parse_int(0, 0xFFFFFFFF),
                                      "seconds a persistent session outlives its connection at most")
    retain_available: bool = setting(True, parse_bool, "accept retained messages")
    max_qos: int = setting(2, parse_int(0, 2), "highest QoS granted")
    topic_alias_max: int = setting(64, parse_int(0, 65535), "topic aliases per connection, each direction")
    max_connections: int = setting(4096, parse_int(1, 1_000_000),
                                   "open connections per MQTT listener; beyond it new ones are refused (CONNACK 0x97 / 3)")


@dataclass(frozen=True)
class LimitsSettings:
    """Process-wide memory bounds shared by every listener."""

    inflight_frame_bytes: int = setting(256 << 20, parse_size,
                                        "request frames (Kafka) and packets (MQTT) being received, all connections together")
    frame_timeout: float = setting(60.0, parse_duration,
                                   "a large frame holding part of that budget must arrive within this, else its connection closes")


_LISTENER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def parse_listener_name(value: Any) -> str:
    text = parse_str(value)
    if not _LISTENER_NAME.fullmatch(text):
        raise ValueError(f"expected 1-64 characters of A-Z a-z 0-9 . _ - (a letter or digit first), got {value!r}")
    return text


def parse_zone_name(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return parse_listener_name(value)


@dataclass(frozen=True)
class ListenerSettings:
    """One `[[listeners]]` entry. Declared listeners of a protocol replace its single
    `[kafka]`/`[mqtt]`/`[admin]` `listen` address; a protocol without declared listeners keeps it.

    Who a client is: on `mtls` the certificate's zone and id (the listener's `zone` is documentation);
    on `plaintext` and `tls` the listener's `zone`, with no id (a client id is only a claim)."""

    UNIQUE_KEY = "name"  # build_array_section refuses two listeners of one name

    name: str = required(parse_listener_name, "listener name, as rules files name it in a conduit's `to`")
    protocol: str = required(parse_choice("kafka", "mqtt", "admin"), "kafka, mqtt or admin")
    bind: HostPort = required(parse_host_port, "HOST:PORT to listen on")
    security: str = setting("plaintext", parse_choice("plaintext", "tls", "mtls"),
                            "plaintext, tls (server certificate) or mtls (client certificates required)")
    zone: str | None = setting(None, parse_zone_name, "zone of the clients arriving here (plaintext/tls)")
    advertised_host: str | None = setting(None, parse_optional_str,
                                          "Kafka: host name given to clients that came in on this listener")

    def __post_init__(self) -> None:
        if self.advertised_host is not None and self.protocol != "kafka":
            raise ValueError("advertised_host applies to kafka listeners only")

    @property
    def tls(self) -> bool:
        return self.security != "plaintext"


@dataclass(frozen=True)
class SecuritySettings:
    """Segmentation: the site CA (appliance/security/pki.py) and the zone/conduit rules (rules.py)."""

    rules: Path | None = setting(None, lambda v: None if v in (None, "") else parse_path(v),
                                 "rules file (TOML); without one authorization is off (a warning at start)")
    pki_dir: Path | None = setting(None, lambda v: None if v in (None, "") else parse_path(v),
                                   "site CA directory (default <data-dir>/pki)")
    server_names: tuple[str, ...] = setting((), parse_str_list,
                                            "DNS names / IPs for the auto-issued listener certificate "
                                            "(localhost, 127.0.0.1 and the listeners' hosts are always in)")
    expiry_warning: float = setting(30 * 86400.0, parse_duration, "warn about certificates expiring within this")
    audit_size: int = setting(1000, parse_int(10, 1_000_000), "recent denials kept for the admin API")


PLACEMENTS = ("machine", "plant_edge", "regional", "cloud", "lake")


@dataclass(frozen=True)
class InventorySettings:
    """Site-wide figures the stream inventory (`[[streams]]`) is checked against."""

    worst_wan_outage: float = setting(86400.0, parse_duration,
                                      "longest WAN outage the plant must ride out without losing forwarded data")
    plant_disk_budget: int = setting(0, parse_size,
                                     "disk the plant may fill with forwarded streams during that outage (0: not checked)")
    measurement_window: float = setting(3600.0, parse_duration,
                                        "window of the live per-topic rates (admin API measurements, cost)")
    measurement_bucket: float = setting(10.0, parse_duration,
                                        "bucket of the live rates: the peak is the busiest bucket in the window")

    def __post_init__(self) -> None:
        if not 0 < self.measurement_bucket <= self.measurement_window:
            raise ValueError("measurement_bucket must be > 0 and no longer than measurement_window")


@dataclass(frozen=True)
class CostSettings:
    """The cost model served by the admin API (`GET /api/v1/cost`) and shown in the TUI."""

    price_sheet: Path | None = setting(None, lambda v: None if v in (None, "") else parse_path(v),
                                       "price sheet (TOML) laid over the built-in defaults "
                                       "(`millstream cost --print-price-sheet`)")


@dataclass(frozen=True)
class StreamSettings:
    """One `[[streams]]` entry: what a topic carries, who owns it and which boundary it crosses."""

    topic: str = required(parse_topic_pattern, "topic name or glob pattern (uns.acme.plant1.line3.*)")
    source: str = setting("", parse_str, "source system (PLCs on line 3, MES, historian)")
    asset: str = setting("", parse_str, "asset context as an ISA-95 path (acme/plant1/line3/press-7)")
    ordering: str = setting("per_key", parse_choice("per_key", "none"), "ordering the consumers need")
    local_action: bool = setting(False, parse_bool, "a local action (interlock, alarm, MES step) depends on it")
    retention: float | None = setting(None, parse_optional_duration, "plant retention window")
    retention_bytes: int | None = setting(None, parse_optional_size, "plant retention by size, if capped")
    replay: float | None = setting(None, parse_optional_duration, "how far back consumers expect to replay")
    consumers: tuple[str, ...] = setting((), parse_str_list, "who reads it")
    owner: str | None = setting(None, parse_optional_str, "data owner (a person or team)")
    placement: str = setting("plant_edge", parse_choice(*PLACEMENTS), "where the stream lives")
    forwarded: bool = setting(False, parse_bool, "the uplink forwards it to the cloud")


# --- MQTT ingestion (appliance/ingest/): mapping into Kafka, Sparkplug B, Kafka -> MQTT, bridge ----

_TEMPLATE_FIELD = re.compile(r"\{([^{}]*)\}")
_PLACEHOLDER = re.compile(r"\d+|[A-Za-z_][A-Za-z0-9_]*|#")


def parse_mqtt_filter(value: Any) -> str:
    """An MQTT topic filter; a level may also be `{name}`, a single-level wildcard with a name."""
    text = parse_str(value)
    if not text:
        raise ValueError("a topic filter cannot be empty")
    levels = text.split("/")
    for i, level in enumerate(levels):
        if level == "#" and i != len(levels) - 1:
            raise ValueError(f"'#' must be the last level of {text!r}")
        if level.startswith("{") and level.endswith("}") and _PLACEHOLDER.fullmatch(level[1:-1] or "-"):
            continue
        if level not in ("+", "#") and ("+" in level or "#" in level or "{" in level or "}" in level):
            raise ValueError(f"level {level!r} of {text!r} mixes a wildcard with text")
    return text


def parse_template(value: Any) -> str:
    """A template over topic levels: `{0}`.. by position, `{name}` for named filter levels, `{#}`, `{topic}`."""
    text = parse_str(value)
    stripped = _TEMPLATE_FIELD.sub("", text)
    if "{" in stripped or "}" in stripped:
        raise ValueError(f"unbalanced braces in template {text!r}")
    for name in _TEMPLATE_FIELD.findall(text):
        if not _PLACEHOLDER.fullmatch(name):
            raise ValueError(f"placeholder {{{name}}} in {text!r} is not a level number or a name")
    return text


@dataclass(frozen=True)
class IngestSettings:
    """MQTT -> Kafka ingestion: what happens to messages no `[[mqtt_map]]` rule matches, back-pressure."""

    unmapped: str = setting("default", parse_choice("default", "reject"),
                            "MQTT topics no [[mqtt_map]] rule matches: to default_topic, or refused (0x90)")
    default_topic: str = setting("mqtt.unmapped", parse_template, "Kafka topic for unmapped messages (a template)")
    max_pending: int = setting(100_000, parse_int(1, 10_000_000),
                               "messages waiting for the WAL before publishers are pushed back (0x97)")
    mqtt_out_commit_interval: float = setting(1.0, parse_duration,
                                              "[[mqtt_out]]: how often the published positions are committed")
    mqtt_out_commit_records: int = setting(10_000, parse_int(1, 10_000_000),
                                           "[[mqtt_out]]: commit sooner once this many records were published")


@dataclass(frozen=True)
class MqttMapRule:
    """One `[[mqtt_map]]` entry: MQTT topic filter -> Kafka topic, key and value format. First match wins."""

    filter: str = required(parse_mqtt_filter, "MQTT topic filter; a level written {name} matches like + and is named")
    kafka_topic: str = required(parse_template, "Kafka topic template, e.g. \"plant1.{area}.telemetry\"")
    key: str = setting("", parse_template, "Kafka key template, e.g. \"{3}/{4}\" (empty: no key)")
    value: str = setting("payload", parse_choice("payload", "envelope"),
                         "payload as is, or a JSON envelope with topic, asset context and payload")
    user_properties: bool = setting(True, parse_bool, "copy MQTT 5 user properties into Kafka headers")

    def __post_init__(self) -> None:
        _check_template_names(self.filter, kafka_topic=self.kafka_topic, key=self.key)


def _check_template_names(topic_filter: str, **templates: str) -> None:
    """A `{name}` in a template must be a level the filter names (a typo would render empty)."""
    named = {lv[1:-1] for lv in topic_filter.split("/") if lv.startswith("{") and lv.endswith("}")}
    for key, text in templates.items():
        for name in _TEMPLATE_FIELD.findall(text):
            if not (name.isdigit() or name in ("#", "topic") or name in named):
                raise ValueError(f"{key}: {{{name}}} is not a level named in the filter {topic_filter!r}")


ISA95_LEVELS = ("enterprise", "site", "area", "line", "cell", "asset")


@dataclass(frozen=True)
class AssetRule:
    """One `[[assets]]` entry: MQTT topics matching `match` get this ISA-95 context (templates over levels)."""

    match: str = required(parse_mqtt_filter, "MQTT topic filter (named levels allowed)")
    path: str = setting("", parse_template, "enterprise/site/area/line/cell/asset in one template (prefix allowed)")
    enterprise: str = setting("", parse_template, "ISA-95 enterprise (a template); set, it wins over the same level of path")
    site: str = setting("", parse_template, "ISA-95 site (a template); set, it wins over the same level of path")
    area: str = setting("", parse_template, "ISA-95 area (a template); set, it wins over the same level of path")
    line: str = setting("", parse_template, "ISA-95 line (a template); set, it wins over the same level of path")
    cell: str = setting("", parse_template, "ISA-95 cell (a template); set, it wins over the same level of path")
    asset: str = setting("", parse_template, "ISA-95 asset (a template); set, it wins over the same level of path")

    def __post_init__(self) -> None:
        _check_template_names(self.match, **{n: getattr(self, n) for n in ("path", *ISA95_LEVELS)})


@dataclass(frozen=True)
class MqttOutRule:
    """One `[[mqtt_out]]` entry: records of a Kafka topic published to local MQTT subscribers."""

    kafka_topic: str = required(parse_str, "Kafka topic to follow (from its end at start-up)")
    mqtt_topic: str = setting("kafka/{topic}", parse_template,
                              "MQTT topic template: {topic}, {partition}, {key} (a key with / adds levels)")
    qos: int = setting(0, parse_int(0, 2), "QoS of the published messages")
    retain: bool = setting(False, parse_bool, "publish retained (latest value per MQTT topic)")


def parse_host_id(value: Any) -> str:
    """A Sparkplug host id: one MQTT topic level (no '/', '+', '#'), or empty."""
    text = parse_str(value)
    if any(c in text for c in "/+#") or "\x00" in text:
        raise ValueError(f"a host id is one topic level without '/', '+' or '#': {text!r}")
    return text


@dataclass(frozen=True)
class SparkplugSettings:
    """Sparkplug B (`spBv1.0/#`): decoded into one Kafka record per metric, raw payloads kept aside."""

    enabled: bool = setting(True, parse_bool, "decode spBv1.0/# as Sparkplug B (else it is mapped like any topic)")
    kafka_topic: str = setting("sparkplug.metrics", parse_template,
                               "normalised metric records; template over {group}, {edge_node}, {device}")
    raw_topic: str = setting("sparkplug.raw", parse_template, "raw payloads, one record per MQTT message (empty: off)")
    rebirth_min_interval: float = setting(5.0, parse_duration, "at most one rebirth request per edge node this often")
    host_id: str = setting("", parse_host_id,
                           "Sparkplug Host Application id: publish spBv1.0/STATE/<host_id> (empty: off)")


@dataclass(frozen=True)
class BridgeSettings:
    """Bridge mode: subscribe to an upstream MQTT broker and ingest what it sends like local publishes."""

    upstream: HostPort | None = setting(None, lambda v: None if v in (None, "") else parse_host_port(v),
                                        "upstream MQTT broker HOST:PORT (empty: bridge off)")
    client_id: str = setting("millstream-bridge", parse_str, "client id (the persistent session's name upstream)")
    filters: tuple[str, ...] = setting((), parse_str_list, "topic filters subscribed upstream")
    qos: int = setting(1, parse_int(0, 2), "subscription QoS (1: acknowledged upstream only once durable here)")
    session_expiry: int = setting(86400, parse_int(0, 0xFFFFFFFF), "seconds the upstream keeps our session")
    keep_alive: int = setting(30, parse_int(0, 65535), "keep-alive asked of the upstream broker, seconds")
    username: str | None = setting(None, parse_optional_str, "user name sent to the upstream broker (unset: none)")
    password: str | None = setting(None, parse_optional_str,
                                   "password sent to the upstream broker (unset: none); keep the file 0600")
    local_prefix: str = setting("", parse_str, "prefix put before bridged topics locally (e.g. \"upstream/\")")
    backoff_min: float = setting(0.5, parse_duration, "first reconnect delay")
    backoff_max: float = setting(30.0, parse_duration, "reconnect delay cap (doubling, with jitter)")


SECTIONS: dict[str, type] = {
    "node": NodeSettings,
    "log": LogSettings,
    "kafka": KafkaSettings,
    "storage": StorageSettings,
    "admin": AdminSettings,
    "uplink": UplinkSettings,
    "mqtt": MqttSettings,
    "inventory": InventorySettings,
    "cost": CostSettings,
    "security": SecuritySettings,
    "ingest": IngestSettings,
    "sparkplug": SparkplugSettings,
    "bridge": BridgeSettings,
    "limits": LimitsSettings,
}

# Sections written as TOML arrays of tables (`[[streams]]`, `[[mqtt_map]]`): each entry builds one
# dataclass, and a problem is reported as `streams[2].placement` (0-based, in file order).
ARRAY_SECTIONS: dict[str, type] = {
    "streams": StreamSettings,
    "listeners": ListenerSettings,
    "mqtt_map": MqttMapRule,
    "assets": AssetRule,
    "mqtt_out": MqttOutRule,
}


@dataclass(frozen=True)
class Settings:
    node: NodeSettings = field(default_factory=NodeSettings)
    log: LogSettings = field(default_factory=LogSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    uplink: UplinkSettings = field(default_factory=UplinkSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    inventory: InventorySettings = field(default_factory=InventorySettings)
    cost: CostSettings = field(default_factory=CostSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    streams: tuple[StreamSettings, ...] = ()
    listeners: tuple[ListenerSettings, ...] = ()
    ingest: IngestSettings = field(default_factory=IngestSettings)
    sparkplug: SparkplugSettings = field(default_factory=SparkplugSettings)
    bridge: BridgeSettings = field(default_factory=BridgeSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    mqtt_map: tuple[MqttMapRule, ...] = ()
    assets: tuple[AssetRule, ...] = ()
    mqtt_out: tuple[MqttOutRule, ...] = ()
    source: str = "<defaults>"

    def __post_init__(self) -> None:
        for x in self.listeners:
            if x.protocol == "admin" and x.security != "mtls" and not _loopback(x.bind.host):
                raise ValueError(f"admin listener {x.name!r} on {x.bind} is off loopback: it needs security = \"mtls\"")

    @property
    def data_dir(self) -> Path:
        return self.node.data_dir

    @property
    def mqtt_enabled(self) -> bool:
        if self.mqtt.enabled is not None:
            return self.mqtt.enabled
        return self.node.role == "plant" or any(x.protocol == "mqtt" for x in self.listeners)

    def listeners_of(self, protocol: str) -> tuple[ListenerSettings, ...]:
        """The listeners of one protocol: those declared, else the single `[protocol] listen` one
        (plaintext, named after the protocol, no zone) exactly as before listeners existed."""
        declared = tuple(x for x in self.listeners if x.protocol == protocol)
        if declared:
            return declared
        listen = {"kafka": self.kafka.listen, "mqtt": self.mqtt.listen, "admin": self.admin.listen}[protocol]
        advertised = self.kafka.advertised_host if protocol == "kafka" else None
        return (ListenerSettings(name=protocol, protocol=protocol, bind=listen, advertised_host=advertised),)

    @property
    def tls_listeners(self) -> tuple[ListenerSettings, ...]:
        return tuple(x for x in self.listeners if x.tls)

    @property
    def pki_dir(self) -> Path:
        return self.security.pki_dir or self.data_dir / "pki"


def load_settings(path: str | Path | None = None, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Settings:
    """Read the TOML file (if any), apply command-line overrides (raw TOML-like values)."""
    tables: dict[str, dict[str, Any]] = {}
    arrays: dict[str, tuple[Any, ...]] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(source, "-", "file not found") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(source, "-", f"not valid TOML: {e}") from None
        for name, table in doc.items():
            if name in ARRAY_SECTIONS:
                arrays[name] = build_array_section(ARRAY_SECTIONS[name], table, source, name)
                continue
            if name not in SECTIONS:
                known = ", ".join([*SECTIONS, *(f"[[{a}]]" for a in ARRAY_SECTIONS)])
                raise ConfigError(source, name, f"unknown section (known: {known})")
            tables[name] = dict(table) if isinstance(table, Mapping) else table
    built: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        table = tables.get(name, {})
        if isinstance(table, Mapping):
            table = dict(table)
        if overrides and name in overrides:
            where = "command line" if source == "<defaults>" else f"{source} or the command line"
            built[name] = build_section(cls, {**table, **overrides[name]}, where, name)
        else:
            built[name] = build_section(cls, table, source, name)
    try:
        return Settings(source=source, **built, **arrays)
    except ValueError as e:  # cross-section checks in Settings.__post_init__
        raise ConfigError(source, "listeners", str(e)) from None


def build_array_section(cls: type, entries: Any, source: str, name: str) -> tuple[Any, ...]:
    """Build each table of a `[[name]]` array; a duplicate `topic` (or the class's UNIQUE_KEY) is refused."""
    if not isinstance(entries, list):
        raise ConfigError(source, name, f"expected an array of tables ([[{name}]]), got {type(entries).__name__}")
    built = tuple(build_section(cls, entry, source, f"{name}[{i}]") for i, entry in enumerate(entries))
    seen: dict[str, int] = {}
    unique = getattr(cls, "UNIQUE_KEY", "topic")
    for i, item in enumerate(built):
        topic = getattr(item, unique, None)
        if topic is not None:
            if topic in seen:
                raise ConfigError(source, f"{name}[{i}].{unique}", f"{topic!r} is already declared by {name}[{seen[topic]}]")
            seen[topic] = i
    return built


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe(settings: Settings) -> dict[str, dict[str, Any]]:
    """The effective settings as plain values, for `config check` and the admin API."""
    out: dict[str, dict[str, Any]] = {}
    for name in SECTIONS:
        section = getattr(settings, name)
        out[name] = {_toml_key(f): _plain(getattr(section, f.name)) for f in dataclasses.fields(section)}
    return out


def describe_arrays(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """The `[[...]]` sections (stream inventory) as plain values, for `config check` and the admin API."""
    return {
        name: [{_toml_key(f): _plain(getattr(item, f.name)) for f in dataclasses.fields(item)}
               for item in getattr(settings, name)]
        for name in ARRAY_SECTIONS
    }


def _plain(value: Any) -> Any:
    if isinstance(value, (HostPort, Path)):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value
