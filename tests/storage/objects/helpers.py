"""Helpers for object-tier tests: a running TieredStorage over a given object store."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from appliance.config import StorageSettings
from appliance.storage.objects import ObjectStore
from appliance.storage.tiered import TieredStorage, open_storage
from tests.storage.conftest import batch

# Small sizes so a few hundred KiB exercise uploads, segment trimming and block reads.
SMALL = dict(fsync=False, wal_segment_size=64 << 10, upload_bytes=64 << 10, upload_interval=3600.0,
             stream_object_bytes=48 << 10, group_commit_bytes=64 << 10, log_cache_size=32 << 10,
             block_cache_size=256 << 10, maintenance_interval=3600.0, shutdown_upload_timeout=5.0)


def tier_settings(**overrides: Any) -> StorageSettings:
    return dataclasses.replace(StorageSettings(), **{**SMALL, **overrides})


@asynccontextmanager
async def running_tier(path: Path, store: ObjectStore, *, close: bool = True, delete_grace: float = 0.0,
                       offline_start_wait: float = 10.0, **overrides: Any) -> AsyncIterator[TieredStorage]:
    storage = await open_storage(path, tier_settings(**overrides), object_store=store, delete_grace=delete_grace,
                                 offline_start_wait=offline_start_wait)
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run)
        try:
            yield storage
        finally:
            if close:
                await storage.close()
            else:
                storage.abandon()
            nursery.cancel_scope.cancel()


async def produce(storage: TieredStorage, sid: int, count: int, *, size: int = 1000, tag: bytes = b"x",
                  **kw: Any) -> list[int]:
    """Append `count` one-record batches of ~size bytes, each waited durable; returns base offsets."""
    out = []
    seq0 = kw.pop("seq", None)
    for i in range(count):
        if seq0 is not None:
            kw["seq"] = seq0 + i
        p = storage.logs.append(sid, batch(1, value=tag + b"%06d" % i + b"." * size, **kw), now_ms=0)
        out.append((await p.durable()).base_offset)
    return out


async def read_all(storage: TieredStorage, sid: int, start: int = 0, max_bytes: int = 64 << 10) -> list[bytes]:
    """Every batch from `start` to the high watermark, via the LogStore port."""
    out = []
    pos = start
    hw = storage.logs.offsets(sid).high_watermark
    for _ in range(100_000):
        if pos >= hw:
            break
        res = await storage.logs.read(sid, pos, max_bytes)
        assert res.batches, f"no batches at {pos} < hw {hw}"
        for b in res.batches:
            base = int.from_bytes(b[:8], "big")
            last = base + int.from_bytes(b[23:27], "big")
            if last < pos:
                continue
            assert base <= pos, f"gap: asked {pos}, got batch at {base}"
            out.append(b)
            pos = last + 1
    return out


def values(batches: list[bytes]) -> list[bytes]:
    from appliance.kafka.records import decode_records

    return [r.value.removesuffix(b"-0") for b in batches for r in decode_records(b)]  # batch() adds "-<i>"
