"""WAL append benchmark: concurrent ~1 KiB batches through group commit, vs raw write+fsync.

    python bench/wal_append.py [--count 20000] [--tasks 8] [--records 16] [--dir /path] [--no-fsync]

Reports MB/s, appends/s, fsyncs, p50/p99 latency from append() to durable(), process CPU per
append and per group commit (`--tasks 1`: one append per fsync cycle, the per-cycle cost), then the raw
sequential write+fsync throughput of the same disk with the same write sizes, and the latency of
one small write+fsync.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.config import StorageSettings  # noqa: E402
from appliance.kafka.records import build_batch  # noqa: E402
from appliance.storage.local import open_local_storage  # noqa: E402


def make_batch(records: int, target: int, task: int) -> bytes:
    value = b"m" * max(1, (target - 61) // records - 12)
    return build_batch([(b"k%d" % task, value, [])] * records, timestamp_ms=int(time.time() * 1000))


async def run_wal(path: Path, count: int, tasks: int, records: int, fsync: bool) -> dict[str, float]:
    settings = dataclasses.replace(StorageSettings(), fsync=fsync)
    storage = open_local_storage(path, settings)
    latencies: list[float] = []
    batches = [make_batch(records, 1024, t) for t in range(tasks)]
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run)
        sids = [await storage.logs.create_stream(f"bench-{t}") for t in range(tasks)]
        before = storage.status()
        groups_before = storage.logs.flushes
        per_task = count // tasks

        async def producer(t: int) -> None:
            append = storage.logs.append
            sid, data = sids[t], batches[t]
            clock = time.perf_counter
            for _ in range(per_task):
                start = clock()
                await append(sid, data, now_ms=0).durable()
                latencies.append(clock() - start)

        started = time.perf_counter()
        t0 = os.times()  # the whole process, all threads: includes the WAL writer thread
        async with trio.open_nursery() as inner:
            for t in range(tasks):
                inner.start_soon(producer, t)
        elapsed = time.perf_counter() - started
        t1 = os.times()
        user, system = t1.user - t0.user, t1.system - t0.system
        cpu = user + system
        after = storage.status()
        groups = storage.logs.flushes - groups_before
        await storage.close()
        nursery.cancel_scope.cancel()
    appends = len(latencies)
    nbytes = appends * len(batches[0])
    latencies.sort()
    return {
        "appends": appends,
        "batch_bytes": len(batches[0]),
        "seconds": elapsed,
        "mb_s": nbytes / elapsed / 1e6,
        "appends_s": appends / elapsed,
        "fsyncs": after.fsyncs - before.fsyncs,
        "groups": groups,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "group_bytes": nbytes / max(1, groups),
        "cpu_us_per_append": cpu / max(1, appends) * 1e6,
        "cpu_us_per_group": cpu / max(1, groups) * 1e6,
        "sys_share": system / max(cpu, 1e-9),
    }


def raw_write_fsync(path: Path, total: int, chunk: int) -> float:
    """Sequential write+fsync of `total` bytes in `chunk`-byte writes: MB/s."""
    data = os.urandom(max(1, chunk))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        started = time.perf_counter()
        written = 0
        while written < total:
            os.write(fd, data)
            os.fsync(fd)
            written += len(data)
        return written / (time.perf_counter() - started) / 1e6
    finally:
        os.close(fd)
        path.unlink()


def small_fsync_latency(path: Path, n: int = 500) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    data = b"x" * 1024
    try:
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            os.write(fd, data)
            os.fsync(fd)
            samples.append(time.perf_counter() - start)
        return statistics.median(samples) * 1000
    finally:
        os.close(fd)
        path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--records", type=int, default=16)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="wal-bench-", dir=args.dir))
    try:
        r = trio.run(run_wal, base / "data", args.count, args.tasks, args.records, not args.no_fsync)
        print(
            f"wal: {r['appends']:.0f} appends of {r['batch_bytes']:.0f} B ({args.records} records) from "
            f"{args.tasks} tasks in {r['seconds']:.2f}s: {r['mb_s']:.1f} MB/s, {r['appends_s']:.0f} appends/s, "
            f"{r['fsyncs']:.0f} fsyncs, {r['groups']:.0f} group commits (avg {r['group_bytes'] / 1024:.1f} KiB), "
            f"durable latency p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms; process CPU "
            f"{r['cpu_us_per_append']:.1f} us per append, {r['cpu_us_per_group']:.1f} us per group commit "
            f"({r['sys_share'] * 100:.0f}% system); "
            f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}"
        )
        total = int(r["appends"] * r["batch_bytes"])
        group = int(r["group_bytes"])
        print(f"raw: sequential write+fsync in {group / 1024:.1f} KiB writes: "
              f"{raw_write_fsync(base / 'raw', total, group):.1f} MB/s; "
              f"in 1 MiB writes: {raw_write_fsync(base / 'raw', max(total, 64 << 20), 1 << 20):.1f} MB/s; "
              f"one 1 KiB write+fsync p50 {small_fsync_latency(base / 'lat'):.3f} ms")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
