"""Stream objects: the format of the data objects the WAL is uploaded into (pure: no IO).

An object holds data of one or more streams. Layout:

    block*  index  footer

- block: whole Kafka record batches of ONE stream with consecutive offsets, stored byte for byte
  as the WAL holds them (baseOffset already set). A stream's data in one object is split into
  blocks of about `block_size` bytes (never splitting a batch), so a reader fetches one block
  with one ranged GET. A stream's blocks are contiguous in the object, in offset order.
- index: one 48-byte big-endian entry per block, in object order:

      0  stream_id  i64
      8  base       i64   first offset of the block's first batch
      16 last       i64   last offset of the block's last batch
      24 max_ts     i64   largest batch max-timestamp in the block
      32 position   u64   where the block starts in the object
      40 length     u32   block length in bytes
      44 crc        u32   CRC-32C of the block bytes

- footer: fixed 28 bytes at the very end:

      0  index_position u64
      8  index_length   u32
      12 index_count    u32
      16 index_crc      u32   CRC-32C of the index bytes
      20 version        u8    FORMAT_VERSION (1)
      21 flags          u8    0
      22 reserved       u16   0
      24 magic          u32   0x4D53534F ("MSSO")

A reader knows an object's size from the manifest: it fetches the tail (footer + index, usually
one GET), then single blocks.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import google_crc32c

from appliance.errors import StorageError
from appliance.kafka import records
from appliance.storage.objects.port import Body

MAGIC = 0x4D53534F
FORMAT_VERSION = 1
INDEX_ENTRY = struct.Struct(">qqqqQII")
FOOTER = struct.Struct(">QIIIBBHI")
FOOTER_SIZE = FOOTER.size  # 28
DEFAULT_BLOCK_SIZE = 1 << 20
_BATCH = records.HEADER


class StreamObjectError(StorageError):
    """An object's bytes do not check out (wrong magic/version, CRC mismatch, truncated).
    `key` names the object when the reader knows it."""

    key = ""


@dataclass(frozen=True, slots=True)
class BlockEntry:
    stream_id: int
    base: int
    last: int
    max_ts: int
    position: int
    length: int
    crc: int


@dataclass(frozen=True, slots=True)
class Footer:
    index_position: int
    index_length: int
    index_count: int
    index_crc: int


def batch_meta(batch: bytes | memoryview) -> tuple[int, int, int]:
    """(base offset, last offset, max timestamp) of one stored batch."""
    h = _BATCH.unpack_from(batch, 0)
    return h[0], h[0] + h[6], h[8]


def encode_object(streams: Sequence[tuple[int, Sequence[bytes]]],
                  block_size: int = DEFAULT_BLOCK_SIZE) -> tuple[bytes, list[BlockEntry]]:
    """Pack [(stream_id, batches in offset order), ...] into one object; returns its bytes and index."""
    body, entries = encode_object_body(streams, block_size)
    return bytes(body), entries


def encode_object_body(streams: Sequence[tuple[int, Sequence[bytes]]],
                       block_size: int = DEFAULT_BLOCK_SIZE) -> tuple[Body, list[BlockEntry]]:
    """encode_object without joining: the batches stay in their own buffers (uploads of tens of
    MiB would otherwise copy every byte twice into fresh memory before writing it once)."""
    builder = ObjectBuilder()
    for sid, block in object_blocks(streams, block_size):
        builder.add_block(sid, block)
    return builder.finish()


def object_blocks(streams: Sequence[tuple[int, Sequence[bytes]]],
                  block_size: int = DEFAULT_BLOCK_SIZE) -> Iterator[tuple[int, list[bytes]]]:
    """(stream id, batches) of each block of an object, in object order; a block ends at the first
    batch that takes it to `block_size`."""
    for sid, batches in streams:
        block: list[bytes] = []
        size = 0
        for b in batches:
            block.append(b)
            size += len(b)
            if size >= block_size:
                yield sid, block
                block, size = [], 0
        if block:
            yield sid, block


class ObjectBuilder:
    """Builds one object a block at a time (`object_blocks`), so a caller on an event loop can
    let others run between blocks (32 MiB of small batches is 15-25 ms of CPU)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.entries: list[BlockEntry] = []
        self.position = 0

    def add_block(self, sid: int, batches: list[bytes]) -> None:
        crc = 0
        extend = google_crc32c.extend
        for b in batches:
            crc = extend(crc, b)
        length = sum(map(len, batches))
        max_ts = max(map(records.max_timestamp, batches))
        base = batch_meta(batches[0])[0]
        last = batch_meta(batches[-1])[1]
        self.entries.append(BlockEntry(sid, base, last, max_ts, self.position, length, crc))
        self.parts.extend(batches)
        self.position += length

    def finish(self) -> tuple[Body, list[BlockEntry]]:
        entries = self.entries
        index = b"".join(INDEX_ENTRY.pack(e.stream_id, e.base, e.last, e.max_ts, e.position, e.length, e.crc)
                         for e in entries)
        footer = FOOTER.pack(self.position, len(index), len(entries), google_crc32c.value(index),
                             FORMAT_VERSION, 0, 0, MAGIC)
        return Body([*self.parts, index, footer]), entries


