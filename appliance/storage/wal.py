"""The write-ahead log: one per node, shared by all streams; implements the LogStore port.

Append path (synchronous, no checkpoint): check idempotence, assign offsets, rewrite baseOffset
(and LogAppendTime), queue the bytes in the open commit group and return a PendingAppend.
Queued groups (up to `group_commit_bytes` at a time) go to the WAL's own long-lived writer thread
(`wal_writer.py`) as ONE gather write and ONE fsync, so appends keep arriving while the disk
works. The write's completion comes back as a `run_sync_soon` callback that indexes the batches,
puts them in the log cache, advances each stream's high watermark, resolves the groups and hands
whatever queued meanwhile to the thread at once; the flusher task (`run_flusher`, started by
`LocalStorage.run`) only wakes to start a write when an append finds the writer idle. At most one
write is in flight. At low rates a small commit is written and fsync'd on the trio thread itself
instead (`inline_sync_rate`, see INLINE_MAX_BYTES below): the thread's two hand-offs cost as much
as the fsync there. Readers only ever see the durable index, so nothing is visible before its
fsync. `close()` writes everything queued, then stops and joins the thread.

Failure (write or fsync raises, e.g. EIO or ENOSPC): every queued append (the failed groups and
all groups behind them, whose offsets depend on them) fails with StorageError (StorageFullError
for ENOSPC/EDQUOT); each stream's log end is rolled back to its high watermark and its producer
state cut back, so the retried batches get the same offsets again. The segment the failure hit
is abandoned (after fsync trouble the page cache cannot be trusted): the next write starts a new
segment whose leading CHECKPOINT record states the durable ends, which on replay discards
anything of the failed write that may have reached the disk. The store keeps running.

Segments roll at group boundaries once the active one reaches `wal_segment_size` (so a segment
can exceed it by up to one group). A segment other than the active one is deleted as soon as
every batch in it is dead: its stream was deleted or its offsets are below the log start.
`delete_stream`/`delete_records` therefore free space only when whole segments die; if the
active segment holds only dead data the WAL rolls so it can go. The files themselves go once no
read is in flight, on a worker thread run by the flusher's janitor task, a step at a time
(`unlink_gently`): unlinking a 64 MiB file on the event loop took 46 ms, during which no
connection was served, and at once it held up the WAL's own fsyncs. When the WAL (segments plus
queued bytes) would exceed `wal_budget`, or more than max(64 MiB, 4 x group_commit_bytes) wait
for the disk, `append` raises StorageFullError (back-pressure, retriable for clients).

Recovery (`WalLogStore.open`): replay segments oldest first, verify every CRC, truncate a
torn/garbled tail at the last intact record (logged with counts), rebuild streams, indexes and
producer state from batch headers, then start a fresh segment with a checkpoint.
"""

from __future__ import annotations

import errno
import os
import struct
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from appliance.config import StorageSettings
from appliance.errors import (
    DuplicateBatchError,
    OffsetOutOfRangeError,
    StorageError,
    StorageFullError,
    StreamNotFoundError,
)
from appliance.kafka import records
from appliance.logs import get_logger
from appliance.storage import wal_format as fmt
from appliance.storage.ports import AppendResult, ReadResult, StreamInfo, StreamOffsets
from appliance.storage.producer_state import ProducerStateTable
from appliance.storage.segments import (
    fsync_dir,
    list_segments,
    pread_exact,
    pwrite_all,
    pwritev_all,
    segment_name,
    truncate_file,
    unlink_gently,
)
from appliance.storage.wal_writer import WalWriter

log = get_logger("storage")

_BATCH_HEADER = records.HEADER  # 61-byte Kafka batch header
_MAX_TS = struct.Struct(">q")
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
THREAD_READ_BYTES = 64 << 10  # file reads bigger than this go to a worker thread
RETRY_DELAY = 0.1  # seconds the flusher pauses after a failed write
# At low rates a small commit is written and fsync'd on the trio thread itself: the writer
# thread's two hand-offs per commit (wake it, then wake trio with the result) cost 0.2-0.5 ms
# each on a small VM, as much as the fsync, and the loop has little else to do meanwhile. At
# high rates the thread lets the loop go on decoding while the disk works (and commits grow to
# carry everything that arrived during the fsync), so above `inline_sync_rate` records/s, for
# commits over INLINE_MAX_BYTES and for segment rolls the thread does it; and so it does while
# a commit's write + fsync takes INLINE_MAX_COMMIT_SECONDS or more on average (a slow or stalling
# disk, where the hand-offs are small beside the fsync and an inline one would stall the loop).
# The average follows every commit, inline or not, so it recovers when the disk does.
INLINE_MAX_BYTES = 64 << 10
INLINE_MAX_COMMIT_SECONDS = 0.002
COMMIT_TIME_WEIGHT = 0.1
RATE_WINDOW_SECONDS = 0.1
QUEUE_LIMIT_BYTES = 64 << 20  # queued (not yet written) bytes beyond which appends are refused


