"""The broker's shared state, handed to every Kafka API handler as `ctx.broker`.

It holds no sockets: the transport owns connections, storage owns data. Clocks are injected.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from appliance.config import Settings
from appliance.inventory.meter import TrafficMeter
from appliance.kafka.topics import TopicCatalog, TopicError
from appliance.logs import get_logger
from appliance.storage.ports import Storage

if TYPE_CHECKING:
    from appliance.kafka.groups import GroupCoordinator

log = get_logger("kafka")


class Broker:
    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        from appliance.kafka.groups import GroupCoordinator

        self.settings = settings
        self.kafka = settings.kafka
        self.storage = storage
        self.logs = storage.logs
        self.meta = storage.meta
        self.clock = clock
        self.monotonic = monotonic
        self.node_id = settings.node.id
        self.advertised_host = settings.kafka.node_host
        self.advertised_port = settings.kafka.listen.port  # replaced by the bound port at start
        self.cluster_id = ""
        self.topics = TopicCatalog(self.meta, self.logs)
        self.groups: GroupCoordinator = GroupCoordinator(self.meta, settings.kafka, clock=monotonic,
                                                         wall_clock_ms=self.now_ms)
        self.draining = trio.Event()  # set on SIGTERM: long polls return early
        # Bytes in (Produce, MQTT ingest) and out (Fetch) per topic, on the monotonic clock.
        self.meter = TrafficMeter(monotonic(), window_s=settings.inventory.measurement_window,
                                  bucket_s=settings.inventory.measurement_bucket)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def load(self) -> None:
        """Read the durable catalogue and group state; allocate a cluster id on first start."""
        cid = self.meta.get("cluster", "id")
        if cid is None:
            cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            await self.meta.put("cluster", "id", cid)
        self.cluster_id = cid
        self.topics.load()
        await self.groups.load()

    async def topic_for_write(self, name: str):
        """The topic, auto-created when allowed; None when it does not exist."""
        topic = self.topics.get(name)
        if topic is None and self.kafka.auto_create_topics:
            try:
                topic = await self.topics.create(name, self.kafka.num_partitions)
            except TopicError as e:
                if e.kafka_code != 36:  # created concurrently is fine
                    raise
                topic = self.topics.get(name)
        return topic
