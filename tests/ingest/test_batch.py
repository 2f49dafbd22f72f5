"""The ingest batch encoder writes exactly what the general record-batch builder writes."""

from __future__ import annotations

from appliance.ingest.batch import BatchEncoder
from appliance.kafka.records import build_batch, decode_records, validate_batch


def test_same_bytes_as_build_batch_and_decodable():
    recs = [(b"k1", b"v" * 300, (("mqtt.topic", b"a/b"), ("mqtt.qos", b"1"))),
            (None, None, ()),
            (b"", b"x", (("h", None), ("isa95.path", b"acme/plant1" * 20))),
            (b"k1", b"v2", (("mqtt.topic", b"a/b"), ("mqtt.qos", b"1")))]
    stamps = [1_700_000_000_000, 1_700_000_000_050, 1_699_999_999_990, 1_700_000_009_000]
    enc = BatchEncoder()
    got = enc.build(recs, stamps)
    assert got == build_batch(recs, timestamp_ms=stamps)
    validate_batch(got)
    out = decode_records(got)
    assert [(r.key, r.value, r.timestamp, list(r.headers)) for r in out] == [
        (k, v, t, list(h)) for (k, v, h), t in zip(recs, stamps, strict=True)]
    many = [(b"key-%d" % i, b"%d" % i, ()) for i in range(300)]
    assert enc.build(many, [5] * 300) == build_batch(many, timestamp_ms=5)


def test_shared_key_and_header_objects_and_large_values():
    # The encoder reuses the encoded key/headers of consecutive records holding the same objects;
    # values longer than its varint table take the general path.
    key = b"device-7"
    headers = (("mqtt.topic", b"plant/line/7"), ("mqtt.qos", b"1"))
    recs = [(key, b"a" * n, headers) for n in (0, 63, 64, 8191, 8192, 20000)]
    recs.insert(3, (b"other", b"b", (("x", b"y"),)))
    stamps = [1000 + 3000 * i for i in range(len(recs))]
    got = BatchEncoder().build(recs, stamps)
    assert got == build_batch(recs, timestamp_ms=stamps)
