"""A fixed, deterministic admin source for snapshot tests: the same figures on every call."""

from __future__ import annotations

from appliance.admin.client import AdminAPIError
from appliance.admin.models import (
    GroupInfo,
    GroupMember,
    KafkaCounters,
    Listener,
    PartitionInfo,
    PartitionLag,
    Status,
    StorageInfo,
    TopicInfo,
)
from tui.panes import Rates

DEFAULTS = {"cleanup.policy": "delete", "max.message.bytes": "1048588", "message.timestamp.type": "CreateTime",
            "retention.bytes": "-1", "retention.ms": "604800000"}

UPTIME = 3 * 86400 + 3723.0
RECORDS = 1_284_000
STORED = 96_000_000


def status() -> Status:
    return Status(
        role="plant", version="0.1.0", node_id=1, cluster_id="snapshot-cluster", uptime_s=UPTIME,
        listeners=[Listener("kafka", "0.0.0.0:9092"), Listener("admin", "127.0.0.1:9644")],
        health="warning", warnings=["WAL uses 83% of its disk budget (7.1 of 8.6 GB); producers are pushed back at 100%"],
        topics=3, partitions=7, records_total=RECORDS, stored_bytes=STORED,
        kafka=KafkaCounters(connections=4, requests_total=52_310, errors_total=1),
    )


def storage() -> StorageInfo:
    return StorageInfo(wal_bytes=7_130_000_000, wal_segments=107, unuploaded_bytes=7_130_000_000,
                       durable_appends=40_211, fsyncs=9_877, last_error=None, wal_budget_bytes=8 << 30,
                       streams=8, stored_bytes=STORED)


def topics() -> list[TopicInfo]:
    def parts(*hws: int) -> list[PartitionInfo]:
        return [PartitionInfo(i, 10 + i, 0, hw, hw, hw * 75) for i, hw in enumerate(hws)]

    return [
        TopicInfo("plant1.line3.alarms", "00000000-0000-0000-0000-000000000001", parts(120),
                  {**DEFAULTS, "retention.ms": "2592000000"}, ["retention.ms"]),
        TopicInfo("plant1.line3.telemetry", "00000000-0000-0000-0000-000000000002", parts(400_000, 398_211, 401_120, 84_549),
                  {**DEFAULTS, "retention.ms": "86400000"}, ["retention.ms"]),
        TopicInfo("plant1.mes.orders", "00000000-0000-0000-0000-000000000003", parts(0, 0),
                  {**DEFAULTS, "cleanup.policy": "compact"}, ["cleanup.policy"]),
    ]


def groups() -> list[GroupInfo]:
    return [
        GroupInfo("historian", "Stable", "consumer", "range", 4,
                  [GroupMember("historian-1-4f0c", "historian-1", "/10.1.3.20")],
                  [PartitionLag("plant1.line3.telemetry", p, hw - lag, hw, lag)
                   for p, (hw, lag) in enumerate([(400_000, 0), (398_211, 12), (401_120, 3_400), (84_549, 0)])]),
        GroupInfo("mes-orders", "Empty", "consumer", "", 9, [],
                  [PartitionLag("plant1.mes.orders", 0, 0, 0, 0)]),
    ]


def history() -> Rates:
    """A minute of samples ending just before `status()`: a steady flow with one burst."""
    rates = Rates()
    per_s = [800 + (300 if 20 <= i < 26 else 0) + (i % 5) * 20 for i in range(60)]
    records, stored = RECORDS - sum(per_s), STORED - 75 * sum(per_s)
    for i, n in enumerate(per_s):
        rates.add(Status(**{**status().__dict__, "uptime_s": UPTIME - 60 + i, "records_total": records,
                            "stored_bytes": stored}))
        records += n
        stored += 75 * n
    return rates


class FixedSource:
    url = "http://127.0.0.1:9644"

    async def status(self) -> Status:
        return status()

    async def storage(self) -> StorageInfo:
        return storage()

    async def topics(self) -> list[TopicInfo]:
        return topics()

    async def groups(self) -> list[GroupInfo]:
        return groups()

    async def create_topic(self, name, partitions=None, configs=None) -> TopicInfo:
        raise AdminAPIError(409, f"topic {name!r} already exists")

    async def delete_topic(self, name) -> None:
        return None

    async def alter_topic(self, name, configs=None, partitions=None) -> TopicInfo:
        return topics()[0]

    async def close(self) -> None:
        return None
