"""Forwarding a stored record batch as the uplink's own idempotent batch, without re-encoding it.

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

from appliance.kafka import compression
from appliance.kafka.records import CRC_START, HEADER_SIZE, crc32c, read_header, renumber_offsets

_PRODUCER = struct.Struct(">qhi")  # producerId, producerEpoch, baseSequence at byte 43
_PREFIX = struct.Struct(">qi")  # baseOffset, batchLength
_LEADER_EPOCH = struct.Struct(">i")
_CRC = struct.Struct(">I")


def rewrite_producer(batch: bytes | memoryview, producer_id: int, producer_epoch: int, base_sequence: int) -> bytearray:
    """A copy of `batch` as the given idempotent producer's batch starting at `base_sequence`."""
    if len(batch) < HEADER_SIZE:
        raise ValueError(f"record batch of {len(batch)} bytes is shorter than its header")
    h = read_header(batch)
    if h.records_count != h.last_offset_delta + 1:
        try:
            batch = renumber_offsets(batch, compression.decompress, compression.compress)
        except compression.CodecUnavailable:
            pass  # sent as it is: the cloud says what is wrong with it
    out = bytearray(batch)
    struct.pack_into(">q", out, 0, 0)
    _LEADER_EPOCH.pack_into(out, 12, -1)
    _PRODUCER.pack_into(out, 43, producer_id, producer_epoch, base_sequence)
    _CRC.pack_into(out, 17, crc32c(memoryview(out)[CRC_START:]))
    return out


__all__ = ["rewrite_producer"]
