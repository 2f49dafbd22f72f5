"""The forwarder in-process (real WAL storage on disk) against a real cloud appliance process.

Fault injection: a MetaStore wrapper that stops checkpoints from landing, to reproduce what a
crash between "the cloud acknowledged" and "the cursor is durable" leaves behind.
"""

from __future__ import annotations

import dataclasses

import trio
from confluent_kafka.admin import AdminClient, NewTopic

from appliance.config import ForwardRule, StorageSettings, UplinkSettings
from appliance.kafka.records import build_batch
from appliance.kafka.topics import TopicCatalog
from appliance.storage.local import open_local_storage
from appliance.uplink.forwarder import NAMESPACE, Forwarder
from appliance.uplink.lanes import MAX_UNCONFIRMED
from tests.uplink.helpers import read_topic, watermarks


class StallingMeta:
    """Passes through to the real MetaStore until `stall` is set; then writes hang forever."""

    def __init__(self, meta) -> None:
        self.meta = meta
        self.stall = False

    def get(self, ns, key):
        return self.meta.get(ns, key)

    def items(self, ns):
        return self.meta.items(ns)

    async def put(self, ns, key, value):
        await self.put_many(ns, {key: value})

    async def put_many(self, ns, entries):
        if self.stall:
            await trio.sleep_forever()
        await self.meta.put_many(ns, entries)

    async def allocate(self, counter, count=1):
        return await self.meta.allocate(counter, count)


def _settings(cloud, **kw) -> UplinkSettings:
    return UplinkSettings(enabled=True, bootstrap=(cloud.bootstrap,), site="s", create_topics=True,
                          forward=(ForwardRule("line1.x", None, "{site}.{topic}", 0),),
                          reconnect_backoff=0.05, reconnect_backoff_max=0.3, request_timeout=5, connect_timeout=2, **kw)


class CursorStallingMeta(StallingMeta):
    """Lets plan-only checkpoints land, hangs any that would move a lane's cursor past `hold`."""

    def __init__(self, meta, hold: int) -> None:
        super().__init__(meta)
        self.hold = hold

    async def put_many(self, ns, entries):
        if any(k.startswith("lane.") and v and v["cursor"] > self.hold for k, v in entries.items()):
            await trio.sleep_forever()
        await self.meta.put_many(ns, entries)


async def _append(logs, sid: int, batches: int, per_batch: int, tag: str) -> None:
    for b in range(batches):
        batch = build_batch([(b"k", f"{tag}-{b * per_batch + i}".encode(), ()) for i in range(per_batch)],
                            timestamp_ms=1_700_000_000_000)
        await logs.append(sid, batch, now_ms=1_700_000_000_000).durable()


async def _wait(predicate, timeout: float = 15) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


async def test_resend_after_losing_the_checkpoints_is_deduplicated_by_the_cloud(tmp_path, appliance):
    storage = open_local_storage(tmp_path / "plant", StorageSettings(fsync=False))
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run)
        topics = TopicCatalog(storage.meta, storage.logs)
        topic = await topics.create("line1.x", 1)
        sid = topic.streams[0]
        await _append(storage.logs, sid, 10, 10, "a")

        meta = StallingMeta(storage.meta)
        fw = Forwarder(_settings(appliance, merge_bytes=0), storage.logs, meta, topics)  # single batches
        with trio.CancelScope() as crash:
            nursery.start_soon(fw.run)
            await _wait(lambda: sid in fw.lanes and fw.lanes[sid].cursor == 100)
            meta.stall = True  # from now on no checkpoint lands
            await _append(storage.logs, sid, 20, 10, "b")
            lane = fw.lanes[sid]
            # The lane sends MAX_UNCONFIRMED batches past the durable cursor, then waits.
            await _wait(lambda: lane.acked == 100 + 10 * MAX_UNCONFIRMED)
            await trio.sleep(0.3)
            assert lane.frontier == lane.acked and lane.cursor == 100
            crash.cancel()  # the crash: acknowledged batches whose checkpoint never landed
        nursery.cancel_scope.cancel()
    storage.abandon()
    cloud_had = await trio.to_thread.run_sync(watermarks, appliance.bootstrap, "s.line1.x", 1)
    assert cloud_had == [100 + 10 * MAX_UNCONFIRMED]
    # Restart from what is on disk: durable cursor 100, the cloud already has 5 batches more.
    storage = open_local_storage(tmp_path / "plant", StorageSettings(fsync=False))
    assert storage.meta.get(NAMESPACE, f"lane.{sid}")["cursor"] == 100
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run)
        topics = TopicCatalog(storage.meta, storage.logs)
        topics.load()
        fw = Forwarder(_settings(appliance), storage.logs, storage.meta, topics)
        await nursery.start(fw.run)
        await _wait(lambda: sid in fw.lanes and fw.lanes[sid].cursor == 300)
        assert fw.producer_starts == 0  # resumed with the same producer id/epoch: resends were duplicates
        nursery.cancel_scope.cancel()
    await storage.close()
    got = await trio.to_thread.run_sync(read_topic, appliance.bootstrap, "s.line1.x", 300)
    assert [v for _, _, _, v in got] == [f"a-{i}".encode() for i in range(100)] + [f"b-{i}".encode() for i in range(200)]
    assert await trio.to_thread.run_sync(watermarks, appliance.bootstrap, "s.line1.x", 1) == [300]


