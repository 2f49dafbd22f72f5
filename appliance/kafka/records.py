"""Kafka record batches (magic 2): validation, header access, building and reading records.

Batches are stored byte-for-byte as the client sent them. The broker only rewrites baseOffset
(bytes 0-7, outside the CRC) and, for LogAppendTime topics, maxTimestamp (inside the CRC, so the
CRC is recomputed). It never needs to decompress.

Layout of the 61-byte batch header (big-endian):

    0  baseOffset int64        27 baseTimestamp int64
    8  batchLength int32       35 maxTimestamp int64
    12 partitionLeaderEpoch    43 producerId int64
    16 magic int8              51 producerEpoch int16
    17 crc uint32 (CRC-32C of bytes 21..end)
    21 attributes int16        53 baseSequence int32
    23 lastOffsetDelta int32   57 recordsCount int32
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import google_crc32c

from appliance.errors import CorruptRecordError
from appliance.kafka.varint import decode_uvarint, decode_varint, encode_varint

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
LOG_OVERHEAD = 12  # baseOffset + batchLength precede the length-counted part
CRC_START = 21
MAGIC = 2

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_BIT = 0x08
TRANSACTIONAL_BIT = 0x10
CONTROL_BIT = 0x20

COMPRESSION_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
NO_PRODUCER_ID = -1
NO_SEQUENCE = -1

_BASE_OFFSET = struct.Struct(">q")
_MAX_TS = struct.Struct(">q")
MAX_TS_AT = 35
_CRC = struct.Struct(">I")
_ATTRS = struct.Struct(">h")


def crc32c(data: bytes | memoryview) -> int:
    return google_crc32c.value(bytes(data) if isinstance(data, memoryview) else data)


def crc32c_is_native() -> bool:
    """True when CRC-32C runs in C; the pure-Python fallback is ~2000x slower."""
    return google_crc32c.implementation == "c"


@dataclass(frozen=True, slots=True)
class BatchHeader:
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_BIT)

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & TIMESTAMP_TYPE_BIT)

    @property
    def is_idempotent(self) -> bool:
        return self.producer_id >= 0

    @property
    def last_sequence(self) -> int:
        if self.base_sequence < 0:
            return NO_SEQUENCE
        return (self.base_sequence + self.last_offset_delta) & 0x7FFFFFFF


def read_header(batch: bytes | memoryview, pos: int = 0) -> BatchHeader:
    if len(batch) - pos < HEADER_SIZE:
        raise CorruptRecordError(f"record batch header truncated ({len(batch) - pos} < {HEADER_SIZE} bytes)")
    return BatchHeader(*HEADER.unpack_from(batch, pos))


def validate_batch(batch: bytes | memoryview, max_bytes: int | None = None) -> BatchHeader:
    """Check one complete batch as a broker must before storing it; return its header."""
    h = read_header(batch)
    if h.magic != MAGIC:
        raise CorruptRecordError(f"unsupported record batch magic {h.magic} (only 2)")
    if h.size != len(batch):
        raise CorruptRecordError(f"batchLength {h.batch_length} does not match {len(batch) - LOG_OVERHEAD} bytes")
    if h.records_count <= 0 or h.last_offset_delta + 1 != h.records_count:
        raise CorruptRecordError(
            f"lastOffsetDelta {h.last_offset_delta} + 1 != recordsCount {h.records_count}"
        )
    if h.compression > 4:
        raise CorruptRecordError(f"unknown compression codec {h.compression}")
    if max_bytes is not None and len(batch) > max_bytes:
        from appliance.errors import RecordTooLargeError

        raise RecordTooLargeError(f"record batch of {len(batch)} bytes exceeds {max_bytes}")
    actual = crc32c(memoryview(batch)[CRC_START:])
    if actual != h.crc:
        raise CorruptRecordError(f"CRC-32C mismatch (header {h.crc:#010x}, computed {actual:#010x})")
    return h


def split_batches(data: bytes | memoryview) -> list[memoryview]:
    """Split a Produce request's records field into complete batches (no validation of contents)."""
    view = memoryview(data)
    out: list[memoryview] = []
    pos = 0
    end = len(view)
    while pos < end:
        if end - pos < LOG_OVERHEAD:
            raise CorruptRecordError(f"{end - pos} trailing bytes are not a record batch")
        (length,) = struct.unpack_from(">i", view, pos + 8)
        size = length + LOG_OVERHEAD
        if length < HEADER_SIZE - LOG_OVERHEAD or pos + size > end:
            raise CorruptRecordError(f"record batch length {length} runs past the {end - pos} bytes left")
        out.append(view[pos : pos + size])
        pos += size
    return out


