"""Forwarding stored record batches as the uplink's own idempotent batches: as they are
(`rewrite_producer`), or several small ones merged into one (`merge_batches`).

A batch stored in the plant's log still carries the producerId / producerEpoch / baseSequence of
the device or application that produced it locally (or -1 for a non-idempotent producer). Toward
the cloud the uplink is one idempotent producer of its own, so those three header fields must
name the uplink's producer id, epoch and its per-partition sequence. They sit inside the CRC'd
part of the header (bytes 43-56; the CRC-32C covers byte 21 to the end), so the CRC is computed
again: one pass of the C CRC-32C over the batch, about 10 GB/s, versus decoding and re-encoding
(and re-compressing) every record. The records, their compression, timestamps, keys, values and
headers are untouched.

Also reset, outside the CRC: baseOffset to 0 (the cloud assigns offsets) and
partitionLeaderEpoch to -1 (a producer does not know the cloud's leader epoch).

A batch of a compacted topic (`cleanup.policy=compact`) may have offset gaps (fewer records than
its offset span); a broker refuses such a batch from a producer, so its records are renumbered
0..n-1 first (the one case where the records are decoded, and recompressed).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import google_crc32c

from appliance.kafka import compression
from appliance.kafka.records import (
    CRC_START,
    HEADER,
    HEADER_SIZE,
    LOG_OVERHEAD,
    crc32c,
    read_header,
    renumber_offsets,
)
from appliance.kafka.varint import decode_varint, encode_varint

_PRODUCER = struct.Struct(">qhi")  # producerId, producerEpoch, baseSequence at byte 43
_PREFIX = struct.Struct(">qi")  # baseOffset, batchLength
_LEADER_EPOCH = struct.Struct(">i")
_CRC = struct.Struct(">I")
_ATTRS = struct.Struct(">h")
_HEAD = HEADER
_TAIL = struct.Struct(">hiqqqhii")  # attributes .. recordsCount: the CRC'd part of the header
_PREFIX_MAGIC = struct.Struct(">qiibI")  # baseOffset, batchLength, partitionLeaderEpoch, magic, crc


def rewrite_producer(batch: bytes | memoryview, producer_id: int, producer_epoch: int, base_sequence: int) -> bytearray:
    """A copy of `batch` as the given idempotent producer's batch starting at `base_sequence`."""
    head, body = rewrite_producer_parts(batch, producer_id, producer_epoch, base_sequence)
    return bytearray(head + body)


def rewrite_producer_parts(batch: bytes | memoryview, producer_id: int, producer_epoch: int,
                           base_sequence: int) -> tuple[bytes, bytes]:
    """`batch` rewritten for the given idempotent producer as (header, records), for a Produce
    request, which joins them into its frame: the records are copied once (to a bytes object the
    C CRC-32C takes), and the CRC runs over the new header's tail and the records in turn. A
    compacted topic's batch (offset gaps) is renumbered first: Kafka requires consecutive deltas."""
    if len(batch) < HEADER_SIZE:
        raise ValueError(f"record batch of {len(batch)} bytes is shorter than its header")
    h = read_header(batch)
    if h.records_count != h.last_offset_delta + 1:
        try:
            batch = renumber_offsets(batch, compression.decompress, compression.compress)
        except compression.CodecUnavailable:
            pass  # sent as it is: the cloud says what is wrong with it
    head = bytearray(batch[:HEADER_SIZE])
    struct.pack_into(">q", head, 0, 0)
    _LEADER_EPOCH.pack_into(head, 12, -1)
    _PRODUCER.pack_into(head, 43, producer_id, producer_epoch, base_sequence)
    body = bytes(batch[HEADER_SIZE:])
    _CRC.pack_into(head, 17, google_crc32c.extend(crc32c(bytes(head[CRC_START:])), body))
    return bytes(head), body


def mergeable(batch: bytes | memoryview) -> bool:
    """May this stored batch be merged with its neighbours? Only plain ones: uncompressed,
    CreateTime timestamps (a LogAppendTime batch's time is per batch), not transactional/control."""
    return len(batch) >= HEADER_SIZE and batch[16] == 2 and _ATTRS.unpack_from(batch, 21)[0] == 0


def merge_batches(batches: Sequence[bytes | memoryview], producer_id: int, producer_epoch: int,
                  base_sequence: int) -> bytearray:
    """One uncompressed batch holding every record of `batches` (all `mergeable`), in order, as the
    given idempotent producer's batch starting at `base_sequence`.

    Records are re-framed, not decoded: each record's length, timestampDelta and offsetDelta
    varints are rewritten against the merged batch (offset deltas 0..n-1, timestamps relative to the
    first batch's baseTimestamp); its attributes, key, value and headers bytes are copied as they
    are. A record's absolute timestamp, key, value and headers are therefore unchanged."""
    if not batches:
        raise ValueError("nothing to merge")
    first = _HEAD.unpack_from(batches[0], 0)
    base_ts = first[7]
    max_ts = base_ts
    body = bytearray()
    n = 0
    for batch in batches:
        view = memoryview(batch)
        h = _HEAD.unpack_from(view, 0)
        if h[5] != 0 or h[3] != 2:
            raise ValueError("only uncompressed, non-transactional CreateTime magic-2 batches merge")
        b_ts, count = h[7], h[12]
        max_ts = max(max_ts, h[8])
        end = LOG_OVERHEAD + h[1]
        pos = HEADER_SIZE
        for _ in range(count):
            length, pos = decode_varint(view, pos)
            rec_end = pos + length
            if length < 1 or rec_end > end:
                raise ValueError("record runs past its batch")
            attrs = view[pos]
            ts_delta, q = decode_varint(view, pos + 1)
            _, q = decode_varint(view, q)  # the old offsetDelta
            head = bytes([attrs]) + encode_varint(b_ts + ts_delta - base_ts) + encode_varint(n)
            body += encode_varint(len(head) + rec_end - q)
            body += head
            body += view[q:rec_end]
            pos = rec_end
            n += 1
    tail = _TAIL.pack(0, n - 1, base_ts, max_ts, producer_id, producer_epoch, base_sequence, n) + body
    return bytearray(_PREFIX_MAGIC.pack(0, len(tail) + 9, -1, 2, crc32c(tail))) + tail


__all__ = ["merge_batches", "mergeable", "rewrite_producer", "rewrite_producer_parts"]
