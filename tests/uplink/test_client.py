"""The uplink's Kafka client against a real appliance process as the cloud."""

from __future__ import annotations

import trio
from confluent_kafka import Consumer

from appliance.kafka.records import build_batch, validate_batch
from appliance.uplink.client import open_kafka_client
from appliance.uplink.client.batches import rewrite_producer
from appliance.uplink.client.errors import ConnectionLostError
from appliance.uplink.client.versions import CLIENT_VERSIONS
from tests.harness import free_port
from tests.uplink.helpers import read_topic, watermarks


def _batch(n: int, tag: str) -> bytes:
    # As a local device producer stored it: its own producer id/epoch/sequence.
    return build_batch([(f"k{i}".encode(), f"{tag}-{i}".encode(), ()) for i in range(n)], timestamp_ms=1_700_000_000_000,
                       producer_id=77, producer_epoch=3, base_sequence=40)


async def test_bootstrap_skips_dead_addresses_and_negotiates_the_highest_common_versions(appliance):
    dead = f"127.0.0.1:{free_port()}"
    async with open_kafka_client([dead, appliance.bootstrap], connect_timeout=2) as client:
        conn = await client.bootstrap()
        assert conn.address == appliance.bootstrap
        # Millstream advertises Produce 3-11, Metadata 0-12, InitProducerId 0-5, CreateTopics 0-7.
        assert conn.conn.versions == {0: 11, 3: 12, 18: CLIENT_VERSIONS[18][1], 19: 7, 22: 5}
        md = await client.metadata(["missing-topic"])
        assert md.topics["missing-topic"].error == 3  # no auto-creation by the uplink's Metadata
        assert md.brokers == {1: ("127.0.0.1", appliance.kafka_port)}


async def test_idempotent_produce_resend_is_deduplicated_and_records_are_untouched(appliance):
    async with open_kafka_client([appliance.bootstrap]) as client:
        created = await client.create_topics([("site.alarms", 2, -1)])
        assert created == {"site.alarms": (0, None)}
        md = await client.metadata(["site.alarms"])
        leader = md.leader("site.alarms", 1)
        pid, epoch = await client.init_producer_id()
        first = rewrite_producer(_batch(5, "a"), pid, epoch, 0)
        validate_batch(first)  # CRC recomputed over the rewritten header
        second = rewrite_producer(_batch(3, "b"), pid, epoch, 5)
        for batch in (first, first, second, first, second):  # resends of the last batches
            results, _ = await client.produce(leader, {("site.alarms", 1): batch})
            assert results[("site.alarms", 1)].error == 0
        # A gap in the sequence is refused, not stored.
        results, _ = await client.produce(leader, {("site.alarms", 1): rewrite_producer(_batch(1, "c"), pid, epoch, 99)})
        assert results[("site.alarms", 1)].error == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
        # An epoch bump restarts sequences at 0.
        pid2, epoch2 = await client.init_producer_id(pid, epoch)
        results, _ = await client.produce(leader, {("site.alarms", 1): rewrite_producer(_batch(1, "d"), pid2, epoch2, 0)})
        assert results[("site.alarms", 1)].error == 0
    got = read_topic(appliance.bootstrap, "site.alarms", 9)
    assert [v for _, _, _, v in got] == [f"a-{i}".encode() for i in range(5)] + [f"b-{i}".encode() for i in range(3)] + [b"d-0"]
    assert watermarks(appliance.bootstrap, "site.alarms", 2) == [0, 9]


async def test_reconnects_after_the_cloud_restarts_and_resends_deduplicate(make_appliance):
    cloud = make_appliance("cloud", role="cloud").start()
    async with open_kafka_client([cloud.bootstrap], request_timeout=5, connect_timeout=2) as client:
        await client.create_topics([("t", 1, -1)])
        pid, epoch = await client.init_producer_id()
        batch = rewrite_producer(_batch(4, "x"), pid, epoch, 0)
        results, _ = await client.produce(None, {("t", 0): batch})
        assert results[("t", 0)].error == 0
        before = await client.bootstrap()
        await trio.to_thread.run_sync(cloud.restart)
        assert before.closed  # the reader saw the connection drop
        results, _ = await client.produce(None, {("t", 0): batch})  # reconnects on demand
        assert results[("t", 0)].error == 0  # the restarted cloud still knows the sequence: a duplicate
        assert (await client.bootstrap()) is not before
    assert watermarks(cloud.bootstrap, "t", 1) == [4]


async def test_a_broker_that_never_answers_times_out_the_request():
    async def silent(stream):
        with trio.move_on_after(5):
            while await stream.receive_some(4096):
                pass

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, silent, 0)
        port = listeners[0].socket.getsockname()[1]
        async with open_kafka_client([f"127.0.0.1:{port}"], connect_timeout=0.3) as client:
            with trio.fail_after(3):
                try:
                    await client.bootstrap()
                    raise AssertionError("expected a timeout")
                except ConnectionLostError as e:
                    assert "0.3s" in str(e) or "timed out" in str(e)
        nursery.cancel_scope.cancel()


def test_consumer_sees_original_records_and_timestamps(appliance):
    async def main():
        async with open_kafka_client([appliance.bootstrap]) as client:
            await client.create_topics([("ts", 1, -1)])
            pid, epoch = await client.init_producer_id()
            await client.produce(None, {("ts", 0): rewrite_producer(_batch(2, "t"), pid, epoch, 0)})

    trio.run(main)
    c = Consumer({"bootstrap.servers": appliance.bootstrap, "group.id": "g-ts", "auto.offset.reset": "earliest"})
    c.subscribe(["ts"])
    msgs = []
    for _ in range(40):
        m = c.poll(0.3)
        if m is not None and m.error() is None:
            msgs.append(m)
        if len(msgs) == 2:
            break
    c.close()
    assert [(m.key(), m.value(), m.timestamp()[1]) for m in msgs] == [
        (b"k0", b"t-0", 1_700_000_000_000), (b"k1", b"t-1", 1_700_000_000_000)]