def iter_batches_lenient(data: bytes | memoryview) -> Iterator[memoryview]:
    """Yield complete batches, stopping silently at a partial trailing batch (fetch responses)."""
    view = memoryview(data)
    pos = 0
    while len(view) - pos >= LOG_OVERHEAD:
        (length,) = struct.unpack_from(">i", view, pos + 8)
        size = length + LOG_OVERHEAD
        if length <= 0 or pos + size > len(view):
            return
        yield view[pos : pos + size]
        pos += size


def with_base_offset(batch: bytes | memoryview, base_offset: int) -> bytes:
    """A copy of the batch with baseOffset set (outside the CRC, so nothing else changes)."""
    return _BASE_OFFSET.pack(base_offset) + memoryview(batch)[8:]  # bytes + view: one copy


def max_timestamp(batch: bytes | memoryview) -> int:
    """The batch header's maxTimestamp, without unpacking the rest of it."""
    return _MAX_TS.unpack_from(batch, MAX_TS_AT)[0]


def set_base_offset(batch: bytearray, base_offset: int) -> None:
    _BASE_OFFSET.pack_into(batch, 0, base_offset)


def stamp_log_append_time(batch: bytearray, now_ms: int) -> None:
    """Switch the batch to LogAppendTime with maxTimestamp=now, recomputing the CRC."""
    (attrs,) = _ATTRS.unpack_from(batch, 21)
    _ATTRS.pack_into(batch, 21, attrs | TIMESTAMP_TYPE_BIT)
    _MAX_TS.pack_into(batch, MAX_TS_AT, now_ms)
    _CRC.pack_into(batch, 17, crc32c(memoryview(batch)[CRC_START:]))


# --- records inside an uncompressed batch ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


def _encode_bytes(data: bytes | None) -> bytes:
    if data is None:
        return encode_varint(-1)
    return encode_varint(len(data)) + data


def encode_record(
    offset_delta: int,
    timestamp_delta: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> bytes:
    body = bytearray(b"\x00")  # record attributes (unused)
    body += encode_varint(timestamp_delta)
    body += encode_varint(offset_delta)
    body += _encode_bytes(key)
    body += _encode_bytes(value)
    body += encode_varint(len(headers))
    for hkey, hval in headers:
        body += _encode_bytes(hkey.encode())
        body += _encode_bytes(hval)
    return encode_varint(len(body)) + bytes(body)


def build_batch(
    records: Sequence[tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes | None]]]],
    *,
    timestamp_ms: int | Sequence[int],
    base_offset: int = 0,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = -1,
    base_sequence: int = NO_SEQUENCE,
    attributes: int = 0,
) -> bytes:
    """Build an uncompressed magic-2 batch from (key, value, headers) triples."""
    if not records:
        raise ValueError("a record batch needs at least one record")
    stamps = [timestamp_ms] * len(records) if isinstance(timestamp_ms, int) else list(timestamp_ms)
    base_ts = min(stamps)
    body = b"".join(
        encode_record(i, stamps[i] - base_ts, key, value, headers)
        for i, (key, value, headers) in enumerate(records)
    )
    n = len(records)
    tail = struct.pack(
        ">hiqqqhii", attributes, n - 1, base_ts, max(stamps), producer_id, producer_epoch, base_sequence, n
    ) + body
    crc = crc32c(tail)
    length = len(tail) + 9  # partitionLeaderEpoch(4) + magic(1) + crc(4)
    return struct.pack(">qiibI", base_offset, length, -1, MAGIC, crc) + tail


def _decode_bytes(buf: memoryview, pos: int) -> tuple[bytes | None, int]:
    n, pos = decode_varint(buf, pos)
    if n < 0:
        return None, pos
    if pos + n > len(buf):
        raise CorruptRecordError("record field runs past the batch")
    return bytes(buf[pos : pos + n]), pos + n


def decode_records(batch: bytes | memoryview, decompress=None) -> list[Record]:
    """Decode the records of one batch. Compressed batches need `decompress(codec, bytes)`."""
    view = memoryview(batch)
    h = read_header(view)
    body = view[HEADER_SIZE : h.size]
    if h.compression:
        if decompress is None:
            raise CorruptRecordError(f"batch is {COMPRESSION_NAMES.get(h.compression)}-compressed")
        body = memoryview(decompress(h.compression, bytes(body)))
    out: list[Record] = []
    pos = 0
    for _ in range(h.records_count):
        length, pos = decode_varint(body, pos)
        end = pos + length
        if length < 0 or end > len(body):
            raise CorruptRecordError("record length runs past the batch")
        pos += 1  # attributes
        ts_delta, pos = decode_varint(body, pos)
        off_delta, pos = decode_varint(body, pos)
        key, pos = _decode_bytes(body, pos)
        value, pos = _decode_bytes(body, pos)
        nheaders, pos = decode_varint(body, pos)
        headers = []
        for _ in range(nheaders):
            hk, pos = _decode_bytes(body, pos)
            hv, pos = _decode_bytes(body, pos)
            headers.append(((hk or b"").decode("utf-8", "replace"), hv))
        if pos != end:
            raise CorruptRecordError("record length does not match its fields")
        out.append(Record(h.base_offset + off_delta, h.base_timestamp + ts_delta, key, value, tuple(headers)))
    return out


