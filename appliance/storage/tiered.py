"""Storage with the object-storage tier: the WAL in front, an object store as the system of record.

    storage = await open_storage(data_dir, settings.storage)   # reads the manifest, claims the
    async with trio.open_nursery() as nursery:                  # writer epoch, recovers the WAL
        await nursery.start(storage.run)                        # flusher, uploads, maintenance
        ...                                                     # storage.logs / storage.meta
        await storage.close()                                   # flush, upload the tail, close
        nursery.cancel_scope.cancel()

Recovery. Plant (data dir intact): the WAL is replayed as before, then merged with the manifest
(`WalSeed`): offsets below each stream's uploaded end are read from objects, producer state is
the manifest's snapshot plus the batches the WAL holds above it. Cloud (empty data dir): the
streams, offsets, producer state and MetaStore contents (topics, committed group offsets...) all
come from the manifest.

Start-up reads the manifest and claims the writer epoch, retrying with back-off while the store
does not answer. A node with a local WAL and a cached copy of its last manifest
(`<data-dir>/manifest.cache`) stops waiting after OFFLINE_START_WAIT and starts from the cache:
it takes appends into the WAL (within `wal_budget`) and claims the bucket once the store is back,
unless another node wrote to it meanwhile (then it is fenced). A node without them (a cloud
node recovering from the bucket) waits until the store answers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import trio

from appliance.config import StorageSettings
from appliance.errors import OffsetOutOfRangeError, StorageError
from appliance.logs import get_logger
from appliance.storage.manifest import ManifestStore, read_cache, write_cache
from appliance.storage.meta import LocalMetaStore
from appliance.storage.objects import MeteredObjectStore, ObjectStore, open_object_store
from appliance.storage.ports import ReadResult, StorageStatus, StreamInfo, StreamOffsets
from appliance.storage.tier import ObjectTier, RetentionPolicy, RetentionSource
from appliance.storage.wal import WalLogStore, WalSeed

log = get_logger("storage")

MANIFEST_CACHE = "manifest.cache"
OFFLINE_START_WAIT = 10.0  # seconds a node with a local WAL waits for its store before starting without it


class TieredLogStore:
    """The LogStore port over the WAL (tail) and object storage (everything uploaded)."""

    def __init__(self, wal: WalLogStore, tier: ObjectTier) -> None:
        self._wal = wal
        self._tier = tier
        self.append = wal.append
        self.create_stream = wal.create_stream
        self.delete_stream = wal.delete_stream
        self.set_log_append_time = wal.set_log_append_time
        self.offsets = wal.offsets
        self.wait_for_data = wal.wait_for_data
        self.delete_records = wal.delete_records
        self.producer_state = wal.producer_state
        self.when_write_done = wal.when_write_done  # optional: lets the MQTT ingest sink gather appends

    def streams(self) -> Mapping[int, StreamInfo]:
        wal, tier = self._wal, self._tier
        out = {}
        for sid, info in wal.streams().items():
            extra = tier.object_bytes(sid, wal.first_indexed(sid))
            out[sid] = StreamInfo(sid, info.name, info.offsets, info.size_bytes + extra, info.log_append_time)
        return out

    async def read(self, stream_id: int, offset: int, max_bytes: int) -> ReadResult:
        wal = self._wal
        off: StreamOffsets = wal.offsets(stream_id)
        if offset < off.log_start or offset > off.high_watermark:
            raise OffsetOutOfRangeError(offset, off.log_start, off.high_watermark)
        # Below a compacted stream's clean end the objects hold the compacted log; the WAL may
        # still hold the same offsets uncompacted until its segment is trimmed.
        clean_end = self._tier.clean_end(stream_id)
        if offset >= max(wal.first_indexed(stream_id), clean_end):
            try:
                return await wal.read(stream_id, offset, max_bytes)
            except OffsetOutOfRangeError:
                pass  # its segment was trimmed after upload just now: read the object instead
        batches = await self._tier.read(stream_id, offset, max_bytes)
        if not batches:
            pos = max(offset, clean_end)  # compaction may leave no batch between offset and clean end
            if pos >= wal.first_indexed(stream_id) and pos <= wal.offsets(stream_id).high_watermark:
                return await wal.read(stream_id, pos, max_bytes)
            raise StorageError(f"offset {offset} of stream {stream_id} is neither in the WAL nor in object storage")
        return ReadResult(batches, off.high_watermark, off.log_start)

    async def offset_for_timestamp(self, stream_id: int, timestamp: int) -> tuple[int, int] | None:
        if timestamp >= 0:
            off = self._wal.offsets(stream_id)
            found = await self._tier.offset_for_timestamp(stream_id, timestamp, off.log_start)
            if found is not None:
                return found
        return await self._wal.offset_for_timestamp(stream_id, timestamp)


class TieredStorage:
    """Implements the `Storage` protocol: WAL + MetaStore + object tier."""

    def __init__(self, wal: WalLogStore, meta: LocalMetaStore, tier: ObjectTier, settings: StorageSettings) -> None:
        self.wal = wal
        self.meta = meta
        self.tier = tier
        self.logs = TieredLogStore(wal, tier)
        self._settings = settings
        self._closed = False

    def set_retention_source(self, source: RetentionSource | None) -> None:
        """Where per-stream retention policies come from (the broker's topic configs)."""
        self.tier.retention_source = source

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.wal.run_flusher)
            nursery.start_soon(self.tier.upload_loop)
            nursery.start_soon(self.tier.maintenance_loop)
            task_status.started()

    async def close(self) -> None:
        """Stop appends, make the WAL durable, upload its tail (bounded by
        `shutdown_upload_timeout`; what does not make it stays in the WAL), close."""
        if self._closed:
            return
        self._closed = True
        tier = self.tier
        tier.closing = True
        await self.wal.drain()
        if tier.fenced is None:
            with trio.move_on_after(self._settings.shutdown_upload_timeout) as scope:
                await tier.upload_all()
            if scope.cancelled_caught:
                log.warning("shutdown_upload_incomplete", unuploaded_bytes=self.wal.unuploaded_bytes(),
                            error=tier.last_error)
        await self.wal.close()
        await self.meta.close()
        await tier.store.aclose()
        log.info("storage_closed", **self.wal.stats(), objects=len(tier.manifest.objects),
                 manifest=tier.manifests.seq, requests=dict(tier.store.requests))

    def abandon(self) -> None:
        """Drop file handles without flushing or uploading: what a crash leaves (tests only)."""
        self._closed = True
        self.tier.closing = True
        self.wal.abandon()
        self.meta.abandon()

    def status(self) -> StorageStatus:
        wal, tier = self.wal, self.tier
        objects = tier.manifest.objects
        return StorageStatus(
            wal_bytes=wal.wal_bytes,
            wal_segments=wal.wal_segments,
            unuploaded_bytes=wal.unuploaded_bytes(),
            durable_appends=wal.durable_appends,
            fsyncs=wal.fsyncs + self.meta.fsyncs,
            last_error=tier.last_error or wal.last_error or self.meta.last_error,
            object_store=tier.store.url,
            objects=len(objects),
            object_bytes=sum(o.size for o in objects.values()),
            uploads=tier.uploads,
            upload_lag_s=round(tier.upload_lag(), 3),
            requests=dict(tier.store.requests),
            fenced=tier.fenced is not None,
            store_error=tier.store_error,
            store_error_s=round(tier.store_error_seconds(), 3),
            key_compactions=tier.key_compactor.runs,
            key_compaction_bytes_in=tier.key_compactor.bytes_in,
            key_compaction_bytes_out=tier.key_compactor.bytes_out,
            key_compaction_last_ms=tier.key_compactor.last_run_ms,
            corrupt_objects=len(tier.corrupt_objects()),
            corrupt_reads=tier.corrupt_reads,
            last_corruption=tier.last_corruption,
        )


