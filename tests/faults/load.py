"""A continuous idempotent producer and the checks that prove what it was promised.

Every record carries its send sequence number, so a reader can tell exactly which acknowledged
send it is: value = b"<seq:09d>|" + deterministic pseudo-random bytes (length varies with seq).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition


def value_for(seq: int) -> bytes:
    digest = hashlib.blake2b(seq.to_bytes(8, "big"), digest_size=64).digest()
    return f"{seq:09d}|".encode() + digest * (1 + seq % 5) + bytes([seq % 251]) * (seq % 97)


def key_for(seq: int) -> bytes | None:
    return None if seq % 11 == 0 else f"k{seq % 7}".encode()


def seq_of(value: bytes) -> int:
    return int(value[:9])


@dataclass
class Acked:
    seq: int
    partition: int
    offset: int


@dataclass
class IdempotentLoad:
    """confluent-kafka (acks=all, enable.idempotence=true) producing from its own thread."""

    bootstrap: str
    topic: str
    partitions: int
    max_in_flight_records: int = 4000
    acked: list[Acked] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sent: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="idempotent-load", daemon=True)
        self.producer = Producer({
            "bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True,
            "linger.ms": 2, "message.timeout.ms": 300_000, "request.timeout.ms": 5000,
            "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200,
            "retry.backoff.ms": 20, "socket.connection.setup.timeout.ms": 3000,
            "log_level": 2,  # connection-refused noise during restarts is expected
        })

    def _on_delivery(self, err, msg) -> None:
        with self._lock:
            if err is None:
                self.acked.append(Acked(seq_of(msg.value()), msg.partition(), msg.offset()))
            else:
                self.errors.append(f"{err.name()}: {err.str()} (fatal={err.fatal()})")

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def _run(self) -> None:
        p = self.producer
        while not self._stop.is_set():
            if self.sent - self.acked_count() - len(self.errors) >= self.max_in_flight_records:
                p.poll(0.01)
                continue
            seq = self.sent
            try:
                p.produce(self.topic, value=value_for(seq), key=key_for(seq), partition=seq % self.partitions,
                          on_delivery=self._on_delivery)
            except BufferError:
                p.poll(0.05)
                continue
            except KafkaException as e:  # fatal idempotence errors surface here
                with self._lock:
                    self.errors.append(f"produce: {e}")
                return
            self.sent += 1
            p.poll(0)

    def start(self) -> IdempotentLoad:
        self._thread.start()
        return self

    def stop(self, flush_timeout: float = 60.0) -> int:
        """Stop sending, wait for outstanding deliveries; returns records still undelivered."""
        self._stop.set()
        self._thread.join(10)
        return self.producer.flush(flush_timeout)

    def wait_for_acks(self, at_least: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.acked_count() >= at_least:
                return True
            time.sleep(0.005)
        return False


def read_partitions(bootstrap: str, topic: str, partitions: int, timeout: float = 60.0) -> dict[int, list]:
    """Every record of every partition, from offset 0 up to the high watermark seen at the start.

    Returns {partition: [(offset, key, value), ...]} in log order.
    """
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"faults-verify-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "fetch.max.bytes": 8 << 20})
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        out: dict[int, list] = {p: [] for p in range(partitions)}
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + timeout
        while len(done) < partitions:
            assert time.monotonic() < deadline, f"read timed out: {({p: len(v) for p, v in out.items()})} of {ends}"
            msg = c.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            p = msg.partition()
            if msg.offset() < ends[p]:
                out[p].append((msg.offset(), msg.key(), msg.value()))
            if msg.offset() >= ends[p] - 1:
                done.add(p)
        return out
    finally:
        c.close()


@dataclass
class Verdict:
    acknowledged: int
    lost: list[int]
    duplicates: int
    misplaced: list[str]
    out_of_order: list[str]
    corrupted: list[str]
    unacked_present: int

    def problems(self) -> list[str]:
        out = []
        if self.lost:
            out.append(f"{len(self.lost)} acknowledged records lost, e.g. seq {self.lost[:5]}")
        if self.duplicates:
            out.append(f"{self.duplicates} duplicate copies")
        out += self.misplaced[:5] + self.out_of_order[:5] + self.corrupted[:5]
        return out


def verify(acked: list[Acked], log: dict[int, list]) -> Verdict:
    """Each acknowledged send is stored exactly once, at its acknowledged partition and offset,
    byte for byte, and each partition holds its sequence numbers in send order."""
    copies: Counter[int] = Counter()
    where: dict[int, tuple[int, int]] = {}
    corrupted, out_of_order = [], []
    for p, entries in log.items():
        previous = -1
        for offset, key, value in entries:
            try:
                seq = seq_of(value)
            except (ValueError, TypeError):
                corrupted.append(f"p{p}@{offset}: unparsable value {value[:20]!r}")
                continue
            if value != value_for(seq) or key != key_for(seq):
                corrupted.append(f"p{p}@{offset}: seq {seq} differs from what was sent")
            if seq <= previous:
                out_of_order.append(f"p{p}@{offset}: seq {seq} after seq {previous}")
            previous = max(previous, seq)
            copies[seq] += 1
            where.setdefault(seq, (p, offset))
    lost, misplaced = [], []
    acked_seqs = set()
    for a in acked:
        acked_seqs.add(a.seq)
        if copies[a.seq] == 0:
            lost.append(a.seq)
        elif where[a.seq] != (a.partition, a.offset):
            misplaced.append(f"seq {a.seq} acknowledged at p{a.partition}@{a.offset}, stored at "
                             f"p{where[a.seq][0]}@{where[a.seq][1]}")
    duplicates = sum(n - 1 for n in copies.values() if n > 1)
    unacked = sum(1 for s in copies if s not in acked_seqs)
    return Verdict(len(acked), sorted(lost), duplicates, misplaced, out_of_order, corrupted, unacked)


def per_partition_counts(log: dict[int, list]) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    for p, entries in log.items():
        counts[p] = len(entries)
    return dict(counts)
