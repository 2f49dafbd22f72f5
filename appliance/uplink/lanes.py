"""One lane = one local stream (topic partition) forwarded to one cloud topic partition (pure).

A lane is an independent idempotent sequence: the batches it sends carry its producer id and
epoch and consecutive sequence numbers. Positions, all local offsets:

    cursor  (durable)   everything below is in the cloud; sequence `seq` is the next batch's
    acked   (memory)    everything below was acknowledged by the cloud; >= cursor
    frontier(memory)    the next batch to send starts here; >= acked

`sent` holds every batch from `cursor` to `frontier` in order (acknowledged-but-not-yet-
checkpointed ones and in-flight ones). At most MAX_UNCONFIRMED batches may be there: see the
forwarder's docstring for why that bound makes a resend after a crash always deduplicated.

A batch sent is a *group* of consecutive stored batches: usually one, or several small ones merged
(`next_group`). The grouping of [cursor, plan_end) is fixed: the merged groups listed in `plan`,
single stored batches everywhere else. A merged group is sent only once the plan naming it is
durable (`durable_plan_end`), a single one at once; so beyond the durable plan_end only single
batches were ever sent (at most MAX_UNCONFIRMED). After a resume the first `singles_left` stored
batches past plan_end therefore go out single again, exactly as they may have gone before.

After an error the lane stops sending, waits until every outstanding request of it was answered
or failed (`outstanding == 0`), then rewinds `frontier` to `acked` (`settle`). Errors that mean
the cloud lost our sequence (or fenced our epoch) also set `needs_start`: the lane restarts at
`acked` with sequence 0 under a producer (id, epoch) that has never sent anything.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from appliance.kafka.records import read_header
from appliance.uplink.client.batches import mergeable
from appliance.uplink.client.errors import Handling

MAX_UNCONFIRMED = 5  # Kafka brokers remember the last 5 batches per producer and partition
MAX_PLANNED = 2 * MAX_UNCONFIRMED  # merged groups planned by one checkpoint write
SEND, READ, WAIT = "send", "read", "wait"
FORMAT_VERSION = 1
_SEQ_MASK = 0x7FFFFFFF


@dataclass(slots=True)
class SentBatch:
    base: int  # first local offset in the batch
    end: int  # one past its last local offset
    seq: int  # its base sequence toward the cloud
    count: int  # records in it
    size: int
    acked: bool = False
    parts: int = 1  # stored batches in it (more than one: merged)


@dataclass
class Lane:
    stream_id: int
    topic: str
    partition: int
    cloud_topic: str
    priority: int
    cursor: int
    seq: int = 0
    pid: int = -1
    epoch: int = -1
    lost: int = 0  # records local retention removed before they were forwarded
    # the durable producer (id, epoch); a lane sends only under what is durable
    durable_pid: int = -1
    durable_epoch: int = -1
    needs_start: bool = True
    # in memory
    acked: int = 0
    acked_seq: int = 0
    frontier: int = 0
    frontier_seq: int = 0
    sent: deque[SentBatch] = field(default_factory=deque)
    buffer: deque[bytes] = field(default_factory=deque)  # read-ahead, starting at frontier
    outstanding: int = 0  # sent batches whose answer has not come yet
    failed: Handling | None = None
    failures: int = 0  # consecutive, for the back-off
    retry_at: float = 0.0
    error: str | None = None
    node: int | None = None  # the cloud partition's leader
    blocked: str | None = None  # why the lane cannot send at all now (no such cloud partition, ...)
    dirty: bool = False
    oldest_ts: int | None = None  # timestamp of the first unforwarded batch, when known
    # grouping (see the module docstring); plan: merged groups [start, end) at or after the cursor
    plan: list[tuple[int, int]] = field(default_factory=list)
    plan_end: int = 0
    durable_plan_end: int = 0
    singles_left: int = 0

    def __post_init__(self) -> None:
        self.acked = self.frontier = self.cursor
        self.acked_seq = self.frontier_seq = self.seq
        self.plan_end = max(self.plan_end, self.cursor)
        self.durable_plan_end = max(self.durable_plan_end, self.cursor)

    # --- checkpoint --------------------------------------------------------------------------

    @property
    def key(self) -> str:
        return f"lane.{self.stream_id}"

    def record(self) -> dict[str, Any]:
        return {"v": FORMAT_VERSION, "topic": self.topic, "partition": self.partition, "cloud": self.cloud_topic,
                "pid": self.pid, "epoch": self.epoch, "cursor": self.acked, "seq": self.acked_seq, "lost": self.lost,
                "plan": [[a, b] for a, b in self.plan if b > self.acked], "plan_end": max(self.plan_end, self.acked)}

    @classmethod
    def from_record(cls, stream_id: int, rec: dict[str, Any], cloud_topic: str, priority: int) -> Lane:
        lane = cls(stream_id, rec["topic"], rec["partition"], cloud_topic, priority, cursor=rec["cursor"],
                   seq=rec["seq"], pid=rec["pid"], epoch=rec["epoch"], lost=rec.get("lost", 0),
                   durable_pid=rec["pid"], durable_epoch=rec["epoch"],
                   plan=[(a, b) for a, b in rec.get("plan", ())], plan_end=rec.get("plan_end", rec["cursor"]),
                   durable_plan_end=rec.get("plan_end", rec["cursor"]),
                   singles_left=MAX_UNCONFIRMED)  # what the last run may have sent past plan_end
        # Same destination and a producer id: resume it (resends deduplicate). Otherwise restart.
        lane.needs_start = rec["pid"] < 0 or rec["cloud"] != cloud_topic
        return lane

    def checkpointed(self, rec: dict[str, Any]) -> None:
        """`rec` (from record()) is durable now."""
        self.cursor, self.seq = rec["cursor"], rec["seq"]
        self.durable_pid, self.durable_epoch = rec["pid"], rec["epoch"]
        self.durable_plan_end = rec["plan_end"]
        self.plan = [g for g in self.plan if g[1] > self.cursor]
        sent = self.sent
        while sent and sent[0].acked and sent[0].end <= self.cursor:
            sent.popleft()

    # --- sending -----------------------------------------------------------------------------

    @property
    def unacked(self) -> int:
        return sum(1 for b in self.sent if not b.acked)

    def ready(self, now: float) -> bool:
        """May send its next batch (once one is buffered)."""
        return (self.failed is None and not self.needs_start and self.blocked is None and self.node is not None
                and now >= self.retry_at and len(self.sent) < MAX_UNCONFIRMED
                and (self.pid, self.epoch) == (self.durable_pid, self.durable_epoch))

    def next_group(self, merge_bytes: int) -> tuple[str, int]:
        """The group starting at `frontier` (the buffer must not be empty):
        (SEND, n): the first n buffered batches; (READ, 0): buffer more, its batches are not all
        there; (WAIT, 0): it is a merged group whose plan is not durable yet (checkpoint, then send)."""
        f = self.frontier
        if f < self.plan_end:  # fixed grouping
            group = next((g for g in self.plan if g[0] == f), None)
            if group is None:
                return SEND, 1
            n = self._batches_until(group[1])
            if n == 0:
                return READ, 0
            return (SEND, n) if group[1] <= self.durable_plan_end else (WAIT, 0)
        if self.singles_left > 0 or merge_bytes <= 0:
            return SEND, 1
        if len(self.buffer) <= MAX_UNCONFIRMED - len(self.sent):
            return SEND, 1  # room to send all of it now: merging (a checkpoint first) would only add latency
        # Free to choose: plan merged groups over what is buffered, send them once that is durable.
        planned = 0
        start, i, batches = f, 0, list(self.buffer)
        while i < len(batches) and planned < MAX_PLANNED:
            n, size = 0, 0
            while (i + n < len(batches) and mergeable(batches[i + n])
                   and size + len(batches[i + n]) <= merge_bytes):
                size += len(batches[i + n])
                n += 1
            if n < 2:
                break
            end = read_header(batches[i + n - 1]).last_offset + 1
            self.plan.append((start, end))
            self.plan_end = end
            start, i = end, i + n
            planned += 1
        if planned == 0:
            return SEND, 1
        self.dirty = True
        return WAIT, 0

    def _batches_until(self, end: int) -> int:
        for i, b in enumerate(self.buffer):
            if read_header(b).last_offset + 1 >= end:
                return i + 1
        return 0

    def take(self, n: int = 1) -> tuple[list[bytes], SentBatch]:
        """Take the next group of `n` buffered batches (as next_group said) and account for it."""
        batches = [self.buffer.popleft() for _ in range(n)]
        first, last = read_header(batches[0]), read_header(batches[-1])
        count = first.records_count if n == 1 else sum(read_header(b).records_count for b in batches)
        sb = SentBatch(first.base_offset, last.last_offset + 1, self.frontier_seq, count,
                       sum(len(b) for b in batches), parts=n)
        if sb.end > self.plan_end:  # a single batch past the fixed grouping: fixed from now on
            self.plan_end = sb.end
            self.singles_left = max(self.singles_left - 1, 0)
        self.sent.append(sb)
        self.frontier = sb.end
        self.frontier_seq = (self.frontier_seq + count) & _SEQ_MASK
        self.outstanding += 1
        return batches, sb

    @property
    def read_from(self) -> int:
        """Where the next read continues: after the buffered batches."""
        return read_header(self.buffer[-1]).last_offset + 1 if self.buffer else self.frontier

    def add_read(self, batches: list[bytes]) -> None:
        start = self.read_from
        for b in batches:
            if read_header(b).last_offset >= start:
                self.buffer.append(b)

    def on_success(self, sb: SentBatch) -> bool:
        """The cloud has `sb`. Returns False when ignored (the lane is rewinding: it resends)."""
        self.outstanding -= 1
        first = next((b for b in self.sent if not b.acked), None)
        if self.failed is not None:
            return False
        if first is not sb:  # never expected (answers are applied in send order): resend to be safe
            self.failed = Handling.RETRY
            self.error = "answer out of order"
            return False
        sb.acked = True
        self.acked, self.acked_seq = sb.end, (sb.seq + sb.count) & _SEQ_MASK
        self.dirty = True
        self.failures = 0
        self.error = None
        return True

    def on_error(self, sb: SentBatch | None, handling: Handling, message: str) -> None:
        if sb is not None:
            self.outstanding -= 1
        if self.failed is None or (handling in (Handling.SEQUENCE_LOST, Handling.FENCED) and self.failed is Handling.RETRY):
            first = next((b for b in self.sent if not b.acked), None)
            # A sequence error is only the cloud's word about our state when it concerns the first
            # unacknowledged batch; on a later one it follows from an earlier batch's failure.
            if handling in (Handling.SEQUENCE_LOST, Handling.FENCED) and sb is not first:
                handling = Handling.RETRY
            if self.failed is None or handling is not Handling.RETRY:
                self.failed = handling
        self.error = message

    def settle(self, now: float, backoff: float) -> Handling | None:
        """Once nothing is outstanding after an error: rewind to `acked`. Returns what failed."""
        failed = self.failed
        if failed is None or self.outstanding > 0:
            return None
        while self.sent and not self.sent[-1].acked:
            self.sent.pop()
        self.frontier, self.frontier_seq = self.acked, self.acked_seq
        self.buffer.clear()
        self.failed = None
        if failed in (Handling.SEQUENCE_LOST, Handling.FENCED):
            self.needs_start = True
        self.failures += 1
        self.retry_at = now + backoff
        return failed

    def can_start(self) -> bool:
        return self.needs_start and self.outstanding == 0 and self.failed is None and self.unacked == 0

    def start(self, pid: int, epoch: int) -> None:
        """Restart at `acked` with sequence 0 under a producer (id, epoch) that never sent a batch.
        Sending waits until this is checkpointed."""
        self.pid, self.epoch = pid, epoch
        self.acked_seq = self.frontier_seq = 0
        self.frontier = self.acked
        # A fresh producer: no batch of it exists anywhere, any grouping will do.
        self.plan, self.plan_end, self.durable_plan_end, self.singles_left = [], self.acked, self.acked, 0
        self.buffer.clear()
        self.sent.clear()  # the new cursor (= acked) covers them once the checkpoint lands
        self.needs_start = False
        self.dirty = True

    def skip_lost(self, log_start: int) -> int:
        """Local retention removed [acked, log_start): count it as lost and move on."""
        lost = log_start - self.acked
        self.lost += lost
        self.acked = self.frontier = log_start
        self.frontier_seq = self.acked_seq
        self.buffer.clear()
        self.plan = [g for g in self.plan if g[0] >= log_start]
        self.plan_end = max(self.plan_end, log_start)
        self.dirty = True
        return lost
