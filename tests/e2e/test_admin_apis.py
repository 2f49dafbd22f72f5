"""Topic administration through librdkafka's AdminClient: what an operator script would do."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)


def _admin(app) -> AdminClient:
    return AdminClient({"bootstrap.servers": app.bootstrap})


def test_configs_describe_alter_and_validation(appliance):
    admin = _admin(appliance)
    admin.create_topics([NewTopic("quality", 2, 1, config={"retention.ms": "86400000"})])["quality"].result(10)
    res = ConfigResource(ResourceType.TOPIC, "quality")
    configs = admin.describe_configs([res])[res].result(10)
    assert configs["retention.ms"].value == "86400000"
    assert configs["cleanup.policy"].value == "delete"
    assert configs["cleanup.policy"].is_default
    alter = ConfigResource(ResourceType.TOPIC, "quality", incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([alter])[alter].result(10)
    assert admin.describe_configs([res])[res].result(10)["retention.ms"].value == "3600000"
    # Unknown configs and bad values are refused with a message, and nothing changes.
    bad = ConfigResource(ResourceType.TOPIC, "quality", incremental_configs=[
        ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
    try:
        admin.incremental_alter_configs([bad])[bad].result(10)
        raise AssertionError("a bad value was accepted")
    except Exception as e:  # noqa: BLE001 - KafkaException carries the broker's message
        assert "retention.ms" in str(e)
    fut = admin.create_topics([NewTopic("bad-config", 1, 1, config={"no.such.config": "1"})])["bad-config"]
    try:
        fut.result(10)
        raise AssertionError("unknown topic config accepted")
    except Exception as e:  # noqa: BLE001
        assert "no.such.config" in str(e)
    assert "bad-config" not in admin.list_topics(timeout=10).topics


def test_partitions_grow_and_records_delete(appliance):
    admin = _admin(appliance)
    admin.create_topics([NewTopic("grow", 1, 1)])["grow"].result(10)
    admin.create_partitions([NewPartitions("grow", 4)])["grow"].result(10)
    assert len(admin.list_topics("grow", timeout=10).topics["grow"].partitions) == 4
    p = Producer({"bootstrap.servers": appliance.bootstrap})
    for i in range(10):
        p.produce("grow", value=f"r{i}".encode(), partition=0)
    assert p.flush(10) == 0
    admin.delete_records([TopicPartition("grow", 0, 6)])[TopicPartition("grow", 0, 6)].result(10)
    c = Consumer({"bootstrap.servers": appliance.bootstrap, "group.id": "x", "auto.offset.reset": "earliest"})
    assert c.get_watermark_offsets(TopicPartition("grow", 0), timeout=10) == (6, 10)
    c.assign([TopicPartition("grow", 0, 0)])  # below the log start: reset to earliest = 6
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 4 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    assert got == [b"r6", b"r7", b"r8", b"r9"]


def test_delete_topic_and_describe_cluster(appliance):
    admin = _admin(appliance)
    admin.create_topics([NewTopic("temp", 1, 1)])["temp"].result(10)
    admin.delete_topics(["temp"])["temp"].result(10)
    assert "temp" not in admin.list_topics(timeout=10).topics
    cluster = admin.describe_cluster().result(10)
    assert [n.id for n in cluster.nodes] == [1]
    assert cluster.controller.id == 1
    assert cluster.cluster_id
    fut = admin.create_topics([NewTopic("rf3", 1, 3)])["rf3"]
    try:
        fut.result(10)
        raise AssertionError("replication factor 3 accepted on one node")
    except Exception as e:  # noqa: BLE001
        assert "replication factor" in str(e).lower()


def test_acks_zero_and_auto_create_off(make_appliance, tmp_path):
    cfg = tmp_path / "plant.toml"
    cfg.write_text("[kafka]\nauto_create_topics = false\n")
    app = make_appliance(config=cfg).start()
    p = Producer({"bootstrap.servers": app.bootstrap, "acks": 0, "message.timeout.ms": 3000})
    errors = []
    p.produce("not-created", value=b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert errors and errors[0] is not None  # unknown topic, not auto-created
    admin = _admin(app)
    assert "not-created" not in admin.list_topics(timeout=10).topics
    admin.create_topics([NewTopic("fire-and-forget", 1, 1)])["fire-and-forget"].result(10)
    for i in range(50):
        p.produce("fire-and-forget", value=f"{i}".encode())
    p.flush(10)
    c = Consumer({"bootstrap.servers": app.bootstrap, "group.id": "x"})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if c.get_watermark_offsets(TopicPartition("fire-and-forget", 0), timeout=5)[1] == 50:
            break
        time.sleep(0.1)
    assert c.get_watermark_offsets(TopicPartition("fire-and-forget", 0), timeout=5) == (0, 50)
    c.close()