class _Stream:
    """One stream: catalogue entry, offsets, durable index (parallel arrays), cache, producers."""

    __slots__ = (
        "id", "name", "lat", "log_start", "log_end", "hw", "bases", "lasts", "cum_ts", "segs",
        "poss", "sizes", "cache", "producers", "size_bytes", "rollbacks", "deleting", "deleted", "uploaded",
    )

    def __init__(self, sid: int, name: str, lat: bool, log_start: int = 0, log_end: int = 0) -> None:
        self.id = sid
        self.name = name
        self.lat = lat
        self.log_start = log_start
        self.log_end = log_end  # next offset to assign
        self.hw = log_end  # one past the last durable offset
        self.bases = array("q")
        self.lasts = array("q")
        self.cum_ts = array("q")  # running max of batch max timestamps (monotonic, for bisect)
        self.segs = array("q")
        self.poss = array("q")  # file position of the batch bytes (after the WAL record header)
        self.sizes = array("q")
        self.cache: dict[int, bytes] = {}  # base offset -> batch bytes, for recent batches
        self.producers = ProducerStateTable()
        self.size_bytes = 0
        self.rollbacks = 0
        self.deleting = False
        self.deleted = False
        self.uploaded = 0  # offsets below this are in object storage (committed to the manifest)

    def add_index(self, base: int, last: int, max_ts: int, seg: int, pos: int, size: int) -> None:
        self.bases.append(base)
        self.lasts.append(last)
        cum = self.cum_ts
        cum.append(max_ts if not cum or max_ts > cum[-1] else cum[-1])
        self.segs.append(seg)
        self.poss.append(pos)
        self.sizes.append(size)
        self.size_bytes += size

    def drop_index_before(self, offset: int) -> None:
        """Forget whole batches that end below `offset`."""
        k = bisect_left(self.lasts, offset)
        if k:
            self.size_bytes -= sum(self.sizes[:k])
            for base in self.bases[:k]:
                self.cache.pop(base, None)
            for arr in (self.bases, self.lasts, self.cum_ts, self.segs, self.poss, self.sizes):
                del arr[:k]

    def drop_index_through(self, k: int) -> None:
        """Forget the first k index entries (their segments were deleted after upload). Their
        cached batches stay until the cache evicts them, oldest first, as it would anyway: no
        read reaches them without an index entry, and dropping them one by one cost 21 ms on
        the event loop per 64 MiB segment of small batches."""
        if k:
            self.size_bytes -= sum(self.sizes[:k])
            for arr in (self.bases, self.lasts, self.cum_ts, self.segs, self.poss, self.sizes):
                del arr[:k]

    def drop_index_from(self, offset: int) -> None:
        """Forget batches starting at or after `offset` (replay cut back by a checkpoint)."""
        k = bisect_left(self.bases, offset)
        if k < len(self.bases):
            self.size_bytes -= sum(self.sizes[k:])
            for base in self.bases[k:]:
                self.cache.pop(base, None)
            for arr in (self.bases, self.lasts, self.cum_ts, self.segs, self.poss, self.sizes):
                del arr[k:]


@dataclass(frozen=True)
class WalSeed:
    """What object storage's manifest knows, merged into the WAL at recovery.

    `streams`: (id, name, log_append_time, log_start, uploaded end). With an empty WAL (a fresh
    or wiped data dir) they become the catalogue; otherwise the WAL's catalogue wins (a stream
    it does not know was deleted) and the manifest only raises log starts and marks what is
    uploaded. `producers`: producer-state snapshots as of each stream's uploaded end; batches
    the WAL replayed above that end are added on top.
    """

    next_stream_id: int = 1
    streams: tuple[tuple[int, str, bool, int, int], ...] = ()
    producers: Mapping[int, Any] = field(default_factory=dict)


class _Segment:
    __slots__ = ("number", "path", "size", "streams")

    def __init__(self, number: int, path: Path, size: int = 0) -> None:
        self.number = number
        self.path = path
        self.size = size
        self.streams: dict[int, int] = {}  # stream id -> highest last offset of its batches here


class _Group:
    """Appends that share one write and one fsync."""

    __slots__ = ("items", "nbytes", "done", "error")

    def __init__(self) -> None:
        # item: (record type, stream id, base, last, payload, _Stream | None, max timestamp)
        self.items: list[tuple[int, int, int, int, bytes, Any, int]] = []
        self.nbytes = 0
        self.done = trio.Event()
        self.error: StorageError | None = None

    async def wait(self) -> None:
        if not self.done.is_set():
            await self.done.wait()
        if self.error is not None:
            raise type(self.error)(str(self.error))


class _Flush:
    """Groups handed to the writer thread as one write and one fsync."""

    __slots__ = ("groups", "items", "roll", "done")

    def __init__(self, groups: list[_Group], items: list[Any], roll: bool) -> None:
        self.groups = groups
        self.items = items
        self.roll = roll
        self.done = trio.Event()

    def complete(self, store: WalLogStore) -> Any:
        return lambda result, error: store._finish(self, result, error)


class _PendingAppend:
    __slots__ = ("result", "_group")

    def __init__(self, result: AppendResult, group: _Group) -> None:
        self.result = result
        self._group = group

    async def durable(self) -> AppendResult:
        await self._group.wait()
        return self.result


class _PendingDuplicate:
    """A retry of a batch that is itself still waiting for its fsync: resolves with it."""

    __slots__ = ("result", "_store", "_stream", "_rollbacks")

    def __init__(self, result: AppendResult, store: WalLogStore, stream: _Stream) -> None:
        self.result = result
        self._store = store
        self._stream = stream
        self._rollbacks = stream.rollbacks

    async def durable(self) -> AppendResult:
        s = self._stream
        while True:
            if s.rollbacks != self._rollbacks or s.deleted:
                raise StorageError("the original of this duplicate batch could not be stored")
            if s.hw > self.result.last_offset:
                return self.result
            await self._store._wait_any((s.id,))


