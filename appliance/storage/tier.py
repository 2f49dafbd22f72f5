"""The object-storage tier: uploads the WAL into stream objects, reads them back, and keeps
the bucket tidy (retention, compaction, garbage). AutoMQ S3Stream's design, scaled to one node.

Upload rounds (one at a time, `upload_round`): when `upload_bytes` of new durable WAL data have
accumulated, or every `upload_interval`, or at shutdown, the un-uploaded batches of every stream
([uploaded end, high watermark)) are read from the WAL and packed: a stream with at least
`stream_object_bytes` pending gets its own object, the rest share multi-stream objects. Objects
are uploaded with bounded concurrency, each retried with exponential back-off until it lands
(an outage just makes the WAL grow, up to `wal_budget`, then appends get StorageFullError).
Only when every object of the round is in the store is the new manifest committed; only then
does the WAL learn the new uploaded ends and delete segments whose data is all uploaded. A
round covers each stream's contiguous prefix of pending data, so nothing is reordered.

Maintenance (every `maintenance_interval`): a cheap fencing probe (GET of the next manifest);
retention (`retention.ms`, `retention.bytes` per stream, given by a `RetentionSource`) moves a
stream's log start past whole uploaded ranges; objects whose every range is dead leave the
manifest and are deleted after a grace period (readers in flight may still use them);
compaction merges runs of small objects into one; orphans (uploaded, never committed: a crash
or a fenced writer) are deleted; old manifests are pruned.

Corruption. An object that fails its checks on read (footer, index or block CRC-32C, a size short of the
manifest's) is corrupt: the read raises StreamObjectError (KAFKA_STORAGE_ERROR for the fetcher,
every time: damaged bytes are never cached), the first time per object is logged
(`object_corrupt`), every time is counted, and compaction leaves the object alone.

Retention only ever removes uploaded data, a range at a time (Kafka removes whole segments the
same way). `cleanup.policy=compact` (keep the last record per key) runs in the same pass, before
the object merge: `appliance.storage.key_compactor` rewrites the sealed ranges of compacted
streams (policies come with the retention policies).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import trio

from appliance.config import StorageSettings
from appliance.errors import OffsetOutOfRangeError, StorageError, StreamNotFoundError
from appliance.kafka import records
from appliance.logs import get_logger
from appliance.storage import stream_object as so
from appliance.storage.block_cache import BlockCache
from appliance.storage.key_compaction import CompactionPolicy, CompactionState
from appliance.storage.key_compactor import KeyCompactor
from appliance.storage.manifest import (
    FencedError,
    Manifest,
    ManifestStore,
    ObjectEntry,
    StreamEntry,
    write_cache,
)
from appliance.storage.meta import LocalMetaStore
from appliance.storage.objects.metered import MeteredObjectStore
from appliance.storage.objects.port import Body, ObjectNotFoundError
from appliance.storage.wal import WalLogStore

log = get_logger("objects")

T = TypeVar("T")
DATA_PREFIX = "data/"
BACKOFF_START = 0.05
BACKOFF_MAX = 5.0
READ_CHUNK = 1 << 20
MAINTENANCE_ERROR = "maintenance: "  # last_error prefixes: cleared when that work succeeds again
DELETE_ERROR = "delete "
ORPHAN_SCAN_EVERY = 10  # maintenance passes between orphan scans (and one at start)
COMPACT_BATCHES_PER_STEP = 500  # batches compaction parses between checkpoints (~2 ms)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    retention_ms: int = -1  # -1: keep forever
    retention_bytes: int = -1  # -1: no size limit
    keep_from: int | None = None  # never delete at or above this offset (e.g. not yet forwarded by the uplink)
    compaction: CompactionPolicy | None = None  # cleanup.policy includes compact


RetentionSource = Callable[[], Mapping[int, RetentionPolicy]]


def data_key(oid: int, epoch: int) -> str:
    return f"{DATA_PREFIX}{oid:020d}-e{epoch}.so"


class ObjectTier:
    def __init__(self, wal: WalLogStore, meta: LocalMetaStore, store: MeteredObjectStore, manifests: ManifestStore,
                 manifest: Manifest, settings: StorageSettings, *, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, delete_grace: float = 60.0,
                 cache_path: Path | None = None) -> None:
        self.wal = wal
        self.meta = meta
        self.store = store
        self.manifests = manifests
        self.manifest = manifest
        self.settings = settings
        self.clock = clock
        self.monotonic = monotonic
        self.delete_grace = delete_grace
        self.cache_path = cache_path
        self.cache = BlockCache(store, settings.block_cache_size)
        self.retention_source: RetentionSource | None = None
        self.closing = False
        self.fenced: FencedError | None = None
        self._lock = trio.Lock()  # one manifest change at a time
        self._ranges: dict[int, tuple[list[tuple[int, int, int, int, int]], list[int]]] = {}
        self._ranges_of: Manifest | None = None
        self._inflight: set[str] = set()  # uploaded or uploading, not committed yet
        self._doomed: list[tuple[float, str]] = []  # (due, key): out of the manifest, delete later
        self._meta_version = -1
        self._mark = wal.durable_bytes
        self._last_round = monotonic()
        self._last_success = monotonic()
        self._passes = 0
        self._more = False
        self.wake = trio.Event()
        self.key_compactor = KeyCompactor(self)
        # counters
        self.uploads = 0
        self.objects_uploaded = 0
        self.bytes_uploaded = 0
        self.compactions = 0
        self.objects_deleted = 0
        self.retries = 0
        self.last_error: str | None = None
        # While a store call keeps failing (an outage): the latest error and since when (monotonic).
        self.store_error: str | None = None
        self.store_error_since: float | None = None
        # objects that failed their CRC/format checks on read: key -> what was wrong
        self.corrupt: dict[str, str] = {}
        self.corrupt_reads = 0
        self.last_corruption: str | None = None

    # --- helpers ------------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def _retry(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Call fn until it succeeds; back off exponentially on store errors. FencedError and
        cancellation pass through."""
        delay = BACKOFF_START
        mine: str | None = None  # the error this call reported, cleared once the store answers
        while True:
            try:
                result = await fn()
            except FencedError:
                raise
            except StorageError as e:
                self.retries += 1
                mine = self.last_error = self.store_error = f"{what}: {e}"
                if self.store_error_since is None:
                    self.store_error_since = self.monotonic()
                log.warning("object_store_retry", what=what, error=str(e), retry_in_s=round(delay, 2))
                await trio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            if mine is not None:  # the store answers again: the outage is over
                log.info("object_store_reachable", what=what, retries=self.retries)
                self.store_error = self.store_error_since = None
                if self.last_error == mine:
                    self.last_error = None
            return result

    def _on_fenced(self, e: FencedError) -> None:
        if self.fenced is None:
            self.fenced = e
            self.last_error = str(e)
            self.wal.refuse(FencedError(f"this node no longer writes: {e}"))
            log.error("fenced", reason=str(e), epoch=self.manifests.epoch)

    # --- upload -------------------------------------------------------------------------------

    async def upload_loop(self) -> None:
        s = self.settings
        poll = min(0.25, max(0.01, s.upload_interval / 4))
        while not self.closing and self.fenced is None:
            with trio.move_on_after(poll):
                await self.wake.wait()
            self.wake = trio.Event()
            due = (self.wal.durable_bytes - self._mark >= s.upload_bytes
                   or self.monotonic() - self._last_round >= s.upload_interval)
            if due and not self.closing:
                try:
                    await self.upload_round()
                except Exception as e:  # a bug must not stop uploads for good: say it, try again
                    self.last_error = f"upload round failed: {e!r}"
                    log.error("upload_round_failed", error=repr(e))
                    await trio.sleep(BACKOFF_MAX)

    async def upload_all(self) -> bool:
        """Upload rounds until nothing is pending (shutdown, tests). False if fenced."""
        while True:
            if not await self.upload_round():
                return False
            if not self._more:
                return True

    async def upload_round(self) -> bool:
        """Upload what is pending (up to a memory cap) and commit it. False if fenced."""
        async with self._lock:
            if self.fenced is not None:
                return False
            try:
                await self._upload_round_locked()
            except FencedError as e:
                self._on_fenced(e)
                return False
            return True

    async def _upload_round_locked(self) -> None:
        s = self.settings
        self._last_round = self.monotonic()
        mark = self.wal.durable_bytes
        cap = max(2 * s.upload_bytes, 4 * s.stream_object_bytes)
        plan, truncated = await self._pending(cap)
        self._more = truncated
        new = self.manifest.copy()
        objs = await self._pack(plan, new)
        if objs:
            async with trio.open_nursery() as nursery:
                limiter = trio.Semaphore(s.upload_concurrency)
                for _oid, key, data, _ranges in objs:
                    self._inflight.add(key)
                    nursery.start_soon(self._upload_one, key, data, limiter)
        ends: dict[int, int] = {}
        for sid, _batches, end in plan:
            ends[sid] = end
        for oid, key, data, ranges in objs:
            new.objects[oid] = ObjectEntry(key, len(data), oid, self.now_ms(), ranges)
        try:
            changed = await self._commit_if_changed(new, ends, force=bool(objs))
        finally:
            for _oid, key, _data, _r in objs:
                self._inflight.discard(key)
        if changed and objs:
            nbytes = sum(len(o[2]) for o in objs)
            self.uploads += 1
            self.objects_uploaded += len(objs)
            self.bytes_uploaded += nbytes
            log.info("objects_uploaded", objects=len(objs), bytes=nbytes, streams=len(plan), manifest=self.manifests.seq)
        if not truncated:
            self._mark = mark
            self._last_success = self.monotonic()
        else:
            self.wake.set()  # more pending than one round takes: go again at once

    async def _upload_one(self, key: str, data: Body, limiter: trio.Semaphore) -> None:
        async with limiter:
            await self._retry(f"upload {key}", lambda: self.store.put(key, data))

    async def _pending(self, cap: int) -> tuple[list[tuple[int, list[bytes], int]], bool]:
        """[(stream, batches, end)] of un-uploaded durable data, at most ~cap bytes in all."""
        wal = self.wal
        out: list[tuple[int, list[bytes], int]] = []
        total = 0
        for sid, _name, _lat, log_start, hw in sorted(wal.catalogue()):
            try:
                start = max(wal.uploaded(sid), log_start)
            except StreamNotFoundError:
                continue
            if hw <= start:
                continue
            if total >= cap:
                return out, True
            batches: list[bytes] = []
            pos = start
            while pos < hw and total < cap:
                try:
                    got, nxt = await wal.read_range(sid, pos, hw, min(READ_CHUNK, cap - total))
                except (StreamNotFoundError, OffsetOutOfRangeError):
                    break
                if not got:
                    break
                batches.extend(b if type(b) is bytes else bytes(b) for b in got)  # no views pinned
                total += sum(map(len, got))
                pos = nxt
                # Reads from the log cache return at once: without this a round of small
                # batches (tens of thousands in 32 MiB) ran tens of ms without a checkpoint,
                # stalling every connection for that long.
                await trio.lowlevel.checkpoint()
            if batches:
                out.append((sid, batches, pos))
            if pos < hw and total >= cap:  # this stream was cut short by the cap: more to come
                return out, True
        return out, False

    async def _pack(self, plan: list[tuple[int, list[bytes], int]],
                    new: Manifest) -> list[tuple[int, str, Body, dict[int, tuple[int, int, int, int]]]]:
        s = self.settings
        groups: list[list[tuple[int, list[bytes]]]] = []
        shared: list[tuple[int, list[bytes]]] = []
        shared_bytes = 0
        for sid, batches, _end in plan:
            size = sum(map(len, batches))
            if size >= s.stream_object_bytes:
                groups.append([(sid, batches)])
                continue
            if shared and shared_bytes + size > s.upload_bytes:
                groups.append(shared)
                shared, shared_bytes = [], 0
            shared.append((sid, batches))
            shared_bytes += size
        if shared:
            groups.append(shared)
        out = []
        for group in groups:
            oid = new.next_object_id
            new.next_object_id += 1
            data, index = await encode_object(group)
            out.append((oid, data_key(oid, self.manifests.epoch), data, ranges_of(index)))
        return out

    async def _commit_if_changed(self, new: Manifest, ends: Mapping[int, int], *, force: bool = False) -> bool:
        """Bring `new` up to date with the WAL catalogue and the MetaStore, commit it if it
        differs from the current manifest, then let the WAL trim. True if committed."""
        wal = self.wal
        catalogue = {sid: (name, lat, ls, hw) for sid, name, lat, ls, hw in wal.catalogue()}
        for sid, (name, lat, log_start, _hw) in catalogue.items():
            prev = new.streams.get(sid)
            end = max(prev.end if prev else 0, log_start, ends.get(sid, 0))
            new.streams[sid] = StreamEntry(name, lat, log_start, end)
        for sid in [sid for sid in new.streams if sid not in catalogue]:
            del new.streams[sid]
            new.producers.pop(sid, None)
            new.compaction.pop(sid, None)
        new.next_stream_id = max(new.next_stream_id, wal.next_stream_id)
        for sid, end in ends.items():
            if sid in catalogue:
                new.producers[sid] = wal.producer_snapshot(sid, end)
        doomed = drop_dead_objects(new)
        meta_version = self.meta.version
        if meta_version != self._meta_version:
            new.meta = self.meta.snapshot()
        old = self.manifest
        if not (force or doomed or meta_version != self._meta_version or new.streams != old.streams
                or new.next_stream_id != old.next_stream_id):
            return False
        await self._retry("commit manifest", self._claim_and_commit(new))
        self.manifest = new
        await self._write_cache(new)
        self._meta_version = meta_version
        wal.mark_uploaded({sid: e.end for sid, e in new.streams.items()})
        due = self.monotonic() + self.delete_grace
        self._doomed.extend((due, key) for key in doomed)
        return True

    def _claim_and_commit(self, new: Manifest) -> Callable[[], Awaitable[None]]:
        async def attempt() -> None:
            if not self.manifests.claimed:
                await self.manifests.claim_after_offline(self.manifest, self.now_ms())
                log.info("manifest_claimed_after_offline_start", seq=self.manifests.seq, epoch=self.manifests.epoch)
            await self.manifests.commit(new, self.now_ms())

        return attempt

    async def _write_cache(self, m: Manifest) -> None:
        if self.cache_path is not None:
            try:
                await trio.to_thread.run_sync(partial(write_cache, self.cache_path, m, fsync=self.settings.fsync))
            except OSError as e:
                log.warning("manifest_cache_write_failed", error=str(e))

    # --- reads --------------------------------------------------------------------------------

    def stream_ranges(self, sid: int) -> tuple[list[tuple[int, int, int, int, int]], list[int]]:
        """([(base, last, bytes, max_ts, object id)], [last, ...]) for the current manifest."""
        m = self.manifest
        if self._ranges_of is not m:
            self._ranges = {}
            self._ranges_of = m
        got = self._ranges.get(sid)
        if got is None:
            rs = m.stream_ranges(sid)
            got = self._ranges[sid] = (rs, [r[1] for r in rs])
        return got

    def clean_end(self, sid: int) -> int:
        """Offsets below were rewritten by log compaction: read them from objects, not the WAL."""
        raw = self.manifest.compaction.get(sid)
        return CompactionState.decode(raw).clean_end if raw else 0

    def object_bytes(self, sid: int, below: int) -> int:
        rs, _lasts = self.stream_ranges(sid)
        return sum(r[2] for r in rs if r[1] < below)

    async def read(self, sid: int, offset: int, max_bytes: int) -> list[bytes]:
        """Whole batches from the one holding `offset` on (at least one, then while they fit).
        An object that fails its checks raises StreamObjectError (counted and logged once)."""
        for attempt in range(3):
            m = self.manifest
            rs, lasts = self.stream_ranges(sid)
            out: list[bytes] = []
            total = 0
            pos = offset
            key = ""
            try:
                for i in range(bisect_left(lasts, pos), len(rs)):
                    o = m.objects[rs[i][4]]
                    key = o.key
                    idx = await self.cache.index(o.key, o.size)
                    blocks = [e for e in idx if e.stream_id == sid]
                    for j, e in enumerate(blocks):
                        if e.last < pos:
                            continue
                        data = await self.cache.block(o.key, blocks, j)
                        for b in so.iter_batches(data):
                            last = so.batch_meta(b)[1]
                            if last < pos:
                                continue
                            if out and total + len(b) > max_bytes:
                                return out
                            out.append(b)
                            total += len(b)
                            pos = last + 1
                return out
            except ObjectNotFoundError:
                if attempt == 2:
                    raise
                await trio.sleep(0.05)  # compacted or deleted under us: the manifest has moved on
            except so.StreamObjectError as e:
                if out:
                    return out  # serve what checked out before the damage; the next fetch gets the error
                self._corrupt_found(e.key or key, f"stream {sid} offset {pos}: {e}")
                raise
        return []

    def _corrupt_found(self, key: str, detail: str) -> None:
        """An object failed its CRC/format checks: count every time, log once per object."""
        self.corrupt_reads += 1
        self.last_corruption = f"{key}: {detail}"
        if key not in self.corrupt:
            self.corrupt[key] = detail
            log.error("object_corrupt", key=key, detail=detail, store=self.store.url)

    def corrupt_objects(self) -> list[str]:
        """Keys of corrupt objects the manifest still references."""
        live = {o.key for o in self.manifest.objects.values()}
        return sorted(k for k in self.corrupt if k in live)

    async def offset_for_timestamp(self, sid: int, timestamp: int, log_start: int) -> tuple[int, int] | None:
        try:
            return await self._offset_for_timestamp(sid, timestamp, log_start)
        except so.StreamObjectError as e:
            self._corrupt_found(e.key, f"stream {sid} timestamp lookup: {e}")
            raise

    async def _offset_for_timestamp(self, sid: int, timestamp: int, log_start: int) -> tuple[int, int] | None:
        m = self.manifest
        rs, _ = self.stream_ranges(sid)
        for _base, last, _n, max_ts, oid in rs:
            if last < log_start or max_ts < timestamp:
                continue
            o = m.objects[oid]
            blocks = [e for e in await self.cache.index(o.key, o.size) if e.stream_id == sid]
            for j, e in enumerate(blocks):
                if e.last < log_start or e.max_ts < timestamp:
                    continue
                for b in so.iter_batches(await self.cache.block(o.key, blocks, j)):
                    b_base, b_last, b_max = so.batch_meta(b)
                    if b_last < log_start or b_max < timestamp:
                        continue
                    start = max(b_base, log_start)
                    h = records.read_header(b)
                    if not (h.compression or h.log_append_time):
                        for rec in records.decode_records(b):
                            if rec.offset >= start and rec.timestamp >= timestamp:
                                return rec.offset, rec.timestamp
                    return start, b_max
        return None

    # --- maintenance --------------------------------------------------------------------------

    async def maintenance_loop(self) -> None:
        while not self.closing and self.fenced is None:
            await self.maintain()
            await trio.sleep(self.settings.maintenance_interval)

    async def maintain(self) -> None:
        """One pass: fencing probe, retention, compaction, garbage. Store errors are logged and
        tried again next pass."""
        try:
            if not self.manifests.claimed:
                async with self._lock:
                    if not self.manifests.claimed:
                        await self.manifests.claim_after_offline(self.manifest, self.now_ms())
                        log.info("manifest_claimed_after_offline_start", seq=self.manifests.seq)
            await self.manifests.check_fenced()
            if await self.apply_retention():
                await self.upload_round()
            await self.key_compactor.run_once()
            while await self.compact():
                pass
            await self.collect_garbage(orphans=self._passes % ORPHAN_SCAN_EVERY == 0)
            await self.manifests.prune()
        except FencedError as e:
            self._on_fenced(e)
        except StorageError as e:
            self.last_error = f"{MAINTENANCE_ERROR}{e}"
            log.warning("maintenance_failed", error=str(e))
        except Exception as e:  # a bug must not stop maintenance for good: say it, try next pass
            self.last_error = f"{MAINTENANCE_ERROR}{e!r}"
            log.error("maintenance_failed", error=repr(e))
        else:
            if self.last_error is not None and self.last_error.startswith(MAINTENANCE_ERROR):
                self.last_error = None  # a whole pass went through: that failure is over
        self._passes += 1

    async def apply_retention(self) -> bool:
        """Move log starts past uploaded ranges that retention.ms/retention.bytes let go."""
        source = self.retention_source
        if source is None:
            return False
        policies = source()
        now = self.now_ms()
        moved = False
        for sid, policy in policies.items():
            if policy.retention_ms < 0 and policy.retention_bytes < 0:
                continue
            entry = self.manifest.streams.get(sid)
            if entry is None:
                continue
            try:
                offsets = self.wal.offsets(sid)
            except StreamNotFoundError:
                continue
            rs = [r for r in self.stream_ranges(sid)[0] if r[1] >= offsets.log_start]
            total = sum(r[2] for r in rs) + max(0, self._wal_bytes_above(sid, entry.end))
            k = 0
            while k < len(rs):
                base, last, nbytes, max_ts, _oid = rs[k]
                expired = policy.retention_ms >= 0 and max_ts < now - policy.retention_ms
                too_big = policy.retention_bytes >= 0 and total - nbytes >= policy.retention_bytes
                held = policy.keep_from is not None and last >= policy.keep_from
                if held or not (expired or too_big):
                    break
                total -= nbytes
                k += 1
            if not k:
                continue
            new_start = rs[k][0] if k < len(rs) else entry.end
            new_start = min(max(new_start, offsets.log_start), offsets.high_watermark)
            if new_start > offsets.log_start:
                await self.wal.delete_records(sid, new_start)
                log.info("retention_applied", stream=sid, log_start=new_start, ranges=k)
                moved = True
        return moved

    def _wal_bytes_above(self, sid: int, end: int) -> int:
        info = self.wal.streams().get(sid)
        if info is None:
            return 0
        return info.size_bytes if self.wal.first_indexed(sid) >= end else 0

    async def compact(self) -> bool:
        """Merge one run of adjacent small objects into one; True if it did."""
        s = self.settings
        async with self._lock:
            if self.fenced is not None or self.closing:
                return False
            m = self.manifest
            ordered = sorted(m.objects.items(), key=lambda kv: kv[1].order)

            def small(o: ObjectEntry) -> bool:  # a corrupt object is left as it is (never merged)
                return o.size < s.compact_small_bytes and o.key not in self.corrupt

            if sum(1 for _oid, o in ordered if small(o)) < s.compact_min_objects:
                return False
            run: list[tuple[int, ObjectEntry]] = []
            size = 0
            for oid, o in ordered:
                if small(o) and (not run or size + o.size <= s.compact_target_bytes):
                    run.append((oid, o))
                    size += o.size
                    continue
                if len(run) >= 2:
                    break
                run, size = ([(oid, o)], o.size) if small(o) else ([], 0)
            if len(run) < 2:
                return False
            # Parsed with other tasks let run every COMPACT_BATCHES_PER_STEP batches, as encode_object
            # does per block: in one go, 16 small objects of 64,000 batches in all held the event
            # loop for 65 ms (a 1 MiB block of small batches alone takes 10-20 ms).
            per_stream: dict[int, list[bytes]] = {}
            ends: dict[int, int] = {}  # per stream: the last offset of the blocks kept so far
            unordered: set[int] = set()
            for _oid, o in run:
                data = await self._retry(f"read {o.key}", lambda o=o: self.store.get(o.key))
                try:
                    if len(data) != o.size:
                        raise so.StreamObjectError(f"object holds {len(data)} bytes, the manifest says {o.size}")
                    for e in so.read_index(data):
                        st = m.streams.get(e.stream_id)
                        if st is None or e.last < st.log_start or e.stream_id not in o.ranges:
                            continue
                        block = data[e.position : e.position + e.length]
                        so.check_block(e, block)
                        keep = per_stream.setdefault(e.stream_id, [])
                        whole = e.base >= st.log_start
                        for n, batch in enumerate(so.iter_batches(block), 1):
                            if whole or so.batch_meta(batch)[1] >= st.log_start:
                                keep.append(batch)
                            if not n % COMPACT_BATCHES_PER_STEP:
                                await trio.lowlevel.checkpoint()
                        if e.base <= ends.get(e.stream_id, -1):
                            unordered.add(e.stream_id)
                        ends[e.stream_id] = max(e.last, ends.get(e.stream_id, -1))
                        await trio.lowlevel.checkpoint()
                except so.StreamObjectError as e:
                    self._corrupt_found(o.key, f"compaction: {e}")
                    return True  # try another run; this object stays out of compaction
            for sid in unordered:  # offset order whatever the objects' `order` (log compaction moves ranges)
                per_stream[sid].sort(key=lambda b: so.batch_meta(b)[0])
            new = m.copy()
            for oid, _o in run:
                del new.objects[oid]
            key = None
            if per_stream:
                oid = new.next_object_id
                new.next_object_id += 1
                key = data_key(oid, self.manifests.epoch)
                data, index = await encode_object(sorted(per_stream.items()))
                self._inflight.add(key)
                await self._retry(f"upload {key}", lambda: self.store.put(key, data))
                new.objects[oid] = ObjectEntry(key, len(data), min(o.order for _i, o in run), self.now_ms(),
                                               ranges_of(index))
            try:
                await self._commit_if_changed(new, {}, force=True)
            finally:
                if key:
                    self._inflight.discard(key)
            due = self.monotonic() + self.delete_grace
            self._doomed.extend((due, o.key) for _oid, o in run)
            self.compactions += 1
            log.info("objects_compacted", merged=len(run), bytes_in=size, objects=len(new.objects))
            return True

    async def collect_garbage(self, *, orphans: bool = False, now: float | None = None) -> None:
        now = self.monotonic() if now is None else now
        keep: list[tuple[float, str]] = []
        for due, key in self._doomed:
            if due > now:
                keep.append((due, key))
                continue
            try:
                await self.store.delete(key)
                self.cache.forget(key)
                self.objects_deleted += 1
                if self.last_error is not None and self.last_error.startswith(DELETE_ERROR):
                    self.last_error = None  # deletes work again
            except StorageError as e:
                keep.append((due, key))
                self.last_error = f"{DELETE_ERROR}{key}: {e}"
        self._doomed = keep
        if orphans and self.fenced is None and self.manifests.claimed:
            referenced = {o.key for o in self.manifest.objects.values()}
            waiting = {k for _d, k in self._doomed}
            found = 0
            for info in await self.store.list(DATA_PREFIX):
                if info.key in referenced or info.key in self._inflight or info.key in waiting:
                    continue
                await self.store.delete(info.key)
                found += 1
            if found:
                self.objects_deleted += found
                log.info("orphans_deleted", objects=found)

    def store_error_seconds(self) -> float:
        """How long object-store calls have been failing (0 while they succeed)."""
        return 0.0 if self.store_error_since is None else max(0.0, self.monotonic() - self.store_error_since)

    def upload_lag(self) -> float:
        """Seconds since the last round that left nothing behind, while data waits (else 0)."""
        if not self.wal.unuploaded_bytes():
            return 0.0
        return max(0.0, self.monotonic() - self._last_success)