def decode_footer(tail: bytes) -> Footer:
    """The footer from the last bytes of an object (at least FOOTER_SIZE of them)."""
    if len(tail) < FOOTER_SIZE:
        raise StreamObjectError("object shorter than its footer")
    ipos, ilen, icount, icrc, version, _flags, _res, magic = FOOTER.unpack_from(tail, len(tail) - FOOTER_SIZE)
    if magic != MAGIC:
        raise StreamObjectError(f"bad object magic {magic:#010x}")
    if version != FORMAT_VERSION:
        raise StreamObjectError(f"unsupported object format version {version}")
    if ilen != icount * INDEX_ENTRY.size:
        raise StreamObjectError("index length does not match its entry count")
    return Footer(ipos, ilen, icount, icrc)


def decode_index(index: bytes, footer: Footer) -> list[BlockEntry]:
    if len(index) != footer.index_length or google_crc32c.value(index) != footer.index_crc:
        raise StreamObjectError("object index CRC-32C mismatch")
    return [BlockEntry(*INDEX_ENTRY.unpack_from(index, k * INDEX_ENTRY.size)) for k in range(footer.index_count)]


def read_index(data: bytes) -> list[BlockEntry]:
    """The index of a whole object held in memory."""
    footer = decode_footer(data)
    return decode_index(data[footer.index_position : footer.index_position + footer.index_length], footer)


def check_block(entry: BlockEntry, data: bytes) -> None:
    if len(data) != entry.length or google_crc32c.value(data) != entry.crc:
        raise StreamObjectError(f"block of stream {entry.stream_id} at {entry.position}: CRC-32C mismatch")


def iter_batches(block: bytes | memoryview) -> Iterator[bytes]:
    """The batches of one block, as separate bytes objects."""
    view = memoryview(block)
    pos, end = 0, len(view)
    while pos < end:
        size = records.LOG_OVERHEAD + int.from_bytes(view[pos + 8 : pos + 12], "big", signed=True)
        if size <= records.LOG_OVERHEAD or pos + size > end:
            raise StreamObjectError(f"block batch at {pos} runs past the block end")
        yield bytes(view[pos : pos + size])
        pos += size


__all__ = [
    "BlockEntry",
    "DEFAULT_BLOCK_SIZE",
    "FOOTER_SIZE",
    "FORMAT_VERSION",
    "Footer",
    "ObjectBuilder",
    "StreamObjectError",
    "batch_meta",
    "check_block",
    "decode_footer",
    "decode_index",
    "encode_object",
    "encode_object_body",
    "iter_batches",
    "object_blocks",
    "read_index",
]
