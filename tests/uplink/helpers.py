"""Two appliances on loopback (a cloud, and a plant whose [uplink] points at it) and checks on
what arrived in the cloud."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from tests.harness import ApplianceProcess


def plant_config(path: Path, cloud_bootstrap: str, forward: list[Mapping], **uplink) -> Path:
    """Write a plant site config with an enabled [uplink] section."""
    settings = {"enabled": True, "bootstrap": [cloud_bootstrap], "site": "plant1", "create_topics": True,
                "reconnect_backoff": "50ms", "reconnect_backoff_max": "500ms", "request_timeout": "5s",
                "connect_timeout": "2s", **uplink}
    lines = ["[uplink]"]
    for k, v in settings.items():
        lines.append(f"{k} = {_toml(v)}")
    for rule in forward:
        lines.append("[[uplink.forward]]")
        lines += [f"{k} = {_toml(v)}" for k, v in rule.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return '"' + str(v) + '"'


def start_pair(make_appliance, tmp_path: Path, forward: list[Mapping], **uplink) -> tuple[ApplianceProcess, ApplianceProcess]:
    cloud = make_appliance("cloud", role="cloud").start()
    cfg = plant_config(tmp_path / "plant.toml", cloud.bootstrap, forward, **uplink)
    plant = make_appliance("plant", config=cfg).start()
    return plant, cloud


def produce(bootstrap: str, topic: str, count: int, *, prefix: str = "", partitions: int | None = None,
            value_size: int = 0) -> list[tuple[int, bytes, bytes]]:
    """Idempotent acks=all produce; (partition, key, value) in per-partition delivery order."""
    delivered: list[tuple[int, bytes, bytes]] = []
    errors = []

    def on_delivery(err, msg):
        if err:
            errors.append(err)
        else:
            delivered.append((msg.partition(), msg.key(), msg.value()))

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    pad = b"x" * value_size
    for i in range(count):
        kwargs = {"partition": i % partitions} if partitions else {}
        p.produce(topic, key=f"{prefix}k{i % 11}".encode(), value=f"{prefix}{topic}-{i}-".encode() + pad,
                  on_delivery=on_delivery, **kwargs)
        if i % 500 == 0:
            p.poll(0)
    assert p.flush(30) == 0
    assert not errors, errors
    return delivered


def watermarks(bootstrap: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"wm-{uuid.uuid4()}"})
    try:
        out = []
        for p in range(partitions):
            try:
                out.append(c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1])
            except Exception:  # topic not there yet
                out.append(0)
        return out
    finally:
        c.close()


def wait_for_count(bootstrap: str, topic: str, partitions: int, expected: int, timeout: float = 30) -> int:
    """Wait until the cloud topic holds `expected` records, then make sure no more arrive."""
    deadline = time.monotonic() + timeout
    total = 0
    while time.monotonic() < deadline:
        total = sum(watermarks(bootstrap, topic, partitions))
        if total >= expected:
            time.sleep(0.7)  # a duplicate would show up as a higher watermark
            return sum(watermarks(bootstrap, topic, partitions))
        time.sleep(0.2)
    return total


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 30) -> list[tuple[int, int, bytes | None, bytes]]:
    """Everything a fresh consumer group reads from the beginning (the e2e suite's own helper)."""
    from tests.e2e.test_confluent_kafka import consume_all

    return consume_all(bootstrap, topic, expected, timeout=timeout)