async def test_merged_batches_resent_after_a_crash_are_the_same_and_deduplicated(tmp_path, appliance):
    storage = open_local_storage(tmp_path / "plant", StorageSettings(fsync=False))
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run)
        topics = TopicCatalog(storage.meta, storage.logs)
        sid = (await topics.create("line1.x", 1)).streams[0]
        await _append(storage.logs, sid, 120, 1, "a")  # one-record batches, as from a trickle of MQTT
        meta = CursorStallingMeta(storage.meta, hold=0)
        fw = Forwarder(_settings(appliance, merge_bytes=1000), storage.logs, meta, topics)
        with trio.CancelScope() as crash:
            nursery.start_soon(fw.run)
            await _wait(lambda: sid in fw.lanes and fw.lanes[sid].unacked == 0 and len(fw.lanes[sid].sent) == MAX_UNCONFIRMED)
            lane = fw.lanes[sid]
            await trio.sleep(0.3)
            assert lane.cursor == 0 and lane.acked > MAX_UNCONFIRMED and fw.merged_batches == MAX_UNCONFIRMED
            sent_before = lane.acked
            crash.cancel()  # acknowledged merged batches; only their plan is durable
        nursery.cancel_scope.cancel()
    storage.abandon()
    assert await trio.to_thread.run_sync(watermarks, appliance.bootstrap, "s.line1.x", 1) == [sent_before]
    storage = open_local_storage(tmp_path / "plant", StorageSettings(fsync=False))
    rec = storage.meta.get(NAMESPACE, f"lane.{sid}")
    assert rec["cursor"] == 0 and len(rec["plan"]) > MAX_UNCONFIRMED
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run)
        topics = TopicCatalog(storage.meta, storage.logs)
        topics.load()
        await _append(storage.logs, sid, 30, 1, "b")
        # A different merge size now: the durable plan, not the setting, decides the resent groups.
        fw = Forwarder(_settings(appliance, merge_bytes=3000), storage.logs, storage.meta, topics)
        await nursery.start(fw.run)
        await _wait(lambda: sid in fw.lanes and fw.lanes[sid].cursor == 150)
        assert fw.producer_starts == 0  # the resent groups matched what the cloud had: no sequence error
        nursery.cancel_scope.cancel()
    await storage.close()
    got = await trio.to_thread.run_sync(read_topic, appliance.bootstrap, "s.line1.x", 150)
    assert [v for _, _, _, v in got] == [f"a-{i}".encode() for i in range(120)] + [f"b-{i}".encode() for i in range(30)]
    assert await trio.to_thread.run_sync(watermarks, appliance.bootstrap, "s.line1.x", 1) == [150]


async def test_cloud_losing_the_producer_state_restarts_the_lane_under_a_new_epoch(tmp_path, appliance):
    storage = open_local_storage(tmp_path / "plant", StorageSettings(fsync=False))
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run)
        topics = TopicCatalog(storage.meta, storage.logs)
        sid = (await topics.create("line1.x", 1)).streams[0]
        await _append(storage.logs, sid, 5, 10, "a")
        fw = Forwarder(_settings(appliance), storage.logs, storage.meta, topics)
        await nursery.start(fw.run)
        lane_ready = lambda: sid in fw.lanes and fw.lanes[sid].cursor == 50  # noqa: E731
        await _wait(lane_ready)
        starts = fw.producer_starts

        def recreate() -> None:  # the cloud forgets everything about the topic and our producer
            admin = AdminClient({"bootstrap.servers": appliance.bootstrap})
            admin.delete_topics(["s.line1.x"])["s.line1.x"].result(10)
            admin.create_topics([NewTopic("s.line1.x", 1, 1)])["s.line1.x"].result(10)

        await trio.to_thread.run_sync(recreate)
        await _append(storage.logs, sid, 3, 10, "b")
        await _wait(lambda: fw.lanes[sid].cursor == 80)
        assert fw.producer_starts == starts + 1
        assert fw.status()["topics"]["line1.x"]["backlog_records"] == 0
        nursery.cancel_scope.cancel()
    await storage.close()
    got = await trio.to_thread.run_sync(read_topic, appliance.bootstrap, "s.line1.x", 30)
    assert [v for _, _, _, v in got] == [f"b-{i}".encode() for i in range(30)]


