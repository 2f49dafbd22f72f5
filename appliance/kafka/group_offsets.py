"""Committed offsets: the in-memory cache and the records persisted in the MetaStore.

Namespace "group_offsets", key "group\\x00topic\\x00partition" (topic names cannot hold NUL, so a
key splits from the right even if a group id does), value a msgpack map
{"v": 1, "offset", "leader_epoch", "metadata", "commit_ts"} (commit_ts: wall-clock ms).

Offsets of deleted topics are left in place (as Kafka leaves them until they expire): an
OffsetFetch for them still answers, and DeleteGroups / OffsetDelete / expiry removes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

NAMESPACE = "group_offsets"
OFFSET_RECORD_VERSION = 1
MAX_METADATA_BYTES = 4096  # Kafka's offset.metadata.max.bytes default

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class OffsetEntry:
    offset: int
    leader_epoch: int = -1
    metadata: str | None = ""
    commit_ts: int = -1

    def record(self) -> dict[str, Any]:
        return {
            "v": OFFSET_RECORD_VERSION,
            "offset": self.offset,
            "leader_epoch": self.leader_epoch,
            "metadata": self.metadata,
            "commit_ts": self.commit_ts,
        }

    @staticmethod
    def from_record(rec: dict[str, Any]) -> OffsetEntry:
        if rec.get("v", OFFSET_RECORD_VERSION) != OFFSET_RECORD_VERSION:
            raise ValueError(f"offset record version {rec.get('v')!r} not supported")
        return OffsetEntry(
            offset=int(rec["offset"]),
            leader_epoch=int(rec.get("leader_epoch", -1)),
            metadata=rec.get("metadata", ""),
            commit_ts=int(rec.get("commit_ts", -1)),
        )


def offset_key(group_id: str, topic: str, partition: int) -> str:
    return f"{group_id}\x00{topic}\x00{partition}"


def parse_offset_key(key: str) -> tuple[str, str, int]:
    group_id, topic, partition = key.rsplit("\x00", 2)
    return group_id, topic, int(partition)


class OffsetCache:
    """Committed offsets per group, as last made durable.

    Writers take a sequence number before their durable write and apply after it; an apply
    whose sequence is older than what a partition already holds is dropped, so two commits to
    one partition racing through storage cannot leave the older one visible.
    """

    def __init__(self) -> None:
        self._groups: dict[str, dict[TopicPartition, OffsetEntry]] = {}
        self._seq: dict[tuple[str, str, int], int] = {}
        self._next_seq = 0

    def load(self, items: Iterable[tuple[str, Any]]) -> int:
        n = 0
        for key, rec in items:
            group_id, topic, partition = parse_offset_key(key)
            self._groups.setdefault(group_id, {})[(topic, partition)] = OffsetEntry.from_record(rec)
            n += 1
        return n

    def take_seq(self) -> int:
        self._next_seq += 1
        return self._next_seq

    def apply(self, group_id: str, entries: dict[TopicPartition, OffsetEntry], seq: int) -> None:
        partitions = self._groups.setdefault(group_id, {})
        for (topic, partition), entry in entries.items():
            k = (group_id, topic, partition)
            if self._seq.get(k, 0) > seq:
                continue
            self._seq[k] = seq
            partitions[(topic, partition)] = entry

    def remove(self, group_id: str, partitions: Iterable[TopicPartition]) -> None:
        held = self._groups.get(group_id)
        if held is None:
            return
        for tp in partitions:
            held.pop(tp, None)
            self._seq.pop((group_id, tp[0], tp[1]), None)
        if not held:
            del self._groups[group_id]

    def drop_group(self, group_id: str) -> list[TopicPartition]:
        """Forget every offset of a group; return the partitions it had (for the tombstones)."""
        held = self._groups.pop(group_id, {})
        for topic, partition in held:
            self._seq.pop((group_id, topic, partition), None)
        return list(held)

    def get(self, group_id: str, tp: TopicPartition) -> OffsetEntry | None:
        return self._groups.get(group_id, {}).get(tp)

    def partitions(self, group_id: str) -> dict[TopicPartition, OffsetEntry]:
        return dict(self._groups.get(group_id, {}))

    def has_offsets(self, group_id: str) -> bool:
        return bool(self._groups.get(group_id))

    def group_ids(self) -> list[str]:
        return list(self._groups)
