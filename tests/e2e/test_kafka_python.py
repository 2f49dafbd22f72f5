"""kafka-python against the broker: admin, every codec, a consumer group with commits."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from tests.e2e.checks import assert_all_consumed_in_order

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]


def _produce(bootstrap: str, topic: str, count: int, codec: str | None) -> list[tuple[int, bytes, bytes]]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=codec, linger_ms=5)
    futures = []
    for i in range(count):
        key = f"cell-{i % 5}".encode()
        value = f"{codec}-{i}".encode()
        futures.append((key, value, producer.send(topic, key=key, value=value)))
    producer.flush(30)
    out = []
    for key, value, fut in futures:
        md = fut.get(timeout=10)
        out.append((md.partition, key, value))
    producer.close()
    return out


def test_kafka_python_round_trip_every_codec_and_group(appliance):
    admin = KafkaAdminClient(bootstrap_servers=appliance.bootstrap)
    admin.create_topics([NewTopic("line1.torque", num_partitions=3, replication_factor=1)])
    assert "line1.torque" in admin.list_topics()
    admin.close()
    produced = []
    for codec in CODECS:
        produced += _produce(appliance.bootstrap, "line1.torque", 60, codec)
    consumer = KafkaConsumer("line1.torque", bootstrap_servers=appliance.bootstrap, group_id="torque-reader",
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=15000)
    consumed = []
    for msg in consumer:
        consumed.append((msg.partition, msg.offset, msg.key, msg.value))
        if len(consumed) == len(produced):
            break
    consumer.commit()
    committed = {p: consumer.committed(TopicPartition("line1.torque", p)) for p in range(3)}
    consumer.close()
    assert_all_consumed_in_order(produced, consumed)
    ends = {p: max(o for pp, o, _, _ in consumed if pp == p) + 1 for p in range(3)}
    assert committed == ends


@pytest.mark.parametrize("members", [2])
def test_kafka_python_group_members_split_partitions(appliance, members):
    admin = KafkaAdminClient(bootstrap_servers=appliance.bootstrap)
    admin.create_topics([NewTopic("line2.vibration", num_partitions=3, replication_factor=1)])
    admin.close()
    consumers = [KafkaConsumer("line2.vibration", bootstrap_servers=appliance.bootstrap, group_id="vib",
                               auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=500)
                 for _ in range(members)]
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        for c in consumers:
            c.poll(timeout_ms=100)
        parts = [sorted(tp.partition for tp in c.assignment()) for c in consumers]
        if sorted(p for ps in parts for p in ps) == [0, 1, 2] and all(parts):
            break
    assert sorted(p for ps in parts for p in ps) == [0, 1, 2], parts
    assert all(parts), parts
    for c in consumers:
        c.close()


def test_kafka_python_group_rebalance_and_resume(appliance):
    from tests.e2e.group_scenario import run_group_scenario

    admin = KafkaAdminClient(bootstrap_servers=appliance.bootstrap)
    admin.create_topics([NewTopic("line4.temperature", num_partitions=3, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=appliance.bootstrap, acks="all")
    counter = iter(range(10**6))

    def produce(n: int) -> int:
        for _ in range(n):
            i = next(counter)
            producer.send("line4.temperature", key=f"k{i % 13}".encode(), value=f"t{i}".encode())
        producer.flush(30)
        return n

    class Member:
        def __init__(self, name: str) -> None:
            self.c = KafkaConsumer("line4.temperature", bootstrap_servers=appliance.bootstrap, group_id="temps",
                                   client_id=name, auto_offset_reset="earliest", enable_auto_commit=False,
                                   session_timeout_ms=6000, heartbeat_interval_ms=500, max_poll_records=20)

        def poll(self):
            batches = self.c.poll(timeout_ms=100)
            out = [(m.partition, m.offset, m.key, m.value) for msgs in batches.values() for m in msgs]
            if out:
                self.c.commit()
            return out

        def assignment(self):
            return {tp.partition for tp in self.c.assignment()}

        def close(self):
            self.c.close()

    run_group_scenario(Member, produce)
    producer.close()