async def test_status_pause_resume_and_the_retention_floor(tmp_path, make_appliance):
    cloud = make_appliance("cloud", role="cloud").start()
    storage = open_local_storage(tmp_path / "plant", StorageSettings(fsync=False))
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run)
        topics = TopicCatalog(storage.meta, storage.logs)
        sid = (await topics.create("line1.x", 1)).streams[0]
        fw = Forwarder(_settings(cloud), storage.logs, storage.meta, topics)
        await nursery.start(fw.run)
        await _wait(lambda: fw.connected and sid in fw.lanes and fw.lanes[sid].pid >= 0)
        fw.pause()
        await _append(storage.logs, sid, 4, 10, "p")
        await trio.sleep(0.5)
        st = fw.status()
        assert st["paused"] and st["topics"]["line1.x"]["backlog_records"] == 40
        assert st["topics"]["line1.x"]["backlog_bytes"] > 0
        assert fw.retention_floor(sid) == 0  # nothing forwarded: retention must keep everything
        fw.resume()
        await _wait(lambda: fw.lanes[sid].cursor == 40)
        assert fw.retention_floor(sid) == 40 and fw.retention_floors() == {sid: 40}
        st = fw.status()
        assert st["backlog_records"] == 0 and st["sent_records"] == 40 and st["connected"]
        assert st["topics"]["line1.x"]["cloud_topic"] == "s.line1.x"
        # The cloud goes away: the status says so, with the error.
        await trio.to_thread.run_sync(cloud.kill)
        await _append(storage.logs, sid, 1, 10, "q")
        await _wait(lambda: not fw.connected and fw.last_error is not None)
        nursery.cancel_scope.cancel()
    await storage.close()


def test_requests_grow_past_one_mib_only_on_a_link_that_has_carried_that_much():
    class NoMeta:
        def get(self, ns, key):
            return None

    now = [100.0]
    settings = UplinkSettings(enabled=True, bootstrap=("127.0.0.1:1",), site="s", request_timeout=30,
                              forward=(ForwardRule("line1.x", None, "{site}.{topic}", 0),))
    fw = Forwarder(settings, None, NoMeta(), None, clock=lambda: now[0])
    assert settings.max_request_bytes == 4 << 20
    assert fw._request_limit(now[0]) == 1 << 20  # nothing sent yet this session
    fw._session_sent_at, fw._session_sent_bytes = now[0], fw.sent_bytes
    fw.sent_bytes += 100_000  # a slow link: 100 kB/s would need 42 s for a 4 MiB request
    now[0] += 1.0
    assert fw._request_limit(now[0]) == 1 << 20
    fw.sent_bytes += 2_000_000  # 2.1 MB/s: 7.5 s (a quarter of request_timeout) carry 15.7 MB
    assert fw._request_limit(now[0]) == 4 << 20
    small = Forwarder(dataclasses.replace(settings, max_request_bytes=300_000), None, NoMeta(), None)
    assert small._request_limit(now[0]) == 300_000


async def test_a_backlog_on_several_partitions_goes_out_in_requests_carrying_them_together(tmp_path, appliance):
    storage = open_local_storage(tmp_path / "plant", StorageSettings(fsync=False))
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run)
        topics = TopicCatalog(storage.meta, storage.logs)
        topic = await topics.create("line1.x", 3)
        pad = b"x" * 700
        for b in range(6):  # batches of ~600 kB: a 1 MiB request holds one of them
            for p, sid in enumerate(topic.streams):
                batch = build_batch([(b"k", f"{p}-{b * 800 + i}-".encode() + pad, ()) for i in range(800)],
                                    timestamp_ms=1_700_000_000_000)
                await storage.logs.append(sid, batch, now_ms=1_700_000_000_000).durable()
        settings = dataclasses.replace(_settings(appliance), request_timeout=30)  # slow machines: room
        fw = Forwarder(settings, storage.logs, storage.meta, topics)
        await nursery.start(fw.run)
        await _wait(lambda: all(s in fw.lanes and fw.lanes[s].cursor == 4800 for s in topic.streams), timeout=60)
        assert fw.sent_batches == 18 and fw.duplicates == 0
        assert fw.produce_requests < 18  # once the link showed its speed, requests carried several partitions
        nursery.cancel_scope.cancel()
    await storage.close()
    assert await trio.to_thread.run_sync(watermarks, appliance.bootstrap, "s.line1.x", 3) == [4800] * 3
    got = await trio.to_thread.run_sync(read_topic, appliance.bootstrap, "s.line1.x", 3 * 4800)
    for p in range(3):
        values = [v for part, _, _, v in got if part == p]
        assert [v.split(b"-")[1] for v in values] == [str(i).encode() for i in range(4800)]
