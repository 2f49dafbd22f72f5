"""aiokafka (asyncio) against the broker: produce with every codec, consume in a group."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.e2e.checks import assert_all_consumed_in_order

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]


async def _scenario(bootstrap: str) -> tuple[list, list]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic("press.cycle", num_partitions=3, replication_factor=1)])
    await admin.close()
    produced = []
    for codec in CODECS:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=codec,
                                    enable_idempotence=True)
        await producer.start()
        try:
            for i in range(50):
                key, value = f"press-{i % 4}".encode(), f"{codec}-{i}".encode()
                md = await (await producer.send("press.cycle", key=key, value=value))
                produced.append((md.partition, key, value))
        finally:
            await producer.stop()
    consumer = AIOKafkaConsumer("press.cycle", bootstrap_servers=bootstrap, group_id="press-analytics",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    consumed = []
    try:
        async def read():
            async for msg in consumer:
                consumed.append((msg.partition, msg.offset, msg.key, msg.value))
                if len(consumed) == len(produced):
                    return
        await asyncio.wait_for(read(), 30)
        await consumer.commit()
    finally:
        await consumer.stop()
    return produced, consumed


def test_aiokafka_round_trip(appliance):
    produced, consumed = asyncio.run(_scenario(appliance.bootstrap))
    assert_all_consumed_in_order(produced, consumed)


def test_aiokafka_group_rebalance_and_resume(appliance):
    """Each aiokafka member runs on its own event loop in its own thread, as separate apps would."""
    from tests.e2e.group_scenario import run_group_scenario

    async def setup():
        admin = AIOKafkaAdminClient(bootstrap_servers=appliance.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic("line5.speed", num_partitions=3, replication_factor=1)])
        await admin.close()

    asyncio.run(setup())
    counter = iter(range(10**6))

    def produce(n: int) -> int:
        async def go():
            producer = AIOKafkaProducer(bootstrap_servers=appliance.bootstrap, acks="all")
            await producer.start()
            try:
                for _ in range(n):
                    i = next(counter)
                    await producer.send("line5.speed", key=f"k{i % 13}".encode(), value=f"s{i}".encode())
                await producer.flush()
            finally:
                await producer.stop()
        asyncio.run(go())
        return n

    class Member:
        def __init__(self, name: str) -> None:
            self.loop = asyncio.new_event_loop()

            async def make():
                c = AIOKafkaConsumer("line5.speed", bootstrap_servers=appliance.bootstrap, group_id="speeds",
                                     client_id=name, auto_offset_reset="earliest", enable_auto_commit=False,
                                     session_timeout_ms=6000, heartbeat_interval_ms=500, max_poll_records=20)
                await c.start()
                return c

            self.c = self.loop.run_until_complete(make())

        def poll(self):
            batches = self.loop.run_until_complete(self.c.getmany(timeout_ms=100))
            out = [(m.partition, m.offset, m.key, m.value) for msgs in batches.values() for m in msgs]
            if out:
                self.loop.run_until_complete(self.c.commit())
            return out

        def assignment(self):
            return {tp.partition for tp in self.c.assignment()}

        def close(self):
            self.loop.run_until_complete(self.c.stop())
            self.loop.close()

    run_group_scenario(Member, produce)
