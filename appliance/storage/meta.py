"""MetaStore: small durable namespaced key/value maps in `<data-dir>/meta/`.

Files:

    snapshot                 one frame holding msgpack {"v": 1, "journal": G, "data": {ns: {key: value}}}
    journal-<G:020d>.log     frames of msgpack [namespace, {key: value or None}] applied in order

Every frame is a 16-byte big-endian header plus a msgpack payload:

    0  magic   u32  0x4D534D4A ("MSMJ")
    4  crc     u32  CRC-32C of bytes 8 .. end of payload
    8  version u8   FORMAT_VERSION (1)
    9  type    u8   FRAME_PUT (journal) or FRAME_SNAPSHOT
    10 flags   u16  reserved, 0
    12 length  u32  payload length

Writes are group-committed without a background task: the first writer to arrive writes and
fsyncs everything queued (in a worker thread) while later writers queue behind it for the next
round. A value becomes visible to `get`/`items` once it is durable; a failed write raises
StorageError and changes nothing in memory. When the journal passes `compact_bytes`, the whole
state is written as a new snapshot (temp file, fsync, rename, fsync dir) naming the next journal
generation, then the old journal is deleted. Opening replays the snapshot and the journals it
does not cover; a torn or garbled journal tail is cut at the last intact frame and logged.

Counters (`allocate`) live in the namespace "_counters" (value = next free id, starting at 1).
"""

from __future__ import annotations

import errno
import os
import re
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import google_crc32c
import msgpack
import trio

from appliance.errors import StorageError, StorageFullError
from appliance.logs import get_logger
from appliance.storage.segments import fsync_dir, pwrite_all, truncate_file

log = get_logger("storage")

MAGIC = 0x4D534D4A
FORMAT_VERSION = 1
SNAPSHOT_VERSION = 1
FRAME_PUT = 1
FRAME_SNAPSHOT = 2
FRAME = struct.Struct(">IIBBHI")
FRAME_SIZE = FRAME.size  # 16
_COVERED = struct.Struct(">BBHI")
COUNTERS = "_counters"
DEFAULT_COMPACT_BYTES = 4 << 20
_JOURNAL = re.compile(r"^journal-(\d{20})\.log$")


def encode_frame(frame_type: int, payload: bytes) -> bytes:
    covered = _COVERED.pack(FORMAT_VERSION, frame_type, 0, len(payload))
    crc = google_crc32c.extend(google_crc32c.value(covered), payload)
    return FRAME.pack(MAGIC, crc, FORMAT_VERSION, frame_type, 0, len(payload)) + payload


def decode_frames(data: bytes) -> tuple[list[tuple[int, bytes]], int, str | None]:
    """(frames, end of the last intact frame, problem that stopped the scan or None)."""
    frames: list[tuple[int, bytes]] = []
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < FRAME_SIZE:
            return frames, pos, "truncated frame header"
        magic, crc, version, ftype, _flags, length = FRAME.unpack_from(data, pos)
        if magic != MAGIC or version != FORMAT_VERSION:
            return frames, pos, "bad magic or version"
        stop = pos + FRAME_SIZE + length
        if stop > end:
            return frames, pos, "frame runs past the end of the file"
        if google_crc32c.value(data[pos + 8 : stop]) != crc:
            return frames, pos, "CRC-32C mismatch"
        frames.append((ftype, data[pos + FRAME_SIZE : stop]))
        pos = stop
    return frames, pos, None


def _journal_name(gen: int) -> str:
    return f"journal-{gen:020d}.log"


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class _Batch:
    __slots__ = ("frames", "applies", "done", "error")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.applies: list[Callable[[], None]] = []
        self.done = trio.Event()
        self.error: StorageError | None = None


def _write_snapshot_tmp(meta_dir: Path, frame: bytes, fsync: bool) -> Path:
    """snapshot.tmp with `frame` in it (durable if `fsync`); the caller renames it into place."""
    tmp = meta_dir / "snapshot.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        pwrite_all(fd, frame, 0)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