async def encode_object(streams: list[tuple[int, list[bytes]]],
                        block_size: int = so.DEFAULT_BLOCK_SIZE) -> tuple[Body, list[so.BlockEntry]]:
    """so.encode_object_body on the trio thread, letting other tasks run after each block: pure
    Python, it gains nothing from a worker thread, where it held the GIL in 5 ms turns against
    the event loop and stretched every connection's response by tens of ms."""
    builder = so.ObjectBuilder()
    for sid, block in so.object_blocks(streams, block_size):
        builder.add_block(sid, block)
        await trio.lowlevel.checkpoint()
    return builder.finish()


def ranges_of(index: list[so.BlockEntry]) -> dict[int, tuple[int, int, int, int]]:
    """Per stream (base, last, bytes, max_ts) of an object's index."""
    out: dict[int, tuple[int, int, int, int]] = {}
    for e in index:
        r = out.get(e.stream_id)
        if r is None:
            out[e.stream_id] = (e.base, e.last, e.length, e.max_ts)
        else:
            out[e.stream_id] = (r[0], e.last, r[2] + e.length, max(r[3], e.max_ts))
    return out


def drop_dead_objects(m: Manifest) -> list[str]:
    """Remove ranges below their stream's log start (or of deleted streams); objects left with
    no range leave the manifest. Returns the keys of the objects that left."""
    doomed = []
    for oid in list(m.objects):
        o = m.objects[oid]
        for sid in list(o.ranges):
            st = m.streams.get(sid)
            if st is None or o.ranges[sid][1] < st.log_start:
                del o.ranges[sid]
        if not o.ranges:
            del m.objects[oid]
            doomed.append(o.key)
    return doomed


__all__ = ["ObjectTier", "RetentionPolicy", "RetentionSource", "data_key", "drop_dead_objects", "ranges_of"]
