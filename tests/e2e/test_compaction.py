"""cleanup.policy=compact through real Kafka clients and a real appliance process.

confluent-kafka's AdminClient creates a compacted topic, a producer writes several values per
key (plain and lz4 batches) and tombstones; the appliance uploads quickly and runs maintenance
(and so compaction) every 300 ms. A fresh consumer from the beginning then sees the latest
value per key, tombstones until delete.retention.ms has passed, offsets increasing with gaps;
the same after a restart, and on a node that lost its whole data dir and recovers from the
bucket. A record without a key is refused with INVALID_RECORD, as Kafka does.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

TOPIC = "plant1.setpoints"
KEYS = 40
VALUES_PER_KEY = 5
DELETED = {3, 17, 29}
DELETE_RETENTION_MS = 10_000

COMPACTING_TIER = """
[storage]
fsync = false
upload_bytes = "64KiB"
upload_interval = "200ms"
stream_object_bytes = "48KiB"
wal_segment_size = "64KiB"
group_commit_bytes = "64KiB"
maintenance_interval = "300ms"
"""


def _produce(bootstrap: str) -> dict[tuple[int, bytes], bytes | None]:
    """Every key VALUES_PER_KEY times across 2 partitions, then tombstones; returns the latest per key."""
    latest: dict[tuple[int, bytes], bytes | None] = {}
    errors: list[KafkaError] = []

    def on_delivery(err, msg):
        if err:
            errors.append(err)
        else:
            latest[(msg.partition(), msg.key())] = msg.value()

    for round_ in range(VALUES_PER_KEY):
        codec = "lz4" if round_ % 2 else "none"
        p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "compression.codec": codec,
                      "linger.ms": 5})
        for k in range(KEYS):
            p.produce(TOPIC, key=b"valve-%02d" % k, value=b"round-%d-setpoint-%02d" % (round_, k) + b"." * 200,
                      partition=k % 2, on_delivery=on_delivery)
        assert p.flush(30) == 0
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for k in sorted(DELETED):
        p.produce(TOPIC, key=b"valve-%02d" % k, value=None, partition=k % 2, on_delivery=on_delivery)
    assert p.flush(30) == 0
    # data after the tombstones: a log's last batch is kept whole (as Kafka keeps its active segment)
    p.produce(TOPIC, key=b"valve-01", value=b"final", partition=1, on_delivery=on_delivery)
    assert p.flush(30) == 0
    assert not errors, errors
    return latest


def _read_from_beginning(bootstrap: str, timeout: float = 30) -> list[tuple[int, int, bytes, bytes | None]]:
    """Every record of both partitions, from the first offset up to the end."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compaction-check", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    c.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in (0, 1)])
    out: list[tuple[int, int, bytes, bytes | None]] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(at_end) < 2 and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                at_end.add(msg.partition())
                continue
            out.append((msg.partition(), msg.offset(), msg.key(), msg.value()))
    finally:
        c.close()
    assert len(at_end) == 2, "did not reach the end of both partitions"
    return out


def _read_with_kafka_python(bootstrap: str) -> list[tuple[int, int, bytes, bytes | None]]:
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000)
    parts = [KTopicPartition(TOPIC, p) for p in (0, 1)]
    c.assign(parts)
    c.seek_to_beginning(*parts)
    ends = c.end_offsets(parts)
    out: list[tuple[int, int, bytes, bytes | None]] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and any(c.position(tp) < ends[tp] for tp in parts):
            for tp, msgs in c.poll(timeout_ms=500).items():
                out.extend((tp.partition, m.offset, m.key, m.value) for m in msgs)
    finally:
        c.close()
    return out


def _check_offsets(got: list[tuple[int, int, bytes, bytes | None]]) -> None:
    for p in (0, 1):
        offsets = [o for part, o, _k, _v in got if part == p]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), f"partition {p}: {offsets}"