class LocalMetaStore:
    """MetaStore over a journal + snapshot. Create with `LocalMetaStore.open(...)` (blocking)."""

    def __init__(self, meta_dir: Path, *, fsync: bool = True, compact_bytes: int = DEFAULT_COMPACT_BYTES) -> None:
        self._dir = meta_dir
        self._fsync = fsync
        self._compact_bytes = compact_bytes
        self._data: dict[str, dict[str, Any]] = {}
        self._next_ids: dict[str, int] = {}
        self._gen = 0
        self._fd = -1
        self._size = 0
        self._dirty_tail = False  # a failed write may have left bytes past _size
        self._queue: _Batch | None = None
        self._writing = False
        self._closed = False
        self.fsyncs = 0
        self.compactions = 0
        self.last_error: str | None = None
        self.version = 0  # bumped by every applied write (the object tier snapshots on change)

    @classmethod
    def open(cls, meta_dir: Path, *, fsync: bool = True, compact_bytes: int = DEFAULT_COMPACT_BYTES) -> LocalMetaStore:
        meta_dir.mkdir(parents=True, exist_ok=True)
        store = cls(meta_dir, fsync=fsync, compact_bytes=compact_bytes)
        store._recover()
        return store

    def _recover(self) -> None:
        snap = self._dir / "snapshot"
        (self._dir / "snapshot.tmp").unlink(missing_ok=True)
        if snap.exists():
            frames, _end, problem = decode_frames(snap.read_bytes())
            if problem or len(frames) != 1 or frames[0][0] != FRAME_SNAPSHOT:
                raise StorageError(f"{snap}: damaged metadata snapshot ({problem or 'unexpected frames'})")
            doc = _unpack(frames[0][1])
            if doc.get("v") != SNAPSHOT_VERSION:
                raise StorageError(f"{snap}: unsupported snapshot version {doc.get('v')}")
            self._data = {ns: dict(kv) for ns, kv in doc["data"].items()}
            self._gen = doc["journal"]
        journals = sorted(
            (int(m.group(1)), self._dir / name)
            for name in os.listdir(self._dir)
            if (m := _JOURNAL.match(name))
        )
        applied = 0
        for gen, path in journals:
            if gen < self._gen:
                path.unlink()  # folded into the snapshot already
                continue
            data = path.read_bytes()
            frames, end, problem = decode_frames(data)
            for ftype, payload in frames:
                if ftype == FRAME_PUT:
                    ns, entries = _unpack(payload)
                    self._apply(ns, entries)
                    applied += 1
            if problem:
                log.warning("meta_journal_tail_truncated", journal=path.name, frames_kept=len(frames),
                            dropped_bytes=len(data) - end, reason=problem)
                truncate_file(path, end, fsync=self._fsync)
            self._gen = gen
        path = self._dir / _journal_name(self._gen)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        if self._fsync:
            fsync_dir(self._dir)
        log.info("meta_recovered", namespaces=len(self._data), journal=path.name, frames=applied)

    @staticmethod
    def is_blank(meta_dir: Path) -> bool:
        """True when the directory holds no metadata at all (a fresh or wiped data dir)."""
        if not meta_dir.exists():
            return True
        for name in os.listdir(meta_dir):
            if name == "snapshot" or (_JOURNAL.match(name) and (meta_dir / name).stat().st_size > 0):
                return False
        return True

    @staticmethod
    def write_seed(meta_dir: Path, data: Mapping[str, Mapping[str, Any]], *, fsync: bool = True) -> None:
        """Start a blank directory from `data` (cloud recovery from the object store's manifest)."""
        meta_dir.mkdir(parents=True, exist_ok=True)
        frame = encode_frame(FRAME_SNAPSHOT, _pack({"v": SNAPSHOT_VERSION, "journal": 0, "data": dict(data)}))
        tmp = _write_snapshot_tmp(meta_dir, frame, fsync)
        os.replace(tmp, meta_dir / "snapshot")
        if fsync:
            fsync_dir(meta_dir)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """A copy of every namespace (for the object-storage manifest)."""
        return _unpack(_pack(self._data))

    def _apply(self, ns: str, entries: Mapping[str, Any]) -> None:
        self.version += 1
        space = self._data.setdefault(ns, {})
        for key, value in entries.items():
            if value is None:
                space.pop(key, None)
            else:
                space[key] = value

    # --- the port -----------------------------------------------------------------------------

    def get(self, namespace: str, key: str) -> Any | None:
        space = self._data.get(namespace)
        return None if space is None else space.get(key)

    def items(self, namespace: str) -> Mapping[str, Any]:
        """A copy of the namespace (safe to iterate across awaits)."""
        space = self._data.get(namespace)
        return dict(space) if space else {}

    async def put(self, namespace: str, key: str, value: Any | None) -> None:
        await self.put_many(namespace, {key: value})

    async def put_many(self, namespace: str, entries: Mapping[str, Any | None]) -> None:
        entries = dict(entries)
        payload = _pack([namespace, entries])  # raises TypeError now for values msgpack cannot hold
        await self._commit(encode_frame(FRAME_PUT, payload), lambda: self._apply(namespace, entries))

    async def allocate(self, counter: str, count: int = 1) -> int:
        if count < 1:
            raise ValueError("count must be >= 1")
        first = self._next_ids.get(counter)
        if first is None:
            first = self.get(COUNTERS, counter) or 1
        # Reserved at once so concurrent callers never overlap; ids of a failed write are skipped.
        self._next_ids[counter] = first + count
        await self.put(COUNTERS, counter, first + count)
        return first

    # --- group commit -------------------------------------------------------------------------

    async def _commit(self, frame: bytes, apply: Callable[[], None]) -> None:
        if self._closed:
            raise StorageError("metadata store is closed")
        batch = self._queue
        if batch is None:
            batch = self._queue = _Batch()
        batch.frames.append(frame)
        batch.applies.append(apply)
        if not self._writing:
            self._writing = True
            try:
                while self._queue is not None:
                    current, self._queue = self._queue, None
                    with trio.CancelScope(shield=True):
                        await self._write(current)
            finally:
                self._writing = False
        if not batch.done.is_set():
            await batch.done.wait()
        if batch.error is not None:
            raise type(batch.error)(str(batch.error))

    async def _write(self, batch: _Batch) -> None:
        data = b"".join(batch.frames)
        fd, pos, do_fsync, dirty = self._fd, self._size, self._fsync, self._dirty_tail

        def work() -> None:
            if dirty:
                os.ftruncate(fd, pos)
            pwrite_all(fd, data, pos)
            if do_fsync:
                os.fsync(fd)

        try:
            await trio.to_thread.run_sync(work)
        except OSError as e:
            cls = StorageFullError if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)) else StorageError
            batch.error = cls(f"metadata write failed: {e}")
            self.last_error = str(batch.error)
            self._dirty_tail = True
            log.error("meta_write_failed", error=e, frames=len(batch.frames))
            batch.done.set()
            return
        self._dirty_tail = False
        self._size += len(data)
        if do_fsync:
            self.fsyncs += 1
        for apply in batch.applies:
            apply()
        batch.done.set()
        if self._size >= self._compact_bytes:
            try:
                await self._compact()
            except OSError as e:  # the journal is still complete; try again after the next write
                self.last_error = f"metadata compaction failed: {e}"
                log.error("meta_compaction_failed", error=e)

    async def _compact(self) -> None:
        gen = self._gen + 1
        payload = _pack({"v": SNAPSHOT_VERSION, "journal": gen, "data": self._data})
        frame = encode_frame(FRAME_SNAPSHOT, payload)
        d, do_fsync = self._dir, self._fsync
        old_path = d / _journal_name(self._gen)

        def work() -> int:
            tmp = _write_snapshot_tmp(d, frame, do_fsync)
            new_fd = os.open(d / _journal_name(gen), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.replace(tmp, d / "snapshot")
                if do_fsync:
                    fsync_dir(d)
            except BaseException:
                os.close(new_fd)
                raise
            return new_fd

        new_fd = await trio.to_thread.run_sync(work)
        os.close(self._fd)
        self._fd, self._gen, self._size = new_fd, gen, 0
        old_path.unlink(missing_ok=True)
        self.compactions += 1
        log.info("meta_compacted", snapshot_bytes=len(frame), journal=_journal_name(gen))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with trio.move_on_after(30):
            while self._writing:  # let the write in flight finish before the file goes
                await trio.sleep(0.005)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def abandon(self) -> None:
        """Release the file without anything else (tests: a crash without close)."""
        self._closed = True
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


__all__ = ["LocalMetaStore", "decode_frames", "encode_frame"]
