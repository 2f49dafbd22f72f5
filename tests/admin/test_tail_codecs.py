"""Decoding batches for the tail: every codec Kafka clients use, the Java framing of snappy, and
a clear note (never an error) for a codec that is not installed or a batch that is broken."""

from __future__ import annotations

import gzip
import struct
import sys

import lz4.frame
import snappy
import zstandard

from appliance.admin.tail import batch_records
from appliance.kafka.records import HEADER_SIZE, build_batch, crc32c

RECORDS = [(b"k1", b'{"t":1}', [("unit", b"degC")]), (None, b"\x00\xff", [])]


def compressed_batch(codec: int, compress) -> bytes:
    """A magic-2 batch whose records section is compressed, as a producer sends it."""
    plain = build_batch(RECORDS, timestamp_ms=1_700_000_000_000, base_offset=40)
    body = compress(plain[HEADER_SIZE:])
    head = bytearray(plain[:HEADER_SIZE])
    struct.pack_into(">i", head, 8, HEADER_SIZE - 12 + len(body))  # batchLength
    struct.pack_into(">h", head, 21, codec)  # attributes: the codec
    batch = bytes(head) + body
    return batch[:17] + struct.pack(">I", crc32c(batch[21:])) + batch[21:]


def xerial(data: bytes) -> bytes:
    """The Java client's snappy framing: a 16-byte header, then length-prefixed chunks."""
    header = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
    chunks = [data[i : i + 8] for i in range(0, len(data), 8)]
    return header + b"".join(struct.pack(">i", len(c)) + c for c in (snappy.compress(x) for x in chunks))


def test_every_codec_decodes_to_the_same_records():
    for codec, fn in [(1, gzip.compress), (2, snappy.compress), (2, xerial), (3, lz4.frame.compress),
                      (4, zstandard.ZstdCompressor().compress)]:
        recs = batch_records(compressed_batch(codec, fn), 40)
        assert [(r.offset, r.key_bytes, r.value_bytes, r.note) for r in recs] == [
            (40, b"k1", b'{"t":1}', None), (41, None, b"\x00\xff", None)], codec
        assert [(h.key, h.value_bytes) for h in recs[0].headers] == [("unit", b"degC")]
    assert [r.offset for r in batch_records(compressed_batch(1, gzip.compress), 41)] == [41]


def test_a_codec_that_is_not_installed_is_a_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "zstandard", None)  # `import zstandard` now fails
    (note,) = batch_records(compressed_batch(4, zstandard.ZstdCompressor().compress), 0)
    assert note.offset == 40 and note.key is None and note.value is None
    assert note.note == "compressed (zstd) batch of 2 records, offsets 40-41: zstd is not available here"


def test_a_broken_batch_is_a_note():
    (note,) = batch_records(compressed_batch(1, lambda b: b"not gzip at all"), 0)
    assert "cannot be decoded" in note.note and "40-41" in note.note


def test_a_timestamp_inside_a_big_batch_finds_its_records(appliance):
    """One large batch (linger) and a moment in its middle: the records from that moment come back,
    not the batch's first ones and not nothing."""
    from confluent_kafka import Producer

    from appliance.admin.client import AdminClient

    admin = AdminClient(appliance.admin_url)
    admin.create_topic("big", 1)
    p = Producer({"bootstrap.servers": appliance.bootstrap, "linger.ms": 200, "compression.type": "zstd"})
    t0 = 1_700_000_000_000
    for i in range(2000):
        p.produce("big", value=b"v%d" % i, partition=0, timestamp=t0 + i)
    assert p.flush(15) == 0
    got = admin.records("big", 0, timestamp=t0 + 1500, limit=10)
    assert [r.offset for r in got.records] == list(range(1500, 1510)) and got.next_offset == 1510
    page = admin.records("big", 0, offset=100, limit=10)
    assert [r.offset for r in page.records] == list(range(100, 110)) and page.next_offset == 110
