"""Stream-object and manifest formats: round trips and damage detection (pure, no IO)."""

from __future__ import annotations

import pytest

from appliance.kafka.records import decode_records, with_base_offset
from appliance.storage import stream_object as so
from appliance.storage.manifest import Manifest, ObjectEntry, StreamEntry
from tests.storage.conftest import NOW, batch


def _stream(base: int, count: int, tag: bytes) -> list[bytes]:
    return [with_base_offset(batch(2, value=tag + b"%d" % i, ts=NOW + i), base + 2 * i) for i in range(count)]


def test_object_round_trip_multi_stream_blocks():
    a, b = _stream(0, 50, b"a"), _stream(1000, 3, b"b")
    data, index = so.encode_object([(7, a), (9, b)], block_size=1000)
    assert so.read_index(data) == index
    blocks_a = [e for e in index if e.stream_id == 7]
    assert len(blocks_a) > 3  # split near block_size, never inside a batch
    assert blocks_a[0].base == 0 and blocks_a[-1].last == 99
    assert all(x.last + 1 == y.base for x, y in zip(blocks_a, blocks_a[1:], strict=False))
    got = []
    for e in index:
        block = data[e.position : e.position + e.length]
        so.check_block(e, block)
        got.extend((e.stream_id, bytes(x)) for x in so.iter_batches(block))
    assert got == [(7, x) for x in a] + [(9, x) for x in b]
    assert decode_records(got[-1][1])[0].offset == 1004
    assert [e.max_ts for e in index if e.stream_id == 9] == [NOW + 2]
    body, body_index = so.encode_object_body([(7, a), (9, b)], block_size=1000)
    assert bytes(body) == data and len(body) == len(data) and body_index == index
    assert body.parts[0] is a[0]  # the batches themselves, not copies
    tail = data[-so.FOOTER_SIZE:]
    footer = so.decode_footer(tail)
    assert footer.index_count == len(index) and data[-4:] == b"MSSO"


def test_damage_is_detected():
    data, index = so.encode_object([(1, _stream(0, 5, b"x"))])
    with pytest.raises(so.StreamObjectError, match="magic"):
        so.read_index(data[:-1] + b"X")
    bad_index = bytearray(data)
    bad_index[index[-1].position + index[-1].length] ^= 0xFF  # first byte of the index
    with pytest.raises(so.StreamObjectError, match="CRC"):
        so.read_index(bytes(bad_index))
    e = index[0]
    block = bytearray(data[e.position : e.position + e.length])
    block[70] ^= 1
    with pytest.raises(so.StreamObjectError, match="CRC"):
        so.check_block(e, bytes(block))
    with pytest.raises(so.StreamObjectError, match="version"):
        so.read_index(data[:-8] + bytes([9]) + data[-7:])


def test_manifest_round_trip():
    m = Manifest(seq=4, epoch=2, written_ms=5, next_object_id=3, next_stream_id=8,
                 streams={1: StreamEntry("orders-0", False, 10, 500), 2: StreamEntry("x-1", True, 0, 0)},
                 objects={2: ObjectEntry("data/00000000000000000002-e2.so", 123, 2, 99, {1: (10, 499, 100, NOW)})},
                 meta={"topics": {"orders": {"v": 1, "id": b"\x01" * 16}}},
                 producers={1: {77: [0, NOW, [[0, 0, 4, 490, 494]]]}})
    again = Manifest.decode(m.encode())
    assert again == m
    assert again.stream_ranges(1) == [(10, 499, 100, NOW, 2)]
