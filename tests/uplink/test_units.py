"""Pure parts of the uplink: version negotiation, header rewrite, back-off, bandwidth, settings."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from appliance.config import load_settings
from appliance.errors import ConfigError
from appliance.kafka.records import build_batch, crc32c, decode_records, read_header, validate_batch
from appliance.uplink.bandwidth import TokenBucket
from appliance.uplink.client.backoff import Backoff
from appliance.uplink.client.batches import merge_batches, mergeable, rewrite_producer, rewrite_producer_parts
from appliance.uplink.client.errors import Handling, UnsupportedApiError, classify
from appliance.uplink.client.versions import negotiate, pick


def test_negotiation_takes_the_highest_common_version_and_drops_disjoint_apis():
    broker = [(0, 0, 9), (3, 0, 20), (18, 0, 2), (19, 0, 1), (22, 0, 5), (1, 0, 13)]
    v = negotiate(broker)
    assert v == {0: 9, 3: 12, 18: 2, 22: 5}  # CreateTopics 0-1 is below what the client speaks
    with pytest.raises(UnsupportedApiError, match="CreateTopics"):
        pick(v, 19)


def test_rewrite_changes_only_the_producer_fields_and_keeps_the_crc_valid():
    original = build_batch([(b"k1", b"v1", (("h", b"x"),)), (b"k2", None, ())], timestamp_ms=[1000, 1005],
                           base_offset=4711, producer_id=9, producer_epoch=2, base_sequence=17)
    out = rewrite_producer(original, 123456789, 7, 2_000_000_000)
    h = validate_batch(out)
    assert (h.producer_id, h.producer_epoch, h.base_sequence, h.base_offset) == (123456789, 7, 2_000_000_000, 0)
    o = read_header(original)
    assert (h.records_count, h.base_timestamp, h.max_timestamp, h.attributes) == (
        o.records_count, o.base_timestamp, o.max_timestamp, o.attributes)
    assert out[61:] == original[61:]  # the records are byte-for-byte the same
    assert [(r.key, r.value, r.headers) for r in decode_records(out)] == [
        (b"k1", b"v1", (("h", b"x"),)), (b"k2", None, ())]


def test_merging_keeps_every_record_and_its_timestamp_as_one_valid_idempotent_batch():
    parts = [
        build_batch([(b"k1", b"v1", (("h", b"x"),))], timestamp_ms=5000, base_offset=10),
        build_batch([(None, b"v2" * 300, ()), (b"k3", None, (("a", None), ("b", b"")))], timestamp_ms=[4990, 7000],
                    base_offset=11, producer_id=4, producer_epoch=0, base_sequence=3),
        build_batch([(b"k4", b"", ())], timestamp_ms=6000, base_offset=13),
    ]
    assert all(mergeable(b) for b in parts)
    out = merge_batches(parts, 77, 3, 2_147_483_000)
    h = validate_batch(out)  # the broker's own checks: CRC, lastOffsetDelta + 1 == recordsCount
    assert (h.records_count, h.last_offset_delta, h.base_offset, h.attributes) == (4, 3, 0, 0)
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (77, 3, 2_147_483_000)
    assert (h.base_timestamp, h.max_timestamp) == (5000, 7000)
    want = [(r.timestamp, r.key, r.value, r.headers) for b in parts for r in decode_records(b)]
    got = decode_records(out)
    assert [(r.timestamp, r.key, r.value, r.headers) for r in got] == want
    assert [r.offset for r in got] == [0, 1, 2, 3]
    assert merge_batches(parts, 77, 3, 5) == merge_batches(parts, 77, 3, 5)  # deterministic
    assert not mergeable(build_batch([(b"k", b"v", ())], timestamp_ms=1, attributes=1))  # gzip: sent as is
    assert not mergeable(build_batch([(b"k", b"v", ())], timestamp_ms=1, attributes=0x08))  # LogAppendTime


def test_backoff_grows_to_the_cap_with_jitter_and_resets():
    draws = iter([0.0, 1.0, 0.5, 1.0, 1.0, 1.0, 0.0])
    b = Backoff(0.1, 1.0, rand=lambda: next(draws))
    assert [round(b.next_delay(), 3) for _ in range(6)] == [0.05, 0.2, 0.3, 0.8, 1.0, 1.0]
    b.reset()
    assert b.next_delay() == pytest.approx(0.05)


def test_token_bucket_holds_the_long_run_rate():
    bucket = TokenBucket(1000, burst=100)
    now, sent = 0.0, 0
    while now < 10:
        now += bucket.reserve(250, now)
        sent += 250
    assert sent == pytest.approx(10_000 + 100 + 250, abs=250)
    assert TokenBucket(0).reserve(10**9, 0.0) == 0.0


def test_error_handling_classes():
    assert classify(0) is Handling.SUCCESS and classify(46) is Handling.SUCCESS  # duplicate = already stored
    assert classify(45) is Handling.SEQUENCE_LOST and classify(59) is Handling.SEQUENCE_LOST
    assert classify(6) is Handling.REFRESH_METADATA and classify(3) is Handling.REFRESH_METADATA
    assert classify(7) is Handling.RETRY and classify(56) is Handling.RETRY
    assert classify(47) is Handling.FENCED
    assert classify(10) is Handling.FATAL and classify(29) is Handling.FATAL


def test_uplink_settings_are_validated(tmp_path: Path):
    cfg = tmp_path / "site.toml"
    cfg.write_text('[uplink]\nenabled = true\nbootstrap = "a:9092,b:9093"\nsite = "p1"\nbandwidth = "2MiB"\n'
                   '[[uplink.forward]]\ntopic = "alarms"\npriority = 0\n[[uplink.forward]]\nprefix = "line"\n')
    s = load_settings(cfg).uplink
    assert s.bootstrap == ("a:9092", "b:9093") and s.bandwidth == 2 << 20
    assert [r.priority for r in s.forward] == [0, 10]
    assert s.forward[1].matches("line3.temp") and not s.forward[0].matches("alarms2")
    cfg.write_text('[uplink]\nenabled = true\nbootstrap = ["a:1"]\n[[uplink.forward]]\ntopic = "x"\n')
    with pytest.raises(ConfigError, match="site is not set"):
        load_settings(cfg)
    cfg.write_text('[uplink]\nenabled = true\nbootstrap = ["a:1"]\nsite = "s"\n[[uplink.forward]]\ntopic = "x"\nprefix = "y"\n')
    with pytest.raises(ConfigError, match="exactly one of"):
        load_settings(cfg)
    cfg.write_text('[uplink]\nenabled = true\nsite = "s"\n[[uplink.forward]]\ntopic = "x"\n')
    with pytest.raises(ConfigError, match="needs bootstrap"):
        load_settings(cfg)


def test_rewrite_as_parts_keeps_the_records_and_renumbers_gaps():
    plain = build_batch([(b"k1", b"v1" * 500, (("h", b"x"),)), (b"k2", None, ())], timestamp_ms=[1000, 1005],
                        base_offset=4711, producer_id=9, producer_epoch=2, base_sequence=17)
    gappy = bytearray(build_batch([(b"a", b"1", ()), (b"b", b"2", ())], timestamp_ms=1000, base_offset=50))
    struct.pack_into(">i", gappy, 23, 5)  # lastOffsetDelta 5 over 2 records: a compacted topic's batch
    struct.pack_into(">I", gappy, 17, crc32c(bytes(gappy[21:])))
    for original in (plain, bytes(gappy), memoryview(plain)):
        head, body = rewrite_producer_parts(original, 123456789, 7, 2_000_000_000)
        assert len(head) == 61
        h = validate_batch(head + body)
        assert (h.producer_id, h.producer_epoch, h.base_sequence, h.base_offset) == (123456789, 7, 2_000_000_000, 0)
        assert h.last_offset_delta == h.records_count - 1  # the gappy batch renumbered
        if original is plain:
            assert body == plain[61:]  # the records are byte-for-byte the same
