"""Kafka -> MQTT positions in-process: real WAL storage and MetaStore, the real MQTT broker core.

What the broker core routes is seen through its ingest sink (RecordingSink gets every published
message, the egress's own included). A "crash" is the egress task cancelled with no commit since.
"""

from __future__ import annotations

from types import SimpleNamespace

import trio

from appliance.config import MqttOutRule, StorageSettings
from appliance.ingest.egress import POSITIONS_NS, KafkaToMqtt
from appliance.kafka.records import build_batch
from appliance.kafka.topics import TopicCatalog
from appliance.mqtt.broker import Broker
from appliance.mqtt.sink import RecordingSink
from appliance.storage.local import open_local_storage

NEVER = 3600.0  # commit interval that never comes during a test: only explicit commits land


async def _append(logs, sid: int, values: list[str]) -> None:
    batch = build_batch([(None, v.encode(), ()) for v in values], timestamp_ms=1_700_000_000_000)
    await logs.append(sid, batch, now_ms=1_700_000_000_000).durable()


async def _wait(predicate, timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


def _payloads(sink: RecordingSink) -> list[str]:
    return [m.payload.decode() for m in sink.messages]


async def test_positions_survive_a_crash_without_skipping_or_replaying_history(tmp_path):
    storage = open_local_storage(tmp_path / "data", StorageSettings(fsync=False))
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run)
        topics = TopicCatalog(storage.meta, storage.logs)
        kafka = SimpleNamespace(topics=topics, logs=storage.logs)
        live = await topics.create("live", 1)
        await _append(storage.logs, live.streams[0], ["old-1", "old-2"])  # history before the first start
        rules = [MqttOutRule("live", "out/live"), MqttOutRule("later", "out/later/{partition}")]

        # First start ever: "live" is mirrored from its end; "later" does not exist yet.
        sink = RecordingSink()
        egress = KafkaToMqtt(rules, kafka, Broker(sink=sink), meta=storage.meta, commit_interval=NEVER,
                             commit_records=1_000_000)
        crash = trio.CancelScope()
        await nursery.start(_run_in, egress, crash)
        await _append(storage.logs, live.streams[0], ["new-1"])
        later = await topics.create("later", 2)
        await _append(storage.logs, later.streams[1], ["l-1", "l-2"])
        await _wait(lambda: len(sink.messages) == 3, timeout=15)  # the rescan finds "later" within ~1 s
        assert sorted(_payloads(sink)) == ["l-1", "l-2", "new-1"]
        await egress.commit()  # positions durable: live at 3, later-1 at 2
        await _append(storage.logs, later.streams[0], ["l-0"])
        await _wait(lambda: len(sink.messages) == 4)
        crash.cancel()  # killed before the next commit

        # Restart: committed positions are resumed; "l-0" was published after the commit and
        # comes again (at least once); nothing older does, nothing newer is skipped.
        await _append(storage.logs, live.streams[0], ["new-2"])  # produced while "down"
        sink2 = RecordingSink()
        egress2 = KafkaToMqtt(rules, kafka, Broker(sink=sink2), meta=storage.meta, commit_interval=NEVER)
        stop = trio.CancelScope()
        await nursery.start(_run_in, egress2, stop)
        await _wait(lambda: len(sink2.messages) == 2)
        await trio.sleep(0.2)
        assert sorted(_payloads(sink2)) == ["l-0", "new-2"]
        assert {m.topic for m in sink2.messages} == {"out/later/0", "out/live"}
        stop.cancel()

        # A rule removed from the config: its positions are forgotten.
        assert set(storage.meta.items(POSITIONS_NS)) == {"live", "later"}
        egress3 = KafkaToMqtt(rules[:1], kafka, Broker(sink=RecordingSink()), meta=storage.meta)
        await nursery.start(_run_in, egress3, trio.CancelScope())
        assert set(storage.meta.items(POSITIONS_NS)) == {"live"}
        nursery.cancel_scope.cancel()
    await storage.close()


async def _run_in(egress: KafkaToMqtt, scope: trio.CancelScope, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    with scope:
        await egress.run(task_status=task_status)  # started once its starting points are durable


async def test_mirrored_bytes_count_as_egress_in_the_traffic_meter(tmp_path):
    from appliance.inventory.meter import TrafficMeter

    storage = open_local_storage(tmp_path / "data", StorageSettings(fsync=False))
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run)
        topics = TopicCatalog(storage.meta, storage.logs)
        meter = TrafficMeter(0.0)
        kafka = SimpleNamespace(topics=topics, logs=storage.logs, meter=meter, monotonic=lambda: 5.0)
        live = await topics.create("live", 1)
        sink = RecordingSink()
        egress = KafkaToMqtt([MqttOutRule("live", "out/live")], kafka, Broker(sink=sink))
        stop = trio.CancelScope()
        await nursery.start(_run_in, egress, stop)
        batch = build_batch([(None, b"v-%d" % i, ()) for i in range(3)], timestamp_ms=1_700_000_000_000)
        await storage.logs.append(live.streams[0], batch, now_ms=1_700_000_000_000).durable()
        await _wait(lambda: len(sink.messages) == 3)
        assert meter.totals() == {"live": (0, len(batch))}
        stop.cancel()
        nursery.cancel_scope.cancel()
