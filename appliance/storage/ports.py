"""The storage ports: what the broker, MQTT ingestion and the uplink may ask of storage.

Everything above storage talks to these two protocols only, so the object-storage tier can
replace the WAL-only implementation without the broker noticing.

- `LogStore`: streams of Kafka record batches (one stream per topic partition, plus internal
  ones). Offsets are assigned by the store at append time; a batch is visible to readers only
  once it is durable (high watermark = durable end).
- `MetaStore`: small durable maps (topic catalogue, group offsets, producer-id allocation...).
  Values are msgpack-able (dict/list/str/int/float/bytes/bool/None).

Timestamps are milliseconds since the epoch. Errors come from `appliance.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class StreamOffsets:
    log_start: int  # first offset that can be read
    high_watermark: int  # one past the last durable offset (what consumers may see)
    log_end: int  # one past the last assigned offset (>= high_watermark)


@dataclass(frozen=True, slots=True)
class AppendResult:
    base_offset: int
    last_offset: int
    log_append_time: int  # -1 unless the stream stamps LogAppendTime
    log_start: int
    duplicate: bool = False  # an idempotent retry answered with the original offsets


@dataclass(frozen=True, slots=True)
class ReadResult:
    batches: list[bytes]  # complete batches, baseOffset set; the first may start before the asked offset
    high_watermark: int
    log_start: int

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.batches)


@dataclass(frozen=True, slots=True)
class StreamInfo:
    stream_id: int
    name: str  # for humans and logs, e.g. "orders-2"
    offsets: StreamOffsets
    size_bytes: int  # bytes of retained batches
    log_append_time: bool  # stamp batches with the broker's clock


@runtime_checkable
class PendingAppend(Protocol):
    """An append whose offsets are assigned but which may not be durable yet."""

    result: AppendResult

    async def durable(self) -> AppendResult:
        """Wait until the append is fsynced; raises StorageError if it could not be."""
        ...


@runtime_checkable
class LogStore(Protocol):
    async def create_stream(self, name: str, *, log_append_time: bool = False) -> int:
        """Create a stream durably and return its id (never reused)."""
        ...

    async def delete_stream(self, stream_id: int) -> None: ...

    def set_log_append_time(self, stream_id: int, enabled: bool) -> None: ...

    def streams(self) -> Mapping[int, StreamInfo]: ...

    def offsets(self, stream_id: int) -> StreamOffsets: ...

    def append(self, stream_id: int, batch: bytes | memoryview, *, now_ms: int) -> PendingAppend:
        """Assign offsets to one validated batch and queue it for the WAL.

        Synchronous on purpose: the idempotence check, offset assignment and producer-state
        update happen without a checkpoint in between, so concurrent producers cannot race.
        Raises DuplicateBatchError (with the original offsets) when the original is durable;
        a retry of a batch whose original still waits for its fsync instead returns a pending
        append with `result.duplicate` set, whose durable() resolves with the original (or
        raises StorageError if the original fails). Also raises OutOfOrderSequenceError,
        UnknownProducerIdError (unknown producer id, sequence != 0), InvalidProducerEpochError,
        StorageFullError (budget or write queue full), StorageError, StreamNotFoundError.
        """
        ...

    async def read(self, stream_id: int, offset: int, max_bytes: int) -> ReadResult:
        """Durable batches from `offset` on: at least one whole batch if any exists (even when
        larger than max_bytes), then more while they fit. An offset inside a batch returns that
        whole batch. offset == high watermark gives no batches; outside [log_start, hw] raises
        OffsetOutOfRangeError."""
        ...

    async def wait_for_data(self, interests: Mapping[int, int]) -> None:
        """Return once any stream in {stream_id: offset} has a high watermark above offset
        (or is deleted). Callers bound the wait with trio.move_on_after."""
        ...

    async def offset_for_timestamp(self, stream_id: int, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first batch whose max timestamp >= timestamp, or None."""
        ...

    async def delete_records(self, stream_id: int, before_offset: int) -> int:
        """Move the log start offset up to `before_offset` (durably); return the new log start."""
        ...

    def producer_state(self, stream_id: int) -> Mapping[int, Any]:
        """Idempotent-producer state per producer id (epoch, last sequence, ...), for admin views."""
        ...


@runtime_checkable
class MetaStore(Protocol):
    def get(self, namespace: str, key: str) -> Any | None: ...

    def items(self, namespace: str) -> Mapping[str, Any]: ...

    async def put(self, namespace: str, key: str, value: Any | None) -> None:
        """Durably set (None deletes) one key."""
        ...

    async def put_many(self, namespace: str, entries: Mapping[str, Any | None]) -> None:
        """Durably set several keys of one namespace in one write."""
        ...

    async def allocate(self, counter: str, count: int = 1) -> int:
        """Durably take `count` ids from a named counter; return the first."""
        ...


@dataclass(frozen=True, slots=True)
class StorageStatus:
    wal_bytes: int
    wal_segments: int
    unuploaded_bytes: int
    durable_appends: int
    fsyncs: int
    last_error: str | None
    # object-storage tier (defaults: no tier)
    object_store: str | None = None  # URL without credentials
    objects: int = 0  # data objects in the manifest
    object_bytes: int = 0
    uploads: int = 0  # committed upload rounds
    upload_lag_s: float = 0.0  # age of the oldest data not yet in object storage
    requests: Mapping[str, int] = field(default_factory=dict)  # object-store requests by type
    fenced: bool = False  # another node took over the bucket/prefix; this one no longer writes
    store_error: str | None = None  # set while object-store calls keep failing (cleared when one succeeds)
    store_error_s: float = 0.0  # how long they have been failing
    # log compaction (cleanup.policy=compact): stream rewrites, bytes read and written, last run
    key_compactions: int = 0
    key_compaction_bytes_in: int = 0
    key_compaction_bytes_out: int = 0
    key_compaction_last_ms: int = 0  # ms since the epoch, 0: never
    # objects that failed their CRC/format checks when read (the tier refuses their ranges)
    corrupt_objects: int = 0  # such objects still in the manifest
    corrupt_reads: int = 0  # reads refused because of them (KAFKA_STORAGE_ERROR to the fetcher)
    last_corruption: str | None = None  # which object and what was wrong


class Storage(Protocol):
    """The composition root's handle: both ports plus lifecycle."""

    logs: LogStore
    meta: MetaStore

    async def run(self, *, task_status: Any) -> None:
        """Background work (group commit, uploads). Calls task_status.started() once ready."""
        ...

    async def close(self) -> None:
        """Flush everything durable and release files. Idempotent."""
        ...

    def status(self) -> StorageStatus: ...


__all__ = [
    "AppendResult",
    "LogStore",
    "MetaStore",
    "PendingAppend",
    "ReadResult",
    "Storage",
    "StorageStatus",
    "StreamInfo",
    "StreamOffsets",
]


