"""Property tests for record batches on hostile bytes: split_batches, validate_batch, decode_records.

Only CorruptRecordError (or RecordTooLargeError for the size limit) may escape; a batch that
validates is byte-for-byte the one that was built, apart from the fields outside the CRC that the
broker owns (baseOffset, partitionLeaderEpoch); a huge recordsCount or length varint never drives
allocation.
"""

from __future__ import annotations

import random
import struct
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.errors import CorruptRecordError, RecordTooLargeError
from appliance.kafka import records
from appliance.kafka.varint import encode_varint
from tests.faults.mutate import mutate
from tests.faults.scale import knob

PROPERTY = settings(max_examples=knob("FAULTS_HYPOTHESIS_EXAMPLES"), deadline=None, derandomize=True,
                    database=None, suppress_health_check=[HealthCheck.too_slow])
ALLOWED = (CorruptRecordError, RecordTooLargeError)

record_st = st.tuples(st.none() | st.binary(max_size=40), st.none() | st.binary(max_size=200),
                      st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=8)), max_size=3))
batch_st = st.builds(
    lambda recs, ts, pid: records.build_batch(recs, timestamp_ms=ts, producer_id=pid,
                                              producer_epoch=0 if pid >= 0 else -1, base_sequence=0 if pid >= 0 else -1),
    st.lists(record_st, min_size=1, max_size=6), st.integers(0, 2**41), st.sampled_from([-1, 0, 7, 2**40]))


def _validate(data: bytes, limit: int | None = None):
    try:
        return records.validate_batch(data, limit)
    except ALLOWED:
        return None


def _decode(data: bytes):
    try:
        return records.decode_records(data)
    except CorruptRecordError:
        return None


@PROPERTY
@given(batch_st)
def test_built_batches_validate_and_decode_to_what_was_built(batch):
    h = records.validate_batch(batch)
    assert h.records_count == len(records.decode_records(batch))
    assert records.split_batches(batch * 3) and sum(map(len, records.split_batches(batch * 3))) == 3 * len(batch)


@PROPERTY
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_corrupt_record(data):
    try:
        parts = records.split_batches(data)
    except CorruptRecordError:
        parts = []
    assert sum(map(len, parts)) in (0, len(data))
    for part in parts:
        if _validate(part, 1 << 20) is not None:
            _decode(part)
    _decode(data)


@PROPERTY
@given(batch_st, st.integers(0, 2**32 - 1))
def test_mutated_batches_are_rejected_unless_only_broker_fields_changed(batch, rng_seed):
    bad = mutate(batch, random.Random(rng_seed))
    if _validate(bad, 1 << 20) is not None:
        # CRC-32C covers bytes 21..end; length and magic are checked; bytes 0-15 are the broker's.
        assert len(bad) == len(batch) and bad[16:] == batch[16:]
    _decode(bad)  # decoding an unvalidated batch must fail cleanly too
    try:
        records.split_batches(bad + batch)
    except CorruptRecordError:
        pass


def _raw_batch(records_count: int, body: bytes) -> bytes:
    tail = struct.pack(">hiqqqhii", 0, records_count - 1, 0, 0, -1, -1, -1, records_count) + body
    crc = records.crc32c(tail)
    return struct.pack(">qiibI", 0, len(tail) + 9, -1, 2, crc) + tail


def test_huge_counts_and_lengths_do_not_allocate():
    one = records.encode_record(0, 0, b"k", b"v")
    hostile = [
        _raw_batch(2**31 - 1, one),  # claims two billion records, holds one
        _raw_batch(5, encode_varint(2**62) + one),  # a record length of 2^62
        _raw_batch(1, encode_varint(20) + b"\x00\x00\x00" + encode_varint(2**40) + b"x" * 16),  # key length 2^40
        _raw_batch(1, encode_varint(9) + b"\x00\x00\x00\x02k\x02v" + encode_varint(2**31 - 1)),  # 2^31 headers
        _raw_batch(1, b"\xff" * 11),  # a varint longer than 10 bytes
    ]
    tracemalloc.start()
    try:
        for data in hostile:
            tracemalloc.reset_peak()
            assert _validate(data) is not None  # the CRC is right: only decoding can find the lie
            assert _decode(data) is None
            assert tracemalloc.get_traced_memory()[1] < 64 << 10
    finally:
        tracemalloc.stop()


def test_size_limit_is_message_too_large_not_corrupt():
    batch = records.build_batch([(None, b"x" * 2000, [])], timestamp_ms=1)
    try:
        records.validate_batch(batch, 1000)
    except RecordTooLargeError:
        pass
    else:
        raise AssertionError("a 2 KB batch passed a 1000-byte limit")
