"""The manifest: what object storage holds, kept in the object store itself.

Every commit writes the WHOLE state as a new object `manifest/<seq:020d>.mf`, created with
put_if_absent, so exactly one writer can produce each sequence number. The content is a msgpack
map with a format version:

    {"v": 1, "seq": N, "epoch": E, "written_ms": T, "next_object_id": int, "next_stream_id": int,
     "streams": [[id, name, log_append_time, log_start, end], ...],      # end: uploaded end
     "objects": [[id, key, size, order, created_ms,
                  [[stream_id, base, last, bytes, max_ts], ...]], ...],  # ranges per stream
     "meta": {namespace: {key: value}},       # MetaStore contents (topics, group offsets, ...)
     "producers": {stream_id: snapshot},      # idempotent-producer state at each stream's end
     "compaction": {stream_id: state}}        # cleanup.policy=compact progress (key_compaction.py)

Fencing (SlateDB style): a node taking over the bucket/prefix first writes manifest N+1 with
epoch = epoch(N) + 1. The older writer's next commit of N+1 then fails (the key exists) and it
finds a higher epoch there: it is fenced, stops writing for good and says why. A writer whose
create of N+1 failed ambiguously (timeout) and finds its own bytes there treats it as done.

`order` sorts objects by the offsets they cover (upload order; a compacted object keeps the
lowest order of the objects it replaced), which keeps every stream's ranges in offset order.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from appliance.errors import StorageError
from appliance.logs import get_logger
from appliance.storage.objects.port import ObjectNotFoundError, ObjectStore

log = get_logger("manifest")

FORMAT_VERSION = 1
PREFIX = "manifest/"
_KEY = re.compile(r"^manifest/(\d{20})\.mf$")
KEEP_OLD = 8  # older manifests kept around (for humans and debugging), the rest are deleted


class FencedError(StorageError):
    """Another node took over this bucket/prefix; this node may no longer write."""


def manifest_key(seq: int) -> str:
    return f"{PREFIX}{seq:020d}.mf"


def write_cache(path: Path, m: Manifest, *, fsync: bool = True) -> None:
    """Keep a local copy of the last committed manifest (blocking): a plant node whose object
    store is down at start-up recovers from it and claims the bucket once the store is back."""
    tmp = path.with_name(path.name + ".tmp")
    data = m.encode()
    with open(tmp, "wb") as fh:
        fh.write(data)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_cache(path: Path) -> Manifest | None:
    try:
        return Manifest.decode(path.read_bytes())
    except (OSError, ValueError, KeyError, TypeError, StorageError):
        return None


@dataclass(slots=True)
class StreamEntry:
    name: str
    lat: bool
    log_start: int
    end: int  # one past the last uploaded offset


@dataclass(slots=True)
class ObjectEntry:
    key: str
    size: int
    order: int
    created_ms: int
    ranges: dict[int, tuple[int, int, int, int]]  # stream id -> (base, last, bytes, max_ts)


@dataclass
class Manifest:
    seq: int = 0
    epoch: int = 0
    written_ms: int = 0
    next_object_id: int = 1
    next_stream_id: int = 1
    streams: dict[int, StreamEntry] = field(default_factory=dict)
    objects: dict[int, ObjectEntry] = field(default_factory=dict)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    producers: dict[int, Any] = field(default_factory=dict)
    compaction: dict[int, list] = field(default_factory=dict)  # CompactionState.encode() per stream

    def copy(self) -> Manifest:
        return copy.deepcopy(self)

    def encode(self) -> bytes:
        doc = {
            "v": FORMAT_VERSION, "seq": self.seq, "epoch": self.epoch, "written_ms": self.written_ms,
            "next_object_id": self.next_object_id, "next_stream_id": self.next_stream_id,
            "streams": [[sid, s.name, s.lat, s.log_start, s.end] for sid, s in sorted(self.streams.items())],
            "objects": [[oid, o.key, o.size, o.order, o.created_ms,
                         [[sid, *r] for sid, r in sorted(o.ranges.items())]]
                        for oid, o in sorted(self.objects.items())],
            "meta": self.meta,
            "producers": self.producers,
            "compaction": self.compaction,
        }
        return msgpack.packb(doc, use_bin_type=True)

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        doc = msgpack.unpackb(data, raw=False, strict_map_key=False)
        if not isinstance(doc, dict) or doc.get("v") != FORMAT_VERSION:
            raise StorageError(f"unsupported manifest format {doc.get('v') if isinstance(doc, dict) else '?'}")
        return cls(
            seq=doc["seq"], epoch=doc["epoch"], written_ms=doc.get("written_ms", 0),
            next_object_id=doc["next_object_id"], next_stream_id=doc["next_stream_id"],
            streams={sid: StreamEntry(name, lat, ls, end) for sid, name, lat, ls, end in doc["streams"]},
            objects={oid: ObjectEntry(key, size, order, created, {r[0]: tuple(r[1:]) for r in ranges})
                     for oid, key, size, order, created, ranges in doc["objects"]},
            meta=doc.get("meta") or {},
            producers={int(k): v for k, v in (doc.get("producers") or {}).items()},
            compaction={int(k): v for k, v in (doc.get("compaction") or {}).items()},
        )

    def stream_ranges(self, sid: int) -> list[tuple[int, int, int, int, int]]:
        """[(base, last, bytes, max_ts, object id)] of a stream, in offset order."""
        out = [(r[0], r[1], r[2], r[3], oid) for oid, o in self.objects.items() if (r := o.ranges.get(sid))]
        out.sort()
        return out


class ManifestStore:
    """Reads, claims and commits manifests in one object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.seq = 0
        self.epoch = 0
        self.claimed = False  # False while running on a cached manifest (store unreachable at start)
        self.fenced_by: int | None = None

    async def load_latest(self) -> Manifest | None:
        listed = await self.store.list(PREFIX)
        seqs = sorted((int(m.group(1)) for o in listed if (m := _KEY.match(o.key))), reverse=True)
        for seq in seqs:
            try:
                return Manifest.decode(await self.store.get(manifest_key(seq)))
            except ObjectNotFoundError:
                continue  # pruned under us; take the next
        return None

    async def claim(self, latest: Manifest | None, now_ms: int) -> Manifest:
        """Become the writer: write the next manifest with a higher epoch (retrying if another
        node claims concurrently). Returns the claimed state."""
        while True:
            m = latest.copy() if latest is not None else Manifest()
            m.seq += 1
            m.epoch += 1
            m.written_ms = now_ms
            if await self.store.put_if_absent(manifest_key(m.seq), m.encode()):
                self.seq, self.epoch, self.claimed = m.seq, m.epoch, True
                log.info("manifest_claimed", seq=m.seq, epoch=m.epoch, store=self.store.url)
                return m
            latest = await self.load_latest()

    async def commit(self, m: Manifest, now_ms: int) -> None:
        """Write `m` as the next manifest. Raises FencedError if another writer took over,
        ObjectStoreError if the store failed (then nothing is known to be written: retry)."""
        if self.fenced_by is not None:
            raise FencedError(f"fenced by a writer with epoch {self.fenced_by}")
        if not self.claimed:
            raise StorageError("the manifest is not claimed yet")
        m.epoch = self.epoch
        m.written_ms = now_ms
        while True:
            m.seq = self.seq + 1
            data = m.encode()
            key = manifest_key(m.seq)
            if await self.store.put_if_absent(key, data):
                break
            other = await self.store.get(key)
            if other == data:
                break  # our own earlier attempt landed after all
            epoch = Manifest.decode(other).epoch
            if epoch != self.epoch:
                self._fence(epoch)
            self.seq = m.seq  # an earlier attempt of ours (reply lost) landed: go past it
        self.seq = m.seq

    async def check_fenced(self) -> None:
        """Raise FencedError if a manifest after ours exists (another node took over). One with
        our own epoch is our commit in flight (this probe runs beside uploads), not a rival."""
        if self.fenced_by is not None:
            raise FencedError(f"fenced by a writer with epoch {self.fenced_by}")
        if not self.claimed:
            return
        try:
            other = await self.store.get(manifest_key(self.seq + 1))
        except ObjectNotFoundError:
            return
        epoch = Manifest.decode(other).epoch
        if epoch != self.epoch:
            self._fence(epoch)

    def _fence(self, epoch: int) -> None:
        self.fenced_by = epoch
        raise FencedError(f"another node (epoch {epoch}) took over {self.store.url}; this node's epoch is {self.epoch}")

    async def claim_after_offline(self, cached: Manifest, now_ms: int) -> None:
        """Claim the writer epoch for a node that started on its cached manifest. If the bucket
        moved on meanwhile (another node wrote), this node is the stale one: FencedError.

        Newer manifests with the cache's own epoch are this node's previous run's: a commit whose
        reply was lost in the outage, or a crash between a commit and the cache write. The WAL is
        trimmed only after the cache write, so it still holds their data: they are superseded
        (their extra objects become orphans and are collected), not a rival's."""
        latest = await self.load_latest()
        if latest is not None and latest.seq != cached.seq and latest.epoch != cached.epoch:
            self._fence(latest.epoch)
        await self.claim(latest, now_ms)

    async def prune(self) -> int:
        """Delete manifests older than the newest KEEP_OLD; returns how many went."""
        if not self.claimed:
            return 0
        listed = await self.store.list(PREFIX)
        old = [o.key for o in listed if (m := _KEY.match(o.key)) and int(m.group(1)) <= self.seq - KEEP_OLD]
        for key in old:
            await self.store.delete(key)
        return len(old)


__all__ = ["FencedError", "Manifest", "ManifestStore", "ObjectEntry", "StreamEntry", "manifest_key", "read_cache",
           "write_cache"]
