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
