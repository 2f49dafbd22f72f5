"""WAL log store: appends, reads, group commit, failures, idempotence, deletes, budget."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest
import trio

from appliance.errors import (
    DuplicateBatchError,
    InvalidProducerEpochError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceError,
    StorageError,
    StorageFullError,
    StreamNotFoundError,
)
from appliance.kafka.records import build_batch, read_header, validate_batch, with_base_offset
from appliance.storage import wal as wal_module
from appliance.storage.local import open_local_storage
from appliance.storage.ports import LogStore, MetaStore, PendingAppend
from appliance.storage.segments import list_segments

from .conftest import NOW, batch, running, settings


async def test_ports_are_implemented(tmp_path):
    async with running(tmp_path) as st:
        assert isinstance(st.logs, LogStore)
        assert isinstance(st.meta, MetaStore)
        sid = await st.logs.create_stream("a-0")
        assert isinstance(st.logs.append(sid, batch(), now_ms=NOW), PendingAppend)


async def test_read_semantics(tmp_path):
    async with running(tmp_path) as st:
        logs = st.logs
        sid = await logs.create_stream("orders-0")
        sent = [batch(3, value=b"x%d" % i) for i in range(5)]
        results = [await logs.append(sid, b, now_ms=NOW).durable() for b in sent]
        assert [(r.base_offset, r.last_offset) for r in results] == [(i * 3, i * 3 + 2) for i in range(5)]
        stored = [with_base_offset(b, r.base_offset) for b, r in zip(sent, results, strict=True)]

        everything = await logs.read(sid, 0, 1 << 20)
        assert everything.batches == stored and everything.high_watermark == 15 and everything.log_start == 0
        # an offset inside a batch returns the whole batch
        inside = await logs.read(sid, 7, 1)
        assert inside.batches == [stored[2]]
        # at least one batch even when max_bytes is smaller, then only what fits
        two = await logs.read(sid, 3, len(stored[1]) + len(stored[2]))
        assert two.batches == stored[1:3]
        assert (await logs.read(sid, 15, 1000)).batches == []
        with pytest.raises(OffsetOutOfRangeError):
            await logs.read(sid, 16, 1000)
        with pytest.raises(OffsetOutOfRangeError):
            await logs.read(sid, -1, 1000)
        with pytest.raises(StreamNotFoundError):
            await logs.read(999, 0, 1000)
        with pytest.raises(StreamNotFoundError):
            logs.append(999, batch(), now_ms=NOW)


async def test_appends_are_invisible_until_durable(tmp_path):
    async with running(tmp_path) as st:
        logs = st.logs
        sid = await logs.create_stream("a-0")
        pending = logs.append(sid, batch(4), now_ms=NOW)
        assert pending.result.base_offset == 0
        offs = logs.offsets(sid)
        assert (offs.high_watermark, offs.log_end) == (0, 4)
        assert (await logs.read(sid, 0, 1000)).batches == []
        await pending.durable()
        assert logs.offsets(sid).high_watermark == 4
        assert len((await logs.read(sid, 0, 1000)).batches) == 1


async def test_concurrent_appends_share_fsyncs(tmp_path):
    async with running(tmp_path) as st:
        logs = st.logs
        sids = [await logs.create_stream(f"t-{i}") for i in range(4)]
        before = st.status()
        n = 400
        done = []

        async def producer(k: int) -> None:
            for j in range(n // 40):
                r = await logs.append(sids[(k + j) % 4], batch(16, value=b"y" * 50), now_ms=NOW).durable()
                done.append(r)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for k in range(40):
                    nursery.start_soon(producer, k)
        after = st.status()
        assert len(done) == n
        assert after.durable_appends - before.durable_appends == n
        fsyncs = after.fsyncs - before.fsyncs
        assert 1 <= fsyncs <= n // 8, fsyncs  # 40 concurrent producers: groups of ~40 appends
        # every stream's offsets are dense and its batches intact
        for sid in sids:
            read = await logs.read(sid, 0, 1 << 30)
            bases = [read_header(b).base_offset for b in read.batches]
            assert bases == list(range(0, 16 * len(bases), 16))
            for b in read.batches:
                validate_batch(b)


async def test_wait_for_data_wakes_on_durable_append(tmp_path):
    async with running(tmp_path) as st:
        logs = st.logs
        a = await logs.create_stream("a-0")
        b = await logs.create_stream("b-0")
        woke = []

        async def fetcher() -> None:
            await logs.wait_for_data({a: 0, b: 0})
            woke.append(logs.offsets(b).high_watermark)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fetcher)
                await trio.sleep(0.05)
                assert woke == []
                await logs.append(b, batch(2), now_ms=NOW).durable()
        assert woke == [2]
        # already satisfied: returns at once; a bounded wait with no data times out
        with trio.fail_after(1):
            await logs.wait_for_data({b: 1})
        with trio.move_on_after(0.05) as scope:
            await logs.wait_for_data({a: 0, b: 2})
        assert scope.cancelled_caught
        # deletion wakes waiters too
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(logs.wait_for_data, {a: 0})
                await trio.sleep(0.01)
                await logs.delete_stream(a)


async def test_offset_for_timestamp(tmp_path):
    async with running(tmp_path) as st:
        logs = st.logs
        sid = await logs.create_stream("t-0")
        for stamps in ([1000, 1001], [2000, 2500, 2200], [3000]):
            data = build_batch([(None, b"v", [])] * len(stamps), timestamp_ms=stamps)
            await logs.append(sid, data, now_ms=NOW).durable()
        assert await logs.offset_for_timestamp(sid, 0) == (0, 1000)
        assert await logs.offset_for_timestamp(sid, 1001) == (1, 1001)
        assert await logs.offset_for_timestamp(sid, 1500) == (2, 2000)
        assert await logs.offset_for_timestamp(sid, 2300) == (3, 2500)
        assert await logs.offset_for_timestamp(sid, 3000) == (5, 3000)
        assert await logs.offset_for_timestamp(sid, 3001) is None
        assert await logs.offset_for_timestamp(sid, -2) == (0, -1)
        assert await logs.offset_for_timestamp(sid, -1) == (6, -1)
        await logs.delete_records(sid, 4)
        assert await logs.offset_for_timestamp(sid, 0) == (4, 2200)


async def test_log_append_time_streams_stamp_batches(tmp_path):
    async with running(tmp_path) as st:
        logs = st.logs
        sid = await logs.create_stream("lat-0", log_append_time=True)
        r = await logs.append(sid, batch(2, ts=5), now_ms=NOW).durable()
        assert r.log_append_time == NOW
        (stored,) = (await logs.read(sid, 0, 1000)).batches
        h = validate_batch(stored)  # CRC recomputed
        assert h.log_append_time and h.max_timestamp == NOW
        logs.set_log_append_time(sid, False)
        r = await logs.append(sid, batch(1, ts=5), now_ms=NOW).durable()
        assert r.log_append_time == -1
    async with running(tmp_path) as st:
        assert st.logs.streams()[sid].log_append_time is False


async def test_delete_records_moves_log_start_durably(tmp_path):
    async with running(tmp_path) as st:
        logs = st.logs
        sid = await logs.create_stream("t-0")
        for _ in range(4):
            await logs.append(sid, batch(5), now_ms=NOW).durable()
        assert await logs.delete_records(sid, 7) == 7
        assert await logs.delete_records(sid, 3) == 7  # never moves back
        with pytest.raises(OffsetOutOfRangeError):
            await logs.delete_records(sid, 21)
        with pytest.raises(OffsetOutOfRangeError):
            await logs.read(sid, 6, 1000)
        first = (await logs.read(sid, 7, 1)).batches[0]
        assert read_header(first).base_offset == 5  # the batch holding offset 7
        assert logs.streams()[sid].size_bytes == 3 * len(first)
    async with running(tmp_path) as st:
        offs = st.logs.offsets(sid)
        assert (offs.log_start, offs.high_watermark) == (7, 20)
        assert await st.logs.delete_records(sid, -1) == 20
        assert (await st.logs.read(sid, 20, 1000)).batches == []


async def test_delete_stream_reclaims_segments_and_ids_are_not_reused(tmp_path):
    async with running(tmp_path, wal_segment_size=4096) as st:
        logs = st.logs
        keep = await logs.create_stream("keep-0")
        gone = await logs.create_stream("gone-0")
        for _ in range(40):
            await logs.append(gone, batch(4, value=b"z" * 100), now_ms=NOW).durable()
        await logs.append(keep, batch(), now_ms=NOW).durable()
        full = st.status().wal_bytes
        assert st.status().wal_segments > 3
        await logs.delete_stream(gone)
        assert gone not in logs.streams()
        with pytest.raises(StreamNotFoundError):
            await logs.read(gone, 0, 1000)
        with pytest.raises(StreamNotFoundError):
            logs.append(gone, batch(), now_ms=NOW)
        await logs.append(keep, batch(), now_ms=NOW).durable()
        assert st.status().wal_bytes < full / 2
        # the files themselves go on a worker thread, soon after
        with trio.fail_after(10):
            while len(list_segments(tmp_path / "wal")) != st.status().wal_segments:
                await trio.sleep(0.01)
    async with running(tmp_path) as st:
        assert set(st.logs.streams()) == {keep}
        assert await st.logs.create_stream("new-0") > gone
        assert len((await st.logs.read(keep, 0, 1 << 20)).batches) == 2


async def test_budget_pushes_back_then_recovers_when_space_frees(tmp_path):
    async with running(tmp_path, wal_segment_size=8 << 10, wal_budget=64 << 10) as st:
        logs = st.logs
        sid = await logs.create_stream("t-0")
        acked = 0
        with pytest.raises(StorageFullError):
            for _ in range(1000):
                await logs.append(sid, batch(4, value=b"q" * 200), now_ms=NOW).durable()
                acked += 1
        assert 0 < acked < 1000
        assert st.status().wal_bytes <= 64 << 10
        assert logs.offsets(sid).high_watermark == logs.offsets(sid).log_end  # nothing half-taken
        await logs.delete_records(sid, -1)  # consumers are done: every segment dies
        with trio.fail_after(5):
            while st.status().wal_bytes > 32 << 10:
                await trio.sleep(0.01)
        r = await logs.append(sid, batch(4, value=b"q" * 200), now_ms=NOW).durable()
        assert r.base_offset == acked * 4


class FlakyFsync:
    """Fails the next `failures` fsyncs with `err`, then behaves."""

    def __init__(self, monkeypatch, err: int, failures: int = 1) -> None:
        self.real = os.fsync
        self.err = err
        self.failures = failures
        monkeypatch.setattr(os, "fsync", self)

    def __call__(self, fd: int) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise OSError(self.err, os.strerror(self.err))
        self.real(fd)


@pytest.mark.parametrize("err, error_type", [(errno.EIO, StorageError), (errno.ENOSPC, StorageFullError)])
async def test_fsync_failure_fails_appends_and_rolls_back(tmp_path, monkeypatch, err, error_type):
    sent = [batch(2, value=b"n%d" % i, pid=5, epoch=0, seq=2 * i) for i in range(6)]
    async with running(tmp_path) as st:
        logs = st.logs
        sid = await logs.create_stream("t-0")
        await logs.append(sid, sent[0], now_ms=NOW).durable()
        flaky = FlakyFsync(monkeypatch, err)
        pendings = [logs.append(sid, b, now_ms=NOW) for b in sent[1:3]]
        for p in pendings:
            with pytest.raises(error_type):
                await p.durable()
        assert flaky.failures == 0
        offs = logs.offsets(sid)
        assert (offs.high_watermark, offs.log_end) == (2, 2)  # rolled back, nothing exposed
        assert len((await logs.read(sid, 0, 1 << 20)).batches) == 1
        assert st.status().last_error and "WAL write failed" in st.status().last_error
        # the producer retries: same offsets, sequence accepted again
        retried = [await logs.append(sid, b, now_ms=NOW).durable() for b in sent[1:4]]
        assert [r.base_offset for r in retried] == [2, 4, 6]
    async with running(tmp_path) as st:
        read = await st.logs.read(sid, 0, 1 << 20)
        assert read.batches == [with_base_offset(b, 2 * i) for i, b in enumerate(sent[:4])]
        r = await st.logs.append(sid, sent[4], now_ms=NOW).durable()
        assert r.base_offset == 8


async def test_failed_write_in_new_segment_is_discarded(tmp_path, monkeypatch):
    async with running(tmp_path, wal_segment_size=1024) as st:
        logs = st.logs
        sid = await logs.create_stream("t-0")
        for _ in range(3):
            await logs.append(sid, batch(4, value=b"w" * 100), now_ms=NOW).durable()
        FlakyFsync(monkeypatch, errno.EIO, failures=3)
        for _ in range(3):
            with pytest.raises(StorageError):
                await logs.append(sid, batch(1), now_ms=NOW).durable()
        await logs.append(sid, batch(4, value=b"after"), now_ms=NOW).durable()
        hw = logs.offsets(sid).high_watermark
        assert hw == 16
    async with running(tmp_path) as st:
        assert st.logs.offsets(sid).high_watermark == 16
        bases = [read_header(b).base_offset for b in (await st.logs.read(sid, 0, 1 << 20)).batches]
        assert bases == [0, 4, 8, 12]


async def test_idempotent_producer(tmp_path):
    async with running(tmp_path) as st:
        logs = st.logs
        sid = await logs.create_stream("t-0")
        first = batch(3, pid=42, epoch=0, seq=0)
        r = await logs.append(sid, first, now_ms=NOW).durable()
        with pytest.raises(DuplicateBatchError) as dup:
            logs.append(sid, first, now_ms=NOW)
        assert (dup.value.base_offset, dup.value.last_offset) == (0, 2)
        # a retry of a batch still waiting for its fsync resolves with the original
        second = batch(2, pid=42, epoch=0, seq=3)
        p1 = logs.append(sid, second, now_ms=NOW)
        p2 = logs.append(sid, second, now_ms=NOW)
        assert p2.result.duplicate and p2.result.base_offset == p1.result.base_offset == 3
        assert (await p2.durable()).last_offset == 4
        assert logs.offsets(sid).log_end == 5
        with pytest.raises(OutOfOrderSequenceError):
            logs.append(sid, batch(1, pid=42, epoch=0, seq=9), now_ms=NOW)
        await logs.append(sid, batch(1, pid=42, epoch=1, seq=0), now_ms=NOW).durable()  # epoch bump
        with pytest.raises(InvalidProducerEpochError):
            logs.append(sid, batch(1, pid=42, epoch=0, seq=5), now_ms=NOW)
        await logs.append(sid, batch(1), now_ms=NOW).durable()  # non-idempotent: no checks
        await logs.append(sid, batch(1), now_ms=NOW).durable()
        assert r.base_offset == 0
    async with running(tmp_path) as st:
        logs = st.logs
        state = logs.producer_state(sid)[42]
        assert (state["epoch"], state["last_sequence"]) == (1, 0)
        with pytest.raises(DuplicateBatchError) as dup:
            logs.append(sid, batch(1, pid=42, epoch=1, seq=0), now_ms=NOW)
        assert dup.value.base_offset == 5
        r = await logs.append(sid, batch(1, pid=42, epoch=1, seq=1), now_ms=NOW).durable()
        assert r.base_offset == 8


async def test_reads_beyond_the_cache_come_from_segment_files(tmp_path):
    async with running(tmp_path, log_cache_size=4096, wal_segment_size=64 << 10) as st:
        logs = st.logs
        sid = await logs.create_stream("t-0")
        other = await logs.create_stream("u-0")
        sent = []
        for i in range(60):
            b = batch(8, value=b"%d" % i * 300)
            r = await logs.append(sid, b, now_ms=NOW).durable()
            await logs.append(other, batch(1), now_ms=NOW).durable()  # interleave streams
            sent.append(with_base_offset(b, r.base_offset))
        assert st.status().wal_segments > 2
        read = await logs.read(sid, 0, 1 << 30)  # > 64 KiB: through a worker thread
        assert read.batches == sent
        assert (await logs.read(sid, 9, 1)).batches == [sent[1]]
    for cache in (0, 20_000, 1 << 20):  # after a restart: cold, partly warmed, fully warmed cache
        async with running(tmp_path, log_cache_size=cache) as st:
            assert (await st.logs.read(sid, 0, 1 << 30)).batches == sent
            assert (await st.logs.read(sid, 8 * 59, 1)).batches == [sent[-1]]


async def test_appends_queued_behind_a_failing_fsync_fail_too(tmp_path, monkeypatch):
    async with running(tmp_path, inline_sync_rate=0) as st:  # the writer thread's path
        logs = st.logs
        sid = await logs.create_stream("t-0")
        await logs.append(sid, batch(1), now_ms=NOW).durable()
        real = os.fsync
        calls = []

        def slow_failing_fsync(fd: int) -> None:
            calls.append(fd)
            if len(calls) == 1:
                time.sleep(0.1)  # the flusher's worker thread is busy; appends keep arriving
                raise OSError(errno.EIO, "injected")
            real(fd)

        monkeypatch.setattr(os, "fsync", slow_failing_fsync)
        first = logs.append(sid, batch(2, pid=9, epoch=0, seq=0), now_ms=NOW)
        await trio.sleep(0.03)
        assert calls, "the first group is being fsynced"
        later = logs.append(sid, batch(3), now_ms=NOW)  # queued behind it, offsets depend on it
        retry = logs.append(sid, batch(2, pid=9, epoch=0, seq=0), now_ms=NOW)  # in-flight duplicate
        assert retry.result.duplicate and later.result.base_offset == 3
        for pending in (first, later, retry):
            with pytest.raises(StorageError):
                await pending.durable()
        offs = logs.offsets(sid)
        assert (offs.high_watermark, offs.log_end) == (1, 1)
        r = await logs.append(sid, batch(2, pid=9, epoch=0, seq=0), now_ms=NOW).durable()
        assert (r.base_offset, r.duplicate) == (1, False)
    async with running(tmp_path) as st:
        bases = [read_header(b).base_offset for b in (await st.logs.read(sid, 0, 1 << 20)).batches]
        assert bases == [0, 1]


async def test_acks_wait_for_the_writer_threads_fsync_and_close_joins_it(tmp_path, monkeypatch):
    def writers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("wal-writer")}

    before = writers()
    storage = open_local_storage(tmp_path, settings(inline_sync_rate=0))
    real = os.fsync
    gate = threading.Event()
    synced: list[int] = []

    def gated_fsync(fd: int) -> None:
        gate.wait(30)
        real(fd)
        synced.append(fd)

    acked: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run)
        logs = storage.logs
        sid = await logs.create_stream("t-0")
        monkeypatch.setattr(os, "fsync", gated_fsync)

        async def produce(n: int) -> None:
            r = await logs.append(sid, batch(n), now_ms=NOW).durable()
            acked.append(r.base_offset)

        nursery.start_soon(produce, 1)
        await trio.sleep(0.05)
        for n in (2, 3):  # queued while the first write waits for its fsync
            nursery.start_soon(produce, n)
        await trio.sleep(0.05)
        assert acked == [] and synced == []  # nothing acknowledged before its fsync
        assert logs.offsets(sid).high_watermark == 0
        nursery.start_soon(storage.close)  # shutdown with appends in flight and queued
        await trio.sleep(0.05)
        gate.set()
        with trio.fail_after(30):
            while len(acked) < 3 or not storage.logs.stats()["fsyncs"] or writers() - before:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert acked[0] == 0 and sorted(acked[1:]) in ([1, 3], [1, 4]) and len(synced) >= 2
    monkeypatch.setattr(os, "fsync", real)
    async with running(tmp_path) as st:
        assert st.logs.offsets(sid).high_watermark == 6


async def test_when_write_done_hands_over_appends_for_the_next_write(tmp_path, monkeypatch):
    # The MQTT ingest sink's way to make one append per fsync cycle: while a write is in flight,
    # the hook runs once it has returned (its data already durable) and its appends make the next write.
    storage = open_local_storage(tmp_path, settings(inline_sync_rate=0))
    real = os.fsync
    gate = threading.Event()

    def gated_fsync(fd: int) -> None:
        gate.wait(30)
        real(fd)

    calls: list[int] = []
    pendings: list = []
    async with trio.open_nursery() as nursery:
        await nursery.start(storage.run)
        logs = storage.logs
        sid = await logs.create_stream("t-0")
        assert logs.when_write_done(lambda: calls.append(-1)) is False  # idle: append now instead
        monkeypatch.setattr(os, "fsync", gated_fsync)
        first = logs.append(sid, batch(2), now_ms=NOW)
        with trio.fail_after(30):
            while not logs.when_write_done(lambda: None):  # the write has been handed to the thread
                await trio.sleep(0.01)

        def hook() -> None:
            calls.append(logs.offsets(sid).high_watermark)  # the write before it is published
            pendings.append(logs.append(sid, batch(3), now_ms=NOW))

        def broken() -> None:
            raise RuntimeError("a caller's bug")

        assert logs.when_write_done(broken) is True
        assert logs.when_write_done(hook) is True
        await trio.sleep(0.05)
        assert calls == []  # not before the write in flight returns
        gate.set()
        with trio.fail_after(30):
            assert (await first.durable()).base_offset == 0
            assert calls == [2]
            second = await pendings[0].durable()
        assert (second.base_offset, second.last_offset) == (2, 4)
        assert (await logs.append(sid, batch(1), now_ms=NOW).durable()).base_offset == 5  # WAL still works
        await storage.close()
        nursery.cancel_scope.cancel()
    monkeypatch.setattr(os, "fsync", real)


def fsync_threads(monkeypatch) -> list[str]:
    """From now on, the name of the thread that runs each fsync, in order."""
    synced: list[str] = []
    real = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(threading.current_thread().name)
        real(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return synced


async def test_small_commits_are_fsynced_inline_and_big_ones_by_the_writer_thread(tmp_path, monkeypatch):
    monkeypatch.setattr(wal_module, "INLINE_MAX_COMMIT_SECONDS", 60.0)  # whatever this disk's speed
    async with running(tmp_path) as st:
        logs = st.logs
        sid = await logs.create_stream("t-0")
        synced = fsync_threads(monkeypatch)
        r = await logs.append(sid, batch(3), now_ms=NOW).durable()
        assert r.base_offset == 0 and logs.offsets(sid).high_watermark == 3
        assert synced == [threading.current_thread().name]  # the trio thread itself
        big = await logs.append(sid, batch(1, value=b"x" * (128 << 10)), now_ms=NOW).durable()
        assert big.base_offset == 3
        assert synced[-1].startswith("wal-writer")  # over the inline size: the writer thread
    async with running(tmp_path) as st:  # and both are on disk
        bases = [read_header(b).base_offset for b in (await st.logs.read(sid, 0, 1 << 20)).batches]
        assert bases == [0, 3]


async def test_a_slow_disk_sends_commits_to_the_writer_thread_until_it_is_fast_again(tmp_path, monkeypatch):
    # An inline commit stalls the event loop for its fsync: while commits take long on average
    # the writer thread does them; the average follows every commit, so inline comes back.
    synced: list[str] = []
    real = os.fsync
    slow = [True]

    def fsync(fd: int) -> None:
        synced.append(threading.current_thread().name)
        if slow[0]:
            time.sleep(0.5)  # a stalling disk: far over INLINE_MAX_COMMIT_SECONDS
            slow[0] = False
        real(fd)

    monkeypatch.setattr(wal_module, "INLINE_MAX_COMMIT_SECONDS", 0.02)  # a test disk may be slowish
    async with running(tmp_path) as st:
        logs = st.logs
        sid = await logs.create_stream("t-0")
        monkeypatch.setattr(os, "fsync", fsync)
        me = threading.current_thread().name
        await logs.append(sid, batch(1), now_ms=NOW).durable()
        await logs.append(sid, batch(1), now_ms=NOW).durable()
        assert synced[0] == me and synced[1].startswith("wal-writer")  # after the slow one
        with trio.fail_after(30):
            while synced[-1] != me and len(synced) < 200:
                await logs.append(sid, batch(1), now_ms=NOW).durable()
        assert synced[-1] == me  # fast commits brought the average down again
        assert len(synced) > 3
        assert logs.offsets(sid).high_watermark == len(synced)


async def test_a_failing_inline_fsync_fails_its_appends_and_the_next_write_succeeds(tmp_path, monkeypatch):
    real = os.fsync
    calls: list[int] = []

    def failing_once(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, "injected")
        real(fd)

    async with running(tmp_path) as st:
        logs = st.logs
        sid = await logs.create_stream("t-0")
        monkeypatch.setattr(os, "fsync", failing_once)
        with pytest.raises(StorageError):
            await logs.append(sid, batch(2), now_ms=NOW).durable()
        assert (logs.offsets(sid).high_watermark, logs.offsets(sid).log_end) == (0, 0)
        r = await logs.append(sid, batch(2), now_ms=NOW).durable()
        assert r.base_offset == 0
    async with running(tmp_path) as st:
        assert [read_header(b).base_offset for b in (await st.logs.read(sid, 0, 1 << 20)).batches] == [0]


async def test_commits_go_to_the_writer_thread_while_records_arrive_fast(tmp_path, monkeypatch):
    # Above `inline_sync_rate` the loop should go on decoding while the disk works.
    monkeypatch.setattr(wal_module, "INLINE_MAX_COMMIT_SECONDS", 60.0)  # whatever this disk's speed
    me = threading.current_thread().name
    async with running(tmp_path, inline_sync_rate=1000) as st:
        logs = st.logs
        sid = await logs.create_stream("t-0")
        synced = fsync_threads(monkeypatch)
        await logs.append(sid, batch(1), now_ms=NOW).durable()
        assert synced == [me]  # slow arrivals: inline
        with trio.fail_after(30):
            while len(synced) < 100 and synced[-1] == me:
                await logs.append(sid, batch(200), now_ms=NOW).durable()  # far over 1000 records/s
        assert synced[-1].startswith("wal-writer")
        await trio.sleep(0.25)  # quiet windows: the rate is low again
        synced.clear()
        await logs.append(sid, batch(1), now_ms=NOW).durable()  # (closes the window)
        await logs.append(sid, batch(1), now_ms=NOW).durable()
        assert synced[-1] == me


@pytest.mark.parametrize("cache", [256 << 20, 0], ids=["from the log cache", "from the segment files"])
async def test_read_range_returns_whole_batches_below_the_end_and_the_next_offset(tmp_path, cache):
    # The object tier's upload read: batches at 0, 3, 6, 9 (3 records each).
    async with running(tmp_path, log_cache_size=cache) as st:
        logs = st.logs
        sid = await logs.create_stream("t-0")
        for _ in range(4):
            await logs.append(sid, batch(3), now_ms=NOW).durable()
        got, nxt = await logs.read_range(sid, 4, 9, 1 << 20)  # from inside the batch at 3
        assert [read_header(b).base_offset for b in got] == [3, 6] and nxt == 9
        got, nxt = await logs.read_range(sid, 0, 12, 1)  # a tiny budget still gives one batch
        assert [read_header(b).base_offset for b in got] == [0] and nxt == 3
        assert (await logs.read_range(sid, 12, 12, 1 << 20)) == ([], 12)  # nothing past the end
        with pytest.raises(OffsetOutOfRangeError):
            await logs.read_range(sid, 13, 20, 1 << 20)
