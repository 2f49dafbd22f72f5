"""The log-compaction planner (pure): latest record per key, tombstones, lag, delete.retention.ms."""

from __future__ import annotations

import gzip

import pytest

from appliance.kafka import records
from appliance.kafka.compression import compress
from appliance.storage.key_compaction import (
    CompactionPolicy,
    CompactionState,
    cleanable_ranges,
    compact_batches,
    is_due,
)

NOW = 1_700_000_000_000
DAY = 86_400_000


def _batch(base: int, recs: list[tuple[bytes | None, bytes | None]], *, ts: int = NOW, pid: int = -1,
           seq: int = -1, codec: int = 0) -> bytes:
    b = records.build_batch([(k, v, []) for k, v in recs], timestamp_ms=[ts + i for i in range(len(recs))],
                            base_offset=base, producer_id=pid, producer_epoch=0 if pid >= 0 else -1,
                            base_sequence=seq)
    if codec:  # the same records, compressed as a client would send them
        h = records.read_header(b)
        body = compress(codec, b[records.HEADER_SIZE:])
        b = records.rebuild_batch(b, body, h.records_count)
        attrs = bytearray(b)
        attrs[21:23] = (h.attributes | codec).to_bytes(2, "big")
        b = records.rebuild_batch(bytes(attrs), body, h.records_count)
    records.validate_batch(b)
    return b


def _view(batches: list[bytes]) -> list[tuple[int, bytes | None, bytes | None]]:
    from appliance.kafka.compression import decompress

    return [(r.offset, r.key, r.value) for b in batches for r in records.decode_records(b, decompress)]


def test_latest_value_per_key_offsets_and_batch_bounds_kept():
    batches = [
        _batch(0, [(b"a", b"a1"), (b"b", b"b1"), (b"c", b"c1")], pid=7, seq=0),
        _batch(3, [(b"a", b"a2"), (b"b", b"b2")], pid=7, seq=3),
        _batch(5, [(b"a", b"a3")], pid=7, seq=5),
    ]
    out, state, stats = compact_batches(batches, CompactionState(), CompactionPolicy(), NOW, end=6)
    assert _view(out) == [(2, b"c", b"c1"), (4, b"b", b"b2"), (5, b"a", b"a3")]
    for b in out:  # every rewritten batch is a valid magic-2 batch with its original offset span
        h = records.read_header(b)
        assert records.crc32c(memoryview(b)[records.CRC_START:]) == h.crc
        assert h.producer_id == 7 and h.base_sequence in (0, 3, 5)
    spans = [(records.read_header(b).base_offset, records.read_header(b).last_offset) for b in out]
    assert spans == [(0, 2), (3, 4), (5, 5)]  # base offsets and lastOffsetDelta preserved, counts shrink
    assert [records.read_header(b).records_count for b in out] == [1, 1, 1]
    assert out[2] == batches[2]  # untouched batch: same bytes
    assert state.clean_end == 6 and state.runs == 1 and state.bytes_before == sum(map(len, batches))
    assert stats.records_in == 6 and stats.records_out == 3


def test_batch_left_empty_disappears_and_timestamps_survive():
    batches = [_batch(0, [(b"k", b"old")], ts=NOW - 50), _batch(1, [(b"x", b"1"), (b"k", b"new")], ts=NOW - 10)]
    out, _state, _ = compact_batches(batches, CompactionState(), CompactionPolicy(), NOW, end=3)
    assert len(out) == 1
    recs = records.decode_records(out[0])
    assert [(r.offset, r.key, r.value, r.timestamp) for r in recs] == [
        (1, b"x", b"1", NOW - 10), (2, b"k", b"new", NOW - 9)]


@pytest.mark.parametrize("codec", [1, 3, 4])  # gzip, lz4, zstd: rewritten with their own codec
def test_compressed_batches_are_recompressed(codec):
    batches = [_batch(0, [(b"a", b"1"), (b"b", b"1"), (b"a", b"2")], codec=codec)]
    out, _s, _ = compact_batches(batches, CompactionState(), CompactionPolicy(), NOW, end=3)
    assert records.read_header(out[0]).compression == codec
    assert _view(out) == [(1, b"b", b"1"), (2, b"a", b"2")]
    if codec == 1:
        assert gzip.decompress(out[0][records.HEADER_SIZE:])  # a plain gzip member


