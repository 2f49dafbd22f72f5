"""The topic catalogue: names, ids, partitions (one storage stream each) and topic configs.

Kept durable through the MetaStore port (namespace "topics"), so a restart serves the same topics
with the same streams. Pure Kafka semantics live here (name rules, config validation); handlers
translate `TopicError.kafka_code` into per-topic error codes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import trio

from appliance.errors import MillstreamError
from appliance.logs import get_logger
from appliance.storage.ports import LogStore, MetaStore

log = get_logger("topics")

NAMESPACE = "topics"
FORMAT_VERSION = 1
MAX_NAME_LENGTH = 249
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")


class TopicError(MillstreamError):
    def __init__(self, kafka_code: int, message: str) -> None:
        super().__init__(message)
        self.kafka_code = kafka_code


# Kafka error codes used here (see appliance/kafka/error_codes.py for the full set).
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_REPLICA_ASSIGNMENT = 39
INVALID_CONFIG = 40
INVALID_REQUEST = 42


@dataclass(frozen=True)
class ConfigDef:
    default: str
    doc: str
    check: object  # callable(str) -> str | None (error message)


def _int_check(lo: int) -> object:
    def check(v: str) -> str | None:
        try:
            n = int(v)
        except ValueError:
            return f"expected an integer, got {v!r}"
        return None if n >= lo else f"must be >= {lo}"

    return check


def _choice_check(*choices: str) -> object:
    def check(v: str) -> str | None:
        parts = [p.strip() for p in v.split(",")] if "," in v else [v]
        return None if all(p in choices for p in parts) else f"expected one of {', '.join(choices)}"

    return check


def _ratio_check(v: str) -> str | None:
    try:
        x = float(v)
    except ValueError:
        return f"expected a number, got {v!r}"
    return None if 0.0 <= x <= 1.0 else "must be between 0 and 1"


TOPIC_CONFIGS: dict[str, ConfigDef] = {
    "cleanup.policy": ConfigDef("delete", "delete old data, or keep the latest record per key", _choice_check("delete", "compact")),
    "retention.ms": ConfigDef("604800000", "keep data this long (-1: forever)", _int_check(-1)),
    "retention.bytes": ConfigDef("-1", "keep at most this many bytes per partition (-1: no limit)", _int_check(-1)),
    "max.message.bytes": ConfigDef("1048588", "largest record batch accepted", _int_check(0)),
    "message.timestamp.type": ConfigDef("CreateTime", "CreateTime or LogAppendTime", _choice_check("CreateTime", "LogAppendTime")),
    # compaction (cleanup.policy=compact): see appliance/storage/key_compaction.py
    "delete.retention.ms": ConfigDef("86400000", "how long a compacted topic keeps tombstones (null values)", _int_check(0)),
    "min.compaction.lag.ms": ConfigDef("0", "a record stays uncompacted at least this long", _int_check(0)),
    "min.cleanable.dirty.ratio": ConfigDef("0.5", "share of not yet compacted data that triggers compaction", _ratio_check),
}


@dataclass
class Topic:
    name: str
    topic_id: uuid.UUID
    streams: list[int]
    configs: dict[str, str] = field(default_factory=dict)  # explicitly set configs only

    @property
    def partitions(self) -> int:
        return len(self.streams)

    def config(self, key: str) -> str:
        return self.configs.get(key, TOPIC_CONFIGS[key].default)

    @property
    def log_append_time(self) -> bool:
        return self.config("message.timestamp.type") == "LogAppendTime"

    @property
    def compacted(self) -> bool:
        return "compact" in self.config("cleanup.policy").split(",")

    @property
    def deletes(self) -> bool:
        """Whether retention.ms/retention.bytes apply (cleanup.policy includes delete)."""
        return "delete" in self.config("cleanup.policy").split(",")

    @property
    def max_message_bytes(self) -> int:
        return int(self.config("max.message.bytes"))

    def to_record(self) -> dict:
        return {"v": FORMAT_VERSION, "id": self.topic_id.bytes, "streams": list(self.streams), "configs": dict(self.configs)}

    @classmethod
    def from_record(cls, name: str, rec: Mapping) -> Topic:
        return cls(name, uuid.UUID(bytes=rec["id"]), list(rec["streams"]), dict(rec.get("configs", {})))


def validate_name(name: str | None) -> None:
    if not name:
        raise TopicError(INVALID_TOPIC_EXCEPTION, "topic name is empty")
    if name in (".", ".."):
        raise TopicError(INVALID_TOPIC_EXCEPTION, f"topic name {name!r} is not allowed")
    if len(name) > MAX_NAME_LENGTH:
        raise TopicError(INVALID_TOPIC_EXCEPTION, f"topic name longer than {MAX_NAME_LENGTH} characters")
    if not _LEGAL.fullmatch(name):
        raise TopicError(INVALID_TOPIC_EXCEPTION, f"topic name {name!r} has characters outside [a-zA-Z0-9._-]")


def validate_configs(configs: Mapping[str, str | None]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in configs.items():
        d = TOPIC_CONFIGS.get(key)
        if d is None:
            raise TopicError(INVALID_CONFIG, f"unknown or unsupported topic config {key!r} (supported: {', '.join(TOPIC_CONFIGS)})")
        if value is None:
            raise TopicError(INVALID_CONFIG, f"topic config {key!r} needs a value")
        problem = d.check(value)  # type: ignore[operator]
        if problem:
            raise TopicError(INVALID_CONFIG, f"invalid value {value!r} for {key}: {problem}")
        out[key] = value
    return out


class TopicCatalog:
    def __init__(self, meta: MetaStore, logs: LogStore) -> None:
        self._meta = meta
        self._logs = logs
        self._topics: dict[str, Topic] = {}
        self._by_id: dict[uuid.UUID, Topic] = {}
        self._lock = trio.Lock()  # create/delete/alter are rare; serialising them keeps catalogue and streams consistent

    def load(self) -> None:
        for name, rec in self._meta.items(NAMESPACE).items():
            t = Topic.from_record(name, rec)
            self._topics[name] = t
            self._by_id[t.topic_id] = t
        log.info("topics_loaded", count=len(self._topics))

    def get(self, name: str) -> Topic | None:
        return self._topics.get(name)

    def by_id(self, topic_id: uuid.UUID) -> Topic | None:
        return self._by_id.get(topic_id)

    def all(self) -> list[Topic]:
        return sorted(self._topics.values(), key=lambda t: t.name)

    def stream(self, name: str, partition: int) -> int | None:
        t = self._topics.get(name)
        if t is None or not 0 <= partition < len(t.streams):
            return None
        return t.streams[partition]

    async def create(self, name: str, partitions: int, configs: Mapping[str, str | None] | None = None,
                     *, validate_only: bool = False) -> Topic:
        validate_name(name)
        if partitions < 1 or partitions > 100_000:
            raise TopicError(INVALID_PARTITIONS, f"number of partitions must be 1-100000, got {partitions}")
        checked = validate_configs(configs or {})
        async with self._lock:
            if name in self._topics:
                raise TopicError(TOPIC_ALREADY_EXISTS, f"topic {name!r} already exists")
            if validate_only:
                return Topic(name, uuid.uuid4(), [-1] * partitions, checked)
            lat = checked.get("message.timestamp.type") == "LogAppendTime"
            streams = [await self._logs.create_stream(f"{name}-{p}", log_append_time=lat) for p in range(partitions)]
            topic = Topic(name, uuid.uuid4(), streams, checked)
            await self._meta.put(NAMESPACE, name, topic.to_record())
            self._topics[name] = topic
            self._by_id[topic.topic_id] = topic
        log.info("topic_created", topic=name, partitions=partitions, configs=checked or "-")
        return topic

    async def delete(self, name: str) -> Topic:
        async with self._lock:
            topic = self._topics.get(name)
            if topic is None:
                raise TopicError(UNKNOWN_TOPIC_OR_PARTITION, f"topic {name!r} does not exist")
            # Remove from the catalogue first: a crash in between leaves orphan streams, never a
            # topic pointing at deleted streams.
            await self._meta.put(NAMESPACE, name, None)
            del self._topics[name]
            self._by_id.pop(topic.topic_id, None)
            for s in topic.streams:
                await self._logs.delete_stream(s)
        log.info("topic_deleted", topic=name)
        return topic

    async def add_partitions(self, name: str, total: int, *, validate_only: bool = False) -> Topic:
        async with self._lock:
            topic = self._topics.get(name)
            if topic is None:
                raise TopicError(UNKNOWN_TOPIC_OR_PARTITION, f"topic {name!r} does not exist")
            if total <= topic.partitions:
                raise TopicError(INVALID_PARTITIONS, f"topic {name!r} has {topic.partitions} partitions; new count {total} must be larger")
            if total > 100_000:
                raise TopicError(INVALID_PARTITIONS, "at most 100000 partitions")
            if validate_only:
                return topic
            for p in range(topic.partitions, total):
                topic.streams.append(await self._logs.create_stream(f"{name}-{p}", log_append_time=topic.log_append_time))
            await self._meta.put(NAMESPACE, name, topic.to_record())
        log.info("partitions_added", topic=name, partitions=total)
        return topic

    async def alter_configs(self, name: str, changes: Iterable[tuple[str, int, str | None]],
                            *, validate_only: bool = False) -> Topic:
        """changes: (key, op, value) with op 0=SET 1=DELETE 2=APPEND 3=SUBTRACT (IncrementalAlterConfigs)."""
        async with self._lock:
            topic = self._topics.get(name)
            if topic is None:
                raise TopicError(UNKNOWN_TOPIC_OR_PARTITION, f"topic {name!r} does not exist")
            new = dict(topic.configs)
            for key, op, value in changes:
                if key not in TOPIC_CONFIGS:
                    raise TopicError(INVALID_CONFIG, f"unknown or unsupported topic config {key!r}")
                if op == 0:
                    new.update(validate_configs({key: value}))
                elif op == 1:
                    new.pop(key, None)
                elif op in (2, 3):
                    if key != "cleanup.policy":
                        raise TopicError(INVALID_CONFIG, f"APPEND/SUBTRACT only apply to list configs, not {key}")
                    items = [p for p in topic.config(key).split(",") if p]
                    for v in (value or "").split(","):
                        if op == 2 and v and v not in items:
                            items.append(v)
                        if op == 3 and v in items:
                            items.remove(v)
                    new.update(validate_configs({key: ",".join(items)}))
                else:
                    raise TopicError(INVALID_REQUEST, f"unknown config operation {op}")
            if validate_only:
                return topic
            topic.configs = new
            await self._meta.put(NAMESPACE, name, topic.to_record())
            for s in topic.streams:
                self._logs.set_log_append_time(s, topic.log_append_time)
        log.info("topic_configs_altered", topic=name, configs=new or "-")
        return topic
