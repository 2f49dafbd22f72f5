"""Object-storage tier benchmark: ingest, requests per GiB, compaction, cold reads, recovery.

    python bench/object_tier.py [--mib 64] [--store local|s3|both] [--streams 8] [--batch-kib 16]
                                [--tasks 8] [--fsync]

For each store (the local directory store, and S3 over HTTP to a moto_server started here):
1. ingest: `--mib` MiB of `--batch-kib` KiB batches from `--tasks` concurrent producers over
   `--streams` streams, each append waited durable, uploads running with the default thresholds;
   reports MB/s (including the final upload) and PUT/GET/LIST requests per GiB ingested;
2. compaction: 40 small upload rounds make 40 small objects; reports the object count before
   and after compaction;
3. recovery: a node with an EMPTY data dir opens the same bucket; reports the time to ready;
4. cold read: that node reads every stream from offset 0 (all from objects); reports MB/s and GETs;
5. log compaction (cleanup.policy=compact): `--compact-mib` MiB of 1 KiB records over 1024 keys
   in one stream, uploaded, then one forced compaction run; reports MB/s compacted (bytes read
   / wall time), CPU-seconds per GiB compacted and the reduction ratio (bytes in / bytes out).
Volumes are modest by default; use --mib 1024 for the 1 GiB figure of the issue.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.config import StorageSettings  # noqa: E402
from appliance.kafka.records import build_batch  # noqa: E402
from appliance.storage.key_compaction import CompactionPolicy  # noqa: E402
from appliance.storage.objects import LocalObjectStore  # noqa: E402
from appliance.storage.objects.s3 import S3ObjectStore  # noqa: E402
from appliance.storage.tiered import open_storage  # noqa: E402

MIB = 1 << 20


def make_batch(size: int, task: int) -> bytes:
    records = 16
    value = b"m" * max(1, (size - 61) // records - 12)
    return build_batch([(b"k%d" % task, value, [])] * records, timestamp_ms=int(time.time() * 1000))


async def bench_store(name: str, make_store, args: argparse.Namespace, work: Path) -> dict[str, float]:
    settings = dataclasses.replace(StorageSettings(), fsync=args.fsync, maintenance_interval=3600.0)
    out: dict[str, float] = {}
    total = args.mib * MIB
    batch = make_batch(args.batch_kib * 1024, 0)
    count = total // len(batch)
    st = await open_storage(work / f"{name}-a", settings, object_store=make_store(), delete_grace=0.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(st.run)
        sids = [await st.logs.create_stream(f"bench-{i}") for i in range(args.streams)]
        req0 = dict(st.tier.store.requests)
        started = time.monotonic()
        cpu0 = time.process_time()
        per_task = count // args.tasks

        async def producer(t: int) -> None:
            for i in range(per_task):
                sid = sids[(t + i) % len(sids)]
                await st.logs.append(sid, batch, now_ms=0).durable()

        async with trio.open_nursery() as producers:
            for t in range(args.tasks):
                producers.start_soon(producer, t)
        appended = time.monotonic() - started
        await st.tier.upload_all()
        elapsed = time.monotonic() - started
        ingested = per_task * args.tasks * len(batch)
        req = {k: v - req0.get(k, 0) for k, v in st.tier.store.requests.items()}
        gib = ingested / (1 << 30)
        out["ingest_MBps"] = ingested / MIB / elapsed
        out["ingest_cpu_s_per_GiB"] = (time.process_time() - cpu0) / gib
        out["append_only_MBps"] = ingested / MIB / appended
        for k in ("put", "get", "list"):
            out[f"{k}_per_GiB"] = req[k] / gib
        out["MiB_per_put"] = (ingested / MIB) / max(1, req["put"])
        out["objects_after_ingest"] = len(st.tier.manifest.objects)
        # many small objects, then compaction
        small = make_batch(4096, 1)
        for r in range(40):
            for _ in range(4):
                await st.logs.append(sids[r % len(sids)], small, now_ms=0).durable()
            await st.tier.upload_all()
        out["objects_before_compaction"] = len(st.tier.manifest.objects)
        t0 = time.monotonic()
        while await st.tier.compact():
            pass
        await st.tier.collect_garbage()
        out["compaction_s"] = time.monotonic() - t0
        out["objects_after_compaction"] = len(st.tier.manifest.objects)
        out.update(await bench_key_compaction(st, args))
        await st.close()
        nursery.cancel_scope.cancel()
    # an empty-disk node on the same bucket
    t0 = time.monotonic()
    st2 = await open_storage(work / f"{name}-b", settings, object_store=make_store())
    out["empty_disk_recovery_s"] = time.monotonic() - t0
    async with trio.open_nursery() as nursery:
        await nursery.start(st2.run)
        gets0 = st2.tier.store.requests["get"]
        t0 = time.monotonic()
        read = 0
        for sid in sids:
            pos, hw = 0, st2.logs.offsets(sid).high_watermark
            while pos < hw:
                res = await st2.logs.read(sid, pos, MIB)
                read += res.size
                last = res.batches[-1]
                pos = int.from_bytes(last[:8], "big") + int.from_bytes(last[23:27], "big") + 1
        secs = time.monotonic() - t0
        out["cold_read_MBps"] = read / MIB / secs
        out["cold_read_MiB"] = read / MIB
        out["cold_read_gets"] = st2.tier.store.requests["get"] - gets0
        await st2.close()
        nursery.cancel_scope.cancel()
    return out


async def bench_key_compaction(st, args: argparse.Namespace) -> dict[str, float]:
    """A compacted stream: many values per key, uploaded, then one full compaction run."""
    keys, per_batch = 1024, 16
    value = b"c" * 1024
    pool = [build_batch([(b"key-%04d" % ((i * per_batch + j) % keys), value, []) for j in range(per_batch)],
                        timestamp_ms=0) for i in range(keys // per_batch)]
    sid = await st.logs.create_stream("bench-compacted")
    count = args.compact_mib * MIB // len(pool[0])
    for i in range(count):
        await st.logs.append(sid, pool[i % len(pool)], now_ms=0).durable()
    await st.tier.upload_all()
    compactor = st.tier.key_compactor
    in0, out0 = compactor.bytes_in, compactor.bytes_out
    t0, cpu0 = time.monotonic(), time.process_time()
    assert await compactor.compact_stream(sid, CompactionPolicy(), force=True)
    secs, cpu = time.monotonic() - t0, time.process_time() - cpu0
    nin, nout = compactor.bytes_in - in0, compactor.bytes_out - out0
    return {"key_compaction_in_MiB": nin / MIB, "key_compaction_MBps": nin / MIB / secs,
            "key_compaction_cpu_s_per_GiB": cpu / (nin / (1 << 30)), "key_compaction_reduction": nin / max(1, nout)}


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="objtier-bench-", dir=args.dir))
    moto = None
    try:
        stores = []
        if args.store in ("local", "both"):
            root = work / "bucket"
            stores.append(("local", lambda: LocalObjectStore(root, fsync=args.fsync)))
        if args.store in ("s3", "both"):
            from tests.storage.objects.moto_server import MotoServer, set_credentials

            set_credentials()
            moto = MotoServer().start()
            url = moto.url(bucket="bench")
            stores.append(("s3-moto", lambda: S3ObjectStore(url)))
        print(f"volume {args.mib} MiB, batches {args.batch_kib} KiB, {args.streams} streams, {args.tasks} tasks, "
              f"fsync {'on' if args.fsync else 'off'}")
        for name, make in stores:
            res = await bench_store(name, make, args, work)
            print(f"\n[{name}]")
            for k, v in res.items():
                print(f"  {k:28s} {v:10.2f}")
    finally:
        if moto is not None:
            moto.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--store", choices=["local", "s3", "both"], default="both")
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--batch-kib", type=int, default=16)
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--compact-mib", type=int, default=32, help="volume of the log-compaction run")
    ap.add_argument("--fsync", action="store_true", help="fsync WAL and local objects (default off: measures the tier)")
    ap.add_argument("--dir", default=os.environ.get("TMPDIR"), help="where the data dirs go")
    trio.run(main, ap.parse_args())
