"""The on-disk format of WAL records (pure: bytes in, records out; no IO).

A WAL segment file is a plain sequence of records; the first record of every segment is a
CHECKPOINT. Every record is a fixed 40-byte big-endian header followed by `length` payload bytes:

    0  magic    u32   0x4D53574C ("MSWL")
    4  crc      u32   CRC-32C of bytes 8 .. end of payload (the rest of the header + payload)
    8  version  u8    FORMAT_VERSION (1)
    9  type     u8    one of the REC_* constants below
    10 flags    u16   reserved, 0
    12 length   u32   payload length
    16 stream   i64   stream id (0 for CHECKPOINT)
    24 base     i64   BATCH: base offset; LOG_START: the new log start offset; else 0
    32 last     i64   BATCH: last offset; else 0
    40 payload

Record types and payloads:

- REC_BATCH: the Kafka record batch exactly as stored (baseOffset already rewritten).
- REC_CREATE: msgpack {"v": 1, "name": str, "lat": bool}: the stream exists from here on.
- REC_DELETE: empty; the stream and its data are gone.
- REC_LOG_START: empty; `base` is the stream's new log start (DeleteRecords).
- REC_CONFIG: msgpack {"v": 1, "lat": bool}: the stream's LogAppendTime switch.
- REC_CHECKPOINT: msgpack {"v": 1, "next_stream_id": int, "streams": [[id, name, lat, log_start,
  log_end], ...]}: the complete catalogue as of this point of the WAL. On replay it is
  authoritative: streams it does not list are dropped, and a stream whose replayed end is past
  its `log_end` is cut back to it (that is how records written before a failed fsync are
  discarded). Because each segment starts with one, old segments can be deleted without losing
  the catalogue; idempotent-producer state is rebuilt from the retained batch headers.

A record whose magic, version, length or CRC does not check out ends the segment: everything
from it on is a torn or garbled tail.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import google_crc32c
import msgpack

MAGIC = 0x4D53574C
FORMAT_VERSION = 1
PAYLOAD_VERSION = 1  # the "v" of msgpack payloads

REC_BATCH = 1
REC_CREATE = 2
REC_DELETE = 3
REC_LOG_START = 4
REC_CONFIG = 5
REC_CHECKPOINT = 6
RECORD_TYPES = frozenset({REC_BATCH, REC_CREATE, REC_DELETE, REC_LOG_START, REC_CONFIG, REC_CHECKPOINT})

HEADER = struct.Struct(">IIBBHIqqq")
HEADER_SIZE = HEADER.size  # 40
_CRC_COVERED = struct.Struct(">BBHIqqq")  # header bytes 8..40
_MAGIC_CRC = struct.Struct(">II")
MAX_PAYLOAD = 1 << 30  # sanity bound when scanning: a bigger length is garbage


def encode_header(rec_type: int, stream_id: int, base: int, last: int, payload: bytes) -> bytes:
    """The 40-byte header for `payload` (which must be bytes: the CRC library wants them)."""
    covered = _CRC_COVERED.pack(FORMAT_VERSION, rec_type, 0, len(payload), stream_id, base, last)
    crc = google_crc32c.extend(google_crc32c.value(covered), payload) if payload else google_crc32c.value(covered)
    return _MAGIC_CRC.pack(MAGIC, crc) + covered


def encode_record(rec_type: int, stream_id: int, base: int, last: int, payload: bytes = b"") -> bytes:
    return encode_header(rec_type, stream_id, base, last, payload) + payload


@dataclass(frozen=True, slots=True)
class WalRecord:
    type: int
    stream_id: int
    base: int
    last: int
    pos: int  # file position of the record header
    payload: memoryview

    @property
    def size(self) -> int:
        return HEADER_SIZE + len(self.payload)


@dataclass(slots=True)
class ScanResult:
    good_end: int = 0  # end of the last intact record
    records: int = 0
    problem: str | None = None  # why scanning stopped before the end of the data, if it did


def scan(data: bytes, result: ScanResult) -> Iterator[WalRecord]:
    """Yield intact records of one segment's bytes; stop at the first damaged one.

    `result` is filled in as scanning goes (good_end, records, problem).
    """
    view = memoryview(data)
    end = len(data)
    pos = 0
    while pos < end:
        if end - pos < HEADER_SIZE:
            result.problem = f"{end - pos} trailing bytes shorter than a record header"
            return
        magic, crc, version, rec_type, _flags, length, stream_id, base, last = HEADER.unpack_from(data, pos)
        if magic != MAGIC:
            result.problem = f"bad magic {magic:#010x}"
            return
        if version != FORMAT_VERSION:
            result.problem = f"unknown format version {version}"
            return
        if length > MAX_PAYLOAD or pos + HEADER_SIZE + length > end:
            result.problem = f"record length {length} runs past the end of the segment"
            return
        rec_end = pos + HEADER_SIZE + length
        if google_crc32c.value(data[pos + 8 : rec_end]) != crc:
            result.problem = "CRC-32C mismatch"
            return
        if rec_type not in RECORD_TYPES:
            result.problem = f"unknown record type {rec_type}"
            return
        yield WalRecord(rec_type, stream_id, base, last, pos, view[pos + HEADER_SIZE : rec_end])
        pos = rec_end
        result.good_end = pos
        result.records += 1


def pack_payload(value: dict[str, Any]) -> bytes:
    return msgpack.packb({"v": PAYLOAD_VERSION, **value}, use_bin_type=True)


def unpack_payload(payload: bytes | memoryview) -> dict[str, Any]:
    value = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    if not isinstance(value, dict) or value.get("v") != PAYLOAD_VERSION:
        raise ValueError(f"unsupported WAL payload version {value.get('v') if isinstance(value, dict) else value!r}")
    return value


__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "REC_BATCH",
    "REC_CHECKPOINT",
    "REC_CONFIG",
    "REC_CREATE",
    "REC_DELETE",
    "REC_LOG_START",
    "ScanResult",
    "WalRecord",
    "encode_header",
    "encode_record",
    "pack_payload",
    "scan",
    "unpack_payload",
]
