"""Kafka produce/consume benchmark against a real appliance process (run by hand).

    .venv/bin/python bench/kafka_produce_consume.py [--count 200000] [--value-size 1024] [--client kcat]

librdkafka producer, acks=all, fixed count of records; then a consumer reads them all back
(from the broker's log cache). Prints MB/s and records/s both ways, produce latency p50/p99,
and, in the same run, the raw sequential write+fsync speed of the same disk, as a ratio; the
broker process's CPU milliseconds per MB (all threads) for both produce runs and the producer
processes' own CPU per MB (Python loop + librdkafka threads), figures that a
shared, loaded machine disturbs far less than MB/s.
Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
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


def _producer_process(bootstrap: str, count: int, offset: int, args: argparse.Namespace, out, go) -> None:
    """One librdkafka producer in its own process, so the client's Python loop is not the bottleneck.
    It connects and loads metadata first, then waits for `go`: interpreter start-up, imports and
    the connection are not part of the timed window (first produce() to last delivery report)."""
    value = os.urandom(args.value_size)
    keys = [str(k).encode() for k in range(64)]
    latencies: list[float] = []
    errors = 0

    def on_delivery(err, msg):
        nonlocal errors
        if err:
            errors += 1
        else:
            latencies.append(msg.latency())

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": args.linger_ms,
                  "batch.size": args.batch_size, "batch.num.messages": 1_000_000,
                  "queue.buffering.max.kbytes": 1 << 20, "enable.idempotence": True})
    p.list_topics("bench", timeout=30)  # connected, leaders known
    out.put(("ready", os.getpid()))
    go.wait(60)
    start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    cpu0 = _cpu_seconds(os.getpid())
    deadline = time.monotonic() + args.timeout
    produce = p.produce
    for i in range(offset, offset + count):
        while True:
            try:
                produce("bench", key=keys[i % 64], value=value, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.005)
        if i % 1000 == 0:
            p.poll(0)
        if time.monotonic() > deadline:
            break
    p.flush(args.timeout)
    end = time.perf_counter()
    cpu = _cpu_seconds(os.getpid()) - cpu0  # the Python loop and librdkafka's threads
    out.put((len(latencies), errors, latencies[:: max(1, len(latencies) // 20000)], start, end, cpu))


def run_producers(bootstrap: str, args: argparse.Namespace) -> tuple[int, int, list[float], float, float]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    go = ctx.Event()
    share = args.count // args.producers
    procs = [ctx.Process(target=_producer_process, args=(bootstrap, share, k * share, args, out, go))
             for k in range(args.producers)]
    for proc in procs:
        proc.start()
    for _ in procs:
        assert out.get(timeout=120)[0] == "ready"
    go.set()
    results = [out.get(timeout=args.timeout + 60) for _ in procs]
    elapsed = max(r[4] for r in results) - min(r[3] for r in results)
    for proc in procs:
        proc.join(10)
    n = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    lat = sorted(x for r in results for x in r[2])
    return n, errors, lat, elapsed, sum(r[5] for r in results)


def run_kcat(bootstrap: str, args: argparse.Namespace, work: Path) -> tuple[int, int, float, float]:
    """(records, producers, seconds, producers' CPU seconds): `args.producers` kcat processes
    (librdkafka driven from C, no Python per record), each producing its share of `key:value`
    lines from a file with the same producer settings as the Python producers. The window runs
    from their start (connection and metadata included: a few ms) to the last one's exit, which
    kcat makes only once every record is acknowledged."""
    import random
    import resource
    import string
    import subprocess

    rnd = random.Random(1)
    value = "".join(rnd.choice(string.ascii_letters) for _ in range(args.value_size))
    share = args.count // args.producers
    source = work / "kcat-input.txt"
    with open(source, "w") as f:
        for i in range(share):
            f.write(f"{i % 64}:{value}\n")
    settings = {"acks": "all", "enable.idempotence": "true", "linger.ms": str(args.linger_ms),
                "batch.size": str(args.batch_size), "batch.num.messages": "1000000",
                "queue.buffering.max.kbytes": str(1 << 20)}
    cmd = ["kcat", "-P", "-b", bootstrap, "-t", "bench", "-K:", "-l", str(source)]
    for k, v in settings.items():
        cmd += ["-X", f"{k}={v}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, stderr=subprocess.DEVNULL) for _ in range(args.producers)]
    try:
        codes = [p.wait(args.timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    source.unlink()
    if any(codes):
        raise SystemExit(f"kcat failed: exit codes {codes}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return share * args.producers, args.producers, elapsed, cpu


def raw_pipelined_produce_mbps(bootstrap: str, value_size: int, requests: int = 200,
                               in_flight: int = 5) -> tuple[float, float]:
    """(MB/s, MB sent). The broker alone: pre-encoded 1 MiB-ish Produce requests (acks=-1), `in_flight` pipelined on one
    connection, so no client-side per-record work is measured. A diagnostic beside the librdkafka figure."""
    import socket
    import struct

    from appliance.kafka import records
    from appliance.kafka.protocol import codec
    from appliance.kafka.protocol import messages as m

    host, port = bootstrap.rsplit(":", 1)
    n = max(1, (1 << 20) // (value_size + 20))
    batch = records.build_batch([(b"k", os.urandom(value_size), [])] * n, timestamp_ms=int(time.time() * 1000))
    P = m.ProduceRequest
    frame = codec.encode_request(0, 8, 1, P(acks=-1, timeout_ms=30000, topic_data=[P.TopicProduceData(
        name="bench-raw", partition_data=[P.TopicProduceData.PartitionProduceData(index=0, records=batch)])]))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    if "bench-raw" not in admin.list_topics(timeout=10).topics:
        admin.create_topics([NewTopic("bench-raw", num_partitions=1, replication_factor=1)])["bench-raw"].result(10)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        pending = bytearray()

        def response() -> None:
            while len(pending) < 4 or len(pending) < 4 + struct.unpack_from(">i", pending)[0]:
                pending.extend(s.recv(1 << 16))
            _, resp = codec.decode_response(0, 8, bytes(pending[4 : 4 + struct.unpack_from(">i", pending)[0]]))
            del pending[: 4 + struct.unpack_from(">i", pending)[0]]
            assert resp.responses[0].partition_responses[0].error_code == 0, resp


        start = time.perf_counter()
        for _ in range(in_flight):
            s.sendall(frame)
        for i in range(requests):
            response()
            if i < requests - in_flight:
                s.sendall(frame)
        elapsed = time.perf_counter() - start
    return requests * len(batch) / elapsed / 1e6, requests * len(batch) / 1e6


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=200_000)
    ap.add_argument("--value-size", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--batch-size", type=int, default=1 << 20, help="librdkafka batch.size")
    ap.add_argument("--linger-ms", type=int, default=5)
    ap.add_argument("--producers", type=int, default=2, help="producer processes")
    ap.add_argument("--client", choices=("python", "kcat"), default="python",
                    help="librdkafka driven from Python (confluent-kafka, per-record delivery latency) "
                         "or from C (kcat: cheaper per record, no latency figure)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="millstream-bench-", dir=Path(__file__).resolve().parents[1] / "var")
                if (Path(__file__).resolve().parents[1] / "var").exists() else tempfile.mkdtemp())
    disk = disk_write_fsync_mbps(work)
    app = ApplianceProcess(work / "data").start()
    try:
        admin = AdminClient({"bootstrap.servers": app.bootstrap})
        admin.create_topics([NewTopic("bench", num_partitions=args.partitions, replication_factor=1)])["bench"].result(10)
        cpu0 = _cpu_seconds(app.proc.pid)
        if args.client == "kcat":
            n, _, produce_s, producers_cpu = run_kcat(app.bootstrap, args, work)
            errors, lat = 0, []
        else:
            n, errors, lat, produce_s, producers_cpu = run_producers(app.bootstrap, args)
        produce_cpu = _cpu_seconds(app.proc.pid) - cpu0
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
        print(f"records={n} value_size={args.value_size} errors={errors} partitions={args.partitions} "
              f"producers={args.producers} batch.size={args.batch_size} linger.ms={args.linger_ms}")
        print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}")
        latency = (f"latency p50={statistics.median(lat) * 1000:.1f} ms p99={lat[int(len(lat) * 0.99) - 1] * 1000:.1f} ms"
                   if lat else "latency n/a (kcat)")
        print(f"produce ({args.client}): {mb / produce_s:.1f} MB/s, {n / produce_s:,.0f} records/s, {latency}; "
              f"broker CPU {produce_cpu / mb * 1000:.2f} ms per MB, producers' CPU {producers_cpu / mb * 1000:.2f} ms per MB "
              f"(both together: {(produce_cpu + producers_cpu) / produce_s:.2f} of {os.cpu_count()} cores)")
        print(f"consume: {got * args.value_size / 1e6 / consume_s:.1f} MB/s, {got / consume_s:,.0f} records/s")
        print(f"disk sequential write+fsync (1 MiB chunks): {disk:.1f} MB/s; produce/disk ratio = {mb / produce_s / disk:.2f}")
        # What this machine can show at all: the producers' own CPU per MB bounds the rate on
        # these cores even if the broker cost nothing.
        ceiling = os.cpu_count() / (producers_cpu / mb)
        print(f"ceiling set by the clients alone: {os.cpu_count()} cores / {producers_cpu / mb * 1000:.2f} ms per MB "
              f"= {ceiling:.0f} MB/s = {ceiling / disk:.2f} of the disk; with the broker's CPU as well: "
              f"{os.cpu_count() / ((producers_cpu + produce_cpu) / mb):.0f} MB/s")
        cpu0 = _cpu_seconds(app.proc.pid)
        raw, raw_mb = raw_pipelined_produce_mbps(app.bootstrap, args.value_size)
        raw_cpu = _cpu_seconds(app.proc.pid) - cpu0
        print(f"diagnostic: broker alone, pre-encoded ~1 MiB batches, 5 pipelined, acks=-1: {raw:.1f} MB/s "
              f"(ratio to disk {raw / disk:.2f}); broker CPU {raw_cpu / raw_mb * 1000:.2f} ms per MB")
        print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}")
    finally:
        app.stop()
        shutil.rmtree(work, ignore_errors=True)  # a bench run writes GBs: leave no copies behind


if __name__ == "__main__":
    main()