def test_tombstone_kept_until_delete_retention_after_first_compaction():
    policy = CompactionPolicy(delete_retention_ms=DAY)
    batches = [_batch(0, [(b"a", b"1"), (b"b", b"1")]), _batch(2, [(b"a", None)]), _batch(3, [(b"c", b"1")])]
    out, state, stats = compact_batches(batches, CompactionState(), policy, NOW, end=4)
    assert _view(out) == [(1, b"b", b"1"), (2, b"a", None), (3, b"c", b"1")]  # the deletion is still visible
    assert state.tombstones_due_ms == NOW + DAY and stats.tombstones_dropped == 0
    # an hour before the horizon: not due (nothing dirty); at the horizon it is, for the tombstone
    assert not is_due(state, [(0, 3, 100, NOW, 1)], policy, NOW + DAY - 3_600_000)
    assert is_due(state, [(0, 3, 100, NOW, 1)], policy, NOW + DAY)
    out2, state2, _ = compact_batches(out, state, policy, NOW + DAY - 1, end=4)
    assert _view(out2) == _view(out)
    out3, state3, stats3 = compact_batches(out, state2, policy, NOW + DAY, end=4)
    assert _view(out3) == [(1, b"b", b"1"), (3, b"c", b"1")] and stats3.tombstones_dropped == 1
    assert state3.tombstones_due_ms is None and state3.horizons == []


def test_the_last_batch_is_never_emptied_so_consumers_reach_the_end():
    policy = CompactionPolicy(delete_retention_ms=0)
    batches = [_batch(0, [(b"a", b"1")]), _batch(1, [(b"a", None), (b"b", None)])]
    out, state, stats = compact_batches(batches, CompactionState(), policy, NOW, end=3)
    assert out == [batches[1]] and stats.tombstones_dropped == 0  # would leave offsets 0-2 with no batch
    assert state.horizons == [(3, NOW)] and state.tombstones_due_ms is None
    # once more data follows, the expired tombstones go (their horizon was kept)
    out, state, stats = compact_batches(out + [_batch(3, [(b"c", b"1")])], state, policy, NOW + 1, end=4)
    assert _view(out) == [(3, b"c", b"1")] and stats.tombstones_dropped == 2


def test_later_tombstone_gets_its_own_horizon():
    policy = CompactionPolicy(delete_retention_ms=1000)
    first = [_batch(0, [(b"a", None)]), _batch(1, [(b"x", b"1")])]
    out, state, _ = compact_batches(first, CompactionState(), policy, NOW, end=2)
    later = out + [_batch(2, [(b"b", None)]), _batch(3, [(b"y", b"1")])]
    out, state, _ = compact_batches(later, state, policy, NOW + 600, end=4)
    assert _view(out) == [(0, b"a", None), (1, b"x", b"1"), (2, b"b", None), (3, b"y", b"1")]
    assert state.horizons == [(2, NOW), (4, NOW + 600)] and state.tombstones_due_ms == NOW + 1000
    out, state, _ = compact_batches(out, state, policy, NOW + 1000, end=4)
    assert _view(out) == [(1, b"x", b"1"), (2, b"b", None), (3, b"y", b"1")]  # a's horizon passed, b's did not
    assert state.horizons == [(4, NOW + 600)] and state.tombstones_due_ms == NOW + 1600


def test_superseded_tombstone_and_resurrected_key():
    batches = [_batch(0, [(b"a", b"1"), (b"a", None), (b"a", b"3")])]
    out, state, _ = compact_batches(batches, CompactionState(), CompactionPolicy(), NOW, end=3)
    assert _view(out) == [(2, b"a", b"3")] and state.tombstones_due_ms is None