@dataclass(frozen=True, slots=True)
class RecordSpan:
    """Where one record sits in a (decompressed) batch body, with what compaction needs."""

    offset_delta: int
    key: bytes | None
    tombstone: bool  # null value
    start: int  # the record's bytes are body[start:end], length varint included
    end: int


def record_spans(body: bytes | memoryview, count: int) -> list[RecordSpan]:
    """Locate the `count` records of an uncompressed (or decompressed) batch body."""
    view = memoryview(body)
    out: list[RecordSpan] = []
    pos = 0
    for _ in range(count):
        start = pos
        length, pos = decode_varint(view, pos)
        end = pos + length
        if length <= 0 or end > len(view):
            raise CorruptRecordError("record length runs past the batch")
        pos += 1  # attributes
        _ts, pos = decode_varint(view, pos)
        off_delta, pos = decode_varint(view, pos)
        key, pos = _decode_bytes(view, pos)
        vlen, pos = decode_varint(view, pos)
        if pos > end:
            raise CorruptRecordError("record fields run past its length")
        out.append(RecordSpan(off_delta, key, vlen < 0, start, end))
        pos = end
    if pos != len(view):
        raise CorruptRecordError("batch body longer than its records")
    return out


def batch_body(batch: bytes | memoryview, decompress=None) -> bytes:
    """The records part of a batch, decompressed with `decompress(codec, bytes)` if needed."""
    h = read_header(batch)
    body = bytes(memoryview(batch)[HEADER_SIZE : h.size])
    if h.compression:
        if decompress is None:
            raise CorruptRecordError(f"batch is {COMPRESSION_NAMES.get(h.compression)}-compressed")
        body = decompress(h.compression, body)
    return body


def rebuild_batch(batch: bytes | memoryview, body: bytes, records_count: int,
                  last_offset_delta: int | None = None) -> bytes:
    """The batch with a new (already compressed) records body and count: every other header
    field (base offset, lastOffsetDelta unless given, timestamps, producer id/epoch/sequence,
    attributes) is kept, batchLength and the CRC-32C are recomputed. Log compaction uses it."""
    head = bytearray(memoryview(batch)[:HEADER_SIZE])
    struct.pack_into(">i", head, 8, HEADER_SIZE - LOG_OVERHEAD + len(body))
    struct.pack_into(">i", head, 57, records_count)
    if last_offset_delta is not None:
        struct.pack_into(">i", head, 23, last_offset_delta)
    out = head + body
    _CRC.pack_into(out, 17, crc32c(memoryview(out)[CRC_START:]))
    return bytes(out)


def renumber_offsets(batch: bytes | memoryview, decompress, compress) -> bytes:
    """A compacted batch (offset gaps: recordsCount < lastOffsetDelta + 1) as a producer must
    send it: offset deltas 0..n-1, lastOffsetDelta n-1. Anything else is returned unchanged.
    Compressed batches need `decompress(codec, bytes)` and `compress(codec, bytes)`."""
    h = read_header(batch)
    if h.records_count <= 0 or h.records_count == h.last_offset_delta + 1:
        return bytes(batch)
    body = batch_body(batch, decompress)
    out = bytearray()
    for i, r in enumerate(record_spans(body, h.records_count)):
        view = memoryview(body)[r.start : r.end]
        length, pos = decode_varint(view, 0)
        _ts, after_ts = decode_varint(view, pos + 1)
        _off, after_off = decode_varint(view, after_ts)
        rec = bytes(view[pos:after_ts]) + encode_varint(i) + bytes(view[after_off:])
        out += encode_varint(len(rec)) + rec
    new_body = bytes(out)
    if h.compression:
        new_body = compress(h.compression, new_body)
    return rebuild_batch(batch, new_body, h.records_count, h.records_count - 1)


def has_keyless_record(batch: bytes | memoryview, decompress=None) -> bool:
    """True if a record of the batch has a null key (a compacted topic refuses those, as Kafka
    does). Compressed batches need `decompress(codec, bytes)`; control batches have no keys."""
    h = read_header(batch)
    if h.is_control:
        return False
    return any(r.key is None for r in record_spans(batch_body(batch, decompress), h.records_count))


__all__ = [
    "BatchHeader",
    "Record",
    "RecordSpan",
    "batch_body",
    "build_batch",
    "crc32c",
    "crc32c_is_native",
    "decode_records",
    "has_keyless_record",
    "decode_uvarint",
    "iter_batches_lenient",
    "read_header",
    "rebuild_batch",
    "record_spans",
    "renumber_offsets",
    "max_timestamp",
    "set_base_offset",
    "split_batches",
    "stamp_log_append_time",
    "validate_batch",
    "with_base_offset",
]