def default_object_store_url(data_dir: Path) -> str:
    return Path(data_dir).resolve().joinpath("objects").as_uri()


async def _until_reachable(what: str, fn: Callable[[], Any]) -> Any:
    delay = 0.1
    while True:
        try:
            return await fn()
        except StorageError as e:
            log.warning("object_store_unreachable", what=what, error=str(e), retry_in_s=round(delay, 2))
            await trio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def open_storage(data_dir: Path, settings: StorageSettings, *, object_store: ObjectStore | None = None,
                       clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                       delete_grace: float = 60.0, offline_start_wait: float = OFFLINE_START_WAIT) -> TieredStorage:
    """Open (creating if needed) and recover the storage under `data_dir` with its object store."""
    started = time.monotonic()
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    if object_store is None:
        url = settings.object_store or default_object_store_url(data_dir)
        object_store = open_object_store(url, fsync=settings.fsync, access_key=settings.s3_access_key,
                                         secret_key=settings.s3_secret_key)
    store = MeteredObjectStore(object_store)
    manifests = ManifestStore(store)
    cache_path = data_dir / MANIFEST_CACHE
    wal_dir = data_dir / "wal"
    cached = read_cache(cache_path) if wal_dir.exists() and any(wal_dir.glob("*.wal")) else None
    manifest = None
    # With a local WAL and a cached manifest, a plant starts even while its store is down.
    with trio.move_on_after(offline_start_wait if cached is not None else math.inf):
        latest = await _until_reachable("load manifest", manifests.load_latest)
        manifest = await _until_reachable("claim manifest", lambda: manifests.claim(latest, int(clock() * 1000)))
    if manifest is None:
        assert cached is not None
        manifest = cached
        log.warning("starting_from_cached_manifest", seq=cached.seq, store=store.url,
                    reason="object store unreachable; uploads wait until it answers")
    else:
        await trio.to_thread.run_sync(partial(write_cache, cache_path, manifest, fsync=settings.fsync))
    seed = WalSeed(
        manifest.next_stream_id,
        tuple((sid, e.name, e.lat, e.log_start, e.end) for sid, e in sorted(manifest.streams.items())),
        manifest.producers,
    )
    meta_dir = data_dir / "meta"
    if manifest.meta and LocalMetaStore.is_blank(meta_dir):
        await trio.to_thread.run_sync(partial(LocalMetaStore.write_seed, meta_dir, manifest.meta, fsync=settings.fsync))
        log.info("meta_restored_from_manifest", namespaces=len(manifest.meta))
    wal = await trio.to_thread.run_sync(WalLogStore.open, data_dir / "wal", settings, seed)
    meta = await trio.to_thread.run_sync(
        partial(LocalMetaStore.open, meta_dir, fsync=settings.fsync, compact_bytes=settings.meta_compact_bytes))
    tier = ObjectTier(wal, meta, store, manifests, manifest, settings, clock=clock, monotonic=monotonic,
                      delete_grace=delete_grace, cache_path=cache_path)
    log.info("storage_opened", data_dir=str(data_dir), object_store=store.url, epoch=manifests.epoch,
             manifest=manifests.seq, objects=len(manifest.objects), streams=len(manifest.streams),
             seconds=round(time.monotonic() - started, 3))
    return TieredStorage(wal, meta, tier, settings)


__all__ = ["RetentionPolicy", "TieredLogStore", "TieredStorage", "default_object_store_url", "open_storage"]
