"""The log compactor of the object tier (`cleanup.policy=compact`): the IO around the pure
planner in `appliance.storage.key_compaction`.

One run of one stream:
1. From the current manifest, take the stream's uploaded ranges at or above its log start and
   keep the leading ones that are cleanable (older than min.compaction.lag.ms, below what the
   uplink still has to forward). The WAL head is never part of it: only uploaded data is.
2. Read the region twice from its objects (block cache, ranged GETs): once to map keys to their
   latest offsets, once to filter; the kept batches are packed into new single-stream objects
   (about `stream_object_bytes` each) and uploaded under fresh keys, marked in flight so the
   orphan scan leaves them alone.
3. Under the tier's manifest lock: if the region's ranges are still exactly as read (an upload
   round only adds ranges above it; retention, DeleteRecords or object merging may have moved
   things: then the run is dropped and its objects deleted), the stream's ranges leave the old
   objects, the new objects enter, the stream's CompactionState is updated, and the manifest is
   committed with the writer's epoch (a fenced writer commits nothing).
4. Objects left with no range are deleted only after that commit, after the delete grace.

Crash safety: before the commit the bucket holds the old manifest and some unreferenced new
objects (the orphan scan deletes them); after it, the new manifest and unreferenced old objects
(same). A reader sees the old state or the new one, never a mix.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

import trio

from appliance.errors import StreamNotFoundError
from appliance.logs import get_logger
from appliance.storage import stream_object as so
from appliance.storage.key_compaction import (
    CompactionPolicy,
    CompactionState,
    KeyCompaction,
    cleanable_ranges,
    is_due,
)
from appliance.storage.manifest import FencedError, Manifest, ObjectEntry
from appliance.storage.objects.port import Body, ObjectNotFoundError

if TYPE_CHECKING:
    from appliance.storage.tier import ObjectTier

log = get_logger("compaction")

KEY_PREFIX = "data/k"  # under the tier's data prefix, so the orphan scan covers these objects too


class KeyCompactor:
    def __init__(self, tier: ObjectTier) -> None:
        self.tier = tier
        self._one_at_a_time = trio.Lock()
        self._seq = itertools.count()
        # counters (storage status, /metrics)
        self.runs = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.last_run_ms = 0
        self.aborted = 0

    def _key(self, sid: int) -> str:
        return f"{KEY_PREFIX}-e{self.tier.manifests.epoch}-s{sid}-{next(self._seq):08d}.so"

    async def run_once(self, *, force: bool = False) -> int:
        """Compact every compacted stream that is due (all cleanable ones with force); returns
        how many were rewritten."""
        source = self.tier.retention_source
        if source is None:
            return 0
        done = 0
        for sid, policy in sorted(source().items()):
            if policy.compaction is not None and await self.compact_stream(
                    sid, policy.compaction, keep_from=policy.keep_from, force=force):
                done += 1
        return done

    async def compact_stream(self, sid: int, policy: CompactionPolicy, *, keep_from: int | None = None,
                             force: bool = False) -> bool:
        async with self._one_at_a_time:
            tier = self.tier
            if tier.fenced is not None or tier.closing or not tier.manifests.claimed:
                return False
            m = tier.manifest
            if sid not in m.streams:
                return False
            try:
                log_start = tier.wal.offsets(sid).log_start
            except StreamNotFoundError:
                return False
            state = CompactionState.decode(m.compaction.get(sid))
            now = tier.now_ms()
            ranges = [r for r in m.stream_ranges(sid) if r[1] >= log_start]
            region = ranges[:cleanable_ranges(ranges, now, policy, keep_from)]
            if not region or not (force or is_due(state, region, policy, now)):
                return False
            end = region[-1][1] + 1
            run = KeyCompaction(state, policy, now, end)
            outputs: list[tuple[str, Body, list[so.BlockEntry]]] = []
            try:
                async for b in self._batches(m, sid, region, log_start, end):
                    run.scan(b)
                pending: list[bytes] = []
                size = 0
                async for b in self._batches(m, sid, region, log_start, end):
                    kept = run.filter(b)
                    if kept is None:
                        continue
                    pending.append(kept)
                    size += len(kept)
                    # (nothing is uploaded while every batch so far stays as it is, up to a memory cap)
                    if size >= tier.settings.stream_object_bytes and (
                            run.changed or size >= tier.settings.compact_target_bytes):
                        outputs.append(await self._upload(sid, pending))
                        pending, size = [], 0
                if not run.changed:  # nothing to rewrite: keep the objects, record the progress
                    for key, _d, _i in outputs:
                        tier._inflight.discard(key)
                        tier._doomed.append((tier.monotonic(), key))
                    outputs = []
                    committed = await self._commit(m, sid, region, None, run.finish(), now)
                else:
                    if pending:
                        outputs.append(await self._upload(sid, pending))
                    committed = await self._commit(m, sid, region, outputs, run.finish(), now)
            except ObjectNotFoundError:
                committed = False  # an object of the region went away under us: the manifest moved on
            except so.StreamObjectError as e:  # a corrupt object: reported, the stream left as it is
                tier._corrupt_found(e.key, f"log compaction of stream {sid}: {e}")
                committed = False
            except FencedError as e:
                tier._on_fenced(e)
                committed = False
            finally:
                for key, _d, _i in outputs:
                    tier._inflight.discard(key)
            if not committed:
                self.aborted += 1
                due = tier.monotonic()
                tier._doomed.extend((due, key) for key, _d, _i in outputs)  # never in a manifest
                log.info("compaction_dropped", stream=sid, reason="the stream's objects changed during the run")
                return False
            st = run.stats
            self.runs += 1
            self.bytes_in += st.bytes_in
            self.bytes_out += st.bytes_out
            self.last_run_ms = now
            log.info("stream_compacted", stream=sid, end=end, bytes_in=st.bytes_in, bytes_out=st.bytes_out,
                     records_in=st.records_in, records_out=st.records_out, tombstones_dropped=st.tombstones_dropped,
                     kept_as_is=st.kept_as_is, objects_in=len({r[4] for r in region}), objects_out=len(outputs),
                     manifest=tier.manifests.seq)
            return True

    async def _batches(self, m: Manifest, sid: int, region: list[tuple[int, int, int, int, int]], log_start: int,
                       end: int) -> AsyncIterator[bytes]:
        """The stream's batches in [log_start, end), in offset order, from the region's objects."""
        cache = self.tier.cache
        for _base, _last, _n, _ts, oid in region:
            o = m.objects[oid]
            blocks = [e for e in await cache.index(o.key, o.size) if e.stream_id == sid]
            for j, e in enumerate(blocks):
                if e.last < log_start or e.base >= end:
                    continue
                for b in so.iter_batches(await cache.block(o.key, blocks, j)):
                    _b, last, _ts2 = so.batch_meta(b)
                    if log_start <= last < end:
                        yield b

    async def _upload(self, sid: int, batches: list[bytes]) -> tuple[str, Body, list[so.BlockEntry]]:
        from appliance.storage.tier import encode_object  # tier imports this module

        tier = self.tier
        key = self._key(sid)
        data, index = await encode_object([(sid, batches)])
        tier._inflight.add(key)
        await tier._retry(f"upload {key}", lambda: tier.store.put(key, data))
        return key, data, index

    async def _commit(self, m: Manifest, sid: int, region: list[tuple[int, int, int, int, int]],
                      outputs: list[tuple[str, Body, list[so.BlockEntry]]] | None, state: CompactionState,
                      now: int) -> bool:
        """Swap the region's ranges for `outputs` (None: leave the objects as they are) and record
        the stream's state, in one manifest commit; False if the region changed meanwhile."""
        from appliance.storage.tier import ranges_of

        tier = self.tier
        async with tier._lock:
            if tier.fenced is not None:
                return False
            cur = tier.manifest
            sources = {r[4] for r in region}
            if sid not in cur.streams or any(
                    oid not in cur.objects or cur.objects[oid].ranges.get(sid) != m.objects[oid].ranges.get(sid)
                    for oid in sources):
                return False
            new = cur.copy()
            new.compaction[sid] = state.encode()
            if outputs is None:
                await tier._commit_if_changed(new, {}, force=True)
                return True
            for oid in sources:
                del new.objects[oid].ranges[sid]  # objects left empty leave (and are deleted) in the commit
            order = min(m.objects[oid].order for oid in sources)
            for key, data, index in outputs:
                oid = new.next_object_id
                new.next_object_id += 1
                new.objects[oid] = ObjectEntry(key, len(data), order, now, ranges_of(index))
            await tier._commit_if_changed(new, {}, force=True)
            return True

    def states(self) -> Mapping[int, CompactionState]:
        return {sid: CompactionState.decode(raw) for sid, raw in self.tier.manifest.compaction.items()}


__all__ = ["KEY_PREFIX", "KeyCompactor"]
