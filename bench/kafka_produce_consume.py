"""Kafka produce/consume benchmark against a real appliance process (run by hand).

    .venv/bin/python bench/kafka_produce_consume.py [--count 200000] [--value-size 1024]

librdkafka producer, acks=all, fixed count of records; then a consumer reads them all back
(from the broker's log cache). Prints MB/s and records/s both ways, produce latency p50/p99,
and, in the same run, the raw sequential write+fsync speed of the same disk, as a ratio.
Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from tests.harness import ApplianceProcess  # noqa: E402


def disk_write_fsync_mbps(directory: Path, total: int = 256 << 20, chunk: int = 1 << 20) -> float:
    """Sequential 1 MiB writes, each followed by fsync: the disk's durable-append ceiling."""
    path = directory / "disk-probe.bin"
    buf = os.urandom(chunk)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        start = time.perf_counter()
        for _ in range(total // chunk):
            os.write(fd, buf)
            os.fsync(fd)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink()
    return total / elapsed / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=200_000)
    ap.add_argument("--value-size", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="millstream-bench-", dir=Path(__file__).resolve().parents[1] / "var")
                if (Path(__file__).resolve().parents[1] / "var").exists() else tempfile.mkdtemp())
    disk = disk_write_fsync_mbps(work)
    app = ApplianceProcess(work / "data").start()
    try:
        admin = AdminClient({"bootstrap.servers": app.bootstrap})
        admin.create_topics([NewTopic("bench", num_partitions=args.partitions, replication_factor=1)])["bench"].result(10)
        value = os.urandom(args.value_size)
        latencies: list[float] = []
        errors = 0

        def on_delivery(err, msg):
            nonlocal errors
            if err:
                errors += 1
            else:
                latencies.append(msg.latency())

        p = Producer({"bootstrap.servers": app.bootstrap, "acks": "all", "linger.ms": 5,
                      "batch.size": 1 << 20, "queue.buffering.max.kbytes": 1 << 20, "enable.idempotence": True})
        deadline = time.monotonic() + args.timeout
        start = time.perf_counter()
        for i in range(args.count):
            while True:
                try:
                    p.produce("bench", key=str(i % 64).encode(), value=value, on_delivery=on_delivery)
                    break
                except BufferError:
                    p.poll(0.005)
            if i % 1000 == 0:
                p.poll(0)
            if time.monotonic() > deadline:
                break
        p.flush(args.timeout)
        produce_s = time.perf_counter() - start
        n = len(latencies)
        mb = n * args.value_size / 1e6
        c = Consumer({"bootstrap.servers": app.bootstrap, "group.id": "bench", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False, "fetch.max.bytes": 64 << 20,
                      "max.partition.fetch.bytes": 16 << 20})
        c.assign([TopicPartition("bench", p, 0) for p in range(args.partitions)])
        got = 0
        first = None
        deadline = time.monotonic() + args.timeout
        while got < n and time.monotonic() < deadline:
            msgs = c.consume(10000, 1.0)
            if msgs and first is None:
                first = time.perf_counter()
            got += sum(1 for m in msgs if m.error() is None)
        consume_s = time.perf_counter() - (first or time.perf_counter())
        c.close()
        lat = sorted(latencies)
        print(f"records={n} value_size={args.value_size} errors={errors} partitions={args.partitions}")
        print(f"produce: {mb / produce_s:.1f} MB/s, {n / produce_s:,.0f} records/s, "
              f"latency p50={statistics.median(lat) * 1000:.1f} ms p99={lat[int(len(lat) * 0.99) - 1] * 1000:.1f} ms")
        print(f"consume: {got * args.value_size / 1e6 / consume_s:.1f} MB/s, {got / consume_s:,.0f} records/s")
        print(f"disk sequential write+fsync (1 MiB chunks): {disk:.1f} MB/s; produce/disk ratio = {mb / produce_s / disk:.2f}")
    finally:
        app.stop()


if __name__ == "__main__":
    main()
