"""librdkafka (confluent-kafka) against the broker: admin, produce with every codec, groups."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.e2e.checks import assert_all_consumed_in_order

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def create_topic(bootstrap: str, name: str, partitions: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=10)
    md = admin.list_topics(name, timeout=10)
    assert len(md.topics[name].partitions) == partitions


def produce(bootstrap: str, topic: str, count: int, *, codec: str = "none", idempotent: bool = True,
            prefix: str = "") -> list[tuple[int, bytes, bytes]]:
    delivered: list[tuple[int, bytes, bytes]] = []
    errors: list[KafkaError] = []

    def on_delivery(err, msg):
        if err:
            errors.append(err)
        else:
            delivered.append((msg.partition(), msg.key(), msg.value()))

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": idempotent,
                  "compression.type": codec, "linger.ms": 5})
    for i in range(count):
        key = f"{prefix}key-{i % 7}".encode()
        p.produce(topic, key=key, value=f"{prefix}value-{i}-{codec}".encode() * 3, on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(30) == 0
    assert not errors, errors
    # Delivery callbacks arrive per partition in order; sort stably by partition to keep that order.
    return delivered


def consume_all(bootstrap: str, topic: str, expected: int, group: str | None = None,
                timeout: float = 30) -> list[tuple[int, int, bytes | None, bytes]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group or f"g-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append((msg.partition(), msg.offset(), msg.key(), msg.value()))
        if group:
            c.commit(asynchronous=False)
    finally:
        c.close()
    return out


def test_create_produce_every_codec_and_consume_in_order(appliance):
    topic = "line3.motor-current"
    create_topic(appliance.bootstrap, topic, 3)
    produced = []
    for codec in CODECS:
        produced += produce(appliance.bootstrap, topic, 200, codec=codec, prefix=codec)
    consumed = consume_all(appliance.bootstrap, topic, len(produced))
    assert_all_consumed_in_order(produced, consumed)
    assert {p for p, _, _, _ in consumed} == {0, 1, 2}


def test_consumer_group_shares_rebalances_and_resumes(appliance):
    from tests.e2e.group_scenario import run_group_scenario

    topic = "quality.measurements"
    create_topic(appliance.bootstrap, topic, 3)

    def produce_n(n: int) -> int:
        return len(produce(appliance.bootstrap, topic, n, prefix=f"{time.monotonic_ns()}-"))

    class Member:
        def __init__(self, name: str) -> None:
            self.c = Consumer({"bootstrap.servers": appliance.bootstrap, "group.id": "quality-dashboard",
                               "client.id": name, "auto.offset.reset": "earliest", "enable.auto.commit": False,
                               "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
            self.c.subscribe([topic])

        def poll(self):
            msg = self.c.poll(0.1)
            if msg is None or msg.error() is not None:
                return []
            self.c.commit(message=msg, asynchronous=False)
            return [(msg.partition(), msg.offset(), msg.key(), msg.value())]

        def assignment(self):
            return {tp.partition for tp in self.c.assignment()}

        def close(self):
            self.c.close()

    run_group_scenario(Member, produce_n)


def test_committed_offsets_survive_restart(make_appliance):
    app = make_appliance().start()
    create_topic(app.bootstrap, "changeovers", 1)
    produce(app.bootstrap, "changeovers", 10)
    first = consume_all(app.bootstrap, "changeovers", 10, group="planner")
    assert len(first) == 10
    app.stop()
    app.start()
    produced = produce(app.bootstrap, "changeovers", 5, prefix="after-")
    rest = consume_all(app.bootstrap, "changeovers", 5, group="planner")
    assert [(k, v) for _, _, k, v in rest] == [(k, v) for _, k, v in produced]


@pytest.mark.parametrize("timestamp_lookup", [True])
def test_list_offsets_earliest_latest_and_time(appliance, timestamp_lookup):
    create_topic(appliance.bootstrap, "faults", 1)
    produce(appliance.bootstrap, "faults", 20)
    c = Consumer({"bootstrap.servers": appliance.bootstrap, "group.id": "x"})
    lo, hi = c.get_watermark_offsets(TopicPartition("faults", 0), timeout=10)
    assert (lo, hi) == (0, 20)
    tps = c.offsets_for_times([TopicPartition("faults", 0, int(time.time() * 1000) + 60_000)], timeout=10)
    assert tps[0].offset == -1  # nothing that late: end
    tps = c.offsets_for_times([TopicPartition("faults", 0, 0)], timeout=10)
    assert tps[0].offset == 0
    c.close()