def test_keyless_records_and_control_batches_are_kept():
    batches = [_batch(0, [(None, b"legacy"), (b"a", b"1")]), _batch(2, [(b"a", b"2")])]
    control = bytearray(_batch(3, [(b"\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x00")]))
    control[21:23] = (records.CONTROL_BIT | records.TRANSACTIONAL_BIT).to_bytes(2, "big")
    control = records.rebuild_batch(bytes(control), bytes(control[records.HEADER_SIZE:]), 1)
    out, _s, stats = compact_batches(batches + [control], CompactionState(), CompactionPolicy(), NOW, end=4)
    assert _view(out[:2]) == [(0, None, b"legacy"), (2, b"a", b"2")] and out[2] == control
    assert stats.kept_as_is == 1


def test_min_compaction_lag_and_uplink_hold_limit_the_region():
    policy = CompactionPolicy(min_compaction_lag_ms=60_000)
    ranges = [(0, 9, 100, NOW - 120_000, 1), (10, 19, 100, NOW - 61_000, 2), (20, 29, 100, NOW - 30_000, 3),
              (30, 39, 100, NOW - 200_000, 4)]  # a later range with old timestamps does not jump the queue
    assert cleanable_ranges(ranges, NOW, policy) == 2
    assert cleanable_ranges(ranges, NOW + 30_000, policy) == 4
    assert cleanable_ranges(ranges, NOW + 30_000, policy, keep_from=15) == 1
    assert cleanable_ranges(ranges, NOW, CompactionPolicy()) == 4


def test_dirty_ratio_decides_when_a_run_is_due():
    policy = CompactionPolicy(min_cleanable_dirty_ratio=0.5)
    state = CompactionState(clean_end=20)
    clean = [(0, 9, 100, NOW, 1), (10, 19, 100, NOW, 2)]
    assert not is_due(state, clean, policy, NOW)
    assert not is_due(state, clean + [(20, 29, 150, NOW, 3)], policy, NOW)  # 150/350 dirty
    assert is_due(state, clean + [(20, 29, 250, NOW, 3)], policy, NOW)  # 250/450
    assert is_due(CompactionState(), clean, policy, NOW)  # never compacted: all dirty
    assert not is_due(CompactionState(), [], policy, NOW)


def test_state_round_trips_through_the_manifest_encoding():
    s = CompactionState(40, [(10, NOW), (40, NOW + 5)], NOW + DAY, 3, NOW + 5, 1000, 300)
    assert CompactionState.decode(s.encode()) == s
    assert CompactionState.decode(None) == CompactionState()


def test_keyless_record_detection_for_produce():
    assert records.has_keyless_record(_batch(0, [(b"a", b"1"), (None, b"2")]))
    assert not records.has_keyless_record(_batch(0, [(b"a", b"1"), (b"b", None)]))
    from appliance.kafka.compression import decompress

    assert records.has_keyless_record(_batch(0, [(None, b"x")], codec=1), decompress)


@pytest.mark.parametrize("codec", [0, 1])
def test_a_compacted_batch_forwarded_by_the_uplink_is_a_valid_producer_batch(codec):
    from appliance.uplink.client.batches import rewrite_producer

    batches = [_batch(10, [(b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"c", b"1"), (b"b", b"2")], codec=codec)]
    out, _s, _ = compact_batches(batches, CompactionState(), CompactionPolicy(), NOW, end=15)
    with pytest.raises(Exception, match="lastOffsetDelta"):
        records.validate_batch(out[0])  # as compacted: 3 records over 5 offsets
    sent = bytes(rewrite_producer(out[0], 42, 1, 7))
    h = records.validate_batch(sent)  # what the cloud broker checks on produce
    assert (h.records_count, h.last_offset_delta, h.producer_id, h.base_sequence) == (3, 2, 42, 7)
    from appliance.kafka.compression import decompress

    got = [(r.offset, r.key, r.value, r.timestamp) for r in records.decode_records(sent, decompress)]
    assert got == [(0, b"a", b"2", NOW + 2), (1, b"c", b"1", NOW + 3), (2, b"b", b"2", NOW + 4)]
