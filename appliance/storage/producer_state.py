"""Idempotent-producer state of one stream (pure: no IO, no clock).

Per producer id we keep the epoch and the last few batches (epoch, first seq, last seq, base
offset, last offset), as Kafka does. Rules, checked before a batch gets offsets:

- producer id -1: no checks at all.
- a batch equal (same epoch, first and last sequence) to one of the last 5 of its producer is a
  duplicate: the caller answers it with the original offsets.
- an epoch older than the known one: InvalidProducerEpochError.
- a newer epoch must start at sequence 0, else OutOfOrderSequenceError.
- same epoch: the first sequence must be last sequence + 1 (wrapping at 2**31), else
  OutOfOrderSequenceError.
- an unknown producer id with a first sequence other than 0: UnknownProducerIdError. librdkafka
  (and the Java client) treat UNKNOWN_PRODUCER_ID as "the broker lost this producer's state"
  (e.g. its batches were deleted) and recover by bumping the epoch / resetting sequences, whereas
  OUT_OF_ORDER_SEQUENCE_NUMBER is fatal for a non-transactional idempotent producer.

The state is rebuilt from batch headers when the WAL is replayed (`replay`), can be cut back when
unacknowledged appends are rolled back (`truncate`), evicted below the log start (`evict_before`)
and exported/imported as plain msgpack-able values (`snapshot`/`restore`) for object-storage
trimming later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from appliance.errors import InvalidProducerEpochError, OutOfOrderSequenceError, UnknownProducerIdError

KEEP_BATCHES = 5
_SEQ_MASK = 0x7FFFFFFF

# One remembered batch: (epoch, first_seq, last_seq, base_offset, last_offset)
BatchMeta = tuple[int, int, int, int, int]


class ProducerEntry:
    __slots__ = ("epoch", "batches", "last_timestamp")

    def __init__(self, epoch: int, batches: list[BatchMeta] | None = None, last_timestamp: int = -1) -> None:
        self.epoch = epoch
        self.batches: list[BatchMeta] = batches if batches is not None else []
        self.last_timestamp = last_timestamp

    @property
    def last_sequence(self) -> int:
        for b in reversed(self.batches):
            if b[0] == self.epoch:
                return b[2]
        return -1

    @property
    def last_offset(self) -> int:
        return self.batches[-1][4] if self.batches else -1

    def as_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "last_sequence": self.last_sequence,
            "last_offset": self.last_offset,
            "last_timestamp": self.last_timestamp,
            "batches": [list(b) for b in self.batches],
        }


class ProducerStateTable:
    __slots__ = ("producers",)

    def __init__(self) -> None:
        self.producers: dict[int, ProducerEntry] = {}

    def check(self, producer_id: int, epoch: int, first_seq: int, last_delta: int) -> BatchMeta | None:
        """Validate a batch before it gets offsets. Returns the remembered batch it duplicates
        (the caller answers with its offsets), or None when the batch may be appended."""
        entry = self.producers.get(producer_id)
        last_seq = (first_seq + last_delta) & _SEQ_MASK
        if entry is None:
            if first_seq != 0:
                raise UnknownProducerIdError(f"unknown producer id {producer_id} starting at sequence {first_seq}")
            return None
        if epoch == entry.epoch:
            for b in entry.batches:
                if b[0] == epoch and b[1] == first_seq and b[2] == last_seq:
                    return b
            expected = (entry.last_sequence + 1) & _SEQ_MASK
            if first_seq != expected:
                raise OutOfOrderSequenceError(
                    f"producer {producer_id} epoch {epoch}: expected sequence {expected}, got {first_seq}"
                )
            return None
        if epoch < entry.epoch:
            raise InvalidProducerEpochError(f"producer {producer_id}: epoch {epoch} is older than {entry.epoch}")
        if first_seq != 0:
            raise OutOfOrderSequenceError(
                f"producer {producer_id}: new epoch {epoch} must start at sequence 0, got {first_seq}"
            )
        return None

    def record(
        self, producer_id: int, epoch: int, first_seq: int, last_delta: int, base: int, timestamp: int
    ) -> None:
        """Remember an appended batch (after `check`, or unchecked when replaying the WAL)."""
        entry = self.producers.get(producer_id)
        if entry is None:
            entry = self.producers[producer_id] = ProducerEntry(epoch)
        elif epoch > entry.epoch:
            entry.epoch = epoch
        batches = entry.batches
        batches.append((epoch, first_seq, (first_seq + last_delta) & _SEQ_MASK, base, base + last_delta))
        if len(batches) > KEEP_BATCHES:
            del batches[0]
        if timestamp > entry.last_timestamp:
            entry.last_timestamp = timestamp

    replay = record

    def truncate(self, end_offset: int) -> None:
        """Forget batches at or past `end_offset` (appends rolled back after a failed write).

        A producer left with no batches is forgotten; its epoch falls back to the newest
        remaining batch's. Batches already pushed out of the 5-batch window stay forgotten.
        """
        for pid in list(self.producers):
            entry = self.producers[pid]
            while entry.batches and entry.batches[-1][3] >= end_offset:
                entry.batches.pop()
            if not entry.batches:
                del self.producers[pid]
            else:
                entry.epoch = entry.batches[-1][0]

    def absorb(self, newer: ProducerStateTable, from_offset: int) -> None:
        """Add `newer`'s remembered batches at or above `from_offset` (restored snapshot +
        batches replayed from the WAL above the snapshot's end)."""
        for pid, entry in newer.producers.items():
            for epoch, first_seq, _last_seq, base, last in entry.batches:
                if base >= from_offset:
                    self.record(pid, epoch, first_seq, last - base, base, -1)
            mine = self.producers.get(pid)
            if mine is not None and entry.last_timestamp > mine.last_timestamp:
                mine.last_timestamp = entry.last_timestamp

    def evict_before(self, log_start: int) -> None:
        """Drop producers whose last batch is below the log start, as Kafka does."""
        for pid in [p for p, e in self.producers.items() if e.last_offset < log_start]:
            del self.producers[pid]

    def view(self) -> Mapping[int, dict[str, Any]]:
        return {pid: e.as_dict() for pid, e in self.producers.items()}

    def snapshot(self) -> dict[int, list[Any]]:
        return {pid: [e.epoch, e.last_timestamp, [list(b) for b in e.batches]] for pid, e in self.producers.items()}

    @classmethod
    def restore(cls, data: Mapping[int, list[Any]]) -> ProducerStateTable:
        table = cls()
        for pid, (epoch, last_ts, batches) in data.items():
            table.producers[int(pid)] = ProducerEntry(epoch, [tuple(b) for b in batches], last_ts)
        return table

    def __len__(self) -> int:
        return len(self.producers)


__all__ = ["KEEP_BATCHES", "ProducerEntry", "ProducerStateTable"]