class WalLogStore:
    """LogStore over a local WAL. Create with `WalLogStore.open(...)` (blocking: recovery)."""

    def __init__(self, wal_dir: Path, settings: StorageSettings, seed: WalSeed | None = None, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._dir = wal_dir
        self._settings = settings
        self._fsync = settings.fsync
        self._inline_rate = settings.inline_sync_rate
        self._commit_seconds = 0.0  # moving average of a commit's write + fsync time
        self._monotonic = monotonic
        self._rate_since = 0.0  # records appended since then (the arrival rate, per window)
        self._rate_records = 0
        self._recent_rate = 0.0
        self._segment_size = settings.wal_segment_size
        self._budget = settings.wal_budget
        self._cache_limit = settings.log_cache_size
        self._group_cap = max(1, settings.group_commit_bytes)
        # Memory bound while the disk is slow: Kafka clients retry a KAFKA_STORAGE_ERROR.
        self._queue_limit = max(QUEUE_LIMIT_BYTES, 4 * self._group_cap)
        self._streams: dict[int, _Stream] = {}
        self._next_stream_id = 1
        self._segments: dict[int, _Segment] = {}
        self._active: _Segment | None = None
        self._wfd = -1
        self._next_segment = 0
        self._rfds: dict[int, int] = {}
        self._fds_to_close: list[int] = []  # these two go once no read is in flight
        self._paths_to_delete: list[Path] = []  # of deleted segments
        self._janitor_wakeup = trio.Event()
        self._janitor_running = False
        self._reads_in_flight = 0
        self._wal_bytes = 0
        self._queued_bytes = 0
        self._groups: deque[_Group] = deque()
        self._must_roll = False
        self._roll_requested = False
        # (stream id, base offset, bytes) per cached batch, oldest first. Ids, not _Stream objects:
        # tuples of ints are untracked by the cyclic GC, so hundreds of thousands of these cost
        # nothing in its full collections (they cost 10-30 ms pauses per collection before).
        self._cache_fifo: deque[tuple[int, int, int]] = deque()
        self._cache_bytes = 0
        self._waiters: dict[int, set[trio.Event]] = {}
        self._wakeup = trio.Event()  # the flusher task waits here while nothing is in flight
        self._writer: WalWriter | None = None
        self._inflight: _Flush | None = None
        self._after_write: list[Callable[[], None]] = []  # see when_write_done()
        self._finishing = False  # in _finish: it starts the next write itself, no flusher wake-up
        self._crash: Exception | None = None  # a bug in publishing, raised by the flusher task
        self._closing = False
        self._closed = False
        self._flusher_running = False
        self._warming = False
        self._seed = seed
        self._refusal: StorageError | None = None  # set when this node may no longer write (fenced)
        # counters for status()
        self.fsyncs = 0
        self.flushes = 0
        self.durable_appends = 0
        self.durable_bytes = 0
        self.failed_flushes = 0
        self.last_error: str | None = None

    # --- opening and recovery ---------------------------------------------------------------

    @classmethod
    def open(cls, wal_dir: Path, settings: StorageSettings, seed: WalSeed | None = None) -> WalLogStore:
        wal_dir.mkdir(parents=True, exist_ok=True)
        store = cls(wal_dir, settings, seed)
        store._recover()
        return store

    def _recover(self) -> None:
        found = list_segments(self._dir)
        streams = self._streams
        replayed = truncated = 0
        # The newest segments that fit in the log cache warm it, for consumers at the tail.
        warm_from, tail = len(found), 0
        for k in range(len(found) - 1, -1, -1):
            tail += found[k][1].stat().st_size
            if tail > self._cache_limit:
                break
            warm_from = k
        for k, (number, path) in enumerate(found):
            self._next_segment = number + 1
            self._warming = k >= warm_from
            data = path.read_bytes()
            seg = _Segment(number, path)
            result = fmt.ScanResult()
            for rec in fmt.scan(data, result):
                self._replay(rec, seg)
            replayed += result.records
            if result.good_end < len(data):
                truncated += 1
                log.warning(
                    "wal_tail_truncated", segment=path.name, last=k == len(found) - 1, records_kept=result.records,
                    good_bytes=result.good_end, dropped_bytes=len(data) - result.good_end, reason=result.problem,
                )
                truncate_file(path, result.good_end, fsync=self._fsync)
            seg.size = result.good_end
            if seg.size == 0:
                path.unlink()
                continue
            self._segments[number] = seg
            self._wal_bytes += seg.size
        self._warming = False
        if self._seed is not None:
            self._apply_seed(self._seed, fresh=not self._segments)
        for s in streams.values():
            s.drop_index_before(s.log_start)
            s.hw = s.log_end
            s.producers.evict_before(s.log_start)
        self._rebuild_cache_fifo()
        log.info(
            "wal_recovered", segments=len(self._segments), records=replayed, truncated_segments=truncated,
            streams=len(streams), wal_bytes=self._wal_bytes,
        )
        # Always continue in a fresh segment that starts with the recovered state.
        checkpoint = self._checkpoint_record()
        fd, seg = self._open_segment_sync(checkpoint)
        self._install_segment(fd, seg)
        self._collect()

    def _apply_seed(self, seed: WalSeed, *, fresh: bool) -> None:
        streams = self._streams
        self._next_stream_id = max(self._next_stream_id, seed.next_stream_id)
        for sid, name, lat, log_start, end in seed.streams:
            s = streams.get(sid)
            if s is None:
                if not fresh:
                    continue  # deleted here after that manifest was written
                s = streams[sid] = _Stream(sid, name, lat, log_start, end)
            s.log_start = max(s.log_start, log_start)
            if s.log_end < end:
                s.log_end = end
            s.uploaded = end
            snap = seed.producers.get(sid)
            if snap is not None:
                table = ProducerStateTable.restore(snap)
                table.absorb(s.producers, end)
                s.producers = table
        log.info("wal_seeded", streams=len(seed.streams), fresh=fresh, next_stream_id=self._next_stream_id)

    def _replay(self, rec: fmt.WalRecord, seg: _Segment) -> None:
        streams = self._streams
        t = rec.type
        if t == fmt.REC_BATCH:
            s = streams.get(rec.stream_id)
            if s is None or rec.base < s.log_end:
                return  # data of a deleted stream, or cut back by a later checkpoint already
            payload = rec.payload
            h = _BATCH_HEADER.unpack_from(payload, 0)
            s.add_index(rec.base, rec.last, h[8], seg.number, rec.pos + fmt.HEADER_SIZE, len(payload))
            if h[9] >= 0:
                s.producers.replay(h[9], h[10], h[11], h[6], rec.base, h[8])
            s.log_end = rec.last + 1
            seg.streams[s.id] = rec.last
            if self._warming:
                data = bytes(payload)
                s.cache[rec.base] = data
                self._cache_fifo.append((s.id, rec.base, len(data)))
        elif t == fmt.REC_CHECKPOINT:
            ckpt = fmt.unpack_payload(rec.payload)
            self._next_stream_id = max(self._next_stream_id, ckpt["next_stream_id"])
            listed = set()
            for sid, name, lat, log_start, log_end in ckpt["streams"]:
                listed.add(sid)
                s = streams.get(sid)
                if s is None:
                    s = streams[sid] = _Stream(sid, name, lat, log_start, log_end)
                s.name, s.lat = name, lat
                s.log_start = max(s.log_start, log_start)
                if s.log_end > log_end:
                    s.drop_index_from(log_end)
                    s.producers.truncate(log_end)
                s.log_end = log_end
            for sid in [sid for sid in streams if sid not in listed]:
                streams.pop(sid).cache.clear()
        elif t == fmt.REC_CREATE:
            info = fmt.unpack_payload(rec.payload)
            if rec.stream_id not in streams:
                streams[rec.stream_id] = _Stream(rec.stream_id, info["name"], info["lat"])
            self._next_stream_id = max(self._next_stream_id, rec.stream_id + 1)
        elif t == fmt.REC_DELETE:
            gone = streams.pop(rec.stream_id, None)
            if gone is not None:
                gone.cache.clear()
        elif t == fmt.REC_LOG_START:
            s = streams.get(rec.stream_id)
            if s is not None and rec.base > s.log_start:
                s.log_start = rec.base
        elif t == fmt.REC_CONFIG:
            s = streams.get(rec.stream_id)
            if s is not None:
                s.lat = fmt.unpack_payload(rec.payload)["lat"]

    # --- segments -----------------------------------------------------------------------------

    def _checkpoint_record(self) -> bytes:
        """The durable catalogue, as the first record of a new segment."""
        streams = [[s.id, s.name, s.lat, s.log_start, s.hw] for s in self._streams.values()]
        payload = fmt.pack_payload({"next_stream_id": self._next_stream_id, "streams": streams})
        return fmt.encode_record(fmt.REC_CHECKPOINT, 0, 0, 0, payload)

    def _create_segment_sync(self) -> tuple[int, _Segment]:
        """Create the next (empty) segment file (blocking; not yet durable)."""
        number = self._next_segment
        self._next_segment += 1
        path = self._dir / segment_name(number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        return fd, _Segment(number, path, 0)

    @staticmethod
    def _discard_segment(fd: int, seg: _Segment) -> None:
        os.close(fd)
        try:
            seg.path.unlink()
        except OSError:
            pass

    def _open_segment_sync(self, first: bytes) -> tuple[int, _Segment]:
        """Create the next segment file holding `first`, durably (blocking)."""
        fd, seg = self._create_segment_sync()
        try:
            pwrite_all(fd, first, 0)
            if self._fsync:
                os.fsync(fd)
                fsync_dir(self._dir)
        except BaseException:
            self._discard_segment(fd, seg)
            raise
        seg.size = len(first)
        return fd, seg

    def _install_segment(self, fd: int, seg: _Segment) -> None:
        if self._wfd >= 0:
            os.close(self._wfd)
        self._wfd = fd
        self._active = seg
        self._segments[seg.number] = seg
        self._wal_bytes += seg.size
        self._must_roll = False
        self._roll_requested = False

    def _segment_dead(self, seg: _Segment) -> bool:
        streams = self._streams
        for sid, last in seg.streams.items():
            s = streams.get(sid)
            if s is not None and max(s.log_start, s.uploaded) <= last:
                return False
        return True

    def _collect(self) -> None:
        """Delete segments holding only dead or uploaded data; ask for a roll if the active one
        is dead. Index entries pointing into deleted segments go too (those offsets are read
        from object storage)."""
        deleted = False
        for seg in list(self._segments.values()):
            if seg is self._active:
                if seg.streams and self._segment_dead(seg):
                    self._roll_requested = True
                    self._wakeup.set()
                continue
            if self._segment_dead(seg):
                del self._segments[seg.number]
                self._wal_bytes -= seg.size
                fd = self._rfds.pop(seg.number, None)
                if fd is not None:
                    self._fds_to_close.append(fd)
                self._paths_to_delete.append(seg.path)
                log.info("wal_segment_deleted", segment=seg.path.name, bytes=seg.size)
                deleted = True
        if deleted:
            segments = self._segments
            for s in self._streams.values():
                segs = s.segs
                k = len(segs)
                while k and segs[k - 1] in segments:
                    k -= 1
                s.drop_index_through(k)
        self._close_deferred()

    def _close_deferred(self) -> None:
        if self._reads_in_flight or not (self._fds_to_close or self._paths_to_delete):
            return
        if self._janitor_running:
            self._janitor_wakeup.set()
        else:  # opening, closing, or a store run without its flusher (tests)
            self._release_now()

    def _take_releasable(self) -> tuple[list[int], list[Path]]:
        """The deleted segments' fds and files, taken over; none while a read is in flight (it
        may be using one of the fds)."""
        if self._reads_in_flight:
            return [], []
        fds, paths = self._fds_to_close, self._paths_to_delete
        self._fds_to_close, self._paths_to_delete = [], []
        return fds, paths

    def _release_now(self) -> None:
        _log_release_failures(_release_files(*self._take_releasable()))

    async def _run_janitor(self) -> None:
        """Close and unlink the deleted segments' files on a worker thread; `_close_deferred`
        wakes it."""
        self._janitor_running = True
        try:
            while True:
                fds, paths = self._take_releasable()
                if fds or paths:
                    with trio.CancelScope(shield=True):  # taken over: released whatever happens
                        failures = await trio.to_thread.run_sync(_release_files, fds, paths, True)
                    _log_release_failures(failures)
                    continue
                self._janitor_wakeup = trio.Event()
                await self._janitor_wakeup.wait()
        finally:
            self._janitor_running = False
            self._release_now()  # what arrived as the janitor was cancelled

    # --- appends ------------------------------------------------------------------------------

    def _stream(self, stream_id: int) -> _Stream:
        s = self._streams.get(stream_id)
        if s is None or s.deleting:
            raise StreamNotFoundError(f"stream {stream_id} does not exist")
        return s

    def _stage(self, item: tuple[int, int, int, int, bytes, Any, int]) -> _Group:
        if self._refusal is not None:
            raise type(self._refusal)(str(self._refusal))
        if self._closing:
            raise StorageError("storage is closed")
        groups = self._groups
        if not groups or groups[-1].nbytes >= self._group_cap:
            groups.append(_Group())
        g = groups[-1]
        g.items.append(item)
        size = len(item[4]) + fmt.HEADER_SIZE
        g.nbytes += size
        self._queued_bytes += size
        if self._inflight is None and not self._finishing:
            self._wakeup.set()
        return g

    def when_write_done(self, hook: Callable[[], None]) -> bool:
        """If a group write is in flight, call `hook()` on the trio thread once it has completed,
        right before the next write takes the queued appends, and return True; else return False
        (nothing to wait for: append now). Appends made by the hook join that next write.

        For a caller that gathers appends (the MQTT ingest sink): while an fsync runs, whatever
        arrives is handed over as one append when it returns, instead of one append per arrival,
        and it still makes the very next write. The hook must not raise (an error is logged)."""
        if self._inflight is None or not self._fsync:
            return False
        self._after_write.append(hook)
        return True

    def append(self, stream_id: int, batch: bytes | memoryview, *, now_ms: int) -> _PendingAppend | _PendingDuplicate:
        s = self._streams.get(stream_id)
        if s is None or s.deleting:
            raise StreamNotFoundError(f"stream {stream_id} does not exist")
        size = len(batch)
        if self._refusal is not None:
            raise type(self._refusal)(str(self._refusal))
        if self._wal_bytes + self._queued_bytes + size + fmt.HEADER_SIZE > self._budget:
            raise StorageFullError(
                f"WAL budget of {self._budget} bytes is spent ({self._wal_bytes} on disk, {self._queued_bytes} queued)"
            )
        if self._queued_bytes > self._queue_limit:
            raise StorageFullError(f"WAL write queue is full ({self._queued_bytes} bytes waiting for the disk)")
        if self._closing:
            raise StorageError("storage is closed")
        h = _BATCH_HEADER.unpack_from(batch, 0)
        last_delta = h[6]
        producer_id = h[9]
        base = s.log_end
        if producer_id >= 0:
            dup = s.producers.check(producer_id, h[10], h[11], last_delta)
            if dup is not None:
                dup_base, dup_last = dup[3], dup[4]
                if dup_last < s.hw:
                    raise DuplicateBatchError(dup_base, dup_last)
                result = AppendResult(dup_base, dup_last, now_ms if s.lat else -1, s.log_start, duplicate=True)
                return _PendingDuplicate(result, self, s)
        if s.lat:
            buf = bytearray(batch)
            records.stamp_log_append_time(buf, now_ms)
            records.set_base_offset(buf, base)
            data = bytes(buf)
            max_ts = now_ms
        else:
            data = records.with_base_offset(batch, base)
            max_ts = h[8]
        last = base + last_delta
        if producer_id >= 0:
            s.producers.record(producer_id, h[10], h[11], last_delta, base, max_ts)
        s.log_end = last + 1
        g = self._stage((fmt.REC_BATCH, stream_id, base, last, data, s, max_ts))
        return _PendingAppend(AppendResult(base, last, now_ms if s.lat else -1, s.log_start), g)

    async def create_stream(self, name: str, *, log_append_time: bool = False) -> int:
        sid = self._next_stream_id
        self._next_stream_id += 1
        s = _Stream(sid, name, log_append_time)
        payload = fmt.pack_payload({"name": name, "lat": log_append_time})
        await self._stage((fmt.REC_CREATE, sid, 0, 0, payload, s, 0)).wait()
        return sid

    async def delete_stream(self, stream_id: int) -> None:
        s = self._stream(stream_id)
        s.deleting = True
        try:
            await self._stage((fmt.REC_DELETE, stream_id, 0, 0, b"", s, 0)).wait()
        except BaseException:
            if not s.deleted:
                s.deleting = False
            raise

    def set_log_append_time(self, stream_id: int, enabled: bool) -> None:
        """Takes effect at once; durable with the next group commit (best effort)."""
        s = self._stream(stream_id)
        if s.lat != enabled:
            s.lat = enabled
            self._stage((fmt.REC_CONFIG, stream_id, 0, 0, fmt.pack_payload({"lat": enabled}), s, 0))

    async def delete_records(self, stream_id: int, before_offset: int) -> int:
        s = self._stream(stream_id)
        if before_offset == -1:  # Kafka: up to the high watermark
            before_offset = s.hw
        if before_offset < 0 or before_offset > s.hw:
            raise OffsetOutOfRangeError(before_offset, s.log_start, s.hw)
        if before_offset <= s.log_start:
            return s.log_start
        await self._stage((fmt.REC_LOG_START, stream_id, before_offset, 0, b"", s, 0)).wait()
        return s.log_start

    # --- queries ------------------------------------------------------------------------------

    def streams(self) -> Mapping[int, StreamInfo]:
        return {
            s.id: StreamInfo(s.id, s.name, StreamOffsets(s.log_start, s.hw, s.log_end), s.size_bytes, s.lat)
            for s in self._streams.values()
            if not s.deleting
        }

    def offsets(self, stream_id: int) -> StreamOffsets:
        s = self._stream(stream_id)
        return StreamOffsets(s.log_start, s.hw, s.log_end)

    def producer_state(self, stream_id: int) -> Mapping[int, Any]:
        return self._stream(stream_id).producers.view()

    async def read(self, stream_id: int, offset: int, max_bytes: int) -> ReadResult:
        s = self._stream(stream_id)
        hw, log_start = s.hw, s.log_start
        batches, _next = await self._read_indexed(s, offset, hw, max_bytes)
        return ReadResult(batches, hw, log_start)

    async def read_range(self, stream_id: int, offset: int, end: int, max_bytes: int) -> tuple[list[Any], int]:
        """(batches, next offset): the batch holding `offset` and those after it that start below
        `end`, about `max_bytes` at most (at least one). For the object tier's uploads: the index
        gives each batch's bounds, so tens of thousands of small batches cost no header parsing."""
        return await self._read_indexed(self._stream(stream_id), offset, end, max_bytes)

    async def _read_indexed(self, s: _Stream, offset: int, end: int, max_bytes: int) -> tuple[list[Any], int]:
        """The batches of `s` from the one holding `offset` up to those starting at `end`, about
        `max_bytes` at most (at least one), from the log cache or else the segment files, and the
        offset after the last one."""
        if offset < s.log_start or offset > s.hw:
            raise OffsetOutOfRangeError(offset, s.log_start, s.hw)
        bases, lasts, sizes, cache = s.bases, s.lasts, s.sizes, s.cache
        n = len(bases)
        i = bisect_right(bases, offset) - 1
        if i < 0:
            i = 0
        elif lasts[i] < offset:
            i += 1
        out: list[Any] = []
        missing: list[tuple[int, int, int, int, int]] = []
        total = 0
        nxt = offset
        while i < n:
            base = bases[i]
            size = sizes[i]
            if base >= end or (out and total + size > max_bytes):
                break
            data = cache.get(base)
            if data is None:
                missing.append((len(out), s.segs[i], s.poss[i], size, base))
            out.append(data)
            total += size
            nxt = lasts[i] + 1
            i += 1
        if missing:
            await self._read_files(s, missing, out)
        return out, nxt

    async def _read_files(self, s: _Stream, missing: list[tuple[int, int, int, int, int]], out: list[Any]) -> None:
        jobs = []
        for slot, seg_no, pos, size, base in missing:
            fd = self._rfds.get(seg_no)
            if fd is None:
                seg = self._segments.get(seg_no)
                if seg is None:
                    raise OffsetOutOfRangeError(base, s.log_start, s.hw)
                fd = self._rfds[seg_no] = os.open(seg.path, os.O_RDONLY)
            jobs.append((slot, fd, pos, size, base))

        def work() -> None:
            for slot, fd, pos, size, base in jobs:
                data = pread_exact(fd, size, pos)
                if data[:8] != base.to_bytes(8, "big", signed=True):
                    raise StorageError(f"WAL batch at {pos} does not hold offset {base}")
                out[slot] = data

        self._reads_in_flight += 1
        try:
            if sum(j[3] for j in jobs) > THREAD_READ_BYTES:
                await trio.to_thread.run_sync(work)
            else:
                work()
        except OSError as e:
            raise StorageError(f"WAL read failed: {e}") from e
        finally:
            self._reads_in_flight -= 1
            self._close_deferred()

    async def offset_for_timestamp(self, stream_id: int, timestamp: int) -> tuple[int, int] | None:
        """First record with timestamp >= `timestamp` (exact for uncompressed CreateTime batches,
        else the batch's first offset with its max timestamp)."""
        s = self._stream(stream_id)
        if timestamp == -2:  # Kafka's EARLIEST
            return s.log_start, -1
        if timestamp == -1:  # Kafka's LATEST
            return s.hw, -1
        i = bisect_left(s.cum_ts, timestamp)
        if i >= len(s.bases):
            return None
        base, max_ts = s.bases[i], s.cum_ts[i]
        start = max(base, s.log_start)
        batch = (await self.read(stream_id, start, 1)).batches[0]
        h = records.read_header(batch)
        if h.compression or h.log_append_time:
            return start, max_ts
        for rec in records.decode_records(batch):
            if rec.offset >= start and rec.timestamp >= timestamp:
                return rec.offset, rec.timestamp
        return start, max_ts

    async def wait_for_data(self, interests: Mapping[int, int]) -> None:
        streams = self._streams
        while True:
            for sid, offset in interests.items():
                s = streams.get(sid)
                if s is None or s.deleting or s.hw > offset:
                    return
            await self._wait_any(interests.keys())

    async def _wait_any(self, stream_ids: Any) -> None:
        ev = trio.Event()
        waiters = self._waiters
        ids = list(stream_ids)
        for sid in ids:
            waiters.setdefault(sid, set()).add(ev)
        try:
            await ev.wait()
        finally:
            for sid in ids:
                ws = waiters.get(sid)
                if ws is not None:
                    ws.discard(ev)
                    if not ws:
                        del waiters[sid]

    def _wake(self, sid: int) -> None:
        ws = self._waiters.pop(sid, None)
        if ws:
            for ev in ws:
                ev.set()

    def _wake_all(self) -> None:
        for sid in list(self._waiters):
            self._wake(sid)

    # --- the flusher --------------------------------------------------------------------------

    async def run_flusher(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Start the writer thread and kick it whenever appends arrive while it is idle. While a
        write is in flight nothing wakes this task: the write's completion publishes it and
        starts the next one from its `run_sync_soon` callback."""
        self._ensure_writer()
        self._flusher_running = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._run_janitor)
                task_status.started()
                while not self._closed:
                    if self._crash is not None:
                        raise self._crash
                    if self._inflight is None and (self._groups or self._roll_requested):
                        self._start()
                        continue
                    self._wakeup = trio.Event()
                    await self._wakeup.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._flusher_running = False
            if self._writer is not None and not self._closed:
                # Cancelled without close(): let the thread end after what it was handed (a
                # later close() or drain() starts a new one).
                self._writer.stop()
                self._writer = None

    def _ensure_writer(self) -> WalWriter:
        if self._writer is None:
            self._writer = WalWriter(f"wal-writer-{self._dir.name}", RETRY_DELAY)
        return self._writer

    def _start(self) -> _Flush | None:
        """Take queued groups (at least one, up to `group_commit_bytes`) and hand their write and
        fsync to the writer thread (inline without fsync: page-cache writes only, for tests).
        At most one flush is in flight: the next one's file position depends on this one."""
        if self._inflight is not None:
            return self._inflight
        if self._closed:
            return None
        groups: list[_Group] = []
        nbytes = 0
        while self._groups and (not groups or nbytes + self._groups[0].nbytes <= self._group_cap):
            g = self._groups.popleft()
            groups.append(g)
            nbytes += g.nbytes
        items = [item for g in groups for item in g.items]
        active = self._active
        assert active is not None
        roll = self._must_roll or self._roll_requested or active.size >= self._segment_size
        if not items and not roll:
            return None
        checkpoint = self._checkpoint_record() if roll else b""
        start = 0 if roll else active.size
        fd = self._wfd
        do_fsync = self._fsync
        active_path = active.path
        monotonic = self._monotonic

        def write() -> tuple[int, _Segment | None, list[int], int, float]:
            # A new segment gets its checkpoint and the group in the same write and fsync.
            new_fd, new_seg = self._create_segment_sync() if roll else (fd, None)
            parts: list[bytes] = [checkpoint] if roll else []
            pos = start + len(checkpoint)
            positions: list[int] = []
            encode = fmt.encode_header
            hsize = fmt.HEADER_SIZE
            for t, sid, base, last, payload, _s, _ts in items:
                parts.append(encode(t, sid, base, last, payload))
                parts.append(payload)
                pos += hsize
                positions.append(pos)
                pos += len(payload)
            try:
                began = monotonic()
                written = pwritev_all(new_fd, parts, start)  # one gather write: no joined copy
                if do_fsync:
                    os.fsync(new_fd)
                    if new_seg is not None:
                        fsync_dir(self._dir)
            except BaseException:
                if new_seg is not None:  # nothing in it was acknowledged: drop it
                    self._discard_segment(new_fd, new_seg)
                else:  # best effort: cut the abandoned tail (the next checkpoint makes it moot)
                    try:
                        truncate_file(active_path, start)
                    except OSError:
                        pass
                raise
            return new_fd, new_seg, positions, written, monotonic() - began

        flush = _Flush(groups, items, roll)
        self._inflight = flush
        if do_fsync and not self._inline_ok(items, nbytes, roll):
            self._ensure_writer().submit(write, flush.complete(self))
        else:
            try:
                result, error = write(), None
            except Exception as e:
                result, error = None, e
            self._finish(flush, result, error)
        return flush

    def _inline_ok(self, items: list[Any], nbytes: int, roll: bool) -> bool:
        """Whether this commit is written and fsync'd right here on the trio thread: a small one
        while records arrive slowly, no segment roll (file creation and a directory fsync), no
        recent failure, a disk answering fast. Also keeps the arrival rate (records/s, per window)."""
        now = self._monotonic()
        self._rate_records += sum(item[3] - item[2] + 1 for item in items if item[0] == fmt.REC_BATCH)
        if now - self._rate_since >= RATE_WINDOW_SECONDS:
            self._recent_rate = self._rate_records / (now - self._rate_since)
            self._rate_since, self._rate_records = now, 0
        return (self._recent_rate < self._inline_rate and nbytes <= INLINE_MAX_BYTES and not roll
                and self.last_error is None and self._commit_seconds < INLINE_MAX_COMMIT_SECONDS)

    def _finish(self, flush: _Flush, result: Any, error: BaseException | None) -> None:
        """On the trio thread (a `run_sync_soon` callback), once the write of `flush` returned:
        publish it or fail it, then start the next write if appends queued up meanwhile. An
        exception must not escape a callback (trio would abort the run): a bug here is handed
        to the flusher task, which raises it, as the flusher itself used to."""
        self._inflight = None
        try:
            if self._closed:  # abandoned while the write was in flight (a simulated crash)
                error = error or StorageError("storage is closed")
            if error is None:
                new_fd, new_seg, positions, written, took = result
                self._commit_seconds += COMMIT_TIME_WEIGHT * (took - self._commit_seconds)
                self._publish(flush.groups, flush.items, new_fd, new_seg, positions, written, flush.roll)
                if self.last_error is not None and flush.items:  # writes work again: the error is history
                    log.info("wal_write_recovered", error=self.last_error)
                    self.last_error = None
            else:
                if not isinstance(error, OSError) and not self._closed:  # a bug, not the disk
                    log.error("wal_flush_crashed", error=repr(error))
                self._fail(flush.groups, error)
            if self._after_write:
                self._run_after_write()
            if self._fsync and not self._closed and (self._groups or self._roll_requested):
                self._start()
        except Exception as e:
            log.error("wal_publish_crashed", error=repr(e))
            for g in flush.groups:
                if not g.done.is_set():
                    g.error = StorageError(f"WAL publish failed: {e!r}")
                    g.done.set()
            self._crash = e
            self._wakeup.set()
        finally:
            if self._after_write:  # not stranded by a crash above: their appends fail instead
                self._run_after_write()
            flush.done.set()

    def _run_after_write(self) -> None:
        hooks, self._after_write = self._after_write, []
        self._finishing = True
        try:
            for hook in hooks:
                try:
                    hook()
                except Exception as e:  # a caller's bug must not stop the WAL
                    log.error("wal_after_write_hook_failed", error=repr(e))
        finally:
            self._finishing = False

    def _publish(
        self, groups: list[_Group], items: list[Any], new_fd: int, new_seg: _Segment | None,
        positions: list[int], written: int, roll: bool,
    ) -> None:
        if new_seg is not None:
            old = self._active
            self._install_segment(new_fd, new_seg)
            log.info("wal_segment_rolled", segment=new_seg.path.name, previous=old.path.name if old else None)
        seg = self._active
        assert seg is not None
        seg.size += written
        self._wal_bytes += written
        queued = sum(g.nbytes for g in groups)
        self._queued_bytes -= queued
        if written and self._fsync:
            self.fsyncs += 1
        self.flushes += 1
        cache_limit = self._cache_limit
        fifo = self._cache_fifo
        cache_bytes = self._cache_bytes
        seg_no = seg.number
        seg_streams = seg.streams
        touched: set[int] = set()
        batches = 0
        collect = False
        for (t, sid, base, last, payload, s, max_ts), pos in zip(items, positions, strict=True):
            if t == fmt.REC_BATCH:
                if s.deleted:
                    continue
                size = len(payload)
                s.add_index(base, last, max_ts, seg_no, pos, size)
                s.hw = last + 1
                seg_streams[sid] = last
                touched.add(sid)
                batches += 1
                if cache_limit:
                    s.cache[base] = payload
                    fifo.append((sid, base, size))
                    cache_bytes += size
            elif t == fmt.REC_CREATE:
                self._streams[sid] = s
            elif t == fmt.REC_DELETE:
                s.deleted = True
                self._streams.pop(sid, None)
                s.cache.clear()
                touched.add(sid)
                collect = True
            elif t == fmt.REC_LOG_START:
                if base > s.log_start:
                    s.log_start = base
                    s.drop_index_before(base)
                    s.producers.evict_before(base)
                    collect = True
        self._cache_bytes = self._evict(fifo, cache_bytes)
        self.durable_appends += batches
        self.durable_bytes += written
        for g in groups:
            g.done.set()
        for sid in touched:
            self._wake(sid)
        if collect or roll:
            if collect:
                self._rebuild_cache_fifo()
            self._collect()

    def _rebuild_cache_fifo(self) -> None:
        """Drop cache bookkeeping of deleted/trimmed batches (rare: after deletes), then evict
        down to the limit."""
        streams = self._streams
        fifo = deque(e for e in self._cache_fifo
                     if (s := streams.get(e[0])) is not None and not s.deleted and e[1] in s.cache)
        self._cache_fifo = fifo
        self._cache_bytes = self._evict(fifo, sum(e[2] for e in fifo))

    def _evict(self, fifo: deque[tuple[int, int, int]], cache_bytes: int) -> int:
        """Drop the oldest cached batches until `cache_bytes` is within the cache limit; returns
        what is left cached. A deleted stream's entries are skipped (its cache went with it)."""
        streams = self._streams
        while cache_bytes > self._cache_limit and fifo:
            sid, base, size = fifo.popleft()
            cached = streams.get(sid)
            if cached is not None and cached.cache.pop(base, None) is not None:
                cache_bytes -= size
        return cache_bytes

    def _fail(self, groups: list[_Group], exc: BaseException) -> None:
        full = getattr(exc, "errno", None) in _FULL_ERRNOS
        cls = StorageFullError if full else StorageError
        error = cls(f"WAL write failed: {exc}")
        failed = groups + list(self._groups)
        self._groups.clear()
        self._queued_bytes = 0
        appends = 0
        for g in failed:
            g.error = error
            for t, _sid, _b, _l, _p, s, _ts in g.items:
                if t == fmt.REC_BATCH:
                    appends += 1
                elif t == fmt.REC_DELETE and not s.deleted:
                    s.deleting = False
            g.done.set()
        for s in self._streams.values():
            if s.log_end > s.hw:
                s.log_end = s.hw
                s.producers.truncate(s.hw)
                s.rollbacks += 1
        self.failed_flushes += 1
        self.last_error = str(error)
        self._must_roll = True
        active = self._active
        log.error("wal_write_failed", error=exc, groups=len(failed), appends=appends,
                  segment=active.path.name if active else None)
        self._wake_all()

    # --- the object-storage tier's hooks -------------------------------------------------------

    def mark_uploaded(self, ends: Mapping[int, int]) -> None:
        """Offsets below `ends[stream]` are committed to object storage: their segments may go."""
        streams = self._streams
        for sid, end in ends.items():
            s = streams.get(sid)
            if s is not None and end > s.uploaded:
                s.uploaded = end
        self._collect()

    def catalogue(self) -> list[tuple[int, str, bool, int, int]]:
        """(id, name, log_append_time, log_start, high watermark) of every stream, including
        one whose deletion is not durable yet."""
        return [(s.id, s.name, s.lat, s.log_start, s.hw) for s in self._streams.values()]

    def uploaded(self, stream_id: int) -> int:
        return self._stream(stream_id).uploaded

    def first_indexed(self, stream_id: int) -> int:
        """The lowest offset the WAL itself can serve (the high watermark when it holds none)."""
        s = self._stream(stream_id)
        return s.bases[0] if s.bases else s.hw

    def unuploaded_bytes(self) -> int:
        total = 0
        for s in self._streams.values():
            k = bisect_left(s.lasts, s.uploaded)
            total += sum(s.sizes[k:])
        return total

    def producer_snapshot(self, stream_id: int, end: int) -> dict[int, list[Any]]:
        """The stream's idempotent-producer state as of offset `end` (batches below it)."""
        s = self._streams.get(stream_id)
        if s is None:
            return {}
        table = ProducerStateTable.restore(s.producers.snapshot())
        table.truncate(end)
        return table.snapshot()

    @property
    def next_stream_id(self) -> int:
        return self._next_stream_id

    def refuse(self, error: StorageError) -> None:
        """From now on every append and catalogue change fails with `error` (fenced node)."""
        self._refusal = error

    async def drain(self) -> None:
        """Stop taking appends and make everything queued durable; reads keep working."""
        self._closing = True
        await self._flush_all()

    async def _flush_all(self) -> None:
        """Wait for the write in flight, then write out every queued group."""
        while not self._closed:
            flush = self._inflight
            if flush is None:
                if not self._groups:
                    return
                flush = self._start()
                if flush is None:
                    return
            await flush.done.wait()

    # --- lifecycle ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Flush everything queued, stop and join the writer thread, close the files."""
        if self._closed:
            return
        self._closing = True
        await self._flush_all()
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop()
            with trio.CancelScope(shield=True):  # idle now: returns at once
                await trio.to_thread.run_sync(writer.join)
        self._wakeup.set()
        self._wake_all()
        if self._wfd >= 0:
            os.close(self._wfd)
            self._wfd = -1
        for fd in self._rfds.values():
            self._fds_to_close.append(fd)
        self._rfds.clear()
        self._release_now()  # returns with the files closed, not left to the janitor

    def abandon(self) -> None:
        """Release file descriptors without flushing (tests: a crash without close)."""
        self._closed = self._closing = True
        writer, self._writer = self._writer, None
        if writer is not None:  # let a write in flight end before its file descriptor goes
            writer.stop()
            writer.join(10)
        for fd in [self._wfd, *self._rfds.values(), *self._fds_to_close]:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._wfd = -1
        self._rfds.clear()
        self._fds_to_close.clear()

    @property
    def wal_bytes(self) -> int:
        return self._wal_bytes

    @property
    def wal_segments(self) -> int:
        return len(self._segments)

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def stats(self) -> dict[str, int]:
        return {
            "wal_bytes": self._wal_bytes,
            "wal_segments": len(self._segments),
            "queued_bytes": self._queued_bytes,
            "cache_bytes": self._cache_bytes,
            "fsyncs": self.fsyncs,
            "flushes": self.flushes,
            "durable_appends": self.durable_appends,
            "failed_flushes": self.failed_flushes,
        }


def _release_files(fds: list[int], paths: list[Path], gently: bool = False) -> list[tuple[str, OSError]]:
    """Close `fds` and unlink `paths` (deleted segments); the unlinks that failed. Gently: a step
    at a time (a worker thread's pace; at start-up and close the files just go)."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    failures = []
    for path in paths:
        try:
            if gently:
                unlink_gently(path)
            else:
                path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            failures.append((path.name, e))
    return failures


def _log_release_failures(failures: list[tuple[str, OSError]]) -> None:
    for name, error in failures:
        log.warning("wal_segment_delete_failed", segment=name, error=error)


__all__ = ["WalLogStore", "WalSeed"]