def _wait_compacted(bootstrap: str, expect: dict[tuple[int, bytes], bytes | None],
                    timeout: float = 60) -> list[tuple[int, int, bytes, bytes | None]]:
    """Read from the beginning until the partitions hold exactly `expect` (compaction has run)."""
    deadline = time.monotonic() + timeout
    got: list = []
    while time.monotonic() < deadline:
        got = _read_from_beginning(bootstrap)
        if len(got) == len(expect) and {(p, k): v for p, _o, k, v in got} == expect:
            return got
        time.sleep(0.5)
    raise AssertionError(f"not compacted in {timeout}s: {len(got)} records read, {len(expect)} expected")


def _storage_extra(app) -> dict:
    with urllib.request.urlopen(app.admin_url + "/api/v1/storage", timeout=10) as resp:
        return json.loads(resp.read())["extra"]


def test_compacted_topic_keeps_the_latest_value_per_key(make_appliance, tmp_path):
    config = tmp_path / "tier.toml"
    config.write_text(COMPACTING_TIER)
    bucket = (tmp_path / "bucket").as_uri()  # outside the data dir: a new disk can recover from it
    app = make_appliance("plant", config=config, extra_args=["--object-store", bucket]).start()
    admin = AdminClient({"bootstrap.servers": app.bootstrap})
    # Sealing is the tier's upload (upload_interval above), not a topic's segment.ms; a low dirty
    # ratio lets a small late write be compacted too.
    topic = NewTopic(TOPIC, num_partitions=2, replication_factor=1,
                     config={"cleanup.policy": "compact", "delete.retention.ms": str(DELETE_RETENTION_MS),
                             "min.compaction.lag.ms": "0", "min.cleanable.dirty.ratio": "0.01"})
    admin.create_topics([topic])[TOPIC].result(timeout=10)
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, TOPIC)])
    configs = next(iter(described.values())).result(timeout=10)
    assert configs["cleanup.policy"].value == "compact"
    assert configs["delete.retention.ms"].value == str(DELETE_RETENTION_MS)

    # a record without a key is refused
    errors: list[KafkaError] = []
    p = Producer({"bootstrap.servers": app.bootstrap})
    p.produce(TOPIC, value=b"no key", partition=0, on_delivery=lambda err, _m: errors.append(err))
    p.flush(30)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD, errors

    latest = _produce(app.bootstrap)
    assert len(latest) == KEYS and sum(v is None for v in latest.values()) == len(DELETED)
    # first: the latest value per key, tombstones still there (delete.retention.ms not over yet)
    got = _wait_compacted(app.bootstrap, latest)
    _check_offsets(got)
    assert max(o for _p, o, _k, _v in got) >= KEYS // 2 * VALUES_PER_KEY - 1  # offsets kept, with gaps
    # then: tombstones dropped once delete.retention.ms has passed
    alive = {pk: v for pk, v in latest.items() if v is not None}
    got = _wait_compacted(app.bootstrap, alive)
    _check_offsets(got)
    assert sorted(_read_with_kafka_python(app.bootstrap)) == sorted(got)  # another client copes with the gaps
    extra = _storage_extra(app)
    assert extra["key_compactions"] >= 2 and extra["key_compaction_bytes_out"] < extra["key_compaction_bytes_in"]

    # a restart serves the same compacted log
    assert app.stop() == 0
    app.start()
    assert sorted(_read_from_beginning(app.bootstrap)) == sorted(got)
    # a node whose data dir is gone recovers the compacted log from the bucket
    assert app.stop() == 0
    shutil.rmtree(app.data_dir)
    app.start()
    assert sorted(_read_from_beginning(app.bootstrap)) == sorted(got)
    # and the topic still takes new values for a key after the gaps
    p = Producer({"bootstrap.servers": app.bootstrap, "enable.idempotence": True})
    p.produce(TOPIC, key=b"valve-00", value=b"after-recovery", partition=0)
    assert p.flush(30) == 0
    alive[(0, b"valve-00")] = b"after-recovery"
    # the operator can also run compaction at once (whether due or not)
    req = urllib.request.Request(app.admin_url + "/api/v1/storage/compact", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert json.loads(resp.read())["compacted_streams"] >= 1
    _check_offsets(_wait_compacted(app.bootstrap, alive))
